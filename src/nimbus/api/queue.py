"""The async queue's state over HTTP (a nimbus extension): depth, oldest event age and
the dispatcher's counters, for dashboards, benchmarks and ``nimbus`` itself."""

from __future__ import annotations

from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus.api.services import services
from nimbus.api.wire import json_response


async def queue_stats(request: Request) -> Response:
    svc = services(request)
    stats = await svc.engine.queue.stats()
    return json_response({"Queue": asdict(stats), "Dispatcher": svc.dispatcher_counters()})


routes = [Route("/_nimbus/queue", queue_stats, methods=["GET"])]
