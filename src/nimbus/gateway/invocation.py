"""One HTTP-triggered invocation: the event in, the function's answer out as HTTP.

Shared by function URLs and HTTP APIs (``HttpTrigger``), which differ only in how a
request finds its function and in the status of a failure (502 for function URLs, 500
for HTTP APIs).
Errors of the platform (throttles, a function that cannot run) come back in API
Gateway's shape, ``{"message": ...}`` with ``x-amzn-ErrorType``, so a client can tell
them from the function's own 5xx.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any

from starlette.types import Scope

from nimbus import codec, ids
from nimbus.config import Config
from nimbus.errors import InvalidSignature, NimbusError, SignatureRejected, TooManyRequests
from nimbus.gateway.cors import Cors
from nimbus.gateway.event import HttpRequest
from nimbus.gateway.limits import UsageGate
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
from nimbus.invocation.invoker import Invoker, InvokeResult
from nimbus.models import MAX_SYNC_PAYLOAD
from nimbus.observe.tracing import API_ORIGIN, URL_ORIGIN, TraceHeader, http_trace_header
from nimbus.sigv4.credentials import Credentials
from nimbus.sigv4.verification import Caller, verify

log = logging.getLogger("nimbus.gateway")
TRACE_HEADER = "x-amzn-trace-id"


class HttpTrigger:
    """What function URLs and HTTP APIs share: the invoker, the usage gate, the key pair
    SigV4 callers are checked against, CORS around a reply, and the domain name a
    function is told it was called at."""

    service = ""  # SigV4 service name of AWS_IAM callers
    domain_suffix = ""  # after "<id>.": AWS's domain, for a request without a Host

    def __init__(
        self, invoker: Invoker, gate: UsageGate, credentials: Credentials, config: Config
    ) -> None:
        self.invoker = invoker
        self.gate = gate
        self.credentials = credentials
        self.config = config

    async def with_cors(
        self, cors: Cors | None, request: HttpRequest, reply: Callable[[], Awaitable[HttpReply]]
    ) -> HttpReply:
        """A preflight's answer, else ``reply()`` with the CORS headers it calls for."""
        if cors is None:
            return await reply()
        preflight = cors.preflight(request.method, request.headers)
        if preflight is not None:
            return preflight
        return cors.apply(request.headers, await reply())

    def caller(self, request: HttpRequest, scope: Scope) -> Caller | None:
        """Who signed the request (AWS_IAM), or None when it is unsigned or its signature
        does not verify: the caller gets a bare 403.

        The client signed the path it sent (``/lambda-url/<id>/...``), so that is checked."""
        try:
            return verify(
                request.method,
                scope.get("raw_path") or scope["path"],
                scope.get("query_string", b""),
                request.headers,
                request.body,
                self.credentials,
                region=self.config.region,
                service=self.service,
            )
        except (SignatureRejected, InvalidSignature):
            return None

    def domain(self, request: HttpRequest, resource_id: str) -> str:
        """The host the client used, without its port (``<id>.lambda-url.localhost`` when
        it addressed the trigger by name), as Lambda reports the domain the request came
        to; AWS's domain only for a request without a Host header."""
        host = _host_name(request.header("host"))
        if host:
            return host
        return f"{resource_id}.{self.domain_suffix.format(region=self.config.region)}"


def error_reply(exc: NimbusError) -> HttpReply:
    """A platform error as the gateway answers it."""
    return plain_reply(exc.status, exc.message, exc.type_name, list(exc.headers().items()))


