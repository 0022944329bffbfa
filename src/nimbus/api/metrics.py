"""Metrics and cost over HTTP: ``GET /metrics`` (Prometheus' text format: the server's
and every async worker's counts together), ``GET /_nimbus/metrics`` (a function's
1-minute series, JSON, for the dashboard) and ``GET /_nimbus/cost`` (what the
invocations since a time would cost on Lambda, per function). On a cluster server the
last two include what its worker nodes ran (``cluster_views``; each node serves its own
minutes at ``GET /_nimbus/metrics/minutes``); ``/metrics`` stays each node's own, as
Prometheus expects of the targets it scrapes.

``/metrics`` is not exempt from ``api_auth``: it names every function and its activity,
and sandboxed functions share the loopback. With ``api_auth = "sigv4"`` a scraper must
sign (or scrape through a proxy that does); with the default it is open like the API.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus.api import cluster_views
from nimbus.api.names import parse_function_ref
from nimbus.api.services import Services, services
from nimbus.api.wire import json_response, query_int
from nimbus.errors import InvalidParameterValue
from nimbus.events.sources.supervisor import supervisor_for
from nimbus.observe import node_series
from nimbus.observe.cost import CostModel
from nimbus.observe.metrics import SERIES_MINUTES, MappingFigures
from nimbus.store.event_source_mappings import MappingStore
from nimbus.threads import blocking


async def prometheus(request: Request) -> Response:
    svc = services(request)
    mappings = await blocking(_mapping_figures, svc)
    body = svc.engine.metrics.exposition(mappings)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def _mapping_figures(svc: Services) -> list[MappingFigures]:
    """The figures of the event source mappings this process polls (blocking)."""
    supervisor = supervisor_for(svc.engine.db)
    if supervisor is None or not supervisor.stats:
        return []
    functions = {m.uuid: m.function_name for m in MappingStore(svc.engine.db).all()}
    return [
        MappingFigures(uuid, functions[uuid], dict(stats.counters), stats.oldest_age_ms)
        for uuid, stats in sorted(supervisor.stats.items())
        if uuid in functions  # a deleted mapping's figures go with it
    ]


async def series(request: Request) -> Response:
    """``FunctionName`` (optional: every function with data) and ``Minutes`` (1-1440)."""
    svc = services(request)
    metrics = svc.engine.metrics
    minutes = query_int(request, "Minutes", 60, 1, SERIES_MINUTES)
    cost = CostModel(svc.config.pricing)
    raw = request.query_params.get("FunctionName")
    name = None if raw is None else parse_function_ref(raw, svc.config).name
    held = await cluster_views.series(svc, metrics.clock() // 60_000 - minutes + 1)
    if name is None:
        names = sorted(held)
    else:
        if name not in held:
            await blocking(svc.engine.functions.get_record, name)  # ResourceNotFound
        names = [name]
    functions = []
    for name in names:
        p50, p99 = metrics.period_durations(name, minutes, held)
        functions.append({
            "FunctionName": name,
            "Points": [p.as_json() for p in metrics.points(name, minutes, cost, held)],
            # Over the whole range: what a period statistic is (not a minute's highest).
            "DurationP50": p50,
            "DurationP99": p99,
        })
    return json_response({"Minutes": minutes, "PeriodSeconds": 60, "Functions": functions})


async def cost(request: Request) -> Response:
    """``Since`` (ISO 8601 or epoch seconds; default: as far back as nimbus holds) and
    an optional ``FunctionName``."""
    svc = services(request)
    metrics = svc.engine.metrics
    now_ms = metrics.clock()
    oldest = now_ms // 60_000 - SERIES_MINUTES + 1
    since_raw = request.query_params.get("Since")
    since_minute = oldest if since_raw is None else _minute_of(since_raw)
    if since_minute * 60_000 > now_ms:
        raise InvalidParameterValue(f"Since ({since_raw}) is in the future.")
    # Usage is kept by the minute, for a day: an older Since covers what is held.
    since_minute = max(since_minute, oldest)
    usages = metrics.usage(since_minute, await cluster_views.series(svc, since_minute))
    model = CostModel(svc.config.pricing)
    per_function, total = model.per_function(usages)
    raw = request.query_params.get("FunctionName")
    if raw is not None:
        name = parse_function_ref(raw, svc.config).name
        if name not in per_function:
            await blocking(svc.engine.functions.get_record, name)  # ResourceNotFound
        per_function = {k: v for k, v in per_function.items() if k == name}
    body: dict[str, Any] = {
        "Since": _iso(since_minute * 60_000),
        "Until": _iso(now_ms),
        "Functions": [{"FunctionName": k, **v.as_json()} for k, v in sorted(per_function.items())],
        "Total": total.as_json(),
        "Pricing": svc.config.pricing.model_dump(),
    }
    return json_response(body)


async def minutes(request: Request) -> Response:
    """This node's own minutes from ``Since`` (epoch minutes) on, as a cluster server
    adds them to its own (``observe.node_series``)."""
    metrics = services(request).engine.metrics
    now_minute = metrics.clock() // 60_000
    # A day of slack above now: the asking server's clock may run ahead of this one's.
    since = query_int(request, "Since", now_minute - SERIES_MINUTES + 1, 0, now_minute + 1440)
    return json_response({"Minutes": node_series.export(metrics.series, since)})


def _minute_of(raw: str) -> int:
    """The epoch minute of ``Since`` (rounded down: the minute holding it counts)."""
    try:
        if raw.replace(".", "", 1).isdigit():
            return int(float(raw) * 1000) // 60_000
        when = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except (ValueError, OverflowError):  # OverflowError: more seconds than a float holds
        when = None
    if when is None:
        raise InvalidParameterValue(
            f"Since ({raw!r}) must be an ISO 8601 time (2024-05-01T12:00:00Z) or epoch "
            "seconds."
        )
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000) // 60_000


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat().replace("+00:00", "Z")


routes = [
    Route("/metrics", prometheus, methods=["GET"]),
    Route("/_nimbus/metrics", series, methods=["GET"]),
    Route("/_nimbus/cost", cost, methods=["GET"]),
    Route(cluster_views.MINUTES_PATH, minutes, methods=["GET"]),
]
