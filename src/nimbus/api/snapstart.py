"""This server's SnapStart templates over HTTP (a nimbus extension): one per published
version initialised here, with its init time, memory and the environments forked from
it, for operators and benchmarks (``GET /_nimbus/snapstart``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus.api.services import services
from nimbus.api.wire import json_response


async def snapstart_templates(request: Request) -> Response:
    svc = services(request)
    templates = [
        {
            "FunctionName": t.function_name,
            "Version": t.version,
            "Pid": t.pid,
            "InitDurationMs": t.init_ms,
            "MemoryBytes": t.memory_bytes,  # the template's own cgroup usage
            "Environments": t.environments,  # alive now, forked from it
            "Forks": t.forks,  # environments forked from it so far
            "Cells": t.cells,  # forked ahead, each in its own cgroup, waiting for a start
            "Created": t.created,  # epoch seconds
            "LastUsed": t.last_used,
        }
        for t in svc.engine.pool.manager.templates.infos()
    ]
    return json_response({"Templates": templates})


routes = [Route("/_nimbus/snapstart", snapstart_templates, methods=["GET"])]
