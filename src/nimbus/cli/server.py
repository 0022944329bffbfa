"""``nimbus up``, ``credentials``, ``doctor`` and ``version``: this host's nimbus."""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Annotated

import typer

from nimbus.cli.client import FAILED, USAGE, JsonOption, fail, print_json
from nimbus.config import ConfigError, load_config


def up(
    host: Annotated[str | None, typer.Option(help="Address to listen on [127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [9000]")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="State directory [./.nimbus]")] = None,
    database_url: Annotated[
        str | None, typer.Option(help="PostgreSQL URL instead of the embedded SQLite")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config file")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error")] = None,
    isolation: Annotated[
        str | None, typer.Option(help="namespace (default, real isolation) or process (none)")
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Allow api_auth=none on a non-loopback --host")
    ] = False,
    cluster: Annotated[
        bool, typer.Option("--cluster", help="One of several servers sharing PostgreSQL "
                                             "and NATS: limits counted cluster-wide")
    ] = False,
    reuse_port: Annotated[
        bool, typer.Option("--reuse-port", help="Share the port with the cluster's other "
                                                "servers on this host (SO_REUSEPORT)")
    ] = False,
) -> None:
    """Start nimbus: the Lambda API on http://HOST:PORT."""
    from nimbus.server import serve

    try:
        cfg = load_config(
            config,
            host=host,
            port=port,
            data_dir=data_dir,
            database_url=database_url,
            log_level=log_level,
            isolation=isolation,
            insecure=insecure or None,
            cluster=cluster or None,
            reuse_port=reuse_port or None,
        )
    except ConfigError as exc:
        fail(str(exc), USAGE)
    if (exposed := cfg.unprotected_bind()) is not None:
        fail(exposed, USAGE)
    sockets = [_bind(cfg.host, cfg.port, shared=True)] if cfg.reuse_port else None
    if sockets is None:
        _check_port(cfg.host, cfg.port)
    try:
        serve(cfg, sockets)
    except SystemExit as exc:  # uvicorn's own exit codes (3: it could not start) are not ours
        if exc.code not in (None, 0):
            raise typer.Exit(FAILED) from exc


def worker(
    host: Annotated[str | None, typer.Option(help="Address to listen on [127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [9000]")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="State directory [./.nimbus]")] = None,
    database_url: Annotated[
        str | None, typer.Option(help="The cluster's PostgreSQL URL")
    ] = None,
    advertise_url: Annotated[
        str | None, typer.Option(help="URL the servers reach this node at [http://HOST:PORT]")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config file")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error")] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Allow api_auth=none on a non-loopback --host")
    ] = False,
) -> None:
    """Start a worker node of a cluster: it runs the invocations the servers place on it
    and the async events it pulls (same settings as the cluster's servers)."""
    from nimbus.server import serve

    try:
        cfg = load_config(config, host=host, port=port, data_dir=data_dir,
                          database_url=database_url, log_level=log_level,
                          insecure=insecure or None, advertise_url=advertise_url,
                          cluster=True, role="worker")
    except ConfigError as exc:
        fail(str(exc), USAGE)
    if (exposed := cfg.unprotected_bind()) is not None:
        fail(exposed, USAGE)
    if cfg.advertise_url is None and (cfg.port == 0 or cfg.host in ("0.0.0.0", "::", "")):
        fail(f"the servers cannot reach this worker at {cfg.node_url}: give --advertise-url "
             "(NIMBUS_ADVERTISE_URL) with an address and port they can reach", USAGE)
    _check_port(cfg.host, cfg.port)
    try:
        serve(cfg)
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise typer.Exit(FAILED) from exc


def _check_port(host: str, port: int) -> None:
    """Refuse a port something else listens on, saying so, before starting anything."""
    _bind(host, port).close()