ResultReply = Callable[[bytes], HttpReply]
"""Maps a function's successful result to the reply (its payload format's mapping);
raises InvalidFunctionResponse for a result it cannot carry."""


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
    result_reply: ResultReply | None = None,
) -> HttpReply:
    """Run ``function`` with ``event`` and map its result to the HTTP reply, recording
    the trigger's segment (the function URL, or the HTTP API's stage) as its caller.

    ``result_reply`` maps a successful result: payload format 2.0's mapping (with
    ``content_type`` for a body without one) unless given (1.0: reply_from_result_v1)."""
    context = event.get("requestContext") or {}
    api_id = str(context.get("apiId", ""))
    if function_url:
        origin, name = URL_ORIGIN, f"lambda-url/{api_id}"
    else:
        origin, name = API_ORIGIN, f"{api_id}/{context.get('stage', '$default')}"
    # The caller's X-Amzn-Trace-Id, else its W3C traceparent, else the new root the
    # request was given; the function's Parent is the trigger's segment.
    incoming = request.trace or http_trace_header(
        request.header("x-amzn-trace-id"), request.header("traceparent")
    )
    incoming = incoming or TraceHeader.parse(request.trace_id) or TraceHeader.new()
    segment_id = ids.segment_id()
    trace = str(incoming.child(segment_id))
    pass_trace_header(event, trace)
    mapping = result_reply or partial(reply_from_result, default_content_type=content_type)
    reply = await _invoke(invoker, function, qualifier, event, request, trace, mapping,
                          function_url=function_url, timeout_s=timeout_s)
    tracer = getattr(invoker, "tracer", None)  # test doubles of the invoker have none
    if tracer is not None and tracer.enabled and (
            incoming.sampled or tracer.sampled(incoming.root)):
        http = {"request": {"method": request.method, "url": request.raw_path},
                "response": {"status": reply.status}}
        tracer.trigger(origin, name, incoming, request.time_epoch_ms / 1000, time.time(),
                       segment_id=segment_id, error=400 <= reply.status < 500,
                       fault=reply.status >= 500, http=http)
    return reply


def pass_trace_header(event: dict[str, Any], trace: str) -> None:
    """Set the event's ``X-Amzn-Trace-Id`` to ``trace`` (what the function is told its
    caller sent): every spelling of it in ``headers`` and a 1.0 event's
    ``multiValueHeaders`` replaced by one, under the first spelling found, else
    ``X-Amzn-Trace-Id`` in a 1.0 event and ``x-amzn-trace-id`` in a 2.0 one."""
    multi = event.get("multiValueHeaders")
    default = "X-Amzn-Trace-Id" if isinstance(multi, dict) else TRACE_HEADER
    for key, value in (("headers", trace), ("multiValueHeaders", [trace])):
        headers = event.get(key)
        if not isinstance(headers, dict):
            continue
        found = [name for name in headers if name.lower() == TRACE_HEADER]
        for name in found:
            del headers[name]
        headers[found[0] if found else default] = value


async def _invoke(
    invoker: Invoker,
    function: str,
    qualifier: str | None,
    event: dict[str, Any],
    request: HttpRequest,
    trace: str,
    result_reply: ResultReply,
    *,
    function_url: bool,
    timeout_s: float | None = None,
) -> HttpReply:
    payload = codec.dumps(event)
    if len(payload) > MAX_SYNC_PAYLOAD:
        return too_large_reply()
    call = invoker.invoke(
        function, qualifier, payload, trace_id=trace, request_id=request.request_id
    )
    try:
        if timeout_s is None:
            result = await call
        else:
            within = await _within(call, timeout_s)
            if within is None:
                return plain_reply(504, "Endpoint request timed out", "IntegrationTimeoutException")
            result = within
    except TooManyRequests:
        return throttled_reply(1)
    except NimbusError as exc:
        log.info("%s could not be invoked over HTTP: %s", function, exc.message)
        return error_reply(exc)
    if result.function_error:
        return function_error_reply(function_url=function_url)
    try:
        return result_reply(result.payload)
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


def _host_name(value: str | None) -> str | None:
    """A Host header's host, without the port (``[::1]:9000`` gives ``[::1]``)."""
    if not value:
        return None
    if value.startswith("["):  # an IPv6 literal
        return value[: value.find("]") + 1] or None
    return value.partition(":")[0].lower() or None
