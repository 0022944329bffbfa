"""``nimbus dev [DIR]``: develop functions locally with hot reload and a debugger.

Starts a nimbus of its own on --port, deploys the folder's function to it, gives it a
function URL, streams every function's logs (stdout, one colour per function) and
redeploys a function when its files are saved; what happened goes to stderr. With
``--debug FN`` that function's environment runs debugpy (a layer made from the debugpy
installed here) and its first invocation waits for a client: VS Code's "attach"
configuration, with ``/var/task`` mapped to the folder (README "Local development")."""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from nimbus.cli.client import MEANINGFUL, fail, say

USAGE = MEANINGFUL.refused


def dev(
    directory: Annotated[Path, typer.Argument(help="The function's folder [.]")] = Path("."),
    port: Annotated[int, typer.Option(help="Port of the dev nimbus")] = 9000,
    handler: Annotated[
        str | None,
        typer.Option(help="The handler, module.function [app.handler, or app.lambda_handler "
                          "when app.py has only that]"),
    ] = None,
    runtime: Annotated[
        str | None, typer.Option(help="Runtime [the host's newest python3.X]")
    ] = None,
    debug: Annotated[
        str | None,
        typer.Option(help="Run this function under debugpy: its first invocation waits for "
                          "a debugger to attach"),
    ] = None,
    debug_port: Annotated[int, typer.Option(help="Port debugpy listens on")] = 5678,
    data_dir: Annotated[
        Path | None, typer.Option(help="Keep the dev nimbus' state here [a temporary dir]")
    ] = None,
    isolation: Annotated[
        str | None, typer.Option(help="namespace (default) or process (no isolation)")
    ] = None,
) -> None:
    """Serve a function folder on a local nimbus, reload it on save, stream its logs."""
    from nimbus.dev.deployer import Debugging, DeployError
    from nimbus.dev.project import ProjectError, default_handler, discover
    from nimbus.dev.server import DevServer, ServerFailed
    from nimbus.dev.session import DevSession

    try:
        functions = discover(directory, runtime or _newest_python(debug is not None),
                             handler or default_handler(directory))
    except ProjectError as exc:
        fail(str(exc), USAGE)
    names = [fn.name for fn in functions]
    if any((directory / t).is_file() for t in ("template.yaml", "template.yml", "template.json")):
        say("note: nimbus dev serves this folder as one function; the template's other "
            "resources (events, queues, routes) come with `nimbus deploy`")
    if debug is not None and debug not in names:
        fail(f"--debug {debug}: no such function here (this folder has {', '.join(names)})",
             USAGE)
    debugging = Debugging(debug, "127.0.0.1", debug_port) if debug else None
    session = DevSession(
        root=directory.resolve(), functions=functions,
        server=DevServer(port, data_dir, isolation, echo=_server_line),
        say=say, emit=_emit, debugging=debugging,
    )

    def interrupted(signum: int, frame: FrameType | None) -> None:
        session.stop.set()

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    try:
        try:
            urls = session.start(_signer(session.server.data_dir))
        except ServerFailed as exc:
            fail(f"the dev nimbus did not start (is port {port} free? --port picks another):"
                 f"\n{exc}")
        except DeployError as exc:
            fail(f"deploying failed: {exc}", USAGE)
        say(f"nimbus dev: {session.server.endpoint} (NIMBUS_ENDPOINT={session.server.endpoint}"
            " for the nimbus CLI); watching " + str(session.root))
        for name, url in urls.items():
            say(f"  {name}: {url}")
        if debugging is not None:
            say(f"  {debugging.function}: debugpy on {debugging.host}:{debugging.port}; its "
                "first invocation waits until a debugger attaches (VS Code: attach, "
                f"pathMappings /var/task -> {session.root})")
        say("ready: edit and save, the next invocation runs the new code (Ctrl-C stops)")
        session.run()
    finally:
        session.close()


def _newest_python(debugging: bool) -> str:
    """The host's newest python3.X; when debugging, this interpreter's version if the
    host has it (debugpy's compiled speedups are built for it)."""
    from nimbus.sandbox import catalog

    pythons = [n for n in catalog.names() if n.startswith("python3.")]
    if not pythons:
        fail("this host has no python3.X runtime (`nimbus doctor` lists them)")
    mine = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return mine if debugging and mine in pythons else pythons[-1]


def _signer(data_dir: Path) -> Callable[[str], object] | None:
    """Signing for a dev server that wants SigV4 (api_auth from the environment/config):
    with its keys, from its data dir."""
    from nimbus.config import load_config
    from nimbus.sigv4.credentials import client_credentials
    from nimbus.sigv4.signing import httpx_auth

    cfg = load_config(data_dir=data_dir)
    found = client_credentials(cfg)
    if found is None:
        return None
    return lambda service: httpx_auth(found, region=cfg.region, service=service)


def _emit(name: str, colour: str, line: str) -> None:
    """One log line on stdout, led by its function's name in the function's colour."""
    _out().print(f"[{colour}]{escape(name)}[/] | {escape(line)}", soft_wrap=True,
                 highlight=False)


@functools.cache
def _out() -> Console:
    return Console()


def _server_line(line: str) -> None:
    typer.echo(f"nimbus: {line.rstrip()}", err=True)
