"""gateway.invocation.invoke for both payload formats: the trace it passes on (the
trigger's segment as the function's Parent, in every spelling of the header), the
stage's segment it records, and each format's result mapping."""

from __future__ import annotations

import json
from typing import Any

from nimbus.gateway.event import HttpRequest, Trigger, build_event, build_event_v1
from nimbus.gateway.invocation import invoke, pass_trace_header
from nimbus.gateway.reply import HTTP_API_CONTENT_TYPE, reply_from_result_v1
from nimbus.invocation.invoker import InvokeResult
from nimbus.observe.tracing import API_ORIGIN, TraceHeader, Tracer

ROUTE = Trigger(
    api_id="a1b2c3d4e5",
    domain_name="a1b2c3d4e5.execute-api.localhost",
    account_id="000000000000",
    route_key="GET /hello",
    stage="Prod",
)
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
ROOT = "1-4bf92f35-77b34da6a3ce929d0e0e4736"


class RecordingInvoker:
    """Runs nothing: records what it was given and answers ``result``."""

    def __init__(self, result: Any) -> None:
        self.segments: list[dict[str, Any]] = []
        self.tracer = Tracer(self.segments.append)
        self.result = json.dumps(result).encode()
        self.events: list[dict[str, Any]] = []
        self.traces: list[str | None] = []

    async def invoke(
        self,
        name: str,
        qualifier: str | None,
        payload: bytes,
        client_context: str | None = None,
        trace_id: str | None = None,
        request_id: str | None = None,
    ) -> InvokeResult:
        self.events.append(json.loads(payload))
        self.traces.append(trace_id)
        return InvokeResult(self.result, None, "$LATEST", "", request_id or "", trace_id)


def request(headers: list[tuple[str, str]]) -> HttpRequest:
    return HttpRequest(
        method="GET",
        raw_path="/Prod/hello",
        raw_query="",
        headers=headers,
        body=b"",
        source_ip="203.0.113.7",
        request_id="req-1",
        time_epoch_ms=1583348638390,
        trace_id="Root=1-5e7fe714-fee6909429159440eb352c40",
    )


async def test_payload_v1_gets_the_stage_segment_and_a_traceparent_trace() -> None:
    invoker = RecordingInvoker(
        {"statusCode": 201, "multiValueHeaders": {"X-A": ["1", "2"]}, "body": "made"}
    )
    req = request([("traceparent", TRACEPARENT)])
    reply = await invoke(
        invoker,
        "fn",
        None,
        build_event_v1(req, ROUTE),
        req,
        function_url=False,
        content_type=HTTP_API_CONTENT_TYPE,
        timeout_s=5,
        result_reply=reply_from_result_v1,
    )
    assert reply.status == 201 and reply.body == b"made"
    assert [v for k, v in reply.headers if k == "X-A"] == ["1", "2"]  # 1.0's mapping
    (stage,) = invoker.segments
    assert stage["origin"] == API_ORIGIN and stage["name"] == "a1b2c3d4e5/Prod"
    assert stage["trace_id"] == ROOT and stage["parent_id"] == "00f067aa0ba902b7"
    assert stage["http"]["response"]["status"] == 201
    passed = TraceHeader.parse(invoker.traces[0])
    assert passed == TraceHeader(ROOT, stage["id"], True)
    (event,) = invoker.events
    assert event["headers"]["X-Amzn-Trace-Id"] == invoker.traces[0]
    assert event["multiValueHeaders"]["X-Amzn-Trace-Id"] == [invoker.traces[0]]
    spellings = [
        k
        for k in (*event["headers"], *event["multiValueHeaders"])
        if k.lower() == "x-amzn-trace-id"
    ]
    assert spellings == ["X-Amzn-Trace-Id", "X-Amzn-Trace-Id"]


async def test_payload_v2_keeps_its_mapping_and_the_callers_xray_header_wins() -> None:
    invoker = RecordingInvoker({"plain": "object"})
    # Sampled by the caller: the stage records its segment (an unsampled trace records none).
    caller = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    req = request([("X-Amzn-Trace-Id", caller), ("traceparent", TRACEPARENT)])
    reply = await invoke(
        invoker,
        "fn",
        None,
        build_event(req, ROUTE),
        req,
        function_url=False,
        content_type=HTTP_API_CONTENT_TYPE,
    )
    assert reply.status == 200 and json.loads(reply.body) == {"plain": "object"}
    (stage,) = invoker.segments
    assert stage["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    assert stage["parent_id"] == "53995c3f42cd8ad8"
    (event,) = invoker.events
    assert event["headers"]["x-amzn-trace-id"] == invoker.traces[0]
    assert invoker.traces[0].endswith(f"Parent={stage['id']};Sampled=1")  # type: ignore[union-attr]

    # A 1.0 result mapping refuses what 2.0 takes: 500, and the stage segment says so.
    refused = await invoke(
        invoker,
        "fn",
        None,
        build_event_v1(req, ROUTE),
        req,
        function_url=False,
        content_type=HTTP_API_CONTENT_TYPE,
        result_reply=reply_from_result_v1,
    )
    assert refused.status == 500 and invoker.segments[-1]["fault"] is True


def test_trace_header_rewrite_is_case_insensitive() -> None:
    event: dict[str, Any] = {
        "headers": {"x-amzn-trace-id": "old", "X-AMZN-TRACE-ID": "older", "a": "1"},
        "multiValueHeaders": {"X-Amzn-Trace-Id": ["old"], "x-amzn-trace-id": ["x"]},
    }
    pass_trace_header(event, "Root=new")
    assert event["headers"] == {"a": "1", "x-amzn-trace-id": "Root=new"}
    assert event["multiValueHeaders"] == {"X-Amzn-Trace-Id": ["Root=new"]}
    bare_v1: dict[str, Any] = {"headers": {}, "multiValueHeaders": {}}
    pass_trace_header(bare_v1, "Root=new")
    assert bare_v1 == {
        "headers": {"X-Amzn-Trace-Id": "Root=new"},
        "multiValueHeaders": {"X-Amzn-Trace-Id": ["Root=new"]},
    }
    bare_v2: dict[str, Any] = {"headers": {}}
    pass_trace_header(bare_v2, "Root=new")
    assert bare_v2 == {"headers": {"x-amzn-trace-id": "Root=new"}}
