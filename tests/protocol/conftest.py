"""Helpers of the protocol tests: requests built by botocore's own serialisers, answers
read by botocore's own parsers, so each protocol is checked against the SDK itself."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit

from botocore.awsrequest import HeadersDict
from botocore.parsers import create_parser
from botocore.serialize import create_serializer

from nimbus.protocol.messages import HttpRequest, HttpResponse
from nimbus.protocol.models import ServiceSpec, load


def model_op(spec: ServiceSpec, protocol: str, name: str) -> Any:
    found = spec.operation(name, protocol)
    assert found is not None, name
    return found


def client_request(
    spec: ServiceSpec, protocol: str, name: str, params: dict[str, Any]
) -> HttpRequest:
    """``params`` as botocore's ``protocol`` serialiser sends ``name``."""
    serialized = create_serializer(protocol, include_validation=True).serialize_to_request(
        params, model_op(spec, protocol, name)
    )
    url = urlsplit(serialized["url_path"])
    query = serialized["query_string"]
    query_string = urlencode(query, doseq=True) if isinstance(query, dict) else query
    if url.query:
        query_string = f"{url.query}&{query_string}" if query_string else url.query
    body = serialized["body"]
    if isinstance(body, dict):
        body = urlencode(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    headers = {k.lower(): str(v) for k, v in serialized["headers"].items()}
    headers.setdefault("host", "localhost:9000")
    return HttpRequest(serialized["method"], url.path, query_string, headers, body or b"")


def client_reads(
    spec: ServiceSpec, protocol: str, name: str, answer: HttpResponse
) -> dict[str, Any]:
    """``answer`` as botocore's ``protocol`` parser reads it for ``name``."""
    operation = model_op(spec, protocol, name)
    headers = HeadersDict(answer.headers)
    response = {"status_code": answer.status, "headers": headers, "body": answer.body}
    parsed: dict[str, Any] = create_parser(protocol).parse(response, operation.output_shape)
    return parsed


__all__ = ["client_reads", "client_request", "load", "model_op"]
