"""Tracing as a user sees it: one trace across a function URL, an Active function that
async-invokes another from inside its sandbox, and that one's OnSuccess destination;
the service map drawn from it; headers taken from callers; Powertools' Tracer sending
its subsegments to nimbus's X-Ray receiver. As on Lambda, only sampled traces are
recorded: a PassThrough function records nothing unless its caller decided to sample."""

from __future__ import annotations

import base64
import io
import json
import re
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nimbus.observe.tracing import TraceHeader
from tests.conftest import ROLE, live_server, make_zip
from tests.nimbus_process import NimbusProcess
from tests.observe.otlp_receiver import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.sandbox

# A calls B asynchronously as boto3 would from Lambda (botocore adds X-Amzn-Trace-Id from
# _X_AMZN_TRACE_ID when AWS_LAMBDA_FUNCTION_NAME is set): boto3 is not in the sandbox, so
# urllib with the same header.
CALLER = """
import json, os, urllib.request
def handler(event, context):
    trace = os.environ["_X_AMZN_TRACE_ID"]
    req = urllib.request.Request(
        os.environ["NIMBUS_ENDPOINT"] + "/2015-03-31/functions/" + os.environ["CALLEE"]
        + "/invocations", data=json.dumps({"from": "a"}).encode(), method="POST",
        headers={"X-Amz-Invocation-Type": "Event", "X-Amzn-Trace-Id": trace})
    with urllib.request.urlopen(req) as resp:
        status = resp.status
    return {"trace": trace, "status": status,
            "event_header": event.get("headers", {}).get("x-amzn-trace-id")}
"""
ECHO = """
import os
def handler(event, context):
    return {"trace": os.environ.get("_X_AMZN_TRACE_ID"),
            "daemon": os.environ.get("AWS_XRAY_DAEMON_ADDRESS")}
"""


@pytest.fixture(scope="module")
def otlp() -> Iterator[OtlpReceiver]:
    """An OpenTelemetry collector (OTLP/HTTP) the module's server exports its spans to."""
    receiver = OtlpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, otlp: OtlpReceiver
) -> Iterator[NimbusProcess]:
    """Async events run in a worker process: their segments cross processes. Both
    processes export their spans to ``otlp``, configured the standard way."""
    data = tmp_path_factory.mktemp("tracing") / "data"
    env = {"NIMBUS_ASYNC_WORKERS": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
           "OTEL_BSP_SCHEDULE_DELAY": "100"}
    with live_server(data, env) as proc:
        yield proc


def arn(name: str) -> str:
    return f"arn:aws:lambda:us-east-1:000000000000:function:{name}"


def create(lam: Any, name: str, code: str | bytes, **kw: Any) -> None:
    package = code if isinstance(code, bytes) else make_zip({"app.py": code})
    lam.create_function(FunctionName=name, Runtime=kw.pop("Runtime", "python3.12"), Role=ROLE,
                        Handler="app.handler", Code={"ZipFile": package}, **kw)


def wait_for(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll the trace API until ``check`` returns something truthy: segments of async
    hops are written by another process a moment after their invocation."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the trace")
        time.sleep(0.2)


def get_trace(server: NimbusProcess, root: str) -> dict[str, Any]:
    """The trace, once its first segments are written (a moment after the hop)."""
    resp = wait_for(lambda: (r := httpx.get(f"{server.endpoint}/_nimbus/traces/{root}"))
                    .status_code != 404 and r)
    assert resp.status_code == 200, resp.text
    return resp.json()["Traces"][0]


def documents(trace: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(s["Document"]) for s in trace["Segments"]]


def functions_in(server: NimbusProcess, root: str) -> set[str]:
    resp = httpx.get(f"{server.endpoint}/_nimbus/traces/{root}")
    if resp.status_code != 200:
        return set()
    return {d["name"] for d in documents(resp.json()["Traces"][0])
            if d.get("origin") == "AWS::Lambda::Function"}


