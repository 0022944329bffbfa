"""One HTTP-triggered invocation: the event in, the function's answer out as HTTP.

Shared by function URLs and HTTP APIs, which differ only in how a request finds its
function and in the status of a failure (502 for function URLs, 500 for HTTP APIs).
Errors of the platform (throttles, a function that cannot run) come back in API
Gateway's shape, ``{"message": ...}`` with ``x-amzn-ErrorType``, so a client can tell
them from the function's own 5xx.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from nimbus import codec
from nimbus.errors import NimbusError, TooManyRequests
from nimbus.gateway.event import HttpRequest
from nimbus.gateway.reply import (
    HttpReply,
    InvalidFunctionResponse,
    function_error_reply,
    invalid_response_reply,
    plain_reply,
    reply_from_result,
    throttled_reply,
    too_large_reply,
)
from nimbus.invoker import MAX_SYNC_PAYLOAD, Invoker, InvokeResult

log = logging.getLogger("nimbus.gateway")


def error_reply(exc: NimbusError) -> HttpReply:
    """A platform error as the gateway answers it."""
    return plain_reply(exc.status, exc.message, exc.type_name, list(exc.headers().items()))


async def invoke(
    invoker: Invoker,
    function: str,
    qualifier: str | None,
    event: dict[str, Any],
    request: HttpRequest,
    *,
    function_url: bool,
    content_type: str,
    timeout_s: float | None = None,
) -> HttpReply:
    """Run ``function`` with ``event`` and map its result to the HTTP reply."""
    payload = codec.dumps(event)
    if len(payload) > MAX_SYNC_PAYLOAD:
        return too_large_reply()
    call = invoker.invoke(
        function, qualifier, payload, trace_id=request.trace_id, request_id=request.request_id
    )
    try:
        if timeout_s is None:
            result = await call
        else:
            result = await _within(call, timeout_s)
            if result is None:
                return plain_reply(504, "Endpoint request timed out", "IntegrationTimeoutException")
    except TooManyRequests:
        return throttled_reply(1)
    except NimbusError as exc:
        log.info("%s could not be invoked over HTTP: %s", function, exc.message)
        return error_reply(exc)
    if result.function_error:
        return function_error_reply(function_url=function_url)
    try:
        return reply_from_result(result.payload, default_content_type=content_type)
    except InvalidFunctionResponse as exc:
        log.info("%s returned a response HTTP cannot carry: %s", function, exc)
        return invalid_response_reply(function_url=function_url)


async def _within(call: Coroutine[Any, Any, InvokeResult], timeout_s: float) -> InvokeResult | None:
    """The result, or None once ``timeout_s`` passed: the invocation still runs to its own
    end (its environment stays consistent); only the client stops waiting, as with API
    Gateway's integration timeout."""
    task = asyncio.ensure_future(call)
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        task.add_done_callback(_forget)
        return None
    return task.result()


def _forget(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.info("an invocation the client stopped waiting for failed: %s", task.exception())
