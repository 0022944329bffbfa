"""``nimbus invoke``, ``logs`` and ``ls``: functions, through the Lambda API."""

from __future__ import annotations

import base64
import time
from typing import Annotated

import typer

from nimbus.cli.client import ENDPOINT, FUNCTIONS, call


def invoke(
    name: Annotated[str, typer.Argument(help="Function name or ARN")],
    payload: Annotated[str, typer.Option("--payload", "-p", help="JSON event")] = "{}",
    qualifier: Annotated[str | None, typer.Option(help="Version or alias")] = None,
    tail: Annotated[bool, typer.Option("--tail", help="Print the log to stderr")] = False,
    endpoint: str = ENDPOINT,
) -> None:
    """Invoke a function synchronously and print its result."""
    response = call(
        "POST",
        f"{endpoint}{FUNCTIONS}/{name}/invocations",
        params={"Qualifier": qualifier} if qualifier else None,
        content=payload.encode(),
        headers={"X-Amz-Log-Type": "Tail" if tail else "None"},
    )
    if tail and "x-amz-log-result" in response.headers:
        typer.echo(base64.b64decode(response.headers["x-amz-log-result"]).decode(), err=True)
    typer.echo(response.text)
    if response.headers.get("x-amz-function-error"):
        raise typer.Exit(1)


def logs(
    name: Annotated[str, typer.Argument(help="Function name")],
    since: Annotated[int, typer.Option(help="Only the last N minutes")] = 60,
    limit: Annotated[int, typer.Option(help="At most this many invocations")] = 20,
    endpoint: str = ENDPOINT,
) -> None:
    """Print the logs of a function's recent invocations, as each was written: START ...
    REPORT lines, or JSON records (platform.start ... platform.report) for a function whose
    LoggingConfig says JSON."""
    since_ms = int((time.time() - since * 60) * 1000)
    answer = call(
        "GET",
        f"{endpoint}/_nimbus/functions/{name}/logs",
        params={"SinceMs": since_ms, "Limit": limit},
    ).json()
    for record in answer["Logs"]:
        typer.echo(record["text"], nl=False)


def list_functions(endpoint: str = ENDPOINT) -> None:
    """List functions."""
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "runtime", "handler", "memory", "timeout", "last modified")
    marker: str | None = None
    while True:
        params = {"Marker": marker} if marker else {}
        page = call("GET", f"{endpoint}{FUNCTIONS}/", params=params).json()
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