def origins_in(server: NimbusProcess, root: str) -> set[tuple[str, str]]:
    resp = httpx.get(f"{server.endpoint}/_nimbus/traces/{root}")
    if resp.status_code != 200:
        return set()
    return {(d["name"], d.get("origin", "")) for d in documents(resp.json()["Traces"][0])}


def test_url_to_async_to_destination_is_one_trace(server: NimbusProcess) -> None:
    lam = server.client()
    suffix = str(time.time_ns())[-8:]
    a, b, c = f"a-{suffix}", f"b-{suffix}", f"c-{suffix}"
    create(lam, c, ECHO)
    create(lam, b, ECHO)
    lam.put_function_event_invoke_config(
        FunctionName=b, DestinationConfig={"OnSuccess": {"Destination": arn(c)}})
    # A samples (Active); B and C (PassThrough) follow the decision A passes on.
    create(lam, a, CALLER, TracingConfig={"Mode": "Active"},
           Environment={"Variables": {"NIMBUS_ENDPOINT": server.endpoint, "CALLEE": b}})
    url = lam.create_function_url_config(FunctionName=a, AuthType="NONE")["FunctionUrl"]

    resp = httpx.get(url, timeout=30)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == 202
    seen = body["trace"]  # Root=1-...;Parent=<A's segment>;Sampled=1, no Lineage
    fields = dict(part.split("=", 1) for part in seen.split(";"))
    assert set(fields) == {"Root", "Parent", "Sampled"}
    assert fields["Sampled"] == "1"  # Active, and the client made no decision
    root = fields["Root"]
    # The event's header names the trigger's segment, the function's Parent.
    assert body["event_header"].startswith(f"Root={root};Parent=")

    listed = httpx.get(f"{server.endpoint}/_nimbus/traces", params={"FunctionName": a}).json()
    assert [t["Id"] for t in listed["TraceSummaries"]] == [root]

    # C's async hop is recorded last (once its result is settled).
    wait_for(lambda: functions_in(server, root) >= {a, b, c}
             and (c, "AWS::Lambda") in origins_in(server, root))
    docs = documents(get_trace(server, root))
    assert {d["trace_id"] for d in docs} == {root}
    by_name: dict[tuple[str, str], dict[str, Any]] = {
        (d["name"], d.get("origin", "")): d for d in docs}
    url_seg = next(d for d in docs if d.get("origin") == "AWS::Lambda::FunctionUrl")
    a_fn = by_name[(a, "AWS::Lambda::Function")]
    assert a_fn["parent_id"] == url_seg["id"]
    assert a_fn["id"] == fields["Parent"]
    assert [s["name"] for s in a_fn["subsegments"]][-1] == "Invocation"
    b_async, b_fn = by_name[(b, "AWS::Lambda")], by_name[(b, "AWS::Lambda::Function")]
    assert b_async["parent_id"] == a_fn["id"]  # what A sent
    assert b_fn["parent_id"] == b_async["id"]
    names = [s["name"] for s in b_async["subsegments"]]
    assert names[:2] == ["Dwell Time", "Attempt #1"]
    destination = b_async["subsegments"][2]
    assert destination["name"] == c and destination["annotations"]["condition"] == "Success"
    c_async = by_name[(c, "AWS::Lambda")]
    assert c_async["parent_id"] == destination["id"]

    service_map = httpx.get(f"{server.endpoint}/_nimbus/service-map",
                            params={"Minutes": 5}).json()
    edges = {(e["From"], e["To"]): e for e in service_map["Edges"]}
    fn = "AWS::Lambda::Function/"
    url_node = f"AWS::Lambda::FunctionUrl/{url_seg['name']}"
    for edge in [(url_node, fn + a), (fn + a, fn + b), (fn + b, fn + c)]:
        assert edge in edges, (edge, list(edges))
        assert edges[edge]["Count"] == 1 and edges[edge]["Errors"] == 0
    assert edges[("client/client", url_node)]["Count"] == 1
    nodes = {n["Id"]: n for n in service_map["Nodes"]}
    assert nodes[fn + b]["Count"] == 1


