"""The ``nimbus`` command."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from nimbus.config import ConfigError, load_config

app = typer.Typer(
    help="nimbus: AWS Lambda's model and API on your own machine.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
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
        )
    except ConfigError as exc:
        typer.echo(f"nimbus: {exc}", err=True)
        raise typer.Exit(2) from exc
    serve(cfg)


ENDPOINT = typer.Option(
    "http://127.0.0.1:9000", envvar="NIMBUS_ENDPOINT", help="The nimbus to talk to"
)


def _signer(service: str = "lambda") -> Any:
    """SigV4 for servers with api_auth = "sigv4": keys from the nimbus config, the data
    dir (NIMBUS_DATA_DIR, default ./.nimbus) or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY."""
    from nimbus.gateway.credentials import client_credentials
    from nimbus.gateway.signing import httpx_auth

    try:
        cfg = load_config()
        found = client_credentials(cfg)
    except ConfigError as exc:
        typer.echo(f"nimbus: {exc}", err=True)
        raise typer.Exit(2) from exc
    return httpx_auth(found, region=cfg.region, service=service) if found else None


def _call(method: str, url: str, allow: tuple[int, ...] = (), **kwargs: Any) -> httpx.Response:
    """The response; an error status (unless in ``allow``) is printed and exits 1."""
    from nimbus.gateway.sigv4 import control_plane_service

    service = control_plane_service(httpx.URL(url).path)
    try:
        response = httpx.request(method, url, timeout=960, auth=_signer(service), **kwargs)
    except httpx.HTTPError as exc:
        typer.echo(f"nimbus: cannot reach {url}: {exc}. Is `nimbus up` running?", err=True)
        raise typer.Exit(1) from exc
    if response.status_code >= 400 and response.status_code not in allow:
        _report_error(response)
        raise typer.Exit(1)
    return response


def _report_error(response: httpx.Response) -> None:
    """Print the server's error as ``Type: message`` (Lambda's and API Gateway's shapes)."""
    kind = response.headers.get("x-amzn-errortype", str(response.status_code))
    try:
        body = response.json() if response.content else {}
    except ValueError:  # not the Lambda / API Gateway error shape: show it as it is
        body = {"message": response.text}
    message = (body.get("message") or body.get("Message")) if isinstance(body, dict) else body
    typer.echo(f"{kind}: {message}", err=True)
    if kind in ("MissingAuthenticationTokenException", "UnrecognizedClientException"):
        typer.echo(
            "nimbus: this server requires signed requests: run the CLI with the server's "
            'NIMBUS_DATA_DIR, or `eval "$(nimbus credentials --data-dir DIR)"` first.',
            err=True,
        )


