"""``nimbus url`` and ``nimbus api``: put a function behind HTTP without writing boto3 code.

The commands talk only to the REST APIs, as boto3 would: Lambda's function URL operations
(``/2021-10-31/functions/{name}/url``) and API Gateway v2's (``/v2/apis/...``), through
``nimbus.cli._call`` (signed when credentials exist; an error prints the server's message
and exits 1). They find what exists before creating anything, so running one again is
safe. What happened goes to stderr; stdout carries only the URL to call, so
``URL=$(nimbus url create hello)`` works.

Importing this module registers the ``url`` and ``api`` sub-apps on ``nimbus.cli.app``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import httpx
import typer

from nimbus.cli import ENDPOINT, _call, _report_error, app

URLS = "/2021-10-31/functions"
FUNCTIONS = "/2015-03-31/functions"
DEFAULT_STAGE = "$default"
DEFAULT_ROUTE = "$default"
# API Gateway's invocation URI that wraps a function ARN (an accepted integrationUri).
_WRAPPED_ARN = re.compile(
    r"arn:[^:]+:apigateway:[^:]+:lambda:path/2015-03-31/functions/(.+)/invocations"
)

url_app = typer.Typer(
    help="Function URLs: an HTTP endpoint that invokes one function.", no_args_is_help=True
)
api_app = typer.Typer(
    help="HTTP APIs: routes ('METHOD /path') to functions, with stages, API keys, IAM auth.",
    no_args_is_help=True,
)
app.add_typer(url_app, name="url")
app.add_typer(api_app, name="api")


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


def _say(message: str) -> None:
    """What happened, on stderr (stdout is for the URL)."""
    typer.echo(message, err=True)


def _fail(message: str) -> NoReturn:
    typer.echo(f"nimbus: {message}", err=True)
    raise typer.Exit(1)


def _no_function(response: httpx.Response) -> NoReturn:
    """A 404 where the function (or its alias) was needed: the server's error, and what to do."""
    _report_error(response)
    if response.headers.get("x-amzn-errortype") == "ResourceNotFoundException":
        _fail(
            "create the function (and alias) first: boto3 `create_function`, "
            "`aws lambda create-function`; `nimbus ls` lists the functions."
        )
    raise typer.Exit(1)


def _segment(value: str) -> str:
    """One path segment: names, ARNs (':') and '$default' stay readable."""
    return quote(value, safe=":$")


def _pages(
    url: str, key: str, token: str, next_key: str, missing_ok: bool = False
) -> Iterator[Any]:
    """Every item of a paginated listing (Lambda: Marker/NextMarker; API Gateway:
    nextToken); nothing when ``missing_ok`` and the parent is gone (404)."""
    marker: str | None = None
    while True:
        params = {token: marker} if marker else None
        answer = _call("GET", url, params=params, allow=(404,) if missing_ok else ())
        if answer.status_code == 404:
            return
        page = answer.json()
        yield from page[key]
        marker = page.get(next_key)
        if not marker:
            return


def _function_label(uri: str) -> str:
    """``name`` or ``name:alias`` from a function ARN (or API Gateway's wrapped form)."""
    arn = _function_arn_of(uri)
    return arn.split(":function:", 1)[1] if ":function:" in arn else arn


def _function_arn_of(uri: str) -> str:
    """The function ARN an integration URI invokes, without ``:$LATEST``."""
    wrapped = _WRAPPED_ARN.fullmatch(uri)
    return (wrapped[1] if wrapped else uri).removesuffix(":$LATEST")


# -- function URLs -------------------------------------------------------------------------


def _url_config(endpoint: str, name: str) -> str:
    return f"{endpoint}{URLS}/{_segment(name)}/url"


