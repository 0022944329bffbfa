"""Answers out: an operation's result and errors, in the protocol the client spoke.

- query: ``<XResponse xmlns=..><XResult>..</XResult><ResponseMetadata><RequestId>..``
  and ``<ErrorResponse><Error><Type>Sender|Receiver</Type><Code>..</Code><Message>..``
  ``</Message></Error><RequestId>..</RequestId></ErrorResponse>``;
- json: the output as a JSON object, errors as ``{"__type": .., "message": ..}``, and for
  a query-compatible service (SQS) the ``x-amzn-query-error: <code>;<Sender|Receiver>``
  header from which botocore takes the query-era code;
- rest-json and rest-xml: output members in headers, status code, payload or body; errors
  with ``X-Amzn-ErrorType`` (rest-json) or as ``<Error><Code>..`` (rest-xml).

An error's HTTP status, code and fault side come from the service model's error shape
when it has one (``ServiceSpec.error``), else from the raised exception.
"""

from __future__ import annotations

import json
import re
from typing import Any

from botocore.model import OperationModel, Shape, StructureShape

from nimbus.errors import NimbusError
from nimbus.protocol import jsoncodec, xmlcodec
from nimbus.protocol.errors import AwsError
from nimbus.protocol.messages import HttpResponse
from nimbus.protocol.models import ServiceSpec
from nimbus.protocol.values import b64, to_text

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
XML = "text/xml"


def serialize_result(
    spec: ServiceSpec,
    protocol: str,
    operation: OperationModel,
    result: dict[str, Any] | None,
    request_id: str,
) -> HttpResponse:
    """``result`` (the output shape as a dict) as ``protocol`` answers ``operation``."""
    model_op = spec.operation(operation.name, protocol) or operation
    output = model_op.output_shape
    result = result or {}
    headers = {"x-amzn-RequestId": request_id}
    if protocol == "query":
        name = model_op.name
        out = [XML_DECLARATION, f"<{name}Response{_xmlns(spec.xml_namespace)}>"]
        if output is not None:
            wrapper = output.serialization.get("resultWrapper") or f"{name}Result"
            _write_members(out, output, result, wrapper)
        out.append(
            f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
            f"</{name}Response>"
        )
        headers["Content-Type"] = XML
        return HttpResponse(200, "".join(out).encode(), headers)
    if protocol == "json":
        body = jsoncodec.write(output, result) if output is not None else {}
        headers["Content-Type"] = f"application/x-amz-json-{spec.json_version}"
        return HttpResponse(200, _dumps(body), headers)
    return _rest_result(spec, protocol, model_op, output, result, headers)


def _rest_result(
    spec: ServiceSpec,
    protocol: str,
    operation: OperationModel,
    output: StructureShape | None,
    result: dict[str, Any],
    headers: dict[str, str],
) -> HttpResponse:
    status = int(operation.http.get("responseCode", 200))
    if output is None:
        return HttpResponse(status, b"", headers)
    for member, member_shape in output.members.items():
        value = result.get(member)
        if value is None:
            continue
        location = member_shape.serialization.get("location")
        name = member_shape.serialization.get("name", member)
        if location == "header":
            headers[name] = _header_value(member_shape, value)
        elif location == "headers":
            for key, item in value.items():
                headers[f"{name}{key}"] = str(item)
        elif location == "statusCode":
            status = int(value)
    payload = output.serialization.get("payload")
    if payload is not None:
        payload_shape = output.members[payload]
        value = result.get(payload)
        if payload_shape.type_name in ("blob", "string"):
            body = value if isinstance(value, bytes) else (value or "").encode()
            headers.setdefault("Content-Type", "application/octet-stream")
            return HttpResponse(status, body, headers)
        if value is None:
            return HttpResponse(status, b"", headers)
        if protocol == "rest-json":
            headers.setdefault("Content-Type", "application/json")
            return HttpResponse(status, _dumps(jsoncodec.write(payload_shape, value)), headers)
        out = [XML_DECLARATION]
        root = payload_shape.serialization.get("name", payload_shape.name)
        xmlcodec.write(out, payload_shape, value, root)
        headers.setdefault("Content-Type", "application/xml")
        return HttpResponse(status, "".join(out).encode(), headers)
    body_members = [m for m, s in output.members.items() if not s.serialization.get("location")]
    if protocol == "rest-json":
        headers.setdefault("Content-Type", "application/json")
        return HttpResponse(status, _dumps(jsoncodec.write(output, result)), headers)
    if not body_members:
        return HttpResponse(status, b"", headers)
    root = output.serialization.get("name", output.name)
    namespace = spec.model.metadata.get("xmlNamespace")
    out = [XML_DECLARATION]
    _write_members(out, output, result, root, namespace)
    headers.setdefault("Content-Type", "application/xml")
    return HttpResponse(status, "".join(out).encode(), headers)


