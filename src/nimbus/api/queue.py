"""The async queue's state over HTTP (a nimbus extension): depth, oldest event age and
the dispatcher's counters, for dashboards, benchmarks and ``nimbus`` itself."""

from __future__ import annotations

from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus.api.wire import json_response
from nimbus.services import services


async def queue_stats(request: Request) -> Response:
    svc = services(request)
    stats = await svc.queue.stats()
    return json_response({"Queue": asdict(stats), "Dispatcher": svc.dispatcher_counters()})


routes = [Route("/_nimbus/queue", queue_stats, methods=["GET"])]