def test_unsampled_invocations_record_nothing(server: NimbusProcess) -> None:
    """PassThrough with no decision from the caller, or a caller's Sampled=0: the
    function still sees its trace header, and nimbus records no segment of it."""
    lam = server.client()
    name = f"quiet-{time.time_ns() % 10**8}"
    create(lam, name, ECHO)
    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    unsampled = []
    for trace in (httpx.get(url, timeout=30).json()["trace"],
                  json.loads(lam.invoke(FunctionName=name, Payload=b"{}")["Payload"].read())
                  ["trace"]):
        header = TraceHeader.parse(trace)
        assert header is not None and header.parent and header.sampled is False
        unsampled.append(header.root)
    declined = "Root=1-65a00000-0123456789abcdef0123dddd;Sampled=0"
    httpx.post(f"{server.endpoint}/2015-03-31/functions/{name}/invocations",
               content=b"{}", headers={"X-Amzn-Trace-Id": declined}).raise_for_status()
    unsampled.append("1-65a00000-0123456789abcdef0123dddd")
    # A sampled invocation after them: once its segments are readable, theirs would be
    # too (one process, one log, in order).
    sampled = "Root=1-65a00000-0123456789abcdef0123eeee;Sampled=1"
    httpx.get(url, headers={"X-Amzn-Trace-Id": sampled}, timeout=30).raise_for_status()
    wait_for(lambda: name in functions_in(server, "1-65a00000-0123456789abcdef0123eeee"))
    for root in unsampled:
        assert httpx.get(f"{server.endpoint}/_nimbus/traces/{root}").status_code == 404
    listed = httpx.get(f"{server.endpoint}/_nimbus/traces", params={"FunctionName": name})
    assert [t["Id"] for t in listed.json()["TraceSummaries"]] == [
        "1-65a00000-0123456789abcdef0123eeee"]


def test_caller_headers_are_continued(server: NimbusProcess) -> None:
    lam = server.client()
    name = f"echo-{time.time_ns() % 10**8}"
    create(lam, name, ECHO)
    caller = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    resp = httpx.post(f"{server.endpoint}/2015-03-31/functions/{name}/invocations",
                      content=b"{}", headers={"X-Amzn-Trace-Id": caller + ";Lineage=a:1"})
    seen = resp.json()["trace"]
    assert seen.startswith("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=")
    assert seen.endswith(";Sampled=1") and "Lineage" not in seen
    assert resp.json()["daemon"] is None  # PassThrough: no receiver
    docs = documents(get_trace(server, "1-5759e988-bd862e3fe1be46a994272793"))
    (segment,) = [d for d in docs if d["name"] == name]
    assert segment["parent_id"] == "53995c3f42cd8ad8"

    # W3C traceparent on an HTTP trigger becomes the X-Ray trace.
    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    seen = httpx.get(url, headers={"traceparent": tp}).json()["trace"]
    assert seen.startswith("Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=")
    assert seen.endswith(";Sampled=1")
    docs = documents(get_trace(server, "1-4bf92f35-77b34da6a3ce929d0e0e4736"))
    (trigger,) = [d for d in docs if d.get("origin") == "AWS::Lambda::FunctionUrl"]
    assert trigger["parent_id"] == "00f067aa0ba902b7"
    assert trigger["http"]["response"]["status"] == 200


def test_bad_trace_requests_get_clear_errors(server: NimbusProcess) -> None:
    resp = httpx.get(f"{server.endpoint}/_nimbus/traces/not-a-trace")
    assert resp.status_code == 400 and "1-<8 hex digits>" in resp.json()["message"]
    resp = httpx.get(f"{server.endpoint}/_nimbus/traces/1-00000000-000000000000000000000000")
    assert resp.status_code == 404
    resp = httpx.get(f"{server.endpoint}/_nimbus/service-map", params={"Minutes": "0"})
    assert resp.status_code == 400


