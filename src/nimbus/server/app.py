"""The nimbus HTTP server: the front door (data plane first) in front of one Starlette
app serving the control plane and health.

Start-up (migrations, opening stores) runs in the lifespan, off the event loop; the
process prints its endpoint only once the socket is bound and the store answers.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import signal
import socket
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nimbus import api, heap
from nimbus.api.auth import auth_middleware
from nimbus.api.services import services
from nimbus.api.wire import error_response, nimbus_error_handler, unexpected_error_handler
from nimbus.config import Config
from nimbus.errors import NimbusError, UnknownOperation
from nimbus.server.front_door import FrontDoor
from nimbus.server.http import HttpProtocol, connection_limit
from nimbus.server.node import Node
from nimbus.threads import blocking
from nimbus.ui import dashboard_middleware

log = logging.getLogger("nimbus")


async def health(request: Request) -> Response:
    svc = services(request)
    try:
        await blocking(svc.engine.db.ping)
    except Exception as exc:  # any store failure means not healthy
        return JSONResponse({"status": "unavailable", "store": str(exc)}, status_code=503)
    return JSONResponse({"status": "ok", "store": svc.engine.db.engine.dialect.name})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (404, 405):
        return error_response(
            UnknownOperation(f"No Lambda operation matches {request.method} {request.url.path}.")
        )
    return JSONResponse({"message": exc.detail}, status_code=exc.status_code)


def create_app(config: Config) -> FrontDoor:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        node = await blocking(Node.open, config)
        app.state.services = node.services
        app.state.data_plane = node.data_plane
        app.state.node = node
        await node.start()
        heap.settle()
        try:
            yield
        finally:
            await node.close()

    control_plane = Starlette(
        routes=[Route("/health", health, methods=["GET"]), *api.routes],
        lifespan=lifespan,
        middleware=[*dashboard_middleware(config), *auth_middleware(config)],  # /ui first
        exception_handlers={
            NimbusError: nimbus_error_handler,
            HTTPException: _http_error,
            Exception: unexpected_error_handler,
        },
    )
    # The data plane (function URLs, HTTP APIs) in front: its requests skip the rest.
    return FrontDoor(control_plane)


class _Server(uvicorn.Server):
    """Prints the endpoint once the socket is actually bound (port 0 resolved), and
    withdraws a worker node's announcement before it stops listening."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # The servers stop placing invocations here before the socket closes (refused
        # connections would be retried elsewhere anyway, but need not happen at all).
        front_door = self.config.app
        node = getattr(getattr(front_door, "app", None), "state", None)
        node = getattr(node, "node", None)
        if node is not None and node.announcer is not None:
            await node.announcer.close()
        await super().shutdown(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.should_exit:
            return
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                print(f"nimbus ready: http://{host}:{port}", flush=True)
                return


def serve(config: Config, sockets: list[socket.socket] | None = None) -> None:
    """Run the server until it is stopped; on ``sockets`` if given (bound already: the
    CLI binds a shared port itself, SO_REUSEPORT), else on ``config.host:port``."""
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # kill -USR1 <pid>: every thread's stack on stderr (a stop that hangs, a busy loop).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    # uvicorn's httptools protocol, with limits on slow and oversized requests.
    protocol = HttpProtocol.configured(
        header_timeout=config.http_header_timeout,
        body_timeout=config.http_body_timeout,
        max_connections=connection_limit(config.concurrency_limit),
    )
    uv_config = uvicorn.Config(
        create_app(config),
        host=config.host,
        port=config.port,
        loop="uvloop",
        http=protocol,
        timeout_keep_alive=5,  # an idle kept-alive connection is closed (uvicorn's default)
        log_level=config.log_level,
        access_log=False,
        # Clients talk to nimbus directly: an X-Forwarded-For from a local client must not
        # become the sourceIp a function sees (uvicorn trusts 127.0.0.1 by default).
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    _Server(uv_config).run(sockets=sockets)
