"""``nimbus url``: put a function behind a function URL without writing boto3 code.

The commands talk only to Lambda's function URL operations
(``/2021-10-31/functions/{name}/url``), as boto3 would. They find what exists before
creating anything, so running one again is safe."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from nimbus.cli.client import (
    ENDPOINT,
    FUNCTIONS,
    JsonOption,
    call,
    fail,
    function_label,
    no_function,
    pages,
    print_json,
    report_error,
    say,
    segment,
    show,
    table,
)

URLS = "/2021-10-31/functions"


url_app = typer.Typer(
    help="Function URLs: an HTTP endpoint that invokes one function.", no_args_is_help=True
)


class AuthType(StrEnum):
    """Who may call a function URL."""

    NONE = "NONE"
    AWS_IAM = "AWS_IAM"


def _auth_type(value: str) -> str:
    """An AuthType, in any case (``--auth none`` works too)."""
    if value.upper() not in AuthType.__members__:
        raise typer.BadParameter(f"{value!r}: use NONE or AWS_IAM")
    return value.upper()


QualifierOption = Annotated[
    str | None, typer.Option(help="An alias (default: the unqualified function, $LATEST)")
]


def _url_config(endpoint: str, name: str) -> str:
    return f"{endpoint}{URLS}/{segment(name)}/url"


def _show_url(config: dict[str, Any], what: str, as_json: bool = False) -> None:
    origins = (config.get("Cors") or {}).get("AllowOrigins")
    cors = f", CORS origins {', '.join(origins)}" if origins else ""
    say(f"{what}: {config['FunctionArn']} (AuthType {config['AuthType']}{cors})")
    browser = browser_url(config["FunctionUrl"])
    if browser:
        say(f"in a browser (absolute links work): {browser}")
    if as_json:
        print_json(config)
    else:
        typer.echo(config["FunctionUrl"])


def browser_url(function_url: str) -> str | None:
    """``http://<url-id>.lambda-url.localhost:PORT/`` for a URL served on loopback:
    browsers resolve every name under ``.localhost`` to loopback, and there the function
    owns the whole path (under ``/lambda-url/<id>/`` a page's absolute links break)."""
    parts = urlsplit(function_url)
    match = re.fullmatch(r"/lambda-url/([a-z0-9]+)/", parts.path)
    if match is None or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return None
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{match[1]}.lambda-url.localhost{port}/"


@url_app.command("create")
def url_create(
    name: Annotated[str, typer.Argument(help="Function name or ARN")],
    qualifier: QualifierOption = None,
    auth: Annotated[
        str | None,
        typer.Option(
            parser=_auth_type,
            metavar="NONE|AWS_IAM",
            help="NONE: anyone may call it; AWS_IAM: SigV4-signed requests only [NONE]",
        ),
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(help="Let browsers call it from this origin (repeat for several; '*': any)"),
    ] = None,
    cors_method: Annotated[
        list[str] | None,
        typer.Option(help="CORS: an allowed method (repeat; GET, POST, ..., '*': any)"),
    ] = None,
    cors_header: Annotated[
        list[str] | None,
        typer.Option(help="CORS: a request header browsers may send (repeat; '*': any)"),
    ] = None,
    cors_expose_header: Annotated[
        list[str] | None,
        typer.Option(help="CORS: a response header browsers may read (repeat)"),
    ] = None,
    cors_max_age: Annotated[
        int | None, typer.Option(help="CORS: seconds browsers may cache a preflight (0-86400)")
    ] = None,
    cors_credentials: Annotated[
        bool | None,
        typer.Option(
            "--cors-credentials/--no-cors-credentials",
            help="CORS: allow cookies and auth headers (needs origins other than '*')",
        ),
    ] = None,
    as_json: JsonOption = False,
    endpoint: str = ENDPOINT,
) -> None:
    """Give a function a URL and print it. An existing URL is shown as it is, or updated
    with --auth / --cors-* when given (CORS settings not given are kept). --json: the
    FunctionUrlConfig."""
    url = _url_config(endpoint, name)
    params = {"Qualifier": qualifier} if qualifier else None
    body: dict[str, Any] = {"AuthType": auth or AuthType.NONE.value}
    cors = _cors(cors_origin, cors_method, cors_header, cors_expose_header, cors_max_age,
                 cors_credentials)
    if cors:
        body["Cors"] = cors
    # Create first: a missing function is a 404 then, an existing URL a 409 (no race
    # between a lookup and the create).
    created = call("POST", url, params=params, json=body, allow=(404, 409))
    if created.status_code == 404:
        no_function(created)
    if created.status_code != 409:
        _show_url(created.json(), "created", as_json)
        return
    if auth is None and not cors:
        _show_url(call("GET", url, params=params).json(), "exists", as_json)
        return
    changes: dict[str, Any] = {}
    if auth is not None:
        changes["AuthType"] = auth
    if cors:
        # UpdateFunctionUrlConfig replaces the whole Cors: keep its other settings.
        current = call("GET", url, params=params).json()
        changes["Cors"] = {**(current.get("Cors") or {}), **cors}
    _show_url(call("PUT", url, params=params, json=changes).json(), "updated", as_json)


def _cors(
    origins: list[str] | None,
    methods: list[str] | None,
    headers: list[str] | None,
    expose: list[str] | None,
    max_age: int | None,
    credentials: bool | None,
) -> dict[str, Any]:
    """The Cors members the options give (Lambda's names); the server checks them."""
    given: dict[str, Any] = {
        "AllowOrigins": origins,
        "AllowMethods": [m.upper() for m in methods] if methods else None,
        "AllowHeaders": headers,
        "ExposeHeaders": expose,
        "MaxAge": max_age,
        "AllowCredentials": credentials,
    }
    return {k: v for k, v in given.items() if v is not None and v != []}


@url_app.command("show")
def url_show(
    name: Annotated[str, typer.Argument(help="Function name or ARN")],
    qualifier: QualifierOption = None,
    as_json: JsonOption = False,
    endpoint: str = ENDPOINT,
) -> None:
    """Print a function's URL (--json: its whole FunctionUrlConfig)."""
    params = {"Qualifier": qualifier} if qualifier else None
    got = call("GET", _url_config(endpoint, name), params=params, allow=(404,))
    if got.status_code == 404:  # Lambda's answer does not say which is missing
        report_error(got)
        target = f"{name}:{qualifier}" if qualifier else name
        option = f" --qualifier {qualifier}" if qualifier else ""
        fail(
            f"{target} has no function URL (or does not exist): `nimbus url create "
            f"{name}{option}` gives it one; `nimbus url ls` lists the URLs."
        )
    _show_url(got.json(), "url", as_json)


@url_app.command("rm")
def url_remove(
    name: Annotated[str, typer.Argument(help="Function name or ARN")],
    qualifier: QualifierOption = None,
    endpoint: str = ENDPOINT,
) -> None:
    """Delete a function's URL (the function stays)."""
    params = {"Qualifier": qualifier} if qualifier else None
    call("DELETE", _url_config(endpoint, name), params=params)
    say(f"deleted the function URL of {name}" + (f":{qualifier}" if qualifier else ""))


@url_app.command("ls")
def url_list(
    name: Annotated[str | None, typer.Argument(help="Only this function")] = None,
    as_json: JsonOption = False,
    endpoint: str = ENDPOINT,
) -> None:
    """List function URLs (--json: the FunctionUrlConfig objects)."""
    if name:
        names = [name]
    else:
        functions = pages(f"{endpoint}{FUNCTIONS}/", "Functions", "Marker", "NextMarker")
        names = [f["FunctionName"] for f in functions]
    configs = []
    for function in names:
        listing = f"{endpoint}{URLS}/{segment(function)}/urls"
        # A function deleted since it was listed has no URLs any more.
        configs += list(pages(listing, "FunctionUrlConfigs", "Marker", "NextMarker", not name))
    if as_json:
        print_json(configs)
        return
    made = table("function", "auth", "cors origins", "url")  # a URL is shown whole
    for cfg in configs:
        origins = (cfg.get("Cors") or {}).get("AllowOrigins") or []
        made.add_row(
            function_label(cfg["FunctionArn"]),
            cfg["AuthType"],
            ", ".join(origins) or "-",
            cfg["FunctionUrl"],
        )
    show(made)
