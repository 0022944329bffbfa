"""The data plane's request handling: which requests are function-URL or HTTP-API
requests, reading their bodies within Lambda's limits, and sending the trigger's reply.

User HTTP requests for function URLs and HTTP APIs never go through Starlette's router
(they are the hot path, and their paths belong to the user): the server's front door
asks ``target`` whether a request is one, and hands it to ``DataPlane``.

Addressing (README "HTTP triggers"):

- ``http://HOST:PORT/lambda-url/<url-id>/<path>``: a function URL (``FunctionUrl`` in
  the API), or ``Host: <url-id>.lambda-url.<anything>`` with the path as is;
- ``http://HOST:PORT/execute-api/<api-id>/<stage>/<path>``: an HTTP API
  (``ApiEndpoint``; no stage segment for the ``$default`` stage), or
  ``Host: <api-id>.execute-api.<anything>``.
"""

from __future__ import annotations

import logging
import re

from starlette.types import Receive, Scope, Send

from nimbus import ids
from nimbus.clock import now_ms
from nimbus.gateway.apis import HttpApis
from nimbus.gateway.event import HttpRequest
from nimbus.gateway.headers import first_header
from nimbus.gateway.reply import HttpReply, plain_reply, too_large_reply
from nimbus.gateway.urls import FunctionUrls
from nimbus.models import MAX_SYNC_PAYLOAD
from nimbus.observe.tracing import TraceHeader, http_trace_header

log = logging.getLogger("nimbus.gateway")
URL_PREFIX = "/lambda-url/"
API_PREFIX = "/execute-api/"
MAX_HEADERS = 10 * 1024  # API Gateway: request line and headers, 10,240 bytes
# Statuses whose responses never have a body.
_NO_BODY = frozenset({204, 304})
_HOST = re.compile(rb"^([a-z0-9]+)\.(lambda-url|execute-api)\.")


class TooLarge(Exception):
    """The request's body is over ``MAX_SYNC_PAYLOAD``."""


class ClientGone(Exception):
    """The client disconnected before its request's body was complete."""


class DataPlane:
    """Serves data-plane requests: function URLs (``urls``) and HTTP APIs (``apis``).

    It answers its own unexpected errors, in API Gateway's shape rather than the Lambda
    API's."""

    def __init__(self, urls: FunctionUrls, apis: HttpApis) -> None:
        self.urls = urls
        self.apis = apis

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, target: tuple[str, str, str]
    ) -> None:
        try:
            reply = await self._serve(*target, scope, receive)
        except Exception:
            log.exception("the gateway failed on %s %s", scope["method"], scope["path"])
            reply = plain_reply(500, "Internal Server Error", "InternalServerErrorException")
        if reply is not None:
            await _send(send, reply)

    async def _serve(
        self, kind: str, resource_id: str, path: str, scope: Scope, receive: Receive
    ) -> HttpReply | None:
        """The reply to one data-plane request; None when the client is gone."""
        try:
            request = await _read(scope, receive, path)
        except TooLarge:
            return too_large_reply()
        except ClientGone:
            # Nobody to answer, and a truncated body must not reach the function.
            return None
        if sum(len(k) + len(v) for k, v in request.headers) > MAX_HEADERS:
            reply = plain_reply(431, "Request Header Fields Too Large", "BadRequestException")
        elif kind == "lambda-url":
            reply = await self.urls.serve(resource_id, request, scope)
        else:
            reply = await self.apis.serve(resource_id, request, scope)
        reply.headers.append(("x-amzn-RequestId", request.request_id))
        return reply


def target(scope: Scope) -> tuple[str, str, str] | None:
    """(kind, id, path the trigger sees) for a data-plane request, else None."""
    path: str = scope["path"]
    raw = (scope.get("raw_path") or path.encode()).decode("latin-1")
    for prefix, kind in ((URL_PREFIX, "lambda-url"), (API_PREFIX, "execute-api")):
        if raw.startswith(prefix):
            rest = raw[len(prefix) :]
            resource_id, _, tail = rest.partition("/")
            return kind, resource_id, "/" + tail
    for name, value in scope["headers"]:
        if name == b"host":
            match = _HOST.match(value)
            if match:
                return match[2].decode(), match[1].decode(), raw
            break
    return None


async def _read(scope: Scope, receive: Receive, path: str) -> HttpRequest:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= MAX_SYNC_PAYLOAD:
            chunks.append(chunk)
        if not message.get("more_body"):
            break
    if size > MAX_SYNC_PAYLOAD:
        raise TooLarge
    client = scope.get("client")
    server = scope.get("server")
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
    # Lambda passes the caller's X-Ray header on (a W3C traceparent as one), or starts a
    # trace: what either payload format's event carries.
    trace = (
        http_trace_header(
            first_header(headers, "x-amzn-trace-id"), first_header(headers, "traceparent")
        )
        or TraceHeader.new()
    )
    return HttpRequest(
        method=scope["method"],
        raw_path=path,
        raw_query=scope.get("query_string", b"").decode("latin-1"),
        headers=headers,
        body=b"".join(chunks),
        source_ip=client[0] if client else "127.0.0.1",
        protocol=f"HTTP/{scope.get('http_version', '1.1')}",
        request_id=ids.request_id(),
        time_epoch_ms=now_ms(),
        scheme=scope.get("scheme", "http"),
        server_port=server[1] if server else None,
        trace_id=str(trace),
        trace=trace,
    )


async def _send(send: Send, reply: HttpReply) -> None:
    headers = [(k.lower().encode("latin-1"), _octets(v)) for k, v in reply.headers]
    body = reply.body
    if reply.status in _NO_BODY:
        # These responses end at their headers (RFC 9110 6.4.1): a body the function
        # returned anyway would be read by the client as the start of the next response
        # on a kept-alive connection, and a Content-Length is not allowed on a 204.
        body = b""
    elif not any(k == b"content-length" for k, _ in headers):
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _octets(value: str) -> bytes:
    """A header value on the wire: latin-1 as HTTP has it, UTF-8 for what it cannot hold
    (a function may set any string)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8")
