"""OTLP export without a server: where spans go, how X-Ray documents become spans, and
the export thread against a real OTLP/HTTP receiver (one that refuses, then accepts)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from nimbus.config import Config
from nimbus.observe.otlp_export import SpanExport, span_export, traces_endpoint
from nimbus.observe.otlp_spans import resource, spans_of, trace_id_of
from nimbus.observe.trace_store import SegmentLog
from nimbus.observe.tracing import TraceHeader, Tracer
from tests.observe.otlp_receiver import OtlpReceiver

ROOT = "1-5759e988-bd862e3fe1be46a994272793"
OTEL_TRACE = "5759e988bd862e3fe1be46a994272793"
RES = resource("us-east-1", "000000000000")


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    yield r
    r.close()


def test_endpoint_from_the_setting_or_opentelemetrys_variables() -> None:
    assert traces_endpoint(None, {}) is None
    assert traces_endpoint("http://c:4318", {}) == "http://c:4318/v1/traces"
    assert traces_endpoint("http://c:4318/v1/traces", {}) == "http://c:4318/v1/traces"
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:4318/"}
    assert traces_endpoint(None, env) == "http://base:4318/v1/traces"
    env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = "http://t:1234/custom"
    assert traces_endpoint(None, env) == "http://t:1234/custom"  # signal-specific, as is
    assert traces_endpoint("http://mine:4318", env) == "http://mine:4318/v1/traces"
    assert traces_endpoint(None, {**env, "OTEL_SDK_DISABLED": "true"}) is None
    assert traces_endpoint(None, {**env, "OTEL_TRACES_EXPORTER": "none"}) is None


def test_no_export_unless_configured(tmp_path: Path) -> None:
    config = Config(data_dir=tmp_path)
    assert span_export(config, {}) is None
    made = span_export(
        config,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "OTEL_BSP_MAX_QUEUE_SIZE": "nonsense",
        },
    )
    assert made is not None
    assert made.endpoint == "http://127.0.0.1:1/v1/traces"
    assert made.delay_s == 0.05 and made._queue.maxlen == 20_000
    with pytest.raises(ValueError):
        Config(data_dir=tmp_path, otlp_endpoint="localhost:4318")  # needs its scheme


def function_segment(**extra: Any) -> dict[str, Any]:
    docs: list[dict[str, Any]] = []
    Tracer(docs.append).function_segment(
        TraceHeader(ROOT, "53995c3f42cd8ad8", True),
        "0123456789abcdef",
        function="hello",
        function_arn="arn:aws:lambda:us-east-1:000000000000:function:hello",
        version="3",
        request_id="req-1",
        start=1000.0,
        end=1000.25,
        duration_ms=200.0,
        cold=True,
        init_ms=30.0,
        error_type=extra.pop("error_type", None),
        fault=extra.pop("fault", False),
    )
    return docs[0]


def test_a_function_segment_becomes_spans_with_xray_ids() -> None:
    assert trace_id_of(ROOT) == int(OTEL_TRACE, 16)
    # The W3C mapping both ways: a traceparent's trace keeps its id in the collector.
    header = TraceHeader.from_traceparent(f"00-{OTEL_TRACE}-00f067aa0ba902b7-01")
    assert header is not None and trace_id_of(header.root) == int(OTEL_TRACE, 16)

    segment, init, invocation = spans_of(function_segment(), RES)
    assert segment.context is not None and segment.parent is not None
    assert segment.context.trace_id == int(OTEL_TRACE, 16)
    assert segment.context.span_id == int("0123456789abcdef", 16)
    assert segment.parent.span_id == int("53995c3f42cd8ad8", 16) and segment.parent.is_remote
    assert segment.name == "hello" and segment.kind == SpanKind.SERVER
    assert segment.start_time == 1000 * 10**9 and segment.end_time == 1000_250_000_000
    assert segment.status.status_code == StatusCode.UNSET
    attributes = dict(segment.attributes or {})
    assert attributes["aws.xray.origin"] == "AWS::Lambda::Function"
    assert attributes["faas.name"] == "hello" and attributes["faas.invocation_id"] == "req-1"
    assert attributes["faas.version"] == "3" and attributes["faas.coldstart"] is True
    assert attributes["cloud.resource_id"].endswith(":function:hello")
    assert attributes["aws.resource_names"] == ["hello"]
    assert [init.name, invocation.name] == ["Initialization", "Invocation"]
    for sub in (init, invocation):
        assert sub.parent is not None and sub.parent.span_id == segment.context.span_id
        assert not sub.parent.is_remote and sub.kind == SpanKind.INTERNAL
    assert segment.resource.attributes["service.name"] == "nimbus"


def test_errors_kinds_http_and_what_is_left_out() -> None:
    failed = spans_of(function_segment(error_type="ValueError", fault=True), RES)[0]
    assert failed.status.status_code == StatusCode.ERROR
    assert dict(failed.attributes or {})["aws.xray.fault"] is True
    assert [(e.name, dict(e.attributes or {})) for e in failed.events] == [
        ("exception", {"exception.type": "ValueError"})
    ]

    trigger = {
        "trace_id": ROOT,
        "id": "1111111111111111",
        "name": "abc/$default",
        "origin": "AWS::ApiGateway::Stage",
        "start_time": 1.0,
        "end_time": 2.0,
        "error": True,
        "http": {"request": {"method": "GET", "url": "/x"}, "response": {"status": 404}},
    }
    (span,) = spans_of(trigger, RES)
    assert span.parent is None and span.kind == SpanKind.SERVER
    assert span.status.status_code == StatusCode.ERROR
    attributes = dict(span.attributes or {})
    assert attributes["http.request.method"] == "GET" and attributes["url.full"] == "/x"
    assert attributes["http.response.status_code"] == 404

    queue = {**trigger, "origin": "AWS::SQS::Queue", "error": False, "http": None}
    assert spans_of(queue, RES)[0].kind == SpanKind.CONSUMER
    # A subsegment an SDK sent on its own, its own nested one, an AWS call.
    sdk = {
        "type": "subsegment",
        "trace_id": ROOT,
        "id": "2222222222222222",
        "parent_id": "0123456789abcdef",
        "name": "## handler",
        "start_time": 1.0,
        "end_time": 2.0,
        "annotations": {"ColdStart": True},
        "metadata": {"checkout": {"cart": [1, 2]}},
        "subsegments": [
            {
                "id": "3333333333333333",
                "name": "SQS",
                "namespace": "aws",
                "start_time": 1.1,
                "end_time": 1.2,
                "aws": {"operation": "SendMessage", "queue_url": "http://q"},
            }
        ],
    }
    handler, call = spans_of(sdk, RES)
    assert handler.parent is not None and handler.parent.span_id == int("0123456789abcdef", 16)
    assert handler.kind == SpanKind.INTERNAL
    assert dict(handler.attributes or {})["aws.xray.annotations.ColdStart"] is True
    assert dict(handler.attributes or {})["aws.xray.metadata.checkout"] == '{"cart": [1, 2]}'
    assert call.parent is not None and call.parent.span_id == int("2222222222222222", 16)
    assert call.kind == SpanKind.CLIENT
    assert dict(call.attributes or {})["aws.operation"] == "SendMessage"
    # In progress (its complete document follows), or not a document: no span.
    assert spans_of({**trigger, "in_progress": True, "end_time": None}, RES) == []
    assert spans_of({"trace_id": "garbage", "id": "x"}, RES) == []


async def test_segments_reach_a_real_collector_from_the_segment_log(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    export = SpanExport(
        OTLPSpanExporter(endpoint=receiver.endpoint + "/v1/traces"),
        RES,
        endpoint=receiver.endpoint,
        delay_ms=20,
    )
    segments = SegmentLog(tmp_path, "server", export=export)
    segments.start()
    tracer = Tracer(segments.append)
    started = tracer.trigger(
        "AWS::Lambda::FunctionUrl",
        "lambda-url/abc",
        TraceHeader(ROOT, "00f067aa0ba902b7", sampled=True),  # only sampled ones record
        1.0,
        2.0,
    )
    tracer.function_segment(
        started,
        "0123456789abcdef",
        function="hello",
        function_arn="arn",
        version="$LATEST",
        request_id="r",
        start=1.1,
        end=1.9,
        duration_ms=700.0,
        cold=False,
        init_ms=None,
        error_type=None,
        fault=False,
    )
    spans = receiver.wait_for(lambda got: len(got) == 3 and got)
    await segments.close()
    by_name = {s.name: s for s in spans}
    url, fn, inv = by_name["lambda-url/abc"], by_name["hello"], by_name["Invocation"]
    assert {s.trace_id for s in spans} == {OTEL_TRACE}
    assert url.parent_span_id == "00f067aa0ba902b7"
    assert fn.parent_span_id == url.span_id == started.parent
    assert inv.parent_span_id == fn.span_id == "0123456789abcdef"
    assert url.kind == 2 and fn.resource["service.name"] == "nimbus"
    assert receiver.paths == ["/v1/traces"]
    assert (tmp_path / "server.0.jsonl").read_text().count("\n") == 2  # stored as well


def test_a_refusing_collector_is_logged_once_and_export_goes_on(
    receiver: OtlpReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.status = 400  # not retried by the exporter: the batch is lost
    export = SpanExport(
        OTLPSpanExporter(endpoint=receiver.endpoint + "/v1/traces"),
        RES,
        endpoint=receiver.endpoint,
        delay_ms=10_000,
    )
    caplog.set_level(logging.INFO, "nimbus.observe.otlp_export")
    doc = function_segment()
    for _ in range(3):
        export.submit(doc)
        export.drain()  # the thread's work, here in the test's thread
    assert receiver.requests == 3 and receiver.spans == []
    assert export.failed == 9 and export.exported == 0
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1 and receiver.endpoint in failures[0].getMessage()
    receiver.status = 200
    export.submit(doc)
    export.drain()
    assert export.exported == 3 and len(receiver.spans) == 3
    assert any("works again (9 spans were lost)" in r.getMessage() for r in caplog.records)
    export.close()


def test_the_queue_is_bounded_and_never_blocks() -> None:
    class Counting:
        """An exporter that counts the spans of each batch."""

        def __init__(self) -> None:
            self.batches: list[int] = []

        def export(self, spans: Any) -> Any:
            from opentelemetry.sdk.trace.export import SpanExportResult

            self.batches.append(len(spans))
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    held = Counting()
    export = SpanExport(held, RES, max_queue=5, batch=2)  # type: ignore[arg-type]
    doc = function_segment()
    for _ in range(8):
        export.submit(doc)  # no thread runs: a collector that never answers
    assert len(export._queue) == 5 and export.dropped == 3
    export.drain()
    assert held.batches == [6, 6, 3]  # two documents (three spans each) a batch
    assert export.exported == 15
