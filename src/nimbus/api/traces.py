"""Traces over HTTP (a nimbus extension, under ``/_nimbus``): recent trace summaries,
one trace's segments (as X-Ray's BatchGetTraces shows them, and as a tree), and the
service map computed from them.

- ``GET /_nimbus/traces?FunctionName=&Limit=``: summaries, newest first;
- ``GET /_nimbus/traces/{id}``: one trace (``1-5f84c7a5-...``);
- ``GET /_nimbus/service-map?Minutes=``: nodes and edges of traces active in the window;
- ``GET /_nimbus/segments?Root=|Since=&Limit=&FunctionName=``: this node's own segment
  documents, which a cluster server adds to its own (``cluster_views``).

On a cluster server the first three include what the worker nodes recorded.
"""

from __future__ import annotations

import json
import re
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus.api import cluster_views
from nimbus.api.services import Services, services
from nimbus.api.wire import json_response, query_int
from nimbus.errors import InvalidParameterValue, ResourceNotFound
from nimbus.observe.service_map import service_map, summary, trace_document
from nimbus.observe.trace_store import MAX_TRACES, TraceStore, end_of
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
    svc = services(request)
    query = {"Limit": str(limit), **({"FunctionName": function} if function else {})}
    local = await _store(svc)
    store = await cluster_views.traces(svc, local, query)
    out = []
    for root, docs in store.traces():
        item = summary(root, docs)
        if function and function not in item["Functions"]:
            continue
        out.append(item)
        if len(out) == limit and store is local:  # newest first: the rest are older
            break
    out.sort(key=lambda t: t["StartTime"] or 0, reverse=True)
    return json_response({"TraceSummaries": out[:limit]})


def _check_root(root: str) -> None:
    if not _ROOT.fullmatch(root):
        raise InvalidParameterValue(
            f"Trace id {root!r} is not valid: expected 1-<8 hex digits>-<24 hex digits>, "
            "the Root of an X-Amzn-Trace-Id header."
        )


async def get_trace(request: Request) -> Response:
    root = request.path_params["id"]
    _check_root(root)
    svc = services(request)
    store = await cluster_views.traces(svc, await _store(svc), {"Root": root})
    docs = store.trace(root)
    if docs is None:
        raise ResourceNotFound(f"Trace {root} is not (or no longer) held by this nimbus.")
    return json_response({"Traces": [trace_document(root, docs)]})


async def get_service_map(request: Request) -> Response:
    minutes = query_int(request, "Minutes", 60, 1, 7 * 24 * 60)
    svc = services(request)
    end = time.time()
    start = end - minutes * 60
    store = await cluster_views.traces(svc, await _store(svc),
                                       {"Since": str(start), "Limit": str(MAX_TRACES)})
    traces = [docs for _, docs in store.traces()
              if any(end_of(d) >= start for d in docs)]
    return json_response({"StartTime": start, "EndTime": end, **service_map(traces)})


async def segments(request: Request) -> Response:
    """This node's own documents (``cluster_views.node_segments``): of the trace
    ``Root``, else of its newest ``Limit`` traces active since ``Since``."""
    root = request.query_params.get("Root")
    if root is not None:
        _check_root(root)
    raw_since = request.query_params.get("Since")
    try:
        since = float(raw_since) if raw_since is not None else None
    except ValueError:
        since = None
    if raw_since is not None and (since is None or since != since):  # NaN too
        raise InvalidParameterValue(f"Since ({raw_since!r}) must be epoch seconds.")
    limit = query_int(request, "Limit", 50, 1, MAX_TRACES)
    store = await _store(services(request))
    function = request.query_params.get("FunctionName")

    def answer() -> bytes:  # thousands of documents: off the event loop
        docs = cluster_views.node_segments(store, root, since, limit, function)
        return json.dumps({"Segments": docs}, separators=(",", ":")).encode()

    return Response(await blocking(answer), media_type="application/json")


routes = [
    Route("/_nimbus/traces", list_traces, methods=["GET"]),
    Route("/_nimbus/traces/{id}", get_trace, methods=["GET"]),
    Route("/_nimbus/service-map", get_service_map, methods=["GET"]),
    Route(cluster_views.SEGMENTS_PATH, segments, methods=["GET"]),
]
