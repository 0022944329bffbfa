"""Aliases: Create/Get/Update/Delete/ListAliases with weighted routing."""

from __future__ import annotations

import re
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
WEIGHT_KEYS = (
    "Map keys must satisfy constraint: [Member must have length less than or equal to 1024, "
    "Member must have length greater than or equal to 1, Member must satisfy regular "
    "expression pattern: [0-9]+]"
)
WEIGHT_VALUES = (
    "Map value must satisfy constraint: [Member must have value less than or equal to 1.0, "
    "Member must have value greater than or equal to 0.0, Member must not be null]"
)


def _routing(params: Params) -> dict[str, float] | None:
    """RoutingConfig's weights, checked as the service model's map of version -> weight."""
    if not params.has("RoutingConfig"):
        return None
    routing = params.nested("RoutingConfig")
    weights = routing.mapping("AdditionalVersionWeights") or {}
    numeric = all(
        not isinstance(w, bool) and isinstance(w, (int, float)) for w in weights.values()
    )
    # Lambda quotes the map with its weights as doubles: {2=2.0}.
    quoted = {k: float(w) if numeric else w for k, w in weights.items()}
    if not all(re.fullmatch(r"[0-9]{1,1024}", str(k)) for k in weights):
        routing.violation(quoted, "AdditionalVersionWeights", WEIGHT_KEYS)
    if not numeric or not all(0.0 <= w <= 1.0 for w in weights.values()):
        routing.violation(quoted, "AdditionalVersionWeights", WEIGHT_VALUES)
        return {}
    return {str(k): float(w) for k, w in weights.items()}


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