def serialize_error(
    spec: ServiceSpec, protocol: str, exc: NimbusError, request_id: str
) -> HttpResponse:
    """``exc`` as ``protocol``'s clients read an error (see the module docstring)."""
    info = spec.error(exc.type_name)
    status = info.status or exc.status
    if info.sender is not None:
        sender = info.sender
    elif isinstance(exc, AwsError):
        sender = exc.sender
    else:
        sender = status < 500
    fault = "Sender" if sender else "Receiver"
    headers = {"x-amzn-RequestId": request_id, **exc.headers()}
    extra = {k: v for k, v in exc.extra.items() if v is not None}
    if protocol in ("query", "rest-xml"):
        inner = [f"<Code>{xmlcodec.escape(info.code)}</Code>"]
        inner.append(f"<Message>{xmlcodec.escape(_xml_safe(exc.message))}</Message>")
        for key, value in extra.items():
            _write_extra(inner, info.shape, key, value)
        headers["Content-Type"] = XML if protocol == "query" else "application/xml"
        if protocol == "rest-xml" and spec.name == "s3":
            body = (
                f"{XML_DECLARATION}<Error>{''.join(inner)}"
                f"<RequestId>{request_id}</RequestId></Error>"
            )
        else:
            body = (
                f"{XML_DECLARATION}<ErrorResponse{_xmlns(spec.xml_namespace)}><Error>"
                f"<Type>{fault}</Type>{''.join(inner)}</Error>"
                f"<RequestId>{request_id}</RequestId></ErrorResponse>"
            )
        return HttpResponse(status, body.encode(), headers)
    document: dict[str, Any] = {}
    shape = info.shape
    for key, value in extra.items():
        member = shape.members.get(key) if shape is not None else None
        document[key] = jsoncodec.write(member, value) if member is not None else value
    document[info.message_key] = exc.message
    type_name = shape.name if shape is not None else exc.type_name
    if protocol == "json":
        document = {"__type": type_name, **document}
        headers["Content-Type"] = f"application/x-amz-json-{spec.json_version}"
        if spec.query_compatible:
            headers["x-amzn-query-error"] = f"{info.code};{fault}"
    else:
        headers["X-Amzn-ErrorType"] = type_name
        headers["Content-Type"] = "application/json"
    return HttpResponse(status, _dumps(document), headers)


def _write_members(
    out: list[str],
    shape: StructureShape,
    value: dict[str, Any],
    name: str,
    namespace: str | None = None,
) -> None:
    """``shape``'s members as the children of an element ``name`` (the shape's own
    name and namespace traits are not the wrapper's)."""
    inner: list[str] = []
    for member, member_shape in shape.members.items():
        item = value.get(member)
        if item is None or member_shape.serialization.get("location"):
            continue
        xmlcodec.write(inner, member_shape, item, member_shape.serialization.get("name", member))
    out.append(f"<{name}{_xmlns(namespace)}>{''.join(inner)}</{name}>")


def _write_extra(out: list[str], shape: StructureShape | None, key: str, value: Any) -> None:
    member: Shape | None = shape.members.get(key) if shape is not None else None
    if member is not None:
        xmlcodec.write(out, member, value, member.serialization.get("name", key))
    else:
        out.append(f"<{key}>{xmlcodec.escape(str(value))}</{key}>")


def _header_value(shape: Shape, value: Any) -> str:
    if shape.serialization.get("jsonvalue"):
        return b64(json.dumps(value, separators=(",", ":")))
    if shape.type_name == "list":
        return ",".join(str(v) for v in value)
    return to_text(shape, value, default_timestamp="rfc822")


# Characters XML 1.0 cannot hold, even escaped: an error message that quotes the input
# ("Value \x1f for parameter ...") shows them as U+FFFD so the answer still parses.
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_safe(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _xmlns(namespace: str | None) -> str:
    return f' xmlns="{namespace}"' if namespace else ""


def _dumps(body: Any) -> bytes:
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate (an error quoting "\ud800"): \u-escaped
        return json.dumps(body, separators=(",", ":")).encode()
