"""HTTP APIs through API Gateway v2's REST API (``/v2/apis...``), protocol HTTP only:
APIs (with quick create), integrations (Lambda AWS_PROXY, payload format 2.0 or 1.0), routes
and stages; ``boto3.client("apigatewayv2")`` and ``aws apigatewayv2`` work unchanged.

nimbus has no deployments: every route, integration and stage change is live on every
stage as soon as it is written (``autoDeploy`` is stored and reported, nothing more), and
CreateDeployment and the other operations not listed here answer as unknown operations.
An API's endpoint is ``{scheme://host:port the client used}/execute-api/{apiId}``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus.api import http_api_input as inp
from nimbus.api.services import services
from nimbus.api.wire import decimal_int, empty_response, json_response
from nimbus.errors import BadRequest
from nimbus.models import ApiIntegration, ApiRoute, ApiStage, HttpApi, Page, RouteSettings
from nimbus.route_keys import DEFAULT_ROUTE, DEFAULT_STAGE, parse_route_key
from nimbus.store.http_apis import HttpApiStore, new_id
from nimbus.threads import blocking

DEFAULT_PAGE = 100
MAX_PAGE = 500


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _store(request: Request) -> HttpApiStore:
    return services(request).http_apis


def _without_none(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


# -- rendering (the model's locationNames) ---------------------------------------------


def render_api(api: HttpApi, request: Request) -> dict[str, Any]:
    base = str(request.base_url).rstrip("/")
    return _without_none(
        {
            "apiEndpoint": f"{base}/execute-api/{api.api_id}",
            "apiId": api.api_id,
            "apiKeySelectionExpression": api.api_key_selection_expression,
            "corsConfiguration": api.cors,
            "createdDate": api.created_date,
            "description": api.description,
            "disableExecuteApiEndpoint": api.disable_execute_api_endpoint,
            "ipAddressType": api.ip_address_type,
            "name": api.name,
            "protocolType": api.protocol_type,
            "routeSelectionExpression": api.route_selection_expression,
            "tags": api.tags,
            "version": api.version,
        }
    )


def render_integration(integration: ApiIntegration) -> dict[str, Any]:
    return _without_none(
        {
            "apiGatewayManaged": integration.api_gateway_managed,
            "connectionType": integration.connection_type,
            "description": integration.description,
            "integrationId": integration.integration_id,
            "integrationMethod": integration.integration_method,
            "integrationType": integration.integration_type,
            "integrationUri": integration.integration_uri,
            "payloadFormatVersion": integration.payload_format_version,
            "timeoutInMillis": integration.timeout_ms,
        }
    )


def render_route(route: ApiRoute) -> dict[str, Any]:
    return _without_none(
        {
            "apiGatewayManaged": route.api_gateway_managed,
            "apiKeyRequired": route.api_key_required,
            "authorizationType": route.authorization_type,
            "operationName": route.operation_name,
            "routeId": route.route_id,
            "routeKey": route.route_key,
            "target": route.target,
        }
    )


def _render_settings(settings: RouteSettings) -> dict[str, Any]:
    return _without_none(
        {
            "dataTraceEnabled": settings.data_trace_enabled,
            "detailedMetricsEnabled": settings.detailed_metrics_enabled,
            "loggingLevel": settings.logging_level,
            "throttlingBurstLimit": settings.throttling_burst_limit,
            "throttlingRateLimit": settings.throttling_rate_limit,
        }
    )


def render_stage(stage: ApiStage) -> dict[str, Any]:
    return _without_none(
        {
            "apiGatewayManaged": stage.api_gateway_managed,
            "autoDeploy": stage.auto_deploy,
            "createdDate": stage.created_date,
            "defaultRouteSettings": _render_settings(stage.default_route_settings),
            "description": stage.description,
            "lastUpdatedDate": stage.last_updated_date,
            "routeSettings": {k: _render_settings(v) for k, v in stage.route_settings.items()},
            "stageName": stage.stage_name,
            "stageVariables": stage.stage_variables,
            "tags": stage.tags,
        }
    )


def _page(page: Page, render: Any) -> Response:
    body: dict[str, Any] = {"items": [render(item) for item in page.items]}
    if page.next_marker:
        body["nextToken"] = page.next_marker
    return json_response(body)


def _paging(request: Request) -> tuple[str | None, int]:
    raw = request.query_params.get("maxResults")
    size = DEFAULT_PAGE
    if raw is not None:
        number = decimal_int(raw)
        if number is None or not 1 <= number <= MAX_PAGE:
            raise BadRequest(f"Invalid maxResults '{raw}': use a number from 1 to {MAX_PAGE}.")
        size = number
    return request.query_params.get("nextToken") or None, size


# -- APIs --------------------------------------------------------------------------------


async def create_api(request: Request) -> Response:
    svc = services(request)
    params = await inp.read_body(request, "CreateApi")
    protocol = params.string("protocolType", required=True)
    target = params.string("target", min_len=1, max_len=2048)
    route_key = params.string("routeKey")
    tags = inp.string_map(params, "tags", 1600) or {}
    inp.check(params)
    if protocol == "WEBSOCKET":
        raise BadRequest("WebSocket APIs are not supported by nimbus; use protocolType HTTP.")
    if protocol != "HTTP":
        raise BadRequest(f"Invalid protocolType '{protocol}': use HTTP.")
    changes = inp.api_input(params, creating=True)
    now = _now()
    api = HttpApi(api_id=new_id(10), name=changes.pop("name"), created_date=now, tags=tags)
    api = _replace(api, changes)
    quick: dict[str, Any] = {}
    if target is not None:
        # Quick create: a Lambda integration, a route to it and an auto-deployed $default
        # stage, all managed by the API (as API Gateway does).
        function, qualifier = inp.function_from_uri(target, svc.config)
        integration = ApiIntegration(
            api_id=api.api_id,
            integration_id=new_id(7),
            integration_uri=target,
            function_name=function,
            qualifier=qualifier,
            api_gateway_managed=True,
        )
        key = route_key or DEFAULT_ROUTE
        parse_route_key(key)
        quick["integration"] = integration
        quick["route"] = ApiRoute(
            api_id=api.api_id,
            route_id=new_id(7),
            route_key=key,
            target=f"integrations/{integration.integration_id}",
            api_gateway_managed=True,
        )
        quick["stage"] = ApiStage(
            api_id=api.api_id,
            stage_name=DEFAULT_STAGE,
            created_date=now,
            last_updated_date=now,
            auto_deploy=True,
            api_gateway_managed=True,
        )
    elif route_key is not None:
        raise BadRequest("routeKey is part of quick create: give it together with target.")
    api = await blocking(svc.http_apis.create_api, api, **quick)
    return json_response(render_api(api, request), 201)


def _replace(record: Any, changes: dict[str, Any]) -> Any:
    return dataclasses.replace(record, **changes)


async def get_api(request: Request) -> Response:
    api = await blocking(_store(request).get_api, request.path_params["api_id"])
    return json_response(render_api(api, request))


async def get_apis(request: Request) -> Response:
    token, size = _paging(request)
    page = await blocking(_store(request).list_apis, token, size)
    return _page(page, lambda api: render_api(api, request))


async def update_api(request: Request) -> Response:
    params = await inp.read_body(request, "UpdateApi")
    changes = inp.api_input(params, creating=False)
    api = await blocking(_store(request).update_api, request.path_params["api_id"], changes)
    return json_response(render_api(api, request))


async def delete_api(request: Request) -> Response:
    await blocking(_store(request).delete_api, request.path_params["api_id"])
    return empty_response(204)


async def delete_cors(request: Request) -> Response:
    await blocking(_store(request).update_api, request.path_params["api_id"], {"cors": None})
    return empty_response(204)


# -- integrations ------------------------------------------------------------------------


async def create_integration(request: Request) -> Response:
    svc = services(request)
    params = await inp.read_body(request, "CreateIntegration")
    changes = inp.integration_input(params, svc.config, creating=True)
    integration = ApiIntegration(
        api_id=request.path_params["api_id"],
        integration_id=new_id(7),
        integration_uri=changes.pop("integration_uri"),
        function_name=changes.pop("function_name"),
        qualifier=changes.pop("qualifier"),
    )
    integration = await blocking(svc.http_apis.create_integration, _replace(integration, changes))
    return json_response(render_integration(integration), 201)


async def get_integration(request: Request) -> Response:
    p = request.path_params
    integration = await blocking(_store(request).get_integration, p["api_id"], p["integration_id"])
    return json_response(render_integration(integration))


async def get_integrations(request: Request) -> Response:
    token, size = _paging(request)
    api_id = request.path_params["api_id"]
    page = await blocking(_store(request).list_integrations, api_id, token, size)
    return _page(page, render_integration)


async def update_integration(request: Request) -> Response:
    svc = services(request)
    params = await inp.read_body(request, "UpdateIntegration")
    changes = inp.integration_input(params, svc.config, creating=False)
    p = request.path_params
    integration = await blocking(
        svc.http_apis.update_integration, p["api_id"], p["integration_id"], changes
    )
    return json_response(render_integration(integration))


async def delete_integration(request: Request) -> Response:
    p = request.path_params
    await blocking(_store(request).delete_integration, p["api_id"], p["integration_id"])
    return empty_response(204)


# -- routes ------------------------------------------------------------------------------


async def create_route(request: Request) -> Response:
    params = await inp.read_body(request, "CreateRoute")
    changes = inp.route_settings_input(params, creating=True)
    route = ApiRoute(
        api_id=request.path_params["api_id"],
        route_id=new_id(7),
        route_key=changes.pop("route_key"),
    )
    route = await blocking(_store(request).create_route, _replace(route, changes))
    return json_response(render_route(route), 201)


async def get_route(request: Request) -> Response:
    p = request.path_params
    route = await blocking(_store(request).get_route, p["api_id"], p["route_id"])
    return json_response(render_route(route))


async def get_routes(request: Request) -> Response:
    token, size = _paging(request)
    page = await blocking(_store(request).list_routes, request.path_params["api_id"], token, size)
    return _page(page, render_route)


async def update_route(request: Request) -> Response:
    params = await inp.read_body(request, "UpdateRoute")
    changes = inp.route_settings_input(params, creating=False)
    p = request.path_params
    route = await blocking(_store(request).update_route, p["api_id"], p["route_id"], changes)
    return json_response(render_route(route))


async def delete_route(request: Request) -> Response:
    p = request.path_params
    await blocking(_store(request).delete_route, p["api_id"], p["route_id"])
    return empty_response(204)


# -- stages ------------------------------------------------------------------------------


async def create_stage(request: Request) -> Response:
    params = await inp.read_body(request, "CreateStage")
    name = inp.stage_name(params)
    tags = inp.string_map(params, "tags", 1600) or {}
    changes = inp.stage_settings(params)
    now = _now()
    stage = ApiStage(
        api_id=request.path_params["api_id"],
        stage_name=name,
        created_date=now,
        last_updated_date=now,
        tags=tags,
    )
    stage = await blocking(_store(request).create_stage, _replace(stage, changes))
    return json_response(render_stage(stage), 201)


async def get_stage(request: Request) -> Response:
    p = request.path_params
    stage = await blocking(_store(request).get_stage, p["api_id"], p["stage_name"])
    return json_response(render_stage(stage))


async def get_stages(request: Request) -> Response:
    token, size = _paging(request)
    page = await blocking(_store(request).list_stages, request.path_params["api_id"], token, size)
    return _page(page, render_stage)


async def update_stage(request: Request) -> Response:
    params = await inp.read_body(request, "UpdateStage")
    changes = inp.stage_settings(params)
    changes["last_updated_date"] = _now()
    p = request.path_params
    stage = await blocking(_store(request).update_stage, p["api_id"], p["stage_name"], changes)
    return json_response(render_stage(stage))


async def delete_stage(request: Request) -> Response:
    p = request.path_params
    await blocking(_store(request).delete_stage, p["api_id"], p["stage_name"])
    return empty_response(204)


_A = "/v2/apis/{api_id}"
routes = [
    Route("/v2/apis", create_api, methods=["POST"]),
    Route("/v2/apis", get_apis, methods=["GET"]),
    Route(_A, get_api, methods=["GET"]),
    Route(_A, update_api, methods=["PATCH"]),
    Route(_A, delete_api, methods=["DELETE"]),
    Route(_A + "/cors", delete_cors, methods=["DELETE"]),
    Route(_A + "/integrations", create_integration, methods=["POST"]),
    Route(_A + "/integrations", get_integrations, methods=["GET"]),
    Route(_A + "/integrations/{integration_id}", get_integration, methods=["GET"]),
    Route(_A + "/integrations/{integration_id}", update_integration, methods=["PATCH"]),
    Route(_A + "/integrations/{integration_id}", delete_integration, methods=["DELETE"]),
    Route(_A + "/routes", create_route, methods=["POST"]),
    Route(_A + "/routes", get_routes, methods=["GET"]),
    Route(_A + "/routes/{route_id}", get_route, methods=["GET"]),
    Route(_A + "/routes/{route_id}", update_route, methods=["PATCH"]),
    Route(_A + "/routes/{route_id}", delete_route, methods=["DELETE"]),
    Route(_A + "/stages", create_stage, methods=["POST"]),
    Route(_A + "/stages", get_stages, methods=["GET"]),
    Route(_A + "/stages/{stage_name}", get_stage, methods=["GET"]),
    Route(_A + "/stages/{stage_name}", update_stage, methods=["PATCH"]),
    Route(_A + "/stages/{stage_name}", delete_stage, methods=["DELETE"]),
]
