"""Talking to a nimbus from the command line: signed requests, the server's errors
printed for people, paginated listings, and what commands print (stdout carries only
the result, so ``URL=$(nimbus url create hello)`` works; what happened goes to stderr).

Every command exits with the same codes, decided here: 0 done, 1 the function or the
operation failed (a function error, a 5xx, throttling, a deploy refused part-way), 2 the
caller's mistake (a bad argument or value, something that does not exist: a 4xx), 3 no
nimbus answered at the endpoint. Typer's own usage errors exit 2 as well."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import httpx
import typer

from nimbus.config import ConfigError, load_config

FUNCTIONS = "/2015-03-31/functions"  # the Lambda API's functions resource
ENDPOINT = typer.Option(
    "http://127.0.0.1:9000", envvar="NIMBUS_ENDPOINT", help="The nimbus to talk to"
)
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the data as JSON on stdout (for scripts)")
]


FAILED = 1  # the function or the operation failed
USAGE = 2  # the caller's mistake: fix the command line, the input, or the name
UNREACHABLE = 3  # no nimbus answered at the endpoint


@dataclass(frozen=True)
class Exits:
    """The exit codes of a command: ``refused`` for a request the server refused as the
    caller's mistake (4xx: a missing function, bad input), ``failed`` for a failure that
    is not (5xx, throttling, a function error), ``unreachable`` when no nimbus answered."""

    refused: int
    failed: int
    unreachable: int


# 0 ok, 1 failed (the function's error), 2 the caller's mistake, 3 cannot reach nimbus.
MEANINGFUL = Exits(refused=USAGE, failed=FAILED, unreachable=UNREACHABLE)


def signer(service: str = "lambda") -> Any:
    """SigV4 for servers with api_auth = "sigv4": keys from the nimbus config, the data
    dir (NIMBUS_DATA_DIR, default ./.nimbus) or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY."""
    from nimbus.sigv4.credentials import client_credentials
    from nimbus.sigv4.signing import httpx_auth

    try:
        cfg = load_config()
        found = client_credentials(cfg)
    except ConfigError as exc:
        fail(f"{exc}", USAGE)
    return httpx_auth(found, region=cfg.region, service=service) if found else None


def call(method: str, url: str, allow: tuple[int, ...] = (), *, service: str | None = None,
         exits: Exits = MEANINGFUL, **kwargs: Any) -> httpx.Response:
    """The response; an error status (unless in ``allow``) is printed and exits as
    ``exits`` says. Signed for ``service`` (default: the control-plane service the path
    belongs to)."""
    from nimbus.sigv4.verification import control_plane_service

    try:
        service = service or control_plane_service(httpx.URL(url).path)
        response = httpx.request(method, url, timeout=960, auth=signer(service), **kwargs)
    except httpx.InvalidURL as exc:
        fail(f"{url}: not a URL ({exc}): give --endpoint (or NIMBUS_ENDPOINT) as "
             "http://HOST:PORT", USAGE)
    except httpx.UnsupportedProtocol as exc:
        fail(f"{url}: {exc}: give --endpoint (or NIMBUS_ENDPOINT) as http://HOST:PORT", USAGE)
    except httpx.HTTPError as exc:
        typer.echo(f"nimbus: cannot reach {url}: {exc or type(exc).__name__}. Is `nimbus "
                   "up` running there? (--endpoint or NIMBUS_ENDPOINT say where)", err=True)
        raise typer.Exit(exits.unreachable) from exc
    if not from_nimbus(response):
        kind = response.headers.get("content-type", "no content type")
        fail(f"{url} answered HTTP {response.status_code} ({kind}), not as a nimbus does: "
             "is --endpoint (or NIMBUS_ENDPOINT) a nimbus?", exits.unreachable)
    if response.status_code >= 400 and response.status_code not in allow:
        report_error(response)
        raise typer.Exit(exit_code(response.status_code, exits))
    return response


def from_nimbus(response: httpx.Response) -> bool:
    """Whether an answer comes from a nimbus: each of its answers, errors included,
    carries a request id, as AWS's do (a web server at the wrong port's does not)."""
    return "x-amzn-requestid" in response.headers or "x-amzn-errortype" in response.headers


def exit_code(status: int, exits: Exits) -> int:
    """A refused request is the caller's to fix, except throttling (429: retry later)."""
    return exits.refused if 400 <= status < 500 and status != 429 else exits.failed


def print_json(data: Any) -> None:
    """``--json``: the data as the API gave it, one JSON document on stdout."""
    typer.echo(json.dumps(data, indent=2))


def table(*columns: str) -> Any:
    """A rich table whose cells fold rather than lose characters: an id or a URL is
    shown whole in an 80-column terminal (COLUMNS), split over lines if it must be."""
    from rich.table import Table

    made = Table(*columns)
    for column in made.columns:
        column.overflow = "fold"
    return made


def show(made: Any) -> None:
    """Print a table (``table()``) on stdout."""
    from rich.console import Console

    Console().print(made)


def report_error(response: httpx.Response) -> None:
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


def say(message: str) -> None:
    """What happened, on stderr (stdout is for the URL)."""
    typer.echo(message, err=True)


def fail(message: str, code: int = USAGE) -> NoReturn:
    """Print what went wrong and what to do, and exit (by default as the caller's mistake)."""
    typer.echo(f"nimbus: {message}", err=True)
    raise typer.Exit(code)


def no_function(response: httpx.Response, code: int = USAGE) -> NoReturn:
    """A 404 where the function (or its alias) was needed: the server's error, and what to do."""
    report_error(response)
    if response.headers.get("x-amzn-errortype") == "ResourceNotFoundException":
        fail(
            "create the function (and alias) first: `nimbus deploy`, boto3 "
            "`create_function`, `aws lambda create-function`; `nimbus ls` lists the functions.",
            code,
        )
    raise typer.Exit(code)


def segment(value: str) -> str:
    """One path segment: names, ARNs (':') and '$default' stay readable."""
    return quote(value, safe=":$")


def pages(
    url: str, key: str, token: str, next_key: str, missing_ok: bool = False,
    exits: Exits = MEANINGFUL,
) -> Iterator[Any]:
    """Every item of a paginated listing (Lambda: Marker/NextMarker; API Gateway:
    nextToken); nothing when ``missing_ok`` and the parent is gone (404)."""
    marker: str | None = None
    while True:
        params = {token: marker} if marker else None
        answer = call("GET", url, params=params, allow=(404,) if missing_ok else (),
                      exits=exits)
        if answer.status_code == 404:
            return
        page = answer.json()
        yield from page[key]
        marker = page.get(next_key)
        if not marker:
            return


# API Gateway's invocation URI that wraps a function ARN (an accepted integrationUri).
_WRAPPED_ARN = re.compile(
    r"arn:[^:]+:apigateway:[^:]+:lambda:path/2015-03-31/functions/(.+)/invocations"
)


def function_label(uri: str) -> str:
    """``name`` or ``name:alias`` from a function ARN (or API Gateway's wrapped form)."""
    arn = function_arn_of(uri)
    return arn.split(":function:", 1)[1] if ":function:" in arn else arn


def function_arn_of(uri: str) -> str:
    """The function ARN an integration URI invokes, without ``:$LATEST``."""
    wrapped = _WRAPPED_ARN.fullmatch(uri)
    return (wrapped[1] if wrapped else uri).removesuffix(":$LATEST")
