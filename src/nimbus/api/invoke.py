"""Invoke: ``POST /2015-03-31/functions/{name}/invocations``.

RequestResponse runs the function and answers with its result; Event answers 202 once
the event is durably queued (the dispatcher runs it); DryRun checks that the caller
could invoke it (204).

This is every invocation's path, so it is a bare ASGI app working on the raw scope (no
Request or Response objects): the router's route, and the front door's shortcut that
skips the router when there is no API auth, both call ``invoke_app``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from nimbus import codec
from nimbus.api.names import FunctionRef, parse_function_ref
from nimbus.api.services import Services, services, services_of
from nimbus.api.wire import error_response, read_body, receive_body, request_id_header
from nimbus.api.wire import unexpected_error_handler as unexpected
from nimbus.cluster.forward import REQUEST_ID_HEADER, VERSION_HEADER
from nimbus.errors import (
    InvalidParameterValue,
    InvalidRequestContent,
    NimbusError,
    RequestTooLarge,
)
from nimbus.models import MAX_ASYNC_PAYLOAD, MAX_SYNC_PAYLOAD

INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")
MAX_CLIENT_CONTEXT = 3583
_REQUEST_ID = re.compile(r"[0-9a-fA-F-]{36}")
PATH = re.compile(r"/2015-03-31/functions/([^/]+)/invocations")

_Reply = tuple[int, list[tuple[bytes, bytes]], bytes]


def decode_client_context(header: str | None) -> str | None:
    """X-Amz-Client-Context is base64 of a JSON object; the runtime gets the JSON."""
    if not header:
        return None
    if len(header) > MAX_CLIENT_CONTEXT:
        raise InvalidParameterValue(
            f"Client context must be at most {MAX_CLIENT_CONTEXT} bytes (base64-encoded)."
        )
    try:
        raw = base64.b64decode(header, validate=True).decode()
        if not isinstance(json.loads(raw), dict):
            raise ValueError("not an object")
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidParameterValue(
            f"Client context must be a valid Base64-encoded JSON object: {exc}"
        ) from exc
    return raw


def check_payload(payload: bytes) -> bytes:
    """Lambda requires the request payload to be JSON; empty means ``{}``."""
    if not payload.strip():
        return b"{}"
    try:
        codec.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequestContent(
            f"Could not parse request body into json: {exc}. The payload must be valid JSON."
        ) from exc
    return payload


def _header(raw: dict[bytes, bytes], name: bytes) -> str | None:
    value = raw.get(name)
    return value.decode("latin-1") if value is not None else None


def _qualifier(query: bytes) -> str | None:
    if not query:
        return None
    found = None
    for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if key == "Qualifier":
            found = value  # the last one, as Starlette's QueryParams would give
    return found


async def invoke_app(scope: Scope, receive: Receive, send: Send, name: str) -> None:
    """Serve one Invoke request for function ``name`` (as it appears in the path)."""
    try:
        status, headers, body = await _invoke(scope, receive, name)
    except NimbusError as exc:
        await error_response(exc)(scope, receive, send)
        return
    except Exception as exc:
        await (await unexpected(Request(scope, receive), exc))(scope, receive, send)
        return
    if status != 204:  # a 204 has no body and no Content-Length (RFC 9110)
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _invoke(scope: Scope, receive: Receive, name: str) -> _Reply:
    svc = services_of(scope)
    raw = dict(scope["headers"])  # looked up once: this is every invocation's path
    ref = parse_function_ref(name, svc.config, _qualifier(scope["query_string"]))
    kind = _header(raw, b"x-amz-invocation-type") or "RequestResponse"
    if kind not in INVOCATION_TYPES:
        raise InvalidParameterValue(
            f"InvocationType {kind} is not valid; use one of {', '.join(INVOCATION_TYPES)}."
        )
    log_type = _header(raw, b"x-amz-log-type") or "None"
    if log_type not in ("None", "Tail"):
        raise InvalidParameterValue(f"LogType {log_type} is not valid; use None or Tail.")
    payload = check_payload(await receive_body(receive, MAX_SYNC_PAYLOAD, "InvokeFunction"))
    client_context = decode_client_context(_header(raw, b"x-amz-client-context"))
    trace_id = _header(raw, b"x-amzn-trace-id")
    if kind == "DryRun":
        version = await svc.engine.invoker.dry_run(ref.name, ref.qualifier)
        return 204, [(b"x-amz-executed-version", version.version.encode()), _rid()], b""
    if kind == "Event":
        if len(payload) > MAX_ASYNC_PAYLOAD:
            raise RequestTooLarge(
                f"Request must be smaller than {MAX_ASYNC_PAYLOAD} bytes for the "
                "InvokeFunction operation with InvocationType Event"
            )
        queued = await _enqueue(svc, ref, payload, trace_id)
        return 202, [(b"x-amzn-requestid", queued.encode())], b""
    invoker = svc.engine.invoker
    # A worker node runs what a server placed on it under the server's request id; a
    # placed invocation runs where it lands, never placed again (no loop between nodes).
    placed = _header(raw, REQUEST_ID_HEADER.encode())
    if placed is not None and not _REQUEST_ID.fullmatch(placed):
        raise InvalidParameterValue(f"{REQUEST_ID_HEADER} must be a request id (a UUID).")
    picked = _header(raw, VERSION_HEADER.encode()) if placed is not None else None
    number, _, revision = (picked or "").partition(":")
    result = await invoker.invoke(
        ref.name, ref.qualifier, payload, client_context, trace_id,
        placed if svc.config.role == "worker" else None, placed=placed is not None,
        picked=(number, revision) if number and revision else None)
    headers = [
        (b"content-type", b"application/json"),
        (b"x-amz-executed-version", result.executed_version.encode()),
        (b"x-amzn-requestid", result.request_id.encode()),
    ]
    if result.function_error:
        headers.append((b"x-amz-function-error", result.function_error.encode()))
    if log_type == "Tail":
        headers.append((b"x-amz-log-result", base64.b64encode(result.log_tail)))
    return 200, headers, result.payload


async def _enqueue(svc: Services, ref: FunctionRef, payload: bytes, trace_id: str | None) -> str:
    """Queue an event durably for a function that exists and can run; its request id."""
    await svc.engine.invoker.dry_run(ref.name, ref.qualifier)
    return await svc.engine.dispatcher.enqueue(ref.name, ref.qualifier, payload, trace_id)


async def invoke_async(request: Request) -> Response:
    """The legacy ``InvokeAsync`` (``POST /2014-11-13/functions/{name}/invoke-async/``),
    still used by older tools: an Event invocation on the durable queue, answered with
    ``{"Status": 202}``. As on Lambda, it passes no trace header on."""
    svc = services(request)
    ref = parse_function_ref(request.path_params["name"], svc.config, None)
    payload = check_payload(await read_body(request, MAX_ASYNC_PAYLOAD, "InvokeAsync"))
    request_id = await _enqueue(svc, ref, payload, None)
    return JSONResponse({"Status": 202}, 202, headers={"x-amzn-RequestId": request_id})


def _rid() -> tuple[bytes, bytes]:
    ((name, value),) = request_id_header().items()
    return name.lower().encode(), value.encode()


class _InvokeRoute:
    """The router's endpoint: an ASGI app (Starlette passes the path parameters)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await invoke_app(scope, receive, send, scope["path_params"]["name"])


routes = [
    Route("/2015-03-31/functions/{name}/invocations", _InvokeRoute(), methods=["POST"]),
    # botocore's model has no trailing slash; Lambda's documentation and the CLI use one.
    Route("/2014-11-13/functions/{name}/invoke-async", invoke_async, methods=["POST"]),
    Route("/2014-11-13/functions/{name}/invoke-async/", invoke_async, methods=["POST"]),
]
