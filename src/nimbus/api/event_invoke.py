"""Event invoke configs: Put/Update/Get/Delete/ListFunctionEventInvokeConfig(s)."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus.api.names import NAMESPACED, parse_function_ref, unqualified
from nimbus.api.services import Services, services
from nimbus.api.wire import (
    Params,
    empty_response,
    json_response,
    page_response,
    read_json,
    settings_page,
)
from nimbus.config import FUNCTION_ARN, Config
from nimbus.errors import InvalidParameterValue, ResourceNotFound
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


# The service model's DestinationArn (nimbus also takes http(s) webhook URLs).
DESTINATION_PATTERN = (
    r"$|kafka://([^.]([a-zA-Z0-9\-_.]{0,248}))|arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:"
    r"((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1})?:(\d{12})?:(.*)"
)
# Services Lambda delivers to that nimbus refuses with its own explanation.
KNOWN_SERVICES = ("lambda", "sqs", "sns", "events", "s3", "kafka")
NO_FUNCTION = "The function doesn't exist."


def _target(svc: Services, request: Request) -> tuple[str, str]:
    """(function, qualifier or $LATEST) as named; nothing is looked up."""
    ref = parse_function_ref(
        request.path_params["name"], svc.config, request.query_params.get("Qualifier")
    )
    return ref.name, ref.qualifier or LATEST


def _no_config(svc: Services, function: str, qualifier: str) -> ResourceNotFound:
    arn = svc.config.function_arn(function, qualifier)
    return ResourceNotFound(f"The function {arn} doesn't have an EventInvokeConfig")


async def _exists(svc: Services, function: str, qualifier: str) -> None:
    """The function and its qualifier (a version or an alias) exist, or Lambda's 404."""
    try:
        if qualifier == LATEST or qualifier.isdigit():
            await blocking(svc.engine.functions.get_version, function, qualifier)
        else:
            await blocking(svc.engine.aliases.get, function, qualifier)
    except ResourceNotFound as exc:
        raise ResourceNotFound(NO_FUNCTION) from exc


def _destination(value: str | None, params: Params) -> None:
    if value and not value.startswith(("http://", "https://")):
        params.string("Destination", value=value, pattern=DESTINATION_PATTERN)


async def _check_destinations(
    svc: Services, function: str, targets: dict[str, str | None]
) -> None:
    """What Lambda checks of well-formed destinations, in its words; what nimbus cannot
    deliver to (EventBridge...) is refused in nimbus' (``validate_destination``). A
    function, SQS queue or SNS topic that does not exist is refused as Lambda refuses a
    missing function."""
    for kind, target in targets.items():
        if not target:
            continue
        service = target.split(":")[2] if target.startswith("arn:") else ""
        if service and service not in KNOWN_SERVICES:
            # Lambda quotes the config as Java prints it.
            success, failure = (
                f"{k}(destination={v})" if v else "null" for k, v in targets.items()
            )
            raise InvalidParameterValue(
                f"The provided destination config DestinationConfig(onSuccess={success}, "
                f"onFailure={failure}) is invalid."
            )
        validate_destination(target, svc.config, f"DestinationConfig.{kind}.Destination")
        queue = svc.engine.sqs.name_of_arn(target)
        if queue is not None:
            if not await svc.engine.sqs.exists(queue):
                raise InvalidParameterValue(f"The destination ARN {target} is invalid.")
            continue
        if svc.engine.sns.arns.is_topic(target):
            if not await svc.engine.sns.exists(target):
                raise InvalidParameterValue(f"The destination ARN {target} is invalid.")
            continue
        match = FUNCTION_ARN.fullmatch(target)
        if match is None:
            continue
        if match["name"] == function:
            raise InvalidParameterValue(
                "You can't specify the function as a destination for itself."
            )
        try:
            await blocking(svc.engine.functions.get_record, match["name"])
        except ResourceNotFound as exc:
            raise InvalidParameterValue(f"The destination ARN {target} is invalid.") from exc


async def _put(request: Request, merge: bool) -> Response:
    svc = services(request)
    function, qualifier = _target(svc, request)
    operation = "UpdateFunctionEventInvokeConfig" if merge else "PutFunctionEventInvokeConfig"
    body = await read_json(request, operation)
    params = Params(body)
    retries = params.integer("MaximumRetryAttempts", minimum=0, maximum=2)
    max_age = params.integer("MaximumEventAgeInSeconds", minimum=60, maximum=21600)
    destinations = params.nested("DestinationConfig")
    targets: dict[str, str | None] = {}
    for kind in ("OnSuccess", "OnFailure"):
        sub = destinations.nested(kind)
        targets[kind] = sub.string("Destination", max_len=350) or None
        _destination(targets[kind], sub)
    params.check()
    settings = ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")
    if not any(body.get(member) is not None for member in settings):
        raise InvalidParameterValue(
            "You must specify at least one of error handling or destination setting."
        )
    await _exists(svc, function, qualifier)
    if merge and await blocking(svc.engine.event_configs.find, function, qualifier) is None:
        raise _no_config(svc, function, qualifier)
    await _check_destinations(svc, function, targets)
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
    function, qualifier = _target(svc, request)
    cfg = await blocking(svc.engine.event_configs.find, function, qualifier)
    if cfg is None:  # whether or not the function is there, as Lambda answers
        raise _no_config(svc, function, qualifier)
    return json_response(render(cfg, svc.config))


async def delete_config(request: Request) -> Response:
    svc = services(request)
    function, qualifier = _target(svc, request)
    if await blocking(svc.engine.event_configs.find, function, qualifier) is None:
        raise _no_config(svc, function, qualifier)
    await blocking(svc.engine.event_configs.delete, function, qualifier)
    return empty_response(204)


async def list_configs(request: Request) -> Response:
    svc = services(request)
    function = unqualified(request.path_params["name"], svc.config, NAMESPACED)
    try:
        page = await settings_page(request, function, svc.engine.event_configs)
    except ResourceNotFound as exc:
        raise ResourceNotFound(NO_FUNCTION) from exc
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
