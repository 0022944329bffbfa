"""X-Ray segment documents as OpenTelemetry spans, for the OTLP exporter (otlp_export.py).

One span per document and per subsegment nested in it, in X-Ray's own ids:

- trace id: the Root without its version and dashes, ``1-5759e988-bd862e3f...`` ->
  ``5759e988bd862e3f...`` (32 hex digits): the inverse of how a W3C ``traceparent``
  becomes a Root (tracing.TraceHeader.from_traceparent), so a trace a client started
  keeps its id in the collector;
- span id: the document's ``id``; parent: its ``parent_id`` (a segment's caller, marked
  remote), or for a nested subsegment the document it is nested in;
- name, start and end times as recorded; a document still ``in_progress`` is left for
  the complete one that replaces it;
- kind: a segment SERVER (CONSUMER for a queue, broker or async attempt), a subsegment
  calling AWS or a remote service CLIENT, other subsegments INTERNAL;
- status ERROR when the document has ``fault``, ``error`` or ``throttle`` (each also an
  attribute ``aws.xray.<flag>``), with an ``exception`` event per exception of its cause;
- attributes: the segment's ``origin`` (``aws.xray.origin``) and ``namespace``, its
  ``aws`` fields as ``aws.<field>`` (with OpenTelemetry's names where they have one:
  ``faas.invocation_id``, ``cloud.resource_id``, ``cloud.account.id``; on a function's
  segment ``faas.name``, ``faas.version``, ``faas.coldstart``), its ``http`` fields by
  the HTTP conventions, its annotations as ``aws.xray.annotations.<key>`` and its
  metadata as ``aws.xray.metadata.<namespace>`` (JSON text).

Every span has the one resource of the exporting process (``service.name`` nimbus unless
the OpenTelemetry environment names one): a subsegment a function's SDK sends on its own
arrives before the segment it belongs to has ended, so a span's service could not be
known in time; which function, trigger or hop a span is stays in its name and attributes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from nimbus.observe.tracing import (
    BROKER_ORIGIN,
    FUNCTION_ORIGIN,
    QUEUE_ORIGIN,
    SERVICE_ORIGIN,
)

Doc = dict[str, Any]
SCOPE = InstrumentationScope("nimbus.observe.tracing")
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_CONSUMERS = frozenset({QUEUE_ORIGIN, BROKER_ORIGIN, SERVICE_ORIGIN})
# X-Ray "aws" fields with an OpenTelemetry name of their own.
_AWS_NAMES = {
    "function_arn": "cloud.resource_id",
    "account_id": "cloud.account.id",
}
_HTTP_REQUEST = {
    "method": "http.request.method",
    "url": "url.full",
    "client_ip": "client.address",
    "user_agent": "user_agent.original",
}
_HTTP_RESPONSE = {
    "status": "http.response.status_code",
    "content_length": "http.response.body.size",
}


def resource(region: str, account_id: str) -> Resource:
    """The exporting process's resource: ``OTEL_RESOURCE_ATTRIBUTES`` and
    ``OTEL_SERVICE_NAME`` as the SDK reads them, ``service.name`` nimbus by default."""
    attributes: dict[str, Any] = {"cloud.region": region, "cloud.account.id": account_id}
    detected = Resource.create(attributes)
    if str(detected.attributes.get("service.name", "")).startswith("unknown_service"):
        attributes["service.name"] = "nimbus"
    return Resource.create(attributes)


def trace_id_of(root: str) -> int:
    """``1-5759e988-bd862e3fe1be46a994272793`` as a 128-bit OpenTelemetry trace id."""
    version, epoch, unique = root.split("-")
    if version != "1" or len(epoch) != 8 or len(unique) != 24:
        raise ValueError(f"not an X-Ray trace id: {root!r}")
    return int(epoch + unique, 16)


def spans_of(doc: Doc, res: Resource) -> list[ReadableSpan]:
    """The spans of one stored document (a segment, or a subsegment sent on its own), its
    nested subsegments included; none when it is in progress or not a valid document."""
    try:
        trace_id = trace_id_of(str(doc["trace_id"]))
        parent_id = doc.get("parent_id")
        parent = (
            SpanContext(trace_id, int(parent_id, 16), is_remote=True, trace_flags=_SAMPLED)
            if isinstance(parent_id, str)
            else None
        )
        return list(_spans(doc, trace_id, parent, res, top=doc.get("type") != "subsegment"))
    except (KeyError, TypeError, ValueError):
        return []  # the daemon and the tracer check documents; this is defence only


def _spans(
    doc: Doc, trace_id: int, parent: SpanContext | None, res: Resource, *, top: bool
) -> Iterator[ReadableSpan]:
    start, end = doc.get("start_time"), doc.get("end_time")
    if (
        doc.get("in_progress")
        or not isinstance(start, int | float)
        or not isinstance(end, int | float)
    ):
        return
    context = SpanContext(trace_id, int(str(doc["id"]), 16), is_remote=False, trace_flags=_SAMPLED)
    yield ReadableSpan(
        name=str(doc.get("name") or "unnamed"),
        context=context,
        parent=parent,
        resource=res,
        attributes=_attributes(doc, top),
        events=_exceptions(doc, end),
        kind=_kind(doc, top),
        status=_status(doc),
        start_time=round(start * 1e9),
        end_time=round(end * 1e9),
        instrumentation_scope=SCOPE,
    )
    for sub in doc.get("subsegments") or ():
        if isinstance(sub, dict):
            yield from _spans(sub, trace_id, context, res, top=False)


def _kind(doc: Doc, top: bool) -> SpanKind:
    if top:
        return SpanKind.CONSUMER if doc.get("origin") in _CONSUMERS else SpanKind.SERVER
    if doc.get("namespace") in ("aws", "remote"):
        return SpanKind.CLIENT
    return SpanKind.INTERNAL


def _status(doc: Doc) -> Status:
    flags = [f for f in ("fault", "error", "throttle") if doc.get(f)]
    if not flags:
        return Status(StatusCode.UNSET)
    return Status(StatusCode.ERROR, f"X-Ray {' and '.join(flags)}")


def _exceptions(doc: Doc, end: float) -> list[Event]:
    cause = doc.get("cause")
    exceptions = cause.get("exceptions") if isinstance(cause, dict) else None
    events = []
    for exc in exceptions if isinstance(exceptions, list) else ():
        if not isinstance(exc, dict):
            continue
        attributes = {
            f"exception.{key}": str(exc[field])
            for key, field in (("type", "type"), ("message", "message"))
            if exc.get(field) is not None
        }
        events.append(Event("exception", attributes, timestamp=round(end * 1e9)))
    return events


def _attributes(doc: Doc, top: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if top and isinstance(doc.get("origin"), str):
        out["aws.xray.origin"] = doc["origin"]
    if isinstance(doc.get("namespace"), str):
        out["aws.xray.namespace"] = doc["namespace"]
    for flag in ("fault", "error", "throttle"):
        if doc.get(flag):
            out[f"aws.xray.{flag}"] = True
    aws = doc.get("aws")
    if isinstance(aws, dict):
        for key, value in aws.items():
            if (value := _value(value)) is not None:
                out[_AWS_NAMES.get(key, f"aws.{key}")] = value
    annotations = doc.get("annotations")
    if isinstance(annotations, dict):
        for key, value in annotations.items():
            if (value := _value(value)) is not None:
                out[f"aws.xray.annotations.{key}"] = value
    metadata = doc.get("metadata")
    if isinstance(metadata, dict):
        for namespace, values in metadata.items():
            out[f"aws.xray.metadata.{namespace}"] = json.dumps(values, default=str)
    http = doc.get("http")
    if isinstance(http, dict):
        for part, names in (("request", _HTTP_REQUEST), ("response", _HTTP_RESPONSE)):
            fields = http.get(part)
            if isinstance(fields, dict):
                for key, name in names.items():
                    if (value := _value(fields.get(key))) is not None:
                        out[name] = value
    if doc.get("origin") == FUNCTION_ORIGIN:
        out["faas.name"] = str(doc.get("name"))
        if isinstance(aws, dict) and isinstance(aws.get("request_id"), str):
            out["faas.invocation_id"] = aws["request_id"]
        if isinstance(annotations, dict):
            if isinstance(annotations.get("version"), str):
                out["faas.version"] = annotations["version"]
            if isinstance(annotations.get("cold_start"), bool):
                out["faas.coldstart"] = annotations["cold_start"]
    return out


def _value(value: Any) -> Any:
    """An attribute value OpenTelemetry can carry: a scalar or a list of strings (other
    lists and objects as JSON text); None for nothing."""
    if value is None:
        return None
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return json.dumps(value, default=str)
