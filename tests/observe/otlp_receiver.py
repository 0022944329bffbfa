"""A tiny OpenTelemetry collector for tests: an HTTP server in the test process that
takes OTLP/HTTP trace exports (``POST /v1/traces``, a protobuf
``ExportTraceServiceRequest``, decoded with opentelemetry-proto) and keeps their spans,
so a test can wait for the spans it expects."""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

WAIT_S = 30.0


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the collector got it (ids in hex, kinds and status codes as OTLP's
    numbers: SPAN_KIND_SERVER is 2, STATUS_CODE_ERROR 2)."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    attributes: dict[str, Any]
    resource: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def _attributes(pairs: Iterator[KeyValue] | Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


class OtlpReceiver:
    """``endpoint``: the base URL to configure (``OTEL_EXPORTER_OTLP_ENDPOINT``).
    ``status``: what exports are answered with (a test may set 400 to refuse them)."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self.paths: list[str] = []
        self.status = 200
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                status = receiver.receive(self.path, body)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def receive(self, path: str, body: bytes) -> int:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        with self._changed:
            self.requests += 1
            self.paths.append(path)
            if self.status != 200:
                self._changed.notify_all()
                return self.status
            for resource_spans in request.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(
                            ReceivedSpan(
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_span_id=span.parent_span_id.hex(),
                                name=span.name,
                                kind=span.kind,
                                start_ns=span.start_time_unix_nano,
                                end_ns=span.end_time_unix_nano,
                                status_code=span.status.code,
                                attributes=_attributes(span.attributes),
                                resource=resource,
                                events=[(e.name, _attributes(e.attributes)) for e in span.events],
                            )
                        )
            self._changed.notify_all()
        return self.status

    def wait_for(self, check: Callable[[list[ReceivedSpan]], Any], timeout: float = WAIT_S) -> Any:
        """What ``check`` returns for the spans received so far, once it is truthy
        (AssertionError when it is not within ``timeout``)."""
        with self._changed:
            found = self._changed.wait_for(lambda: check(list(self.spans)), timeout)
        if not found:
            raise AssertionError(
                f"the collector did not get the spans expected; it has "
                f"{[(s.name, s.trace_id) for s in self.spans][-20:]}"
            )
        return found

    def wait_for_requests(self, count: int, timeout: float = WAIT_S) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self.requests >= count, timeout):
                raise AssertionError(f"the collector got {self.requests} exports, not {count}")

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._changed:
            return [s for s in self.spans if s.trace_id == trace_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