def _show_url(config: dict[str, Any], what: str) -> None:
    origins = (config.get("Cors") or {}).get("AllowOrigins")
    cors = f", CORS origins {', '.join(origins)}" if origins else ""
    _say(f"{what}: {config['FunctionArn']} (AuthType {config['AuthType']}{cors})")
    typer.echo(config["FunctionUrl"])


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
    endpoint: str = ENDPOINT,
) -> None:
    """Give a function a URL and print it. An existing URL is shown as it is, or updated
    with --auth / --cors-origin when given."""
    url = _url_config(endpoint, name)
    params = {"Qualifier": qualifier} if qualifier else None
    body: dict[str, Any] = {"AuthType": auth or AuthType.NONE.value}
    if cors_origin:
        body["Cors"] = {"AllowOrigins": cors_origin}
    # Create first: a missing function is a 404 then, an existing URL a 409 (no race
    # between a lookup and the create).
    created = _call("POST", url, params=params, json=body, allow=(404, 409))
    if created.status_code == 404:
        _no_function(created)
    if created.status_code != 409:
        _show_url(created.json(), "created")
        return
    if auth is None and not cors_origin:
        _show_url(_call("GET", url, params=params).json(), "exists")
        return
    changes: dict[str, Any] = {}
    if auth is not None:
        changes["AuthType"] = auth
    if cors_origin:
        # UpdateFunctionUrlConfig replaces the whole Cors: keep its other settings.
        current = _call("GET", url, params=params).json()
        changes["Cors"] = {**(current.get("Cors") or {}), "AllowOrigins": cors_origin}
    _show_url(_call("PUT", url, params=params, json=changes).json(), "updated")


@url_app.command("show")
def url_show(
    name: Annotated[str, typer.Argument(help="Function name or ARN")],
    qualifier: QualifierOption = None,
    endpoint: str = ENDPOINT,
) -> None:
    """Print a function's URL."""
    params = {"Qualifier": qualifier} if qualifier else None
    _show_url(_call("GET", _url_config(endpoint, name), params=params).json(), "url")


@url_app.command("rm")
def url_remove(
    name: Annotated[str, typer.Argument(help="Function name or ARN")],
    qualifier: QualifierOption = None,
    endpoint: str = ENDPOINT,
) -> None:
    """Delete a function's URL (the function stays)."""
    params = {"Qualifier": qualifier} if qualifier else None
    _call("DELETE", _url_config(endpoint, name), params=params)
    _say(f"deleted the function URL of {name}" + (f":{qualifier}" if qualifier else ""))


@url_app.command("ls")
def url_list(
    name: Annotated[str | None, typer.Argument(help="Only this function")] = None,
    endpoint: str = ENDPOINT,
) -> None:
    """List function URLs."""
    from rich.console import Console
    from rich.table import Table

    if name:
        names = [name]
    else:
        functions = _pages(f"{endpoint}{FUNCTIONS}/", "Functions", "Marker", "NextMarker")
        names = [f["FunctionName"] for f in functions]
    table = Table("function", "auth", "cors origins", "url")
    table.columns[-1].overflow = "fold"  # a URL is shown whole, never cut with "…"
    for function in names:
        listing = f"{endpoint}{URLS}/{_segment(function)}/urls"
        # A function deleted since it was listed has no URLs any more.
        for cfg in _pages(listing, "FunctionUrlConfigs", "Marker", "NextMarker", not name):
            origins = (cfg.get("Cors") or {}).get("AllowOrigins") or []
            table.add_row(
                _function_label(cfg["FunctionArn"]),
                cfg["AuthType"],
                ", ".join(origins) or "-",
                cfg["FunctionUrl"],
            )
    Console().print(table)


# -- HTTP APIs -----------------------------------------------------------------------------


def _v2(endpoint: str, *parts: str) -> str:
    return endpoint + "/v2/apis" + "".join(f"/{_segment(p)}" for p in parts)


def _apis_named(endpoint: str, name: str) -> list[dict[str, Any]]:
    """The HTTP APIs with this id, else with this name (names need not be unique)."""
    apis = list(_pages(_v2(endpoint), "items", "nextToken", "nextToken"))
    return [a for a in apis if a["apiId"] == name] or [a for a in apis if a["name"] == name]


def _one_api(endpoint: str, name: str) -> dict[str, Any] | None:
    found = _apis_named(endpoint, name)
    if len(found) > 1:
        ids = ", ".join(a["apiId"] for a in found)
        _fail(f"{len(found)} HTTP APIs are named {name!r} (ids {ids}): give the id instead.")
    return found[0] if found else None


