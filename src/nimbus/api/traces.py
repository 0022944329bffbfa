"""Traces over HTTP (a nimbus extension, under ``/_nimbus``): recent trace summaries,
one trace's segments (as X-Ray's BatchGetTraces shows them, and as a tree), and the
service map computed from them.

- ``GET /_nimbus/traces?FunctionName=&Limit=``: summaries, newest first;
- ``GET /_nimbus/traces/{id}``: one trace (``1-5f84c7a5-...``);
- ``GET /_nimbus/service-map?Minutes=``: nodes and edges of traces active in the window.
"""

from __future__ import annotations

import re
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus.api.services import Services, services
from nimbus.api.wire import json_response, query_int
from nimbus.errors import InvalidParameterValue, ResourceNotFound
from nimbus.observe.service_map import service_map, summary, trace_document
from nimbus.observe.trace_store import TraceStore
from nimbus.threads import blocking

_ROOT = re.compile(r"1-[0-9a-f]{8}-[0-9a-f]{24}")


async def _store(svc: Services) -> TraceStore:
    """The trace store, holding everything written so far (this process's own segments
    first flushed, so a trace is complete as soon as its invocation answered)."""
    engine = svc.engine
    if engine.traces is None:
        raise ResourceNotFound("This process keeps no traces.")
    if engine.segments is not None:
        await engine.segments.flush_async()
    await blocking(engine.traces.refresh)
    return engine.traces


async def list_traces(request: Request) -> Response:
    limit = query_int(request, "Limit", 50, 1, 1000)
    function = request.query_params.get("FunctionName")
    store = await _store(services(request))
    out = []
    for root, docs in store.traces():
        item = summary(root, docs)
        if function and function not in item["Functions"]:
            continue
        out.append(item)
        if len(out) == limit:
            break
    out.sort(key=lambda t: t["StartTime"] or 0, reverse=True)
    return json_response({"TraceSummaries": out})


async def get_trace(request: Request) -> Response:
    root = request.path_params["id"]
    if not _ROOT.fullmatch(root):
        raise InvalidParameterValue(
            f"Trace id {root!r} is not valid: expected 1-<8 hex digits>-<24 hex digits>, "
            "the Root of an X-Amzn-Trace-Id header."
        )
    store = await _store(services(request))
    docs = store.trace(root)
    if docs is None:
        raise ResourceNotFound(f"Trace {root} is not (or no longer) held by this nimbus.")
    return json_response({"Traces": [trace_document(root, docs)]})


async def get_service_map(request: Request) -> Response:
    minutes = query_int(request, "Minutes", 60, 1, 7 * 24 * 60)
    store = await _store(services(request))
    end = time.time()
    start = end - minutes * 60
    traces = [docs for _, docs in store.traces()
              if any(_ended(d) >= start for d in docs)]
    return json_response({"StartTime": start, "EndTime": end, **service_map(traces)})


def _ended(doc: dict[str, object]) -> float:
    end = doc.get("end_time", doc.get("start_time", 0))
    return float(end) if isinstance(end, int | float) else 0.0


routes = [
    Route("/_nimbus/traces", list_traces, methods=["GET"]),
    Route("/_nimbus/traces/{id}", get_trace, methods=["GET"]),
    Route("/_nimbus/service-map", get_service_map, methods=["GET"]),
]