@app.command()
def credentials(
    data_dir: Annotated[Path | None, typer.Option(help="State directory [./.nimbus]")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config file")] = None,
) -> None:
    """Print the keys this nimbus accepts, for `eval "$(nimbus credentials)"`."""
    import shlex

    from nimbus.gateway.credentials import load_credentials

    try:
        cfg = load_config(config, data_dir=data_dir)
        found = load_credentials(cfg)
    except ConfigError as exc:
        typer.echo(f"nimbus: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"export AWS_ACCESS_KEY_ID={shlex.quote(found.access_key_id)}")
    typer.echo(f"export AWS_SECRET_ACCESS_KEY={shlex.quote(found.secret_access_key)}")
    typer.echo(f"export AWS_DEFAULT_REGION={shlex.quote(cfg.region)}")


@app.command()
def invoke(
    name: Annotated[str, typer.Argument(help="Function name or ARN")],
    payload: Annotated[str, typer.Option("--payload", "-p", help="JSON event")] = "{}",
    qualifier: Annotated[str | None, typer.Option(help="Version or alias")] = None,
    tail: Annotated[bool, typer.Option("--tail", help="Print the log to stderr")] = False,
    endpoint: str = ENDPOINT,
) -> None:
    """Invoke a function synchronously and print its result."""
    response = _call(
        "POST",
        f"{endpoint}/2015-03-31/functions/{name}/invocations",
        params={"Qualifier": qualifier} if qualifier else None,
        content=payload.encode(),
        headers={"X-Amz-Log-Type": "Tail" if tail else "None"},
    )
    if tail and "x-amz-log-result" in response.headers:
        typer.echo(base64.b64decode(response.headers["x-amz-log-result"]).decode(), err=True)
    typer.echo(response.text)
    if response.headers.get("x-amz-function-error"):
        raise typer.Exit(1)


@app.command()
def logs(
    name: Annotated[str, typer.Argument(help="Function name")],
    since: Annotated[int, typer.Option(help="Only the last N minutes")] = 60,
    limit: Annotated[int, typer.Option(help="At most this many invocations")] = 20,
    endpoint: str = ENDPOINT,
) -> None:
    """Print the logs of a function's recent invocations (START ... REPORT)."""
    since_ms = int((time.time() - since * 60) * 1000)
    answer = _call(
        "GET",
        f"{endpoint}/_nimbus/functions/{name}/logs",
        params={"SinceMs": since_ms, "Limit": limit},
    ).json()
    for record in answer["Logs"]:
        typer.echo(record["text"], nl=False)


@app.command("ls")
def list_functions(endpoint: str = ENDPOINT) -> None:
    """List functions."""
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "runtime", "handler", "memory", "timeout", "last modified")
    marker: str | None = None
    while True:
        params = {"Marker": marker} if marker else {}
        page = _call("GET", f"{endpoint}/2015-03-31/functions/", params=params).json()
        for f in page["Functions"]:
            table.add_row(
                f["FunctionName"],
                f["Runtime"],
                f["Handler"],
                f"{f['MemorySize']} MB",
                f"{f['Timeout']} s",
                f["LastModified"],
            )
        marker = page.get("NextMarker")
        if not marker:
            break
    Console().print(table)


dlq = typer.Typer(help="Dead letters: async events that could not be processed.")
app.add_typer(dlq, name="dlq")


@dlq.command("ls")
def dlq_list(
    function: Annotated[str | None, typer.Option(help="Only this function")] = None,
    queue: Annotated[str | None, typer.Option(help="Only this DeadLetterConfig queue")] = None,
    endpoint: str = ENDPOINT,
) -> None:
    """List dead letters (not yet re-driven)."""
    from rich.console import Console
    from rich.table import Table

    params = {k: v for k, v in {"FunctionName": function, "Queue": queue}.items() if v}
    letters = _call("GET", f"{endpoint}/_nimbus/dead-letters", params=params).json()
    table = Table("id", "function", "condition", "attempts", "request id", "payload")
    for letter in letters["DeadLetters"]:
        table.add_row(
            str(letter["id"]),
            letter["function_name"],
            letter["condition"],
            str(letter["attempts"]),
            letter["request_id"],
            letter["payload"][:60],
        )
    Console().print(table)


@dlq.command("redrive")
def dlq_redrive(
    ids: Annotated[list[int], typer.Argument(help="Dead letter ids (see `nimbus dlq ls`)")],
    endpoint: str = ENDPOINT,
) -> None:
    """Queue dead letters again, as new async invocations."""
    for letter_id in ids:
        answer = _call("POST", f"{endpoint}/_nimbus/dead-letters/{letter_id}/redrive").json()
        typer.echo(f"{letter_id}: re-driven as {answer['RequestId']}")


@app.command()
def doctor() -> None:
    """Say what isolation this host supports, and whether nimbus can run functions."""
    from nimbus.sandbox.host import report

    host = report()
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
        raise typer.Exit(1)
    typer.echo("namespace isolation: available")


@app.command()
def version() -> None:
    """Print the nimbus version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("nimbus"))


# `nimbus url` and `nimbus api` (HTTP triggers) live in their own module, which reuses
# _call and ENDPOINT from this one and registers its sub-apps on `app` when imported.
import nimbus.cli_http  # noqa: E402, F401


def main() -> None:
    app()
