"""The worker nodes a cluster's server sends invocations to (a nimbus extension), as it
sees them now: where each is, its memory, warm environments and invocations in flight."""

from __future__ import annotations

from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from nimbus.api.services import services
from nimbus.api.wire import json_response


async def cluster_nodes(request: Request) -> Response:
    svc = services(request)
    board = svc.engine.nodes
    nodes = [] if board is None else board.alive()
    return json_response({
        "Cluster": svc.config.cluster,
        "Role": svc.config.role,
        "Nodes": [asdict(node) for node in sorted(nodes, key=lambda n: n.node_id)],
    })


routes = [Route("/_nimbus/cluster", cluster_nodes, methods=["GET"])]
