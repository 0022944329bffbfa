"""A SAM / CloudFormation template served by ``nimbus dev``: deployed to the dev server
through ``nimbus deploy``'s own machinery (``nimbus.deploy``: AWS's transform, the same
checks, physical names and events), its code folders watched, and on save the stack
deployed again. The deploy compares each resource with what it applied last, so only
what changed is touched: a function whose folder changed gets UpdateFunctionCode (its
warm environments are replaced), with AutoPublishAlias a new version and the alias moved,
exactly as ``nimbus deploy`` would. Packages of folders that did not change are reused,
so a save costs one zip, the transform (~40 ms once warm) and the calls that apply it.

The stack's deploy state lives in the dev server's data dir (it describes that server),
the pip cache next to the template as for ``nimbus deploy``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nimbus.deploy.folder import TEMPLATE_NAMES
from nimbus.deploy.kinds import Context
from nimbus.deploy.package import Package, build
from nimbus.deploy.problems import DeployError, TemplateInvalid
from nimbus.deploy.stack import Deployer, Outcome
from nimbus.deploy.template import Template, load
from nimbus.dev.deployer import DEBUG_LAYER, DEBUG_LAYER_DESCRIPTION, DEBUG_TIMEOUT, Debugging
from nimbus.dev.project import ProjectError, debugpy_layer, skipped
from nimbus.dev.server import DevServer

FUNCTION = "AWS::Lambda::Function"
SAM_FUNCTION = "AWS::Serverless::Function"
SAM_LAYER = "AWS::Serverless::LayerVersion"
URL = "AWS::Lambda::Url"

Builder = Callable[[Path, str | None], Package]


def template_in(target: Path) -> Path | None:
    """The template ``nimbus dev TARGET`` serves: TARGET when it is a file, else the
    template.yaml (.yml, .json) in the folder; None for a folder without one."""
    if target.is_file():
        return target
    for name in TEMPLATE_NAMES:
        if (target / name).is_file():
            return target / name
    return None


def code_folders(template: Template) -> dict[str, Path]:
    """The local folders the template's functions and layers are built from, by logical id
    (SAM's CodeUri, or Globals' one, and ContentUri)."""
    body = template.body
    globals_fn = (body.get("Globals") or {}).get("Function") or {}
    found: dict[str, Path] = {}
    for lid, res in template.resources.items():
        if not isinstance(res, dict):
            continue
        props = res.get("Properties") or {}
        if res.get("Type") == SAM_FUNCTION and "InlineCode" not in props:
            uri = props.get("CodeUri", globals_fn.get("CodeUri") if isinstance(
                globals_fn, dict) else None)  # fmt: skip
        elif res.get("Type") == SAM_LAYER:
            uri = props.get("ContentUri")
        else:
            continue
        if isinstance(uri, str) and not uri.startswith("s3://"):
            found[lid] = (template.root / uri).resolve()
    return found


def _function_of(arn: str) -> str:
    """``name`` from ``arn:aws:lambda:REGION:ACCOUNT:function:name[:qualifier]``."""
    return arn.partition(":function:")[2].split(":")[0]


class _DevDeployer(Deployer):
    """``nimbus deploy``'s Deployer with the session's package cache as its builder."""

    def __init__(self, template: Template, ctx: Context, state_path: Path,
                 builder: Builder) -> None:
        super().__init__(template, ctx, state_path)
        self.builder = builder

    def prepare(self, given: dict[str, str],
                builder: Builder | None = None) -> tuple[dict[str, Any], Any]:
        return super().prepare(given, builder or self.builder)


class StackTarget:
    """One template's stack on the dev server, kept in step with the files."""

    def __init__(self, template_path: Path, stack: str, params: dict[str, str],
                 say: Callable[[str], None], debug: str | None = None,
                 debug_host: str = "127.0.0.1", debug_port: int = 5678) -> None:
        # The transform's metrics warn on every expansion; they are AWS's, not the user's.
        logging.getLogger("samtranslator").setLevel(logging.ERROR)
        self.template_path = template_path.resolve()
        self.root = self.template_path.parent
        self.stack = stack
        self.params = params
        self.say = say
        template = self._load()
        self.code = code_folders(template)
        self.debugging = (Debugging(self._debugged_id(template, debug), debug_host, debug_port)
                          if debug else None)  # fmt: skip
        self.functions: dict[str, str] = {}  # logical id -> function name
        self.urls: dict[str, str] = {}  # function name -> its function URL
        self.packages: dict[tuple[Path, str | None], Package] = {}
        self.ctx: Context | None = None
        self.state_path: Path | None = None
        self.layer_arn: str | None = None

    # -- what the session asks ------------------------------------------------------------

    def open(self, server: DevServer) -> list[str]:
        """Deploy the whole stack; the lines saying what to call."""
        import boto3
        from rich.console import Console

        cfg, found = server.config(), server.credentials()
        session = boto3.session.Session(
            aws_access_key_id=found.access_key_id if found else "nimbus",
            aws_secret_access_key=found.secret_access_key if found else "nimbus",
            region_name=cfg.region,
        )
        self.ctx = Context(session, server.endpoint, self.stack, cfg.region, cfg.account_id,
                           {}, Console(stderr=True))  # fmt: skip
        self.state_path = server.data_dir / "dev" / "stacks" / f"{self.stack}.json"
        start = time.perf_counter()
        outcome = self._deploy()
        self.say(f"deployed stack {self.stack} ({len(self.functions)} function(s)) from "
                 f"{self.template_path} in {(time.perf_counter() - start) * 1000:.0f} ms")
        lines = []
        for lid, name in self.functions.items():
            url = self.urls.get(name)
            lines.append(f"  {lid} (function {name})" + (f": {url}" if url else ""))
        lines += [f"  {url}" for url in outcome.urls if url not in self.urls.values()]
        for key, value in outcome.outputs.items():
            lines.append(f"  output {key} = {value}")
        if self.debugging is not None:
            folder = self.code.get(self.debugging.function, self.root)
            lines.append(f"  {self.debugging.function}: debugpy on {self.debugging.host}:"
                         f"{self.debugging.port}; its first invocation waits until a debugger "
                         f"attaches (VS Code: attach, pathMappings /var/task -> {folder})")
        return lines

    def served(self) -> dict[str, str]:
        return {name: lid for lid, name in self.functions.items()}

    def watched(self) -> list[Path]:
        """The template's folder and every code folder outside it (folders in folders once)."""
        folders = sorted({self.root, *(f for f in self.code.values() if f.is_dir())},
                         key=lambda p: len(p.parts))  # fmt: skip
        kept: list[Path] = []
        for folder in folders:
            if not any(k == folder or k in folder.parents for k in kept):
                kept.append(folder)
        return kept

    def wants(self, path: Path) -> bool:
        """A save of the template, or of a file a function or layer is built from."""
        return path == self.template_path or any(
            (folder == path or folder in path.parents) and not skipped(path, folder)
            for folder in self.code.values()
        )

    def reload(self, paths: set[Path]) -> None:
        """Deploy again: the packages of folders holding ``paths`` are built anew."""
        start = time.perf_counter()
        for key in [k for k in self.packages if any(k[0] == p or k[0] in p.parents
                                                     for p in paths)]:  # fmt: skip
            del self.packages[key]
        try:
            outcome = self._deploy()
        except TemplateInvalid as exc:
            self.say(f"{self.template_path}: {len(exc.problems)} problem(s), nothing "
                     "redeployed (the last deploy still serves):")
            for problem in exc.problems:
                self.say(f"  {problem}")
            return
        except (DeployError, ProjectError) as exc:
            self.say(f"not redeployed: {exc}")
            return
        except OSError as exc:  # a file an editor removed while it was being zipped
            self.say(f"not redeployed: {exc} (the next save deploys again)")
            return
        took = (time.perf_counter() - start) * 1000
        changed = [c for c in outcome.changes if c.action not in ("unchanged", "skipped")]
        functions = [c.logical_id for c in changed if c.type == FUNCTION]
        if functions:
            extra = (" (attach the debugger again: its environment is new)"
                     if self.debugging and self.debugging.function in functions else "")
            self.say(f"reloaded {', '.join(functions)} in {took:.0f} ms{extra}")
        for change in changed:
            if change.type != FUNCTION:
                self.say(f"{change.action} {change.logical_id} ({change.type})")
        if not changed:
            self.say(f"nothing changed to redeploy ({took:.0f} ms)")

    def close(self) -> None:
        """The stack stays on the dev server: it goes with the server's data dir."""

    # -- deploying --------------------------------------------------------------------------

    def _load(self) -> Template:
        try:
            return load(self.template_path)
        except DeployError as exc:
            raise ProjectError(str(exc)) from exc

    def _deploy(self) -> Outcome:
        from botocore.exceptions import BotoCoreError, ClientError

        assert self.ctx is not None and self.state_path is not None
        template = self._load()
        self.code = code_folders(template)
        if self.debugging is not None:
            self._debug(template)
        deployer = _DevDeployer(template, self.ctx, self.state_path, self._build)
        try:
            return deployer.deploy(self.params)
        except (BotoCoreError, ClientError) as exc:  # listing URLs after applying
            raise DeployError(str(exc)) from exc
        finally:  # what is deployed now, even when a deploy stopped part-way
            resources = deployer.state.resources
            self.functions = {lid: e.physical_id for lid, e in resources.items()
                              if e.type == FUNCTION}  # fmt: skip
            self.urls = {_function_of(str(e.attributes.get("FunctionArn", ""))):
                         str(e.attributes["FunctionUrl"]) for e in resources.values()
                         if e.type == URL and "FunctionUrl" in e.attributes}  # fmt: skip

    def _build(self, folder: Path, runtime: str | None) -> Package:
        """A folder's package, built again only after a file in it changed."""
        assert self.ctx is not None
        key = (folder, runtime)
        if key not in self.packages:
            self.packages[key] = build(folder, runtime, self.root / ".nimbus" / "build",
                                       self.ctx.console)  # fmt: skip
        return self.packages[key]

    # -- --debug ----------------------------------------------------------------------------

    def _debugged_id(self, template: Template, name: str) -> str:
        """The logical id of the function ``--debug`` names (its logical id or its name)."""
        functions = {lid: res for lid, res in template.resources.items()
                     if isinstance(res, dict) and res.get("Type") in (SAM_FUNCTION, FUNCTION)}
        for lid, res in functions.items():
            props = res.get("Properties") or {}
            if name in (lid, props.get("FunctionName"), f"{self.stack}-{lid}"):
                runtime = props.get("Runtime") or (
                    (template.body.get("Globals") or {}).get("Function") or {}).get("Runtime")
                if not str(runtime).startswith("python"):
                    raise ProjectError(f"--debug {name}: debugpy debugs Python functions; "
                                       f"{lid} runs {runtime}")
                return lid
        raise ProjectError(f"--debug {name}: no such function in {self.template_path} (its "
                           f"functions: {', '.join(functions) or 'none'})")

    def _debug(self, template: Template) -> None:
        """The debugged function's properties as ``--debug`` needs them: the debugpy layer,
        its variables, a timeout a breakpoint cannot hit, and one environment (one port)."""
        assert self.debugging is not None
        lid = self.debugging.function
        resource = template.resources.get(lid)
        if not isinstance(resource, dict):
            raise ProjectError(f"--debug: {lid} is no longer in {self.template_path}")
        if not isinstance(resource.get("Properties"), dict):
            resource["Properties"] = {}
        props = resource["Properties"]
        layers = props.get("Layers") or []
        env = props.get("Environment") or {}
        variables = (env.get("Variables") or {}) if isinstance(env, dict) else None
        if not isinstance(layers, list) or not isinstance(variables, dict):
            raise ProjectError(f"--debug: {lid}'s Layers must be a list and its Environment "
                               "a mapping of Variables (not an intrinsic)")
        props["Layers"] = [*layers, self._layer()]
        props["Environment"] = {**env, "Variables": {**variables, **self.debugging.variables()}}
        props["Timeout"] = DEBUG_TIMEOUT
        props["ReservedConcurrentExecutions"] = 1

    def _layer(self) -> str:
        """The debugpy layer on the dev server, published once a session."""
        assert self.ctx is not None
        if self.layer_arn is None:
            made = self.ctx.client("lambda").publish_layer_version(
                LayerName=DEBUG_LAYER, Content={"ZipFile": debugpy_layer()},
                Description=DEBUG_LAYER_DESCRIPTION,
            )  # fmt: skip
            self.layer_arn = str(made["LayerVersionArn"])
        return self.layer_arn
