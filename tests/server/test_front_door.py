"""The front door: what it routes where (data plane or control plane), and how it answers
when the data plane fails unexpectedly."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from nimbus.gateway.event import HttpRequest
from nimbus.gateway.reply import HttpReply
from nimbus.gateway.serve import DataPlane
from nimbus.server.front_door import FrontDoor


class BrokenUrls:
    async def serve(self, url_id: str, request: HttpRequest, scope: dict[str, Any]) -> HttpReply:
        raise RuntimeError("a bug in the data plane")


def app() -> FrontDoor:
    async def control(request: Request) -> PlainTextResponse:
        return PlainTextResponse("control plane")

    starlette = Starlette(routes=[Route("/{path:path}", control, methods=["GET", "POST"])])
    starlette.state.services = SimpleNamespace(config=SimpleNamespace(api_auth="sigv4"))
    starlette.state.data_plane = DataPlane(BrokenUrls(), None)
    return FrontDoor(starlette)


async def test_a_data_plane_failure_answers_in_api_gateways_shape() -> None:
    transport = httpx.ASGITransport(app=app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://nimbus") as client:
        response = await client.get("/lambda-url/abc123/hello")
        assert response.status_code == 500
        assert response.headers["x-amzn-errortype"] == "InternalServerErrorException"
        assert response.json() == {"message": "Internal Server Error"}
        # Everything else is the control plane's.
        other = await client.get("/2015-03-31/functions")
        assert (other.status_code, other.text) == (200, "control plane")
