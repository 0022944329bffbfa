"""Aliases: Create/Get/Update/Delete/ListAliases with weighted routing."""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus.api.names import ALIAS_PATTERN, unqualified
from nimbus.api.services import services
from nimbus.api.shapes import alias_configuration
from nimbus.api.wire import (
    Params,
    empty_response,
    json_response,
    page_response,
    query_int,
    read_json,
)
from nimbus.models import Alias
from nimbus.threads import blocking

VERSION_PATTERN = r"(\$LATEST|[0-9]+)"


def _routing(params: Params) -> dict[str, float] | None:
    if not params.has("RoutingConfig"):
        return None
    routing = params.nested("RoutingConfig")
    weights = routing.mapping("AdditionalVersionWeights") or {}
    result: dict[str, float] = {}
    for version, weight in weights.items():
        routing.string("AdditionalVersionWeights", value=version, max_len=1024, pattern=r"[0-9]+")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            routing._fail(weight, "AdditionalVersionWeights", "have numeric weights")
            continue
        if not 0.0 <= weight <= 1.0:
            routing._fail(weight, "AdditionalVersionWeights", "have value between 0.0 and 1.0")
        result[str(version)] = float(weight)
    return result


async def create_alias(request: Request) -> Response:
    svc = services(request)
    function = unqualified(request.path_params["name"], svc.config)
    params = Params(await read_json(request, "CreateAlias"))
    name = params.string("Name", required=True, min_len=1, max_len=128, pattern=ALIAS_PATTERN)
    version = params.string(
        "FunctionVersion", required=True, min_len=1, max_len=1024, pattern=VERSION_PATTERN
    )
    description = params.string("Description", max_len=256) or ""
    routing = _routing(params) or {}
    params.check()
    assert name is not None and version is not None
    alias = Alias(function, name, version, str(uuid.uuid4()), description, routing)
    created = await blocking(svc.engine.aliases.create, alias)
    return json_response(alias_configuration(created, svc.config), 201)


def _alias_name(request: Request) -> str:
    params = Params({"Name": request.path_params["alias"]})
    params.string("Name", min_len=1, max_len=128, pattern=ALIAS_PATTERN)
    params.check()
    return request.path_params["alias"]


async def get_alias(request: Request) -> Response:
    svc = services(request)
    function = unqualified(request.path_params["name"], svc.config)
    alias = await blocking(svc.engine.aliases.get, function, _alias_name(request))
    return json_response(alias_configuration(alias, svc.config))


async def update_alias(request: Request) -> Response:
    svc = services(request)
    function = unqualified(request.path_params["name"], svc.config)
    name = _alias_name(request)
    params = Params(await read_json(request, "UpdateAlias"))
    version = params.string("FunctionVersion", min_len=1, max_len=1024, pattern=VERSION_PATTERN)
    description = params.string("Description", max_len=256)
    routing = _routing(params)
    revision = params.string("RevisionId")
    params.check()
    alias = await blocking(
        svc.engine.aliases.update, function, name, version, description, routing, revision
    )
    return json_response(alias_configuration(alias, svc.config))


async def delete_alias(request: Request) -> Response:
    svc = services(request)
    function = unqualified(request.path_params["name"], svc.config)
    await blocking(svc.engine.aliases.delete, function, _alias_name(request))
    return empty_response(204)


async def list_aliases(request: Request) -> Response:
    svc = services(request)
    function = unqualified(request.path_params["name"], svc.config)
    max_items = query_int(request, "MaxItems", 50, 1, 10000)
    version = request.query_params.get("FunctionVersion")
    if version is not None:
        params = Params({"FunctionVersion": version})
        params.string("FunctionVersion", pattern=VERSION_PATTERN)
        params.check()
    page = await blocking(
        svc.engine.aliases.list, function, version, request.query_params.get("Marker"), max_items
    )
    items = [alias_configuration(a, svc.config) for a in page.items]
    return page_response("Aliases", items, page.next_marker)


_A = "/2015-03-31/functions/{name}/aliases"
routes = [
    Route(_A, create_alias, methods=["POST"]),
    Route(_A, list_aliases, methods=["GET"]),
    Route(_A + "/{alias}", get_alias, methods=["GET"]),
    Route(_A + "/{alias}", update_alias, methods=["PUT"]),
    Route(_A + "/{alias}", delete_alias, methods=["DELETE"]),
]
