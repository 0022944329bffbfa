"""``nimbus dev [DIR | template.yaml]``: develop functions locally with hot reload and a
debugger.

Starts a nimbus of its own on --port and deploys to it either a SAM template (a file, or
the template.yaml of DIR) through ``nimbus deploy``'s machinery, or a folder without a
template as one function with a function URL. It streams every function's logs (stdout,
one colour per function) and redeploys what a saved file belongs to; what happened goes
to stderr. With ``--debug FN`` that function's environment runs debugpy (a layer made
from the debugpy installed here) and its first invocation waits for a client: VS Code's
"attach" configuration, with ``/var/task`` mapped to its code folder (README "Local
development"). Exit codes: 0 stopped (Ctrl-C, SIGTERM), 1 the dev server or the first
deploy failed, 2 the folder, template or options are wrong."""

from __future__ import annotations

import functools
import signal
import socket
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from nimbus.cli.client import FAILED, USAGE, fail, say
from nimbus.cli.deploy import params


def dev(
    target: Annotated[
        Path, typer.Argument(help="A SAM template, or a folder: with a template.yaml, or "
                                  "served as one function [.]")
    ] = Path("."),
    port: Annotated[int, typer.Option(help="Port of the dev nimbus", min=1, max=65535)] = 9000,
    stack: Annotated[
        str | None, typer.Option(help="With a template: the stack name [the folder's name]")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="With a template: a parameter KEY=VALUE (repeatable)"),
    ] = None,
    handler: Annotated[
        str | None,
        typer.Option(help="A folder's handler, module.function [app.handler, or "
                          "app.lambda_handler when app.py has only that]"),
    ] = None,
    runtime: Annotated[
        str | None, typer.Option(help="A folder's runtime [the host's newest python3.X]")
    ] = None,
    debug: Annotated[
        str | None,
        typer.Option(help="Run this function (its name, or its logical id in a template) "
                          "under debugpy: its first invocation waits for a debugger"),
    ] = None,
    debug_port: Annotated[
        int, typer.Option(help="Port debugpy listens on", min=1, max=65535)
    ] = 5678,
    data_dir: Annotated[
        Path | None, typer.Option(help="Keep the dev nimbus' state here [a temporary dir]")
    ] = None,
    isolation: Annotated[
        str | None, typer.Option(help="namespace (default) or process (no isolation)")
    ] = None,
) -> None:
    """Serve a SAM template or a function folder on a local nimbus, reload on save, stream
    all logs."""
    from nimbus.deploy.problems import DeployError, TemplateInvalid
    from nimbus.dev.deployer import Debugging
    from nimbus.dev.deployer import DeployError as FolderDeployError
    from nimbus.dev.folder import FolderTarget
    from nimbus.dev.project import ProjectError, default_handler, discover
    from nimbus.dev.server import DevServer, ServerFailed
    from nimbus.dev.session import DevSession, Target
    from nimbus.dev.stack import StackTarget, template_in

    if not target.exists():
        fail(f"{target} does not exist: give a SAM template or a function's folder", USAGE)
    template = template_in(target)
    served: Target
    try:
        if template is not None:
            if handler is not None or runtime is not None:
                fail(f"--handler and --runtime are for a folder without a template: set "
                     f"Handler and Runtime in {template}", USAGE)
            folder = template.resolve().parent
            served = StackTarget(template, _stack_name(stack, folder), params(param or []),
                                 say, debug, "127.0.0.1", debug_port)  # fmt: skip
        else:
            if stack is not None or param:
                fail(f"--stack and --param are for a SAM template: {target} has none "
                     "(it is served as one function)", USAGE)
            functions = discover(target, runtime or _newest_python(debug is not None),
                                 handler or default_handler(target))
            names = [fn.name for fn in functions]
            if debug is not None and debug not in names:
                fail(f"--debug {debug}: no such function here (this folder has "
                     f"{', '.join(names)})", USAGE)
            served = FolderTarget(target.resolve(), functions, say,
                                  Debugging(debug, "127.0.0.1", debug_port) if debug else None)
    except (ProjectError, DeployError) as exc:
        fail(str(exc), USAGE)
    _check_port(port)
    # debugpy listens on the loopback of the debugged function's environment, where a
    # debugger on this host can only connect if functions share the host's network.
    server = DevServer(port, data_dir, isolation, echo=_server_line,
                       function_network="host" if debug is not None else None)
    session = DevSession(served, server, say=say, emit=_emit)

    def interrupted(signum: int, frame: FrameType | None) -> None:
        session.stop.set()

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    try:
        try:
            lines = session.start()
        except ServerFailed as exc:
            fail(f"the dev nimbus did not start:\n{exc}", FAILED)
        except TemplateInvalid as exc:
            say(f"nimbus: {template}: {len(exc.problems)} problem(s), nothing was deployed:")
            for problem in exc.problems:
                say(f"  {problem}")
            raise typer.Exit(USAGE) from exc
        except (ProjectError, DeployError, FolderDeployError) as exc:
            fail(f"deploying failed: {exc}", FAILED)
        watched = ", ".join(str(p) for p in served.watched())
        say(f"nimbus dev: {server.endpoint} (NIMBUS_ENDPOINT={server.endpoint} for the nimbus "
            f"CLI); watching {watched}")
        for line in lines:
            say(line)
        say("ready: edit and save, the next invocation runs the new code (Ctrl-C stops)")
        session.run()
    finally:
        session.close()


def _stack_name(stack: str | None, folder: Path) -> str:
    """The stack's name, as `nimbus deploy` names it, so functions get the same names."""
    from nimbus.deploy.folder import function_name
    from nimbus.deploy.state import check_stack_name

    return check_stack_name(stack or function_name(folder))


def _check_port(port: int) -> None:
    """Refuse a port something listens on before starting anything (a second nimbus on the
    same port would fail after seconds of start-up, less clearly)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            fail(f"port {port} is in use ({exc.strerror}; `make up` or `nimbus up` listens on "
                 "9000): pick another with --port", USAGE)


def _newest_python(debugging: bool) -> str:
    """The host's newest python3.X; when debugging, this interpreter's version if the
    host has it (debugpy's compiled speedups are built for it)."""
    from nimbus.sandbox import catalog

    pythons = [n for n in catalog.names() if n.startswith("python3.")]
    if not pythons:
        fail("this host has no python3.X runtime (`nimbus doctor` lists them)", FAILED)
    mine = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return mine if debugging and mine in pythons else pythons[-1]


def _emit(name: str, colour: str, line: str) -> None:
    """One log line on stdout, led by its function's name in the function's colour."""
    _out().print(f"[{colour}]{escape(name)}[/] | {escape(line)}", soft_wrap=True,
                 highlight=False)


@functools.cache
def _out() -> Console:
    return Console()


def _server_line(line: str) -> None:
    typer.echo(f"nimbus: {line.rstrip()}", err=True)
