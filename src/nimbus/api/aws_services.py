"""The AWS services nimbus speaks besides Lambda, and the routes that serve them.

``SERVICES`` lists them (each an ``AwsService``: botocore's service name and its handlers);
the protocol layer (``nimbus.protocol``) parses their requests and writes their answers
from botocore's service models. One route, mounted after Lambda's so nothing of Lambda's
routing changes, takes every request a registered service claims (``Router.claim``:
``X-Amz-Target``, SigV4 scope, query ``Action``, REST ``requestUri`` templates); what no
service claims falls through to Lambda's ``UnknownOperationException`` as before.

The router is built from ``SERVICES`` on first use (services register at import time:
nothing is loaded per request).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from nimbus.api.cloudwatch_logs import LOGS
from nimbus.api.scheduler import SCHEDULER
from nimbus.api.services import services_of
from nimbus.api.sns import SNS
from nimbus.api.sqs import SQS
from nimbus.errors import NimbusError
from nimbus.protocol import endpoint
from nimbus.protocol.errors import AwsError
from nimbus.protocol.messages import HttpRequest, HttpResponse
from nimbus.protocol.router import Claim, Router
from nimbus.protocol.service import AwsService

SERVICES: list[AwsService] = [SCHEDULER, SQS, SNS, LOGS]

# The largest request a service takes (SQS: 1 MiB messages, 10 to a batch; S3 puts
# beyond this need streaming, which this layer does not do yet).
MAX_BODY = 64 * 1024 * 1024


@functools.cache
def router() -> Router:
    """The router over ``SERVICES``, built once, on the first request."""
    return Router(SERVICES)


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in scope["headers"]:
        name = key.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[name] = f"{headers[name]},{text}" if name in headers else text
    return headers


def _raw_path(scope: Scope) -> str:
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else scope["path"]
    return path.split("?", 1)[0]


def claim(scope: Scope) -> tuple[Claim, dict[str, str]] | None:
    """The registered service (and protocol) an HTTP request is for, with its headers."""
    found = router()
    if not found:
        return None
    headers = _headers(scope)
    claimed = found.claim(
        scope["method"], _raw_path(scope), headers, scope["query_string"].decode("latin-1")
    )
    return (claimed, headers) if claimed is not None else None


def auth_target(scope: Scope) -> tuple[str, Callable[[NimbusError], Response]] | None:
    """For the auth middleware: the SigV4 service a request for a registered AWS service
    must be signed for, and how its refusal is written (in the service's protocol)."""
    found = claim(scope)
    if found is None:
        return None
    claimed = found[0]
    spec = claimed.spec or router().query[0][1]

    def refuse(exc: NimbusError) -> Response:
        return _response(endpoint.error_response(spec, claimed.protocol, exc))

    return spec.signing_name, refuse


def _response(answer: HttpResponse) -> Response:
    return Response(answer.body, status_code=answer.status, headers=answer.headers)


class AwsRoute(BaseRoute):
    """Takes the requests a registered AWS service claims (see the module docstring)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        found = claim(scope)
        if found is None:
            return Match.NONE, {}
        return Match.FULL, {"nimbus.aws_claim": found}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        claimed, headers = scope["nimbus.aws_claim"]
        body = await _read(receive)
        request = HttpRequest(
            method=scope["method"],
            raw_path=_raw_path(scope),
            query_string=scope["query_string"].decode("latin-1"),
            headers=headers,
            body=body or b"",
        )
        resolved = router().resolve(claimed, request)
        if resolved is None:
            raise HTTPException(404)  # no registered service has it: Lambda's answer
        service, spec = resolved
        if body is None:
            answer = endpoint.error_response(
                spec,
                claimed.protocol,
                AwsError(
                    "RequestEntityTooLarge",
                    f"The request must be smaller than {MAX_BODY} bytes.",
                    status=413,
                ),
            )
        else:
            state = services_of(scope)
            config = state.config
            host = headers.get("host") or "{}:{}".format(
                *(scope.get("server") or ("localhost", 80))
            )
            answer = await endpoint.serve(
                service,
                spec,
                claimed.protocol,
                request,
                region=config.region,
                account_id=config.account_id,
                base_url=f"{scope.get('scheme', 'http')}://{host}",
                state=state,
            )
        await _response(answer)(scope, receive, send)


async def _read(receive: Receive) -> bytes | None:
    """The body (None when over MAX_BODY: still read to its end so the client gets to
    read the answer)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= MAX_BODY:
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks) if size <= MAX_BODY else None


routes: list[BaseRoute] = [AwsRoute()]