POWERTOOLS = """
from aws_lambda_powertools import Tracer
tracer = Tracer(service="checkout")

@tracer.capture_method
def price(n):
    tracer.put_annotation(key="items", value=n)
    return n * 3

@tracer.capture_lambda_handler
def handler(event, context):
    return {"total": price(event.get("n", 1))}
"""


def powertools_zip() -> bytes:
    """The function with Powertools and aws-xray-sdk vendored from this venv (pure
    Python; wrapt falls back to its pure-Python wrappers if its extension cannot load)."""
    import aws_lambda_powertools
    import aws_xray_sdk  # type: ignore[import-untyped]
    import typing_extensions
    import wrapt

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("app.py", POWERTOOLS)
        zf.write(typing_extensions.__file__, "typing_extensions.py")
        for module in (aws_lambda_powertools, aws_xray_sdk, wrapt):
            top = Path(str(module.__file__)).parent
            for path in top.rglob("*"):
                if path.is_file() and "__pycache__" not in path.parts:
                    zf.write(path, f"{top.name}/{path.relative_to(top)}")
    return buf.getvalue()


def test_powertools_tracer_subsegments_join_the_trace(server: NimbusProcess) -> None:
    lam = server.client()
    name = f"pt-{time.time_ns() % 10**8}"
    create(lam, name, powertools_zip(), Runtime="python3.11", Timeout=30,
           TracingConfig={"Mode": "Active"})
    out = lam.invoke(FunctionName=name, Payload=b'{"n": 4}')
    assert "FunctionError" not in out, out["Payload"].read()
    assert json.loads(out["Payload"].read()) == {"total": 12}
    # The segment log is written a moment after the invocation.
    root = wait_for(lambda: httpx.get(f"{server.endpoint}/_nimbus/traces", params={
        "FunctionName": name}).json()["TraceSummaries"])[0]["Id"]

    def subsegments() -> list[dict[str, Any]]:
        docs = documents(get_trace(server, root))
        (fn,) = [d for d in docs if d.get("origin") == "AWS::Lambda::Function"]
        return [s for s in fn.get("subsegments", []) if s["name"].startswith("## ")]

    # The SDK streams each subsegment as it closes, nested under the function's segment
    # (its facade: the Parent of _X_AMZN_TRACE_ID).
    found = wait_for(lambda: [s for s in subsegments() if s.get("subsegments")], timeout=15)
    (handler,) = found
    assert handler["name"] == "## handler"
    (inner,) = handler["subsegments"]
    assert inner["name"] == "## app.price"
    assert inner["annotations"]["items"] == 4
    assert handler["annotations"]["ColdStart"] is True
    assert handler["annotations"]["Service"] == "checkout"


def test_sqs_messages_carry_their_trace_to_the_mapping(server: NimbusProcess) -> None:
    lam, sqs = server.client(), server.client("sqs")
    name = f"consumer-{time.time_ns() % 10**8}"
    create(lam, name, ECHO)
    url = sqs.create_queue(QueueName=f"q-{name}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    caller = "Root=1-65a00000-0123456789abcdef01234567;Parent=1111111111111111;Sampled=1"
    sqs.send_message(QueueUrl=url, MessageBody="{}", MessageSystemAttributes={
        "AWSTraceHeader": {"DataType": "String", "StringValue": caller}})
    lam.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=name, BatchSize=1)
    root = "1-65a00000-0123456789abcdef01234567"
    wait_for(lambda: name in functions_in(server, root))
    docs = documents(get_trace(server, root))
    (queue,) = [d for d in docs if d.get("origin") == "AWS::SQS::Queue"]
    (fn,) = [d for d in docs if d.get("origin") == "AWS::Lambda::Function"]
    assert queue["name"] == f"q-{name}" and queue["parent_id"] == "1111111111111111"
    assert fn["parent_id"] == queue["id"]
    edges = {(e["From"], e["To"]) for e in httpx.get(
        f"{server.endpoint}/_nimbus/service-map").json()["Edges"]}
    assert (f"AWS::SQS::Queue/q-{name}", f"AWS::Lambda::Function/{name}") in edges


