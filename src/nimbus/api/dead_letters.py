"""The dead-letter store over HTTP (a nimbus extension, under ``/_nimbus``): list the
events that could not be processed, and re-drive them."""

from __future__ import annotations

from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus.api.services import services
from nimbus.api.wire import json_response, query_int
from nimbus.errors import InvalidParameterValue
from nimbus.threads import blocking


async def list_dead_letters(request: Request) -> Response:
    svc = services(request)
    q = request.query_params
    limit = query_int(request, "Limit", 100, 1, 1000)
    after = query_int(request, "After", 0, 0, 2**62)
    letters = await blocking(
        svc.engine.dead_letters.list,
        q.get("FunctionName"),
        q.get("Queue"),
        q.get("IncludeRedriven") == "true",
        after,
        limit,
    )
    body: dict[str, object] = {"DeadLetters": [asdict(letter) for letter in letters]}
    if len(letters) == limit:
        body["NextAfter"] = letters[-1].id
    return json_response(body)


async def redrive(request: Request) -> Response:
    svc = services(request)
    raw = request.path_params["id"]
    if not raw.isdigit():
        raise InvalidParameterValue(f"Dead letter id must be a number, not {raw!r}.")
    request_id = await svc.engine.dispatcher.redrive(int(raw))
    return json_response({"RequestId": request_id}, status=202)


routes = [
    Route("/_nimbus/dead-letters", list_dead_letters, methods=["GET"]),
    Route("/_nimbus/dead-letters/{id}/redrive", redrive, methods=["POST"]),
]
