"""The dead-letter store over HTTP (a nimbus extension, under ``/_nimbus``): list the
events that could not be processed, and re-drive them."""

from __future__ import annotations

from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus.api.services import services
from nimbus.api.wire import decimal_int, json_response, query_int, query_text
from nimbus.errors import InvalidParameterValue
from nimbus.threads import blocking

MAX_ID = 2**63 - 1  # the store's ids are 64-bit signed integers


async def list_dead_letters(request: Request) -> Response:
    svc = services(request)
    q = request.query_params
    limit = query_int(request, "Limit", 100, 1, 1000)
    after = query_int(request, "After", 0, 0, MAX_ID)
    letters = await blocking(
        svc.engine.dead_letters.list,
        query_text(request, "FunctionName"),
        query_text(request, "Queue"),
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
    letter_id = decimal_int(raw)
    if letter_id is None or not 1 <= letter_id <= MAX_ID:
        raise InvalidParameterValue(
            f"Dead letter id must be a number from 1 to {MAX_ID}, not {raw[:40]!r}."
        )
    request_id = await svc.engine.dispatcher.redrive(letter_id)
    return json_response({"RequestId": request_id}, status=202)


routes = [
    Route("/_nimbus/dead-letters", list_dead_letters, methods=["GET"]),
    Route("/_nimbus/dead-letters/{id}/redrive", redrive, methods=["POST"]),
]