def _bind(host: str, port: int, *, shared: bool = False) -> socket.socket:
    """A socket bound to ``host:port`` (``shared``: with SO_REUSEPORT, which only other
    sockets bound with it by this user may share), or a clear refusal (exit 2)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:  # as uvicorn binds "::": IPv6 only
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE and shared:
            fail(f"{host}:{port} is in use by a process that does not share it (not a "
                 "nimbus server started with --reuse-port by this user): stop it, or pick "
                 "another port with --port (or NIMBUS_PORT)", USAGE)
        if exc.errno == errno.EADDRINUSE:
            fail(f"{host}:{port} is in use (another nimbus?): stop it, or pick another "
                 "port with --port (or NIMBUS_PORT); servers of one cluster may share "
                 "it with --reuse-port", USAGE)
        if exc.errno == errno.EADDRNOTAVAIL:
            fail(f"{host} is not an address of this host: give --host 127.0.0.1, "
                 "0.0.0.0 or one of this host's addresses", USAGE)
        if exc.errno == errno.EACCES:
            fail(f"port {port} needs privileges this user lacks: pick one above 1023 "
                 "with --port", USAGE)
        raise
    return sock


def credentials(
    data_dir: Annotated[Path | None, typer.Option(help="State directory [./.nimbus]")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config file")] = None,
    as_json: JsonOption = False,
) -> None:
    """Print the keys this nimbus accepts, for `eval "$(nimbus credentials)"`: the
    configured pair, else the one the server keeps in its data dir (--data-dir,
    NIMBUS_DATA_DIR or the config's data_dir; ./.nimbus by default). Never makes a pair."""
    import shlex

    from nimbus.sigv4.credentials import FILE_NAME, load_credentials

    try:
        cfg = load_config(config, data_dir=data_dir)
        configured = cfg.access_key_id is not None and cfg.secret_access_key is not None
        if not configured and not (cfg.data_dir / FILE_NAME).is_file():
            # Making a pair here would print keys no server accepts (the server's are in
            # its own data dir): a second pair, silently. Say where to look instead.
            what = "is no nimbus data dir" if not cfg.data_dir.is_dir() else f"has no {FILE_NAME}"
            fail(
                f"{cfg.data_dir} {what}: no server keeps its keys there. Point this "
                "command at the data dir of the nimbus you talk to: --data-dir DIR, "
                "NIMBUS_DATA_DIR=DIR or --config FILE (data_dir = ...), or run it where "
                "`nimbus up` runs. A server writes its keys there when it first starts.",
                USAGE,
            )
        found = load_credentials(cfg)
    except ConfigError as exc:
        fail(str(exc), USAGE)
    if as_json:
        print_json({"AWS_ACCESS_KEY_ID": found.access_key_id,
                    "AWS_SECRET_ACCESS_KEY": found.secret_access_key,
                    "AWS_DEFAULT_REGION": cfg.region})
        return
    typer.echo(f"export AWS_ACCESS_KEY_ID={shlex.quote(found.access_key_id)}")
    typer.echo(f"export AWS_SECRET_ACCESS_KEY={shlex.quote(found.secret_access_key)}")
    typer.echo(f"export AWS_DEFAULT_REGION={shlex.quote(cfg.region)}")


def doctor(as_json: JsonOption = False) -> None:
    """Say what isolation this host supports, and whether nimbus can run functions (exit 1
    when it cannot isolate them)."""
    from dataclasses import asdict

    from nimbus.sandbox.host import report

    host = report()
    if as_json:
        print_json({"checks": [asdict(c) for c in host.checks],
                    "namespace_isolation": host.namespace_isolation})
        if not host.namespace_isolation:
            raise typer.Exit(FAILED)
        return
    for check in host.checks:
        mark = "ok  " if check.ok else ("FAIL" if check.required else "warn")
        typer.echo(f"[{mark}] {check.name}: {check.detail}")
    if not host.namespace_isolation:
        typer.echo(
            "nimbus cannot isolate functions on this host (see FAIL above): invocations fail "
            "with a clear error. `nimbus up --isolation process` runs them without isolation "
            "(for a laptop without root; never chosen silently).",
            err=True,
        )
        raise typer.Exit(FAILED)
    typer.echo("namespace isolation: available")


def version(as_json: JsonOption = False) -> None:
    """Print the nimbus version."""
    from importlib.metadata import version as dist_version

    if as_json:
        print_json({"version": dist_version("nimbus")})
        return
    typer.echo(dist_version("nimbus"))
