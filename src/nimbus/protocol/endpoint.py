"""Serving one claimed request: parse it, call the service's handler, serialise the
result, and answer every failure in the protocol's error shape (never a bare 500: an
unexpected exception is logged and answered as AWS's ``InternalFailure``)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from nimbus.errors import NimbusError
from nimbus.protocol.errors import AwsError, internal_failure
from nimbus.protocol.messages import HttpRequest, HttpResponse
from nimbus.protocol.models import ServiceSpec
from nimbus.protocol.parser import parse
from nimbus.protocol.serializer import serialize_error, serialize_result
from nimbus.protocol.service import AwsService, RequestContext

log = logging.getLogger("nimbus.protocol")
LARGE_BODY = 256 * 1024


async def serve(
    service: AwsService,
    spec: ServiceSpec,
    protocol: str,
    request: HttpRequest,
    *,
    region: str,
    account_id: str,
    base_url: str,
    state: Any = None,
) -> HttpResponse:
    """The answer to ``request`` for ``service``, in ``protocol``."""
    request_id = str(uuid.uuid4())
    try:
        if len(request.body) > LARGE_BODY:  # parsing it would hold the event loop up
            parsed = await asyncio.to_thread(parse, spec, protocol, request)
        else:
            parsed = parse(spec, protocol, request)
        operation = parsed.operation
        handler = service.handlers.get(operation.name)
        if handler is None:
            raise not_implemented(spec, protocol, operation.name)
        context = RequestContext(
            service=spec.name,
            operation=operation.name,
            region=region,
            account_id=account_id,
            request_id=request_id,
            base_url=base_url,
            headers=request.headers,
            protocol=protocol,
            state=state,
        )
        result = await handler(context, parsed.params)
        return serialize_result(spec, protocol, operation, result, request_id)
    except NimbusError as exc:
        return serialize_error(spec, protocol, exc, request_id)
    except Exception as exc:  # a handler's bug must still get an AWS-shaped answer
        log.exception("unhandled error serving %s %s", spec.name, protocol)
        return serialize_error(spec, protocol, internal_failure(repr(exc)), request_id)


def not_implemented(spec: ServiceSpec, protocol: str, operation: str) -> AwsError:
    """An operation of the model nimbus does not serve: a client error (400, not 501,
    which SDKs do not treat as final), with the code the protocol's clients expect for
    an operation the endpoint does not know."""
    message = f"{spec.name} operation {operation} is not implemented in nimbus."
    if protocol == "query":
        return AwsError("InvalidAction", message)
    if protocol == "rest-xml":
        return AwsError("NotImplemented", message)
    return AwsError("UnknownOperationException", message)


def error_response(spec: ServiceSpec, protocol: str, exc: NimbusError) -> HttpResponse:
    """``exc`` raised before a request reached its service (authentication)."""
    return serialize_error(spec, protocol, exc, str(uuid.uuid4()))
