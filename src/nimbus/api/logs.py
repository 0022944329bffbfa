"""Invocation logs over HTTP (a nimbus extension): what ``nimbus logs`` reads."""

from __future__ import annotations

from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus.api.names import unqualified
from nimbus.api.services import services
from nimbus.api.wire import json_response, query_int
from nimbus.threads import blocking


async def function_logs(request: Request) -> Response:
    svc = services(request)
    name = unqualified(request.path_params["name"], svc.config)
    await blocking(svc.engine.functions.get_record, name)  # 404 for an unknown function
    since = query_int(request, "SinceMs", 0, 0, 2**62)
    limit = query_int(request, "Limit", 50, 1, 1000)
    await svc.engine.logs.flush()  # what has run is readable at once
    records = await blocking(svc.engine.logs.read, name, since, limit)
    return json_response({"Logs": [asdict(r) for r in records]})


routes = [Route("/_nimbus/functions/{name}/logs", function_logs, methods=["GET"])]
