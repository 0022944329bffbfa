"""``nimbus api``: routes ('METHOD /path') to functions on an HTTP API, without writing
boto3 code.

The commands talk only to API Gateway v2's operations (``/v2/apis/...``), as boto3
would. They find what exists before creating anything, so running one again is safe."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import quote

import typer

from nimbus.cli.client import (
    ENDPOINT,
    FUNCTIONS,
    JsonOption,
    call,
    fail,
    function_arn_of,
    function_label,
    no_function,
    pages,
    print_json,
    say,
    segment,
    show,
    table,
)
from nimbus.route_keys import DEFAULT_ROUTE, DEFAULT_STAGE, parse_route_key

api_app = typer.Typer(
    help="HTTP APIs: routes ('METHOD /path') to functions, with stages, API keys, IAM auth.",
    no_args_is_help=True,
)


def _v2(endpoint: str, *parts: str) -> str:
    return endpoint + "/v2/apis" + "".join(f"/{segment(p)}" for p in parts)


def _apis_named(endpoint: str, name: str) -> list[dict[str, Any]]:
    """The HTTP APIs with this id, else with this name (names need not be unique)."""
    apis = list(pages(_v2(endpoint), "items", "nextToken", "nextToken"))
    return [a for a in apis if a["apiId"] == name] or [a for a in apis if a["name"] == name]


def _one_api(endpoint: str, name: str) -> dict[str, Any] | None:
    found = _apis_named(endpoint, name)
    if len(found) > 1:
        ids = ", ".join(a["apiId"] for a in found)
        fail(f"{len(found)} HTTP APIs are named {name!r} (ids {ids}): give the id instead.")
    return found[0] if found else None


def _route_key(raw: str) -> str:
    """The route key, method upper-cased, checked before anything is created."""
    from nimbus.errors import BadRequest

    key = " ".join(raw.split())
    if key != DEFAULT_ROUTE:
        method, _, path = key.partition(" ")
        key = f"{method.upper()} {path}"
    try:
        parse_route_key(key)
    except BadRequest as exc:
        fail(exc.message)
    return key


def _existing_route(routes: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    """The route with this key; a route of the same shape (only the variable names
    differ) would match the same requests, so it is refused before anything is made."""
    for route in routes:
        if route["routeKey"] == key:
            return route
    shape = parse_route_key(key).shape
    for route in routes:
        if parse_route_key(route["routeKey"]).shape == shape:
            fail(
                f"route {key!r} would match the same requests as the API's route "
                f"{route['routeKey']!r} ({route['routeId']}): use that key, or delete that "
                "route first."
            )
    return None


def _ensure_stage(endpoint: str, api_id: str, stage: str) -> None:
    if call("GET", _v2(endpoint, api_id, "stages", stage), allow=(404,)).status_code != 404:
        return
    body = {"stageName": stage, "autoDeploy": True}
    call("POST", _v2(endpoint, api_id, "stages"), json=body)
    say(f"created stage {stage} (auto-deployed)")


def _integration_for(endpoint: str, api_id: str, function_arn: str) -> str:
    """The id of the API's Lambda proxy integration (format 2.0) for this function ARN,
    created if there is none."""
    wanted = function_arn_of(function_arn)
    url = _v2(endpoint, api_id, "integrations")
    for item in pages(url, "items", "nextToken", "nextToken"):
        if (
            item.get("integrationType") == "AWS_PROXY"
            and item.get("payloadFormatVersion") == "2.0"
            and function_arn_of(item.get("integrationUri", "")) == wanted
        ):
            return str(item["integrationId"])
    body = {
        "integrationType": "AWS_PROXY",
        "integrationUri": function_arn,
        "payloadFormatVersion": "2.0",
    }
    created = call("POST", url, json=body).json()
    say(f"created integration {created['integrationId']} for {function_arn}")
    return str(created["integrationId"])


def stage_base(api_endpoint: str, stage: str) -> str:
    """Requests to the $default stage have no stage segment."""
    return api_endpoint if stage == DEFAULT_STAGE else f"{api_endpoint}/{quote(stage)}"


def route_url(api_endpoint: str, stage: str, key: str) -> str:
    path = "/" if key == DEFAULT_ROUTE else key.partition(" ")[2]
    return stage_base(api_endpoint, stage) + path


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
    as_json: JsonOption = False,
    endpoint: str = ENDPOINT,
) -> None:
    """Route 'METHOD /path' of an HTTP API to a function and print the URL to call.

    Finds or creates the API, its stage, a Lambda proxy integration (format 2.0) and the route.
    An existing route with this key is updated to match (function, --key-required, --iam).
    --json: {"apiId", "apiEndpoint", "stage", "route" (as GetRoute gives it), "url"}.
    """
    key = _route_key(route_key)
    found = call("GET", f"{endpoint}{FUNCTIONS}/{segment(function)}/configuration", allow=(404,))
    if found.status_code == 404:
        no_function(found)
    function_arn = found.json()["FunctionArn"]
    record = _one_api(endpoint, api)
    if record is None:
        body = {"name": api, "protocolType": "HTTP"}
        record = call("POST", _v2(endpoint), json=body).json()
        say(f"created HTTP API {api} ({record['apiId']})")
    api_id = record["apiId"]
    routes = list(pages(_v2(endpoint, api_id, "routes"), "items", "nextToken", "nextToken"))
    route = _existing_route(routes, key)
    _ensure_stage(endpoint, api_id, stage)
    integration_id = _integration_for(endpoint, api_id, function_arn)
    settings = {
        "target": f"integrations/{integration_id}",
        "apiKeyRequired": key_required,
        "authorizationType": "AWS_IAM" if iam else "NONE",
    }
    if route is None:
        route = call("POST", _v2(endpoint, api_id, "routes"),
                     json={"routeKey": key, **settings}).json()
        say(f"created route {key} -> {function_label(function_arn)}")
    else:
        route = call("PATCH", _v2(endpoint, api_id, "routes", route["routeId"]),
                     json=settings).json()
        say(f"updated route {key} -> {function_label(function_arn)}")
    if key_required:
        say(
            f"callers must send x-api-key with a key in a usage plan for API {api_id} stage "
            f"{stage} (aws apigateway create-api-key / create-usage-plan / create-usage-plan-key)"
        )
    if iam:
        say("callers must sign requests with SigV4 for service execute-api")
    if record.get("disableExecuteApiEndpoint"):
        say(f"warning: API {api_id} has disableExecuteApiEndpoint set: it is not served")
    url = route_url(record["apiEndpoint"], stage, key)
    if as_json:
        print_json({"apiId": api_id, "apiEndpoint": record["apiEndpoint"], "stage": stage,
                    "route": route, "url": url})
    else:
        typer.echo(url)


@api_app.command("ls")
def api_list(
    api: Annotated[str | None, typer.Option(help="Only the HTTP API with this name or id")] = None,
    as_json: JsonOption = False,
    endpoint: str = ENDPOINT,
) -> None:
    """List HTTP APIs and their routes, with the URL to call per stage (--json: each API
    as GetApi gives it, with its "stages", and "routes" each with its "integration"
    and "urls")."""
    if api is None:
        apis = list(pages(_v2(endpoint), "items", "nextToken", "nextToken"))
    else:
        apis = _apis_named(endpoint, api)
        if not apis:
            fail(f"no HTTP API named {api!r} (`nimbus api ls` lists them)")
    made = table("api", "route", "function", "key required", "auth", "url")
    described = []
    for record in apis:
        api_id = record["apiId"]

        def listing(kind: str, api_id: str = api_id) -> Iterator[Any]:
            # missing_ok: an API deleted since it was listed simply shows no routes.
            return pages(_v2(endpoint, api_id, kind), "items", "nextToken", "nextToken", True)

        stage_records = list(listing("stages"))
        stages = [s["stageName"] for s in stage_records]
        integrations = {i["integrationId"]: i for i in listing("integrations")}
        label = f"{record['name']} ({api_id})"
        routes = list(listing("routes"))
        described.append({**record, "stages": stage_records, "routes": []})
        if not routes:
            made.add_row(label, "(no routes)", "", "", "", "")
        for route in routes:
            target = (route.get("target") or "").removeprefix("integrations/")
            integration = integrations.get(target)
            urls = [route_url(record["apiEndpoint"], s, route["routeKey"]) for s in stages]
            described[-1]["routes"].append({**route, "integration": integration, "urls": urls})
            made.add_row(
                label,
                route["routeKey"],
                function_label(integration["integrationUri"]) if integration else "-",
                "yes" if route.get("apiKeyRequired") else "no",
                route.get("authorizationType", "NONE"),
                "\n".join(urls) or "(no stage: not served)",
            )
    if as_json:
        print_json(described)
    else:
        show(made)


@api_app.command("rm")
def api_remove(
    name: Annotated[str, typer.Argument(help="The HTTP API's name or id")],
    endpoint: str = ENDPOINT,
) -> None:
    """Delete an HTTP API with its routes, integrations and stages (not the functions)."""
    record = _one_api(endpoint, name)
    if record is None:
        fail(f"no HTTP API named {name!r} (`nimbus api ls` lists them)")
    call("DELETE", _v2(endpoint, record["apiId"]))
    say(f"deleted HTTP API {record['name']} ({record['apiId']})")
