"""The server's outermost ASGI app: routes each request to the data plane or the
control plane.

Function-URL and HTTP-API requests (``gateway.serve.target``) go to the node's
``DataPlane``; they sit outside Starlette's middleware, so those requests skip its layers
(each wraps every send). Everything else (the Lambda API, /health, lifespan) goes to the
control plane's Starlette app, except the busiest call: ``Invoke`` skips the router when
no API auth is configured (``invoke_app`` answers its own errors in the Lambda API's
shape).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from nimbus.api.invoke import PATH as INVOKE_PATH
from nimbus.api.invoke import invoke_app
from nimbus.api.s3 import s3_target
from nimbus.api.s3 import serve as serve_s3
from nimbus.gateway.serve import target


class FrontDoor:
    """Routes data-plane requests to ``app.state.data_plane`` and the rest to ``app``."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope["app"] = self.app  # as Starlette sets it: handlers find the services there
        if scope["method"] == "POST":
            invoke = INVOKE_PATH.fullmatch(scope["path"])
            if invoke is not None and self.app.state.services.config.api_auth == "none":
                await invoke_app(scope, receive, send, invoke[1])
                return
        found = target(scope)
        if found is None:
            s3 = s3_target(scope)  # S3 streams its bodies: past the router and middleware
            if s3 is not None:
                await serve_s3(scope, receive, send, s3)
                return
            await self.app(scope, receive, send)
        else:
            await self.app.state.data_plane(scope, receive, send, found)