def _route_key(raw: str) -> str:
    """The route key, method upper-cased, checked before anything is created."""
    from nimbus.errors import BadRequest
    from nimbus.gateway.routes import parse_route_key

    key = " ".join(raw.split())
    if key != DEFAULT_ROUTE:
        method, _, path = key.partition(" ")
        key = f"{method.upper()} {path}"
    try:
        parse_route_key(key)
    except BadRequest as exc:
        _fail(exc.message)
    return key


def _existing_route(routes: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """The route with this key; a route of the same shape (only the variable names
    differ) would match the same requests, so it is refused before anything is made."""
    from nimbus.gateway.routes import parse_route_key

    for route in routes:
        if route["routeKey"] == key:
            return route
    shape = parse_route_key(key).shape
    for route in routes:
        if parse_route_key(route["routeKey"]).shape == shape:
            _fail(
                f"route {key!r} would match the same requests as the API's route "
                f"{route['routeKey']!r} ({route['routeId']}): use that key, or delete that "
                "route first."
            )
    return None


def _ensure_stage(endpoint: str, api_id: str, stage: str) -> None:
    if _call("GET", _v2(endpoint, api_id, "stages", stage), allow=(404,)).status_code != 404:
        return
    body = {"stageName": stage, "autoDeploy": True}
    _call("POST", _v2(endpoint, api_id, "stages"), json=body)
    _say(f"created stage {stage} (auto-deployed)")


def _integration_for(endpoint: str, api_id: str, function_arn: str) -> str:
    """The id of the API's Lambda proxy integration (format 2.0) for this function ARN,
    created if there is none."""
    wanted = _function_arn_of(function_arn)
    url = _v2(endpoint, api_id, "integrations")
    for item in _pages(url, "items", "nextToken", "nextToken"):
        if (
            item.get("integrationType") == "AWS_PROXY"
            and item.get("payloadFormatVersion") == "2.0"
            and _function_arn_of(item.get("integrationUri", "")) == wanted
        ):
            return str(item["integrationId"])
    body = {
        "integrationType": "AWS_PROXY",
        "integrationUri": function_arn,
        "payloadFormatVersion": "2.0",
    }
    created = _call("POST", url, json=body).json()
    _say(f"created integration {created['integrationId']} for {function_arn}")
    return str(created["integrationId"])


def _stage_base(api_endpoint: str, stage: str) -> str:
    """Requests to the $default stage have no stage segment."""
    return api_endpoint if stage == DEFAULT_STAGE else f"{api_endpoint}/{quote(stage)}"


def _route_url(api_endpoint: str, stage: str, key: str) -> str:
    path = "/" if key == DEFAULT_ROUTE else key.partition(" ")[2]
    return _stage_base(api_endpoint, stage) + path


@api_app.command("route")
def api_route(
    route_key: Annotated[
        str,
        typer.Argument(
            metavar="'METHOD /PATH'",
            help="e.g. 'GET /pets/{id}', 'ANY /files/{proxy+}', or '$default' (all else)",
        ),
    ],
    function: Annotated[str, typer.Argument(help="Function name or ARN; NAME:ALIAS for an alias")],
    api: Annotated[str, typer.Option(help="The HTTP API's name or id (created if missing)")] = (
        "nimbus"
    ),
    stage: Annotated[
        str, typer.Option(help="Stage (created if missing); $default has no path prefix")
    ] = DEFAULT_STAGE,
    key_required: Annotated[
        bool,
        typer.Option(
            "--key-required",
            help="Callers must send x-api-key: a key in a usage plan for this API stage",
        ),
    ] = False,
    iam: Annotated[
        bool, typer.Option("--iam", help="Callers must sign requests with SigV4 (AWS_IAM)")
    ] = False,
    endpoint: str = ENDPOINT,
) -> None:
    """Route 'METHOD /path' of an HTTP API to a function and print the URL to call.

    Finds or creates the API, its stage, a Lambda proxy integration (format 2.0) and the route.
    An existing route with this key is updated to match (function, --key-required, --iam).
    """
    key = _route_key(route_key)
    found = _call("GET", f"{endpoint}{FUNCTIONS}/{_segment(function)}/configuration", allow=(404,))
    if found.status_code == 404:
        _no_function(found)
    function_arn = found.json()["FunctionArn"]
    record = _one_api(endpoint, api)
    if record is None:
        body = {"name": api, "protocolType": "HTTP"}
        record = _call("POST", _v2(endpoint), json=body).json()
        _say(f"created HTTP API {api} ({record['apiId']})")
    api_id = record["apiId"]
    routes = list(_pages(_v2(endpoint, api_id, "routes"), "items", "nextToken", "nextToken"))
    route = _existing_route(routes, key)
    _ensure_stage(endpoint, api_id, stage)
    integration_id = _integration_for(endpoint, api_id, function_arn)
    settings = {
        "target": f"integrations/{integration_id}",
        "apiKeyRequired": key_required,
        "authorizationType": "AWS_IAM" if iam else "NONE",
    }
    if route is None:
        route = _call("POST", _v2(endpoint, api_id, "routes"), json={"routeKey": key, **settings})
        _say(f"created route {key} -> {_function_label(function_arn)}")
    else:
        _call("PATCH", _v2(endpoint, api_id, "routes", route["routeId"]), json=settings)
        _say(f"updated route {key} -> {_function_label(function_arn)}")
    if key_required:
        _say(
            f"callers must send x-api-key with a key in a usage plan for API {api_id} stage "
            f"{stage} (aws apigateway create-api-key / create-usage-plan / create-usage-plan-key)"
        )
    if iam:
        _say("callers must sign requests with SigV4 for service execute-api")
    if record.get("disableExecuteApiEndpoint"):
        _say(f"warning: API {api_id} has disableExecuteApiEndpoint set: it is not served")
    typer.echo(_route_url(record["apiEndpoint"], stage, key))


@api_app.command("ls")
def api_list(
    api: Annotated[str | None, typer.Option(help="Only the HTTP API with this name or id")] = None,
    endpoint: str = ENDPOINT,
) -> None:
    """List HTTP APIs and their routes, with the URL to call per stage."""
    from rich.console import Console
    from rich.table import Table

    if api is None:
        apis = list(_pages(_v2(endpoint), "items", "nextToken", "nextToken"))
    else:
        apis = _apis_named(endpoint, api)
        if not apis:
            _fail(f"no HTTP API named {api!r} (`nimbus api ls` lists them)")
    table = Table("api", "route", "function", "key required", "auth", "url")
    table.columns[-1].overflow = "fold"  # a URL is shown whole, never cut with "…"
    for record in apis:
        api_id = record["apiId"]

        def listing(kind: str, api_id: str = api_id) -> Iterator[Any]:
            # missing_ok: an API deleted since it was listed simply shows no routes.
            return _pages(_v2(endpoint, api_id, kind), "items", "nextToken", "nextToken", True)

        stages = [s["stageName"] for s in listing("stages")]
        integrations = {i["integrationId"]: i for i in listing("integrations")}
        label = f"{record['name']} ({api_id})"
        routes = list(listing("routes"))
        if not routes:
            table.add_row(label, "(no routes)", "", "", "", "")
        for route in routes:
            target = (route.get("target") or "").removeprefix("integrations/")
            integration = integrations.get(target)
            urls = [_route_url(record["apiEndpoint"], s, route["routeKey"]) for s in stages]
            table.add_row(
                label,
                route["routeKey"],
                _function_label(integration["integrationUri"]) if integration else "-",
                "yes" if route.get("apiKeyRequired") else "no",
                route.get("authorizationType", "NONE"),
                "\n".join(urls) or "(no stage: not served)",
            )
    Console().print(table)


@api_app.command("rm")
def api_remove(
    name: Annotated[str, typer.Argument(help="The HTTP API's name or id")],
    endpoint: str = ENDPOINT,
) -> None:
    """Delete an HTTP API with its routes, integrations and stages (not the functions)."""
    record = _one_api(endpoint, name)
    if record is None:
        _fail(f"no HTTP API named {name!r} (`nimbus api ls` lists them)")
    _call("DELETE", _v2(endpoint, record["apiId"]))
    _say(f"deleted HTTP API {record['name']} ({record['apiId']})")