def test_spans_reach_an_otlp_collector_with_their_links(
    server: NimbusProcess, otlp: OtlpReceiver
) -> None:
    """A function URL called with a W3C traceparent, a function that async-invokes
    another (run by the worker process): every hop's span reaches the collector in the
    caller's trace, each one's parent the hop that called it."""
    lam = server.client()
    suffix = str(time.time_ns())[-8:]
    a, b = f"oa-{suffix}", f"ob-{suffix}"
    create(lam, b, ECHO)
    create(lam, a, CALLER,
           Environment={"Variables": {"NIMBUS_ENDPOINT": server.endpoint, "CALLEE": b}})
    url = lam.create_function_url_config(FunctionName=a, AuthType="NONE")["FunctionUrl"]
    trace, client_span = uuid.uuid4().hex, "00f067aa0ba902b7"
    resp = httpx.get(url, headers={"traceparent": f"00-{trace}-{client_span}-01"}, timeout=30)
    assert resp.status_code == 200 and resp.json()["status"] == 202, resp.text

    def chain(spans: list[ReceivedSpan]) -> dict[tuple[str, str], ReceivedSpan] | None:
        mine = {(s.name, str(s.attributes.get("aws.xray.origin", ""))): s
                for s in spans if s.trace_id == trace}
        wanted = [(b, "AWS::Lambda"), (b, "AWS::Lambda::Function"), (a, "AWS::Lambda::Function")]
        # The URL's span too: each process exports its own batches, in no set order.
        url_seen = any(origin == "AWS::Lambda::FunctionUrl" for _, origin in mine)
        return mine if url_seen and all(k in mine for k in wanted) else None

    spans = otlp.wait_for(chain)
    url_span = next(s for (_, origin), s in spans.items() if origin == "AWS::Lambda::FunctionUrl")
    a_fn = spans[(a, "AWS::Lambda::Function")]
    b_async, b_fn = spans[(b, "AWS::Lambda")], spans[(b, "AWS::Lambda::Function")]
    assert url_span.parent_span_id == client_span
    assert url_span.attributes["http.response.status_code"] == 200
    assert a_fn.parent_span_id == url_span.span_id
    assert b_async.parent_span_id == a_fn.span_id  # what A sent, from inside its sandbox
    assert b_fn.parent_span_id == b_async.span_id
    assert a_fn.attributes["faas.name"] == a and b_fn.resource["service.name"] == "nimbus"
    assert a_fn.kind == 2 and b_async.kind == 5  # SERVER; CONSUMER, an async event
    # The subsegments nest too: A's Invocation under A's span, B's dwell under its hop.
    everything = otlp.trace(trace)
    (a_invocation,) = [s for s in everything
                       if s.name == "Invocation" and s.parent_span_id == a_fn.span_id]
    assert a_fn.start_ns <= a_invocation.start_ns <= a_invocation.end_ns <= a_fn.end_ns
    assert any(s.name == "Dwell Time" and s.parent_span_id == b_async.span_id
               for s in everything)
    # The same ids as the trace nimbus serves itself (once each process has written its
    # segment log, which runs apart from the export).
    root, ids = f"1-{trace[:8]}-{trace[8:]}", {url_span.span_id, a_fn.span_id, b_fn.span_id}
    wait_for(lambda: b in functions_in(server, root) and a in functions_in(server, root))
    assert {d["id"] for d in documents(get_trace(server, root))} >= ids


