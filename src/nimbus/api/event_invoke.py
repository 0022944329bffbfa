"""Event invoke configs: Put/Update/Get/Delete/ListFunctionEventInvokeConfig(s)."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus.api.names import parse_function_ref
from nimbus.api.services import Services, services
from nimbus.api.wire import (
    Params,
    empty_response,
    json_response,
    page_response,
    read_json,
    settings_page,
)
from nimbus.config import Config
from nimbus.events.destinations import validate_destination
from nimbus.models import LATEST, EventInvokeConfig
from nimbus.threads import blocking


def render(cfg: EventInvokeConfig, config: Config) -> dict[str, Any]:
    qualifier = None if cfg.qualifier == LATEST else cfg.qualifier
    body: dict[str, Any] = {
        "LastModified": cfg.last_modified,
        "FunctionArn": config.function_arn(cfg.function_name, qualifier or LATEST),
        "DestinationConfig": {
            "OnSuccess": {"Destination": cfg.on_success} if cfg.on_success else {},
            "OnFailure": {"Destination": cfg.on_failure} if cfg.on_failure else {},
        },
    }
    if cfg.maximum_retry_attempts is not None:
        body["MaximumRetryAttempts"] = cfg.maximum_retry_attempts
    if cfg.maximum_event_age is not None:
        body["MaximumEventAgeInSeconds"] = cfg.maximum_event_age
    return body


async def _target(svc: Services, request: Request) -> tuple[str, str]:
    ref = parse_function_ref(
        request.path_params["name"], svc.config, request.query_params.get("Qualifier")
    )
    qualifier = ref.qualifier or LATEST
    # The qualifier must exist: a version of the function or one of its aliases.
    if qualifier == LATEST or qualifier.isdigit():
        await blocking(svc.engine.functions.get_version, ref.name, qualifier)
    else:
        await blocking(svc.engine.aliases.get, ref.name, qualifier)
    return ref.name, qualifier


async def _put(request: Request, merge: bool) -> Response:
    svc = services(request)
    function, qualifier = await _target(svc, request)
    operation = "UpdateFunctionEventInvokeConfig" if merge else "PutFunctionEventInvokeConfig"
    params = Params(await read_json(request, operation))
    retries = params.integer("MaximumRetryAttempts", minimum=0, maximum=2)
    max_age = params.integer("MaximumEventAgeInSeconds", minimum=60, maximum=21600)
    destinations = params.nested("DestinationConfig")
    targets: dict[str, str | None] = {}
    for kind in ("OnSuccess", "OnFailure"):
        sub = destinations.nested(kind)
        targets[kind] = sub.string("Destination", max_len=350) or None
    params.check()
    for kind, target in targets.items():
        if target:
            validate_destination(target, svc.config, f"DestinationConfig.{kind}.Destination")
    cfg = EventInvokeConfig(
        function_name=function,
        qualifier=qualifier,
        maximum_retry_attempts=retries,
        maximum_event_age=max_age,
        on_success=targets["OnSuccess"],
        on_failure=targets["OnFailure"],
        last_modified=time.time(),
    )
    saved = await blocking(svc.engine.event_configs.put, cfg, merge)
    return json_response(render(saved, svc.config))


async def put_config(request: Request) -> Response:
    return await _put(request, merge=False)


async def update_config(request: Request) -> Response:
    return await _put(request, merge=True)


async def get_config(request: Request) -> Response:
    svc = services(request)
    function, qualifier = await _target(svc, request)
    cfg = await blocking(svc.engine.event_configs.get, function, qualifier)
    return json_response(render(cfg, svc.config))


async def delete_config(request: Request) -> Response:
    svc = services(request)
    function, qualifier = await _target(svc, request)
    await blocking(svc.engine.event_configs.delete, function, qualifier)
    return empty_response(204)


async def list_configs(request: Request) -> Response:
    svc = services(request)
    _, page = await settings_page(request, svc.config, svc.engine.event_configs)
    items = [render(c, svc.config) for c in page.items]
    return page_response("FunctionEventInvokeConfigs", items, page.next_marker)


_E = "/2019-09-25/functions/{name}/event-invoke-config"
routes = [
    Route(_E, put_config, methods=["PUT"]),
    Route(_E, update_config, methods=["POST"]),
    Route(_E, get_config, methods=["GET"]),
    Route(_E, delete_config, methods=["DELETE"]),
    Route(_E + "/list", list_configs, methods=["GET"]),
]
