"""``nimbus deploy`` and ``nimbus rm --stack``: a folder or a SAM / CloudFormation template
to a nimbus, and back.

stdout carries only the URLs to call (function URLs and HTTP API routes), one a line
(``--json``: the stack's resources, outputs and URLs as one document); what happened
goes to stderr. Exit status: 0 deployed (or removed), 1 the server refused something
mid-way (the state file knows what was made: fix and deploy again, or ``nimbus rm
--stack``), 2 the template or the command line is wrong (nothing deployed), 3 no nimbus
answered at the endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from nimbus.cli.client import (
    ENDPOINT,
    FAILED,
    UNREACHABLE,
    USAGE,
    JsonOption,
    fail,
    print_json,
)


def _context(endpoint: str, stack: str) -> Any:
    import boto3
    from rich.console import Console

    from nimbus.config import ConfigError, load_config
    from nimbus.deploy.kinds import Context
    from nimbus.sigv4.credentials import client_credentials

    try:
        cfg = load_config()
        found = client_credentials(cfg)
    except ConfigError as exc:
        fail(str(exc), USAGE)
    if not endpoint.startswith(("http://", "https://")):
        fail(f"--endpoint {endpoint!r}: give it as http://HOST:PORT", USAGE)
    session = boto3.session.Session(
        aws_access_key_id=found.access_key_id if found else "nimbus",
        aws_secret_access_key=found.secret_access_key if found else "nimbus",
        region_name=cfg.region,
    )
    return Context(session, endpoint.rstrip("/"), stack, cfg.region, cfg.account_id, {},
                   Console(stderr=True))  # fmt: skip


def params(values: list[str]) -> dict[str, str]:
    """``--param KEY=VALUE`` options as a mapping (a malformed one is the caller's to fix)."""
    given: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--param {item!r}: write KEY=VALUE", USAGE)
        given[key] = value
    return given


def unreachable(exc: BaseException) -> bool:
    """Whether a deploy failed because no nimbus answered (botocore's connection errors,
    possibly wrapped in a DeployError)."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, BotoConnectionError | HTTPClientError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def failed(exc: BaseException, endpoint: str) -> NoReturn:
    """A deploy or removal that stopped part-way: 3 when nimbus could not be reached."""
    if unreachable(exc):
        fail(f"cannot reach {endpoint}: {exc}. Is `nimbus up` running there? (--endpoint or "
             "NIMBUS_ENDPOINT say where)", UNREACHABLE)
    fail(_reason(exc) if isinstance(exc, Exception) else str(exc), FAILED)


def _reason(exc: Exception) -> str:
    """A botocore error as ``Code: message``, else the exception's text."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        return f"{response['Error'].get('Code')}: {response['Error'].get('Message')}"
    return str(exc) or type(exc).__name__


_STYLE = {"created": "green", "updated": "yellow", "replaced": "yellow", "deleted": "red",
          "retained": "dim", "kept": "dim", "unchanged": "dim", "skipped": "dim"}  # fmt: skip


def deploy(
    target: Annotated[
        Path,
        typer.Argument(
            help="A folder (with a template.yaml, or deployed as one function) "
            "or a SAM / CloudFormation template file"
        ),
    ] = Path("."),
    stack: Annotated[
        str | None, typer.Option(help="Stack name (default: the folder's name)")
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Template parameter KEY=VALUE (repeatable)")
    ] = None,
    as_json: JsonOption = False,
    endpoint: str = ENDPOINT,
) -> None:
    """Deploy a folder or a SAM template: creates or updates only what changed, prints the URLs.

    Deploy state is kept in .nimbus/stacks/STACK.json next to the template: a resource
    removed from the template is deleted on the next deploy; `nimbus rm --stack` deletes all.
    --json: {"StackName", "Resources": [{"LogicalResourceId", "ResourceType",
    "PhysicalResourceId", "Action"}], "Outputs": {KEY: VALUE}, "Urls": [...]}.
    """
    from botocore.exceptions import BotoCoreError, ClientError
    from rich.markup import escape

    from nimbus.deploy.folder import find, function_name, template_for
    from nimbus.deploy.problems import DeployError, TemplateInvalid
    from nimbus.deploy.stack import Deployer
    from nimbus.deploy.state import check_stack_name, path_for

    given = params(param or [])
    try:  # the template, the stack name and its state: all the caller's to fix
        template, folder = find(target)
        if template is None:
            template = template_for(folder)
        name = check_stack_name(stack or function_name(folder))
        ctx = _context(endpoint, name)
        deployer = Deployer(template, ctx, path_for(folder, name))
    except DeployError as exc:
        fail(f"{exc}", USAGE)
    shown = template.path or f"{folder} (one function)"
    ctx.console.print(f"deploying {shown} as stack [bold]{name}[/bold] to {ctx.endpoint}",
                      highlight=False)  # fmt: skip
    try:
        outcome = deployer.deploy(given)
    except TemplateInvalid as exc:
        typer.echo(f"nimbus: {target}: {len(exc.problems)} problem(s), nothing was deployed:",
                   err=True)  # fmt: skip
        for problem in exc.problems:
            typer.echo(f"  {problem}", err=True)
        raise typer.Exit(USAGE) from exc
    except DeployError as exc:
        failed(exc, ctx.endpoint)
    except (BotoCoreError, ClientError) as exc:  # listing what was made, after applying it
        failed(exc, ctx.endpoint)
    for change in outcome.changes:
        style = _STYLE.get(change.action, "bold")
        ctx.console.print(f"[{style}]{change.action:<9}[/{style}] {change.logical_id} "
                          f"({change.type}) {escape(change.physical_id)}",
                          highlight=False, soft_wrap=True)  # fmt: skip
    if outcome.outputs:
        ctx.console.print("Outputs:")
        for key, value in outcome.outputs.items():
            ctx.console.print(f"  {key} = {escape(str(value))}", highlight=False, soft_wrap=True)
    if as_json:
        print_json({
            "StackName": name,
            "Resources": [{"LogicalResourceId": c.logical_id, "ResourceType": c.type,
                           "PhysicalResourceId": c.physical_id, "Action": c.action}
                          for c in outcome.changes],
            "Outputs": outcome.outputs,
            "Urls": outcome.urls,
        })  # fmt: skip
        return
    for url in outcome.urls:
        typer.echo(url)


def remove(
    name: Annotated[
        str | None, typer.Argument(help="Function name or ARN (not with --stack)")
    ] = None,
    qualifier: Annotated[
        str | None,
        typer.Option(help="Delete only this version (a number) or alias, not the function"),
    ] = None,
    stack: Annotated[
        str | None,
        typer.Option(help="Delete this deployed stack, with everything it made, instead"),
    ] = None,
    folder: Annotated[
        Path, typer.Option("--dir", help="With --stack: the folder deployed from")
    ] = Path("."),
    endpoint: str = ENDPOINT,
) -> None:
    """Delete a function (or one version or alias of it with --qualifier), or with
    --stack NAME everything `nimbus deploy` made for that stack, dependents first."""
    if stack is None:
        if name is None:
            fail("give a function NAME, or --stack NAME", USAGE)
        from nimbus.cli import inventory

        inventory.remove(name=name, qualifier=qualifier, endpoint=endpoint)
        return
    if name is not None or qualifier is not None:
        fail("--stack deletes a whole stack: give no function NAME or --qualifier with it",
             USAGE)
    _remove_stack(stack, folder, endpoint)


def _remove_stack(stack: str, folder: Path, endpoint: str) -> None:
    from botocore.exceptions import BotoCoreError, ClientError
    from rich.markup import escape

    from nimbus.deploy.problems import DeployError
    from nimbus.deploy.stack import Deployer
    from nimbus.deploy.state import path_for

    base = folder.resolve().parent if folder.is_file() else folder.resolve()
    path = path_for(base, stack)
    if not path.is_file():
        fail(f"no stack {stack} was deployed from {base} (no {path}): run this in the folder "
             "you deployed from, or pass it with --dir", USAGE)
    ctx = _context(endpoint, stack)
    try:
        deployer = Deployer(None, ctx, path)
    except DeployError as exc:  # its state names another endpoint, or cannot be read
        fail(f"{exc}", USAGE)
    try:
        changes = deployer.remove()
    except (DeployError, BotoCoreError, ClientError) as exc:
        failed(exc, ctx.endpoint)
    for change in changes:
        style = _STYLE.get(change.action, "dim")
        ctx.console.print(
            f"[{style}]{change.action:<9}[/{style}] {change.logical_id} ({change.type}) "
            f"{escape(change.physical_id)}",
            highlight=False,
            soft_wrap=True,
        )
    ctx.console.print(f"stack {stack} removed")
