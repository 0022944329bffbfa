"""The dashboard's JSON, under ``/ui/api/``.

Mostly the control plane's own read operations, unchanged: ``/ui/api/<path>`` answers
``GET <path>`` for the read-only paths in ``READABLE`` (ListFunctions, the metrics,
cost, traces, service map, logs, queue and mapping figures), dispatched in-process to
the control plane's router past its SigV4 check, the dashboard's gate having let the
browser in. So the dashboard shows exactly what the documented APIs answer, and can
change nothing: no other path and no other method is reachable through it.

Two views exist only for the dashboard, because they join what no single API gives:

- ``/ui/api/functions/{name}/invocations``: the recent invocations from their logs
  (status, duration, cold or warm) with the trace each one belongs to;
- ``/ui/api/queues``: every SQS queue's backlog and the age of its oldest message.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from nimbus.api import cluster_views
from nimbus.api.names import unqualified
from nimbus.api.services import Services, services
from nimbus.api.wire import error_response, query_int
from nimbus.errors import NimbusError, ResourceNotFound
from nimbus.observe.logs import InvocationLog
from nimbus.observe.tracing import FUNCTION_ORIGIN
from nimbus.threads import blocking

PREFIX = "/ui/api"
_NAME = r"[^/]+"
_TRACES_SEARCHED = 500  # of each worker node, for the trace of a recent invocation
READABLE = tuple(
    re.compile(p)
    for p in (
        r"/2015-03-31/functions/?",
        rf"/2015-03-31/functions/{_NAME}/configuration",
        r"/2015-03-31/event-source-mappings/?",
        r"/_nimbus/(metrics|cost|traces|service-map|queue|event-source-mappings)",
        rf"/_nimbus/traces/{_NAME}",
        rf"/_nimbus/functions/{_NAME}/logs",
    )
)
NO_STORE = {"Cache-Control": "no-store"}


def readable(path: str) -> bool:
    return any(p.fullmatch(path) for p in READABLE)


async def control_plane_read(scope: Scope, receive: Receive, send: Send, path: str) -> None:
    """``GET path`` answered by the control plane's router (errors in its shape)."""
    raw = quote(path, safe="/~!$&'()*+,;=:@").encode()
    inner = {**scope, "path": path, "raw_path": raw, "root_path": ""}
    inner.pop("router", None)
    inner.pop("endpoint", None)
    inner.pop("path_params", None)
    try:
        await scope["app"].router(inner, receive, send)
    except NimbusError as exc:
        await error_response(exc)(scope, receive, send)


async def invocations(request: Request) -> Response:
    """A function's newest ``Limit`` invocations (1-200, default 50), newest first."""
    svc = services(request)
    name = unqualified(request.path_params["name"], svc.config)
    await blocking(svc.engine.functions.get_record, name)  # 404 for an unknown function
    limit = query_int(request, "Limit", 50, 1, 200)
    since = query_int(request, "SinceMs", 0, 0, 2**62)
    await svc.engine.flush_logs()  # what has run is readable at once
    records = await blocking(svc.engine.logs.read, name, since, limit)
    traces = await _trace_ids(svc, {r.request_id for r in records})
    items = [_invocation(r, traces.get(r.request_id)) for r in reversed(records)]
    return JSONResponse({"FunctionName": name, "Invocations": items}, headers=NO_STORE)


def _invocation(record: InvocationLog, trace_id: str | None) -> dict[str, Any]:
    return {
        "RequestId": record.request_id,
        "Timestamp": record.timestamp_ms,
        "Version": record.version,
        "Status": record.error_type or "Success",
        "DurationMs": round(record.duration_ms, 3),
        "BilledMs": record.billed_ms,
        "MemorySize": record.memory_size,
        "MaxMemoryUsed": record.max_memory_used,
        "Cold": record.init_ms is not None,
        "InitMs": record.init_ms,
        "TraceId": trace_id,
    }


async def _trace_ids(svc: Services, request_ids: set[str]) -> dict[str, str]:
    """The trace of each of ``request_ids`` that the trace store holds (sampled ones)."""
    engine = svc.engine
    if engine.traces is None or not request_ids:
        return {}
    if engine.segments is not None:
        await engine.segments.flush_async()
    await blocking(engine.traces.refresh)
    # On a cluster server, with the newest traces of its worker nodes, which ran them.
    store = await cluster_views.traces(svc, engine.traces, {"Limit": str(_TRACES_SEARCHED)})

    def find() -> dict[str, str]:
        found: dict[str, str] = {}
        for root, docs in store.traces():  # newest first: recent invocations end it soon
            for doc in docs:
                aws = doc.get("aws")
                if doc.get("origin") == FUNCTION_ORIGIN and isinstance(aws, dict):
                    rid = aws.get("request_id")
                    if rid in request_ids and rid not in found:
                        found[rid] = root
            if len(found) == len(request_ids):
                break
        return found

    return await blocking(find)


async def queues(request: Request) -> Response:
    """Every SQS queue: messages visible, in flight, delayed, and the oldest one's age."""
    svc = services(request)
    sqs = svc.engine.sqs
    now = svc.engine.metrics.clock()
    out = []
    for name in await sqs.names():
        try:
            view = await sqs.view(name)
        except NimbusError:  # deleted between the listing and now
            continue
        counts = view.counts
        settings = view.row.settings
        oldest = counts.oldest_sent_ms
        out.append({
            "QueueName": name,
            "QueueArn": sqs.arn(name),
            "Fifo": view.row.fifo,
            "Visible": counts.visible,
            "InFlight": counts.in_flight,
            "Delayed": counts.delayed,
            "OldestMessageAgeSeconds": None if oldest is None else max(0, now - oldest) // 1000,
            "RedrivePolicy": settings.get("RedrivePolicy") or None,
        })
    return JSONResponse({"Queues": out}, headers=NO_STORE)


async def api(scope: Scope, receive: Receive, send: Send) -> None:
    """``/ui/api/...``: the dashboard's views, else a readable control-plane path."""
    path = scope["path"][len(PREFIX):] or "/"
    if scope["method"] in ("GET", "HEAD") and readable(path):
        await control_plane_read(scope, receive, send, path)
        return
    try:
        if scope["method"] not in ("GET", "HEAD"):
            response: Response = JSONResponse(
                {"message": "The dashboard's API only reads: use GET."}, status_code=405
            )
        elif path == "/queues":
            response = await queues(Request(scope, receive))
        elif m := re.fullmatch(r"/functions/([^/]+)/invocations", path):
            response = await invocations(Request({**scope, "path_params": {"name": m[1]}}))
        else:
            raise ResourceNotFound(f"The dashboard's API has no {path}.")
    except NimbusError as exc:
        response = error_response(exc)
    await response(scope, receive, send)