def test_report_line_carries_the_xray_segment_when_active(server: NimbusProcess) -> None:
    lam = server.client()
    name = f"xr-{time.time_ns() % 10**8}"
    create(lam, name, ECHO, TracingConfig={"Mode": "Active"})
    out = lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
    seen = TraceHeader.parse(json.loads(out["Payload"].read())["trace"])
    assert seen is not None and seen.sampled and seen.parent
    log = base64.b64decode(out["LogResult"]).decode()
    report = log[log.index("REPORT RequestId:"):]
    assert re.fullmatch(
        r"REPORT RequestId: \S+\tDuration: [\d.]+ ms\tBilled Duration: \d+ ms\t"
        r"Memory Size: 128 MB\tMax Memory Used: \d+ MB\t(Init Duration: [\d.]+ ms\t)?\n"
        f"XRAY TraceId: {seen.root}\tSegmentId: {seen.parent}\tSampled: true\t\n",
        report), report
    # The caller decided not to sample: Lambda prints no XRAY part; nor for PassThrough.
    unsampled = "Root=1-65a00000-0123456789abcdef0123abcd;Sampled=0"
    with httpx.Client() as http:
        resp = http.post(f"{server.endpoint}/2015-03-31/functions/{name}/invocations",
                         content=b"{}", headers={"X-Amzn-Trace-Id": unsampled,
                                                 "X-Amz-Log-Type": "Tail"})
    assert "XRAY" not in base64.b64decode(resp.headers["X-Amz-Log-Result"]).decode()
    plain = f"pt-{name}"
    create(lam, plain, ECHO)
    out = lam.invoke(FunctionName=plain, Payload=b"{}", LogType="Tail")
    assert "XRAY" not in base64.b64decode(out["LogResult"]).decode()


ECHO_V1 = """
import json, os
def handler(event, context):
    return {"statusCode": 200, "body": json.dumps({
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
        "header": event["headers"].get("X-Amzn-Trace-Id"),
        "multi": event["multiValueHeaders"].get("X-Amzn-Trace-Id"),
        "names": [k for k in event["headers"] if k.lower() == "x-amzn-trace-id"]})}
"""


def test_payload_v1_routes_are_traced_and_take_traceparent(server: NimbusProcess) -> None:
    lam, gw = server.client(), server.client("apigatewayv2")
    name = f"v1t-{time.time_ns() % 10**8}"
    create(lam, name, ECHO_V1)
    api = gw.create_api(Name=name, ProtocolType="HTTP")["ApiId"]
    integration = gw.create_integration(
        ApiId=api, IntegrationType="AWS_PROXY", PayloadFormatVersion="1.0",
        IntegrationUri=arn(name))["IntegrationId"]
    gw.create_route(ApiId=api, RouteKey="GET /hi", Target=f"integrations/{integration}")
    gw.create_stage(ApiId=api, StageName="$default")
    tp = "00-5af7183fb1d4cf5f4a7b26a3e1f36c01-b7ad6b7169203331-01"
    resp = httpx.get(f"{server.endpoint}/execute-api/{api}/hi", headers={"traceparent": tp},
                     timeout=30)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    root = "1-5af7183f-b1d4cf5f4a7b26a3e1f36c01"
    assert body["names"] == ["X-Amzn-Trace-Id"]  # one spelling, AWS's
    assert body["multi"] == [body["header"]]
    header = TraceHeader.parse(body["header"])
    assert header is not None and header.root == root and header.sampled is True
    docs = documents(get_trace(server, root))
    (stage,) = [d for d in docs if d.get("origin") == "AWS::ApiGateway::Stage"]
    (fn,) = [d for d in docs if d.get("origin") == "AWS::Lambda::Function"]
    assert stage["name"] == f"{api}/$default" and stage["parent_id"] == "b7ad6b7169203331"
    assert header.parent == stage["id"] == fn["parent_id"]
    assert body["trace"] == f"Root={root};Parent={fn['id']};Sampled=1"


# Sends to SQS as boto3 would from inside a traced function: the JSON protocol, with the
# X-Amzn-Trace-Id header botocore adds from _X_AMZN_TRACE_ID (boto3 is not in the sandbox).
SENDER = """
import json, os, urllib.request
def handler(event, context):
    req = urllib.request.Request(
        os.environ["NIMBUS_ENDPOINT"] + "/", method="POST",
        data=json.dumps({"QueueUrl": os.environ["QUEUE_URL"], "MessageBody": "hi"}).encode(),
        headers={"Content-Type": "application/x-amz-json-1.0",
                 "X-Amz-Target": "AmazonSQS.SendMessage",
                 "X-Amzn-Trace-Id": os.environ["_X_AMZN_TRACE_ID"]})
    with urllib.request.urlopen(req) as resp:
        sent = json.loads(resp.read())
    return {"trace": os.environ["_X_AMZN_TRACE_ID"], "sent": sent}
"""


