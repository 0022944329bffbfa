"""Invoke: ``POST /2015-03-31/functions/{name}/invocations``.

RequestResponse runs the function and answers with its result; Event answers 202 once
the event is durably queued (the dispatcher runs it); DryRun checks that the caller
could invoke it (204).
"""

from __future__ import annotations

import base64
import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from nimbus.api.names import parse_function_ref
from nimbus.api.wire import error_response, read_body, unexpected_error_handler
from nimbus.errors import InvalidParameterValue, NimbusError, RequestTooLarge
from nimbus.invoker import MAX_SYNC_PAYLOAD, check_payload, decode_client_context
from nimbus.services import services

INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")
MAX_ASYNC_PAYLOAD = 256 * 1024


def _header(raw: dict[bytes, bytes], name: bytes) -> str | None:
    value = raw.get(name)
    return value.decode("latin-1") if value is not None else None


async def invoke(request: Request) -> Response:
    svc = services(request)
    # Looked up once from the raw list: this is the hot path of every invocation.
    raw = dict(request.scope["headers"])
    qualifier = request.query_params.get("Qualifier") if request.scope["query_string"] else None
    ref = parse_function_ref(request.path_params["name"], svc.config, qualifier)
    kind = _header(raw, b"x-amz-invocation-type") or "RequestResponse"
    if kind not in INVOCATION_TYPES:
        raise InvalidParameterValue(
            f"InvocationType {kind} is not valid; use one of {', '.join(INVOCATION_TYPES)}."
        )
    log_type = _header(raw, b"x-amz-log-type") or "None"
    if log_type not in ("None", "Tail"):
        raise InvalidParameterValue(f"LogType {log_type} is not valid; use None or Tail.")
    payload = check_payload(await read_body(request, MAX_SYNC_PAYLOAD, "InvokeFunction"))
    client_context = decode_client_context(_header(raw, b"x-amz-client-context"))
    if kind == "DryRun":
        version = await svc.invoker.dry_run(ref.name, ref.qualifier)
        return Response(status_code=204, headers={"X-Amz-Executed-Version": version.version})
    if kind == "Event":
        if len(payload) > MAX_ASYNC_PAYLOAD:
            raise RequestTooLarge(
                f"Request must be smaller than {MAX_ASYNC_PAYLOAD} bytes for the "
                "InvokeFunction operation with InvocationType Event"
            )
        await svc.invoker.dry_run(ref.name, ref.qualifier)  # exists and can run
        request_id = await svc.dispatcher.enqueue(
            ref.name, ref.qualifier, payload, trace_id=_header(raw, b"x-amzn-trace-id")
        )
        return Response(status_code=202, headers={"x-amzn-RequestId": request_id})
    result = await svc.invoker.invoke(
        ref.name,
        ref.qualifier,
        payload,
        client_context,
        trace_id=_header(raw, b"x-amzn-trace-id"),
    )
    headers = {
        "X-Amz-Executed-Version": result.executed_version,
        "x-amzn-RequestId": result.request_id,
    }
    if result.function_error:
        headers["X-Amz-Function-Error"] = result.function_error
    if log_type == "Tail":
        headers["X-Amz-Log-Result"] = base64.b64encode(result.log_tail).decode()
    return Response(result.payload, status_code=200, headers=headers, media_type="application/json")


PATH = re.compile(r"/2015-03-31/functions/([^/]+)/invocations")


async def invoke_app(scope: Scope, receive: Receive, send: Send, name: str) -> None:
    """Invoke as a bare ASGI app, for the hot path to skip Starlette's router and
    exception middleware (``gateway.serve`` calls it); errors are rendered here."""
    request = Request({**scope, "path_params": {"name": name}}, receive)
    try:
        response = await invoke(request)
    except NimbusError as exc:
        response = error_response(exc)
    except Exception as exc:
        response = await unexpected_error_handler(request, exc)
    await response(scope, receive, send)


routes = [Route("/2015-03-31/functions/{name}/invocations", invoke, methods=["POST"])]
