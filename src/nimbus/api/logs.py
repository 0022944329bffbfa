"""Invocation logs over HTTP (a nimbus extension): what ``nimbus logs`` reads.

``GET /_nimbus/functions/{name}/logs`` answers ``{"Logs": [records]}``: the function's
invocations at or after ``SinceMs`` (and at or before ``UntilMs``), the newest ``Limit``
of them (``Oldest=true``: the oldest, with ``More`` saying whether others follow, which
is how ``nimbus logs -f`` reads on without missing any), narrowed server-side to one
``RequestId`` and to those with a line matching ``Filter`` (a CloudWatch filter
pattern). ``Events=true`` adds ``Events``: their lines, each with its timestamp,
function, version, request id, level and stream (only the matching lines when a
``Filter`` is given).
"""

from __future__ import annotations

from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus.api.names import unqualified
from nimbus.api.services import services
from nimbus.api.wire import json_response, query_int
from nimbus.errors import InvalidParameterValue
from nimbus.observe.log_events import LogEvent, events_of
from nimbus.observe.log_filter import FilterPatternError, compile_pattern
from nimbus.observe.logs import InvocationLog
from nimbus.threads import blocking

ALL = 10**9


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes")


async def function_logs(request: Request) -> Response:
    svc = services(request)
    name = unqualified(request.path_params["name"], svc.config)
    await blocking(svc.engine.functions.get_record, name)  # 404 for an unknown function
    since = query_int(request, "SinceMs", 0, 0, 2**62)
    until = query_int(request, "UntilMs", 2**62, 0, 2**62)
    limit = query_int(request, "Limit", 50, 1, 1000)
    request_id = request.query_params.get("RequestId")
    oldest = _flag(request, "Oldest")
    try:
        matches = compile_pattern(request.query_params.get("Filter"))
    except FilterPatternError as exc:
        raise InvalidParameterValue(f"Filter: {exc}") from None
    pattern = request.query_params.get("Filter", "").strip()
    narrowed = request_id is not None or bool(pattern)
    await svc.engine.flush_logs()  # what has run is readable at once

    def read() -> tuple[list[InvocationLog], list[LogEvent], bool]:
        # Narrowed or bounded reads take the whole window, so the limit counts what is kept.
        wanted = ALL if narrowed or oldest or until < 2**62 else limit
        records = [
            r for r in svc.engine.logs.read(name, since, wanted)
            if r.timestamp_ms <= until and (request_id is None or r.request_id == request_id)
        ]
        kept: list[InvocationLog] = []
        lines: list[LogEvent] = []
        for record in records:
            matched = [e for e in events_of(record) if matches(e.message)]
            if matched or not pattern:  # unfiltered: records with no lines too
                kept.append(record)
                lines.extend(matched)
        more = len(kept) > limit
        kept = kept[:limit] if oldest else kept[-limit:]
        chosen = {r.request_id for r in kept}
        return kept, [e for e in lines if e.request_id in chosen], more

    records, lines, more = await blocking(read)
    body: dict[str, object] = {"Logs": [asdict(r) for r in records]}
    if _flag(request, "Events"):
        body["Events"] = [e.as_dict() for e in lines]
    if oldest:
        body["More"] = more
    return json_response(body)


async def flush_logs(request: Request) -> Response:
    """Write out the log records this process still batches: a cluster server asks its
    worker nodes before it reads logs (cluster/forward.py)."""
    await services(request).engine.logs.flush()
    return json_response({})


routes = [
    Route("/_nimbus/functions/{name}/logs", function_logs, methods=["GET"]),
    Route("/_nimbus/logs/flush", flush_logs, methods=["POST"]),
]