def test_a_message_a_function_sends_continues_its_trace(server: NimbusProcess) -> None:
    lam, sqs = server.client(), server.client("sqs")
    suffix = str(time.time_ns() % 10**8)
    sender, consumer = f"send-{suffix}", f"drain-{suffix}"
    url = sqs.create_queue(QueueName=f"hop-{suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    create(lam, consumer, ECHO)
    create(lam, sender, SENDER, TracingConfig={"Mode": "Active"},
           Environment={"Variables": {"NIMBUS_ENDPOINT": server.endpoint, "QUEUE_URL": url}})
    lam.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=consumer,
                                    BatchSize=1)
    out = lam.invoke(FunctionName=sender, Payload=b"{}")
    assert "FunctionError" not in out
    result = json.loads(out["Payload"].read())
    assert "MD5OfMessageSystemAttributes" not in result["sent"]  # none were given
    seen = TraceHeader.parse(result["trace"])
    assert seen is not None and seen.parent is not None
    wait_for(lambda: consumer in functions_in(server, seen.root))
    docs = documents(get_trace(server, seen.root))
    functions = {d["name"]: d for d in docs if d.get("origin") == "AWS::Lambda::Function"}
    (queue,) = [d for d in docs if d.get("origin") == "AWS::SQS::Queue"]
    assert functions[sender]["id"] == seen.parent
    assert queue["name"] == f"hop-{suffix}" and queue["parent_id"] == seen.parent
    assert functions[consumer]["parent_id"] == queue["id"]
    edges = {(e["From"], e["To"]) for e in httpx.get(
        f"{server.endpoint}/_nimbus/service-map").json()["Edges"]}
    fn = "AWS::Lambda::Function/"
    assert (fn + sender, f"AWS::SQS::Queue/hop-{suffix}") in edges
    assert (f"AWS::SQS::Queue/hop-{suffix}", fn + consumer) in edges


def test_sqs_takes_the_http_trace_header_as_awstraceheader(server: NimbusProcess) -> None:
    """The header stands for every message of the request; a message's own system
    attribute wins; a header that is not X-Ray's is not kept."""
    sqs = server.client("sqs")
    url = sqs.create_queue(QueueName=f"hdr-{time.time_ns() % 10**8}")["QueueUrl"]
    header = "Root=1-65a00000-0123456789abcdef01234567;Parent=1111111111111111;Sampled=1"
    own = "Root=1-65a00000-0123456789abcdef0123ffff;Sampled=1"

    def add_header(request: Any, **kwargs: Any) -> None:
        request.headers["X-Amzn-Trace-Id"] = header

    sqs.meta.events.register("before-sign.sqs.*", add_header)
    sqs.send_message(QueueUrl=url, MessageBody="one")
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "a", "MessageBody": "two"},
        {"Id": "b", "MessageBody": "three", "MessageSystemAttributes": {
            "AWSTraceHeader": {"DataType": "String", "StringValue": own}}}])
    sqs.meta.events.unregister("before-sign.sqs.*", add_header)
    header = "not-a-trace-header"
    sqs.meta.events.register("before-sign.sqs.*", add_header)
    sqs.send_message(QueueUrl=url, MessageBody="four")
    got = {}
    while len(got) < 4:
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                     MessageSystemAttributeNames=["AWSTraceHeader"],
                                     WaitTimeSeconds=1).get("Messages", []):
            got[m["Body"]] = m.get("Attributes", {}).get("AWSTraceHeader")
    traced = "Root=1-65a00000-0123456789abcdef01234567;Parent=1111111111111111;Sampled=1"
    assert got == {"one": traced, "two": traced, "three": own, "four": None}
