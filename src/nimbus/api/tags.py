"""Tags on functions: TagResource, UntagResource, ListTags (by function ARN)."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus.api.functions import validate_tags
from nimbus.api.services import Services, services
from nimbus.api.wire import Params, empty_response, json_response, read_json
from nimbus.errors import InvalidParameterValue
from nimbus.threads import blocking


def _function_of(svc: Services, resource: str) -> str:
    cfg = svc.config
    match = re.fullmatch(
        rf"arn:aws:lambda:{re.escape(cfg.region)}:{cfg.account_id}:function:([a-zA-Z0-9-_]{{1,64}})",
        resource,
    )
    if match is None:
        raise InvalidParameterValue(
            f"Resource {resource} is not a taggable function ARN. Pass the unqualified "
            f"function ARN, e.g. {cfg.function_arn('my-function')}."
        )
    return match[1]


async def tag_resource(request: Request) -> Response:
    svc = services(request)
    name = _function_of(svc, request.path_params["resource"])
    params = Params(await read_json(request, "TagResource"))
    if not params.has("Tags"):
        params.string("Tags", required=True)
    tags = validate_tags(params)
    params.check()
    current = await blocking(svc.engine.functions.get_record, name)
    if len(set(current.tags) | set(tags)) > 50:
        raise InvalidParameterValue("A function can have at most 50 tags.")
    await blocking(svc.engine.functions.update_tags, name, tags, None)
    return empty_response(204)


async def untag_resource(request: Request) -> Response:
    svc = services(request)
    name = _function_of(svc, request.path_params["resource"])
    keys = request.query_params.getlist("tagKeys")
    if not keys:
        raise InvalidParameterValue("tagKeys is required: name the tag keys to remove.")
    await blocking(svc.engine.functions.update_tags, name, None, keys)
    return empty_response(204)


async def list_tags(request: Request) -> Response:
    svc = services(request)
    name = _function_of(svc, request.path_params["resource"])
    record = await blocking(svc.engine.functions.get_record, name)
    return json_response({"Tags": record.tags})


routes = [
    Route("/2017-03-31/tags/{resource}", tag_resource, methods=["POST"]),
    Route("/2017-03-31/tags/{resource}", untag_resource, methods=["DELETE"]),
    Route("/2017-03-31/tags/{resource}", list_tags, methods=["GET"]),
]
