"""Tracing's pieces without a server: trace ids and headers, W3C conversion, trigger
propagation, the segment log and its reader, the X-Ray daemon protocol, and the
service map computed from segments."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from nimbus import ids
from nimbus.observe.logs import render
from nimbus.observe.service_map import service_map, summary, trace_document
from nimbus.observe.trace_store import SegmentLog, TraceStore
from nimbus.observe.tracing import (
    QUEUE_ORIGIN,
    SCHEDULE_ORIGIN,
    URL_ORIGIN,
    Caller,
    TraceHeader,
    Tracer,
    calling,
    http_trace_header,
    is_active,
    report_xray,
    sampled_for,
)
from nimbus.observe.xray_daemon import XRayDaemon, parse_datagram

ROOT = "1-5759e988-bd862e3fe1be46a994272793"


def test_id_formats() -> None:
    assert re.fullmatch(r"1-[0-9a-f]{8}-[0-9a-f]{24}", ids.trace_root())
    assert re.fullmatch(r"[0-9a-f]{16}", ids.segment_id())
    assert ids.segment_id() != ids.segment_id()
    assert re.fullmatch(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24}", ids.trace_id())
    header = str(TraceHeader.new().child(ids.segment_id(), sampled=False))
    assert re.fullmatch(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0", header)


def test_parse_keeps_root_parent_sampled_and_drops_the_rest() -> None:
    parsed = TraceHeader.parse(
        f"Self=1-abc;Root={ROOT};Lineage=a87bd80c:1;Parent=53995C3F42CD8AD8;Sampled=1"
    )
    assert parsed == TraceHeader(ROOT, "53995c3f42cd8ad8", True)
    assert str(parsed) == f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1"
    assert TraceHeader.parse(f"Root={ROOT};Sampled=?") == TraceHeader(ROOT, None, None)
    assert TraceHeader.parse(f"Root={ROOT};Parent=nothex") == TraceHeader(ROOT, None, None)
    for bad in (None, "", "Parent=53995c3f42cd8ad8", "Root=2-abc", "garbage"):
        assert TraceHeader.parse(bad) is None
    # The spellings nimbus writes (read in one match) come back as they were.
    for header in (TraceHeader(ROOT), TraceHeader(ROOT, "53995c3f42cd8ad8"),
                   TraceHeader(ROOT, None, False), TraceHeader(ROOT, "53995c3f42cd8ad8", True)):
        assert TraceHeader.parse(str(header)) == header
    assert TraceHeader.parse(f"Root={ROOT};Sampled=1;Parent=53995c3f42cd8ad8") == TraceHeader(
        ROOT, "53995c3f42cd8ad8", True)


def test_traceparent_converts_to_xray() -> None:
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert TraceHeader.from_traceparent(tp) == TraceHeader(
        "1-4bf92f35-77b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", True)
    assert TraceHeader.from_traceparent(tp[:-2] + "00").sampled is False  # type: ignore[union-attr]
    for bad in ("00-" + "0" * 32 + "-00f067aa0ba902b7-01", "ff-" + tp[3:], "00-xyz", None):
        assert TraceHeader.from_traceparent(bad) is None
    # X-Amzn-Trace-Id wins over traceparent.
    assert http_trace_header(f"Root={ROOT}", tp) == TraceHeader(ROOT)
    assert http_trace_header(None, tp) == TraceHeader.from_traceparent(tp)


def test_sampling_decision() -> None:
    assert sampled_for(TraceHeader(ROOT), active=True) is True
    assert sampled_for(TraceHeader(ROOT), active=False) is False
    assert sampled_for(TraceHeader(ROOT, sampled=False), active=True) is False
    assert sampled_for(TraceHeader(ROOT, sampled=True), active=False) is True
    assert is_active({"TracingConfig": {"Mode": "Active"}})
    assert not is_active({"TracingConfig": {"Mode": "PassThrough"}}) and not is_active({})


def test_report_line_names_the_xray_segment_of_an_active_sampled_invocation() -> None:
    seen = f"Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1"
    xray = f"\nXRAY TraceId: {ROOT}\tSegmentId: 53995c3f42cd8ad8\tSampled: true\t"
    assert report_xray(seen, active=True) == xray
    assert report_xray(seen, active=False) == ""  # PassThrough: Lambda prints none
    assert report_xray(seen.replace("Sampled=1", "Sampled=0"), active=True) == ""
    assert report_xray(None, active=True) == ""
    text = render("req-1", "$LATEST", b"hi\n", 1.5, 128, 20, 3.25, xray=xray)
    # One REPORT event in Lambda's log: its fields, then the XRAY part after a line break.
    assert text.endswith(
        "END RequestId: req-1\nREPORT RequestId: req-1\tDuration: 1.50 ms\t"
        "Billed Duration: 5 ms\tMemory Size: 128 MB\tMax Memory Used: 20 MB\t"
        f"Init Duration: 3.25 ms\t\nXRAY TraceId: {ROOT}\tSegmentId: 53995c3f42cd8ad8\t"
        "Sampled: true\t\n")
    assert "XRAY" not in render("req-1", "$LATEST", b"", 1.5, 128, 20, None)


def test_incoming_continues_a_header_or_a_trigger_or_starts_a_root() -> None:
    docs: list[dict[str, Any]] = []
    tracer = Tracer(docs.append)
    given = f"Root={ROOT};Parent=53995c3f42cd8ad8"
    assert tracer.incoming(given) == TraceHeader(ROOT, "53995c3f42cd8ad8")
    fresh = tracer.incoming(None)
    assert fresh.parent is None and fresh.root != ROOT and not docs
    message = TraceHeader(ROOT, "1111111111111111", True)
    with calling(Caller(QUEUE_ORIGIN, "orders", message)):
        hop = tracer.incoming(None)
    (trigger,) = docs
    assert trigger["origin"] == QUEUE_ORIGIN and trigger["name"] == "orders"
    assert trigger["parent_id"] == "1111111111111111" and trigger["trace_id"] == ROOT
    assert hop == TraceHeader(ROOT, trigger["id"], True)
    assert tracer.incoming(None).root != ROOT  # the caller is gone with its scope


def test_only_sampled_traces_are_recorded() -> None:
    """Lambda's rule: nimbus's own segments of a trace are kept once an invocation (or
    the caller) decided to sample it; hops that record after the invocation (its
    trigger, its async attempt) follow that decision."""
    docs: list[dict[str, Any]] = []
    tracer = Tracer(docs.append)
    quiet, loud = TraceHeader.new(), TraceHeader.new()
    assert tracer.decide(quiet, active=False) is False  # PassThrough, no decision given
    assert tracer.decide(loud, active=True) is True  # Active
    assert tracer.decide(TraceHeader(ROOT, sampled=False), active=True) is False
    for trace in (quiet, loud):
        tracer.trigger(URL_ORIGIN, "lambda-url/x", trace, 1.0, 2.0)
        tracer.record({"trace_id": trace.root, "id": "0123456789abcdef", "name": "hop"})
    assert [d["trace_id"] for d in docs] == [loud.root, loud.root]
    docs.clear()
    # A caller's decision stands on its own; so does a trigger that starts a trace before
    # any function decides (a schedule's tick), unless its caller said no.
    tracer.trigger(URL_ORIGIN, "lambda-url/x", TraceHeader(ROOT, sampled=True), 1.0, 2.0)
    with calling(Caller(SCHEDULE_ORIGIN, "default/tick")):
        tick = tracer.incoming(None)
    with calling(Caller(QUEUE_ORIGIN, "q", TraceHeader(ROOT, "1111111111111111", False))):
        tracer.incoming(None)
    assert [d["origin"] for d in docs] == [URL_ORIGIN, SCHEDULE_ORIGIN]
    assert tick.sampled is None and tick.parent == docs[1]["id"]
    assert Tracer().decide(loud, active=True) is True  # no sink: decided, nothing kept


def test_a_document_that_cannot_be_stored_spares_its_batch(tmp_path: Path) -> None:
    log = SegmentLog(tmp_path, "server")
    store = TraceStore(tmp_path, max_traces=10)
    for i, name in enumerate(["f", "\ud800", "g"]):
        log.append({"trace_id": f"1-00000000-{i:024x}", "id": f"{i:016x}", "name": name,
                    "start_time": i, "end_time": i + 1})
    log.flush()
    store.refresh()
    assert sorted(docs[0]["name"] for _, docs in store.traces()) == ["f", "g"]


def test_segment_log_rotates_and_the_store_reads_incrementally(tmp_path: Path) -> None:
    log = SegmentLog(tmp_path, "server", max_bytes=2000)
    store = TraceStore(tmp_path, max_traces=1000)
    for i in range(10):
        log.append({"trace_id": f"1-00000000-{i:024x}", "id": f"{i:016x}", "name": "f",
                    "start_time": i, "end_time": i + 1})
    log.flush()
    store.refresh()
    assert len(list(store.traces())) == 10
    for i in range(10, 100):
        log.append({"trace_id": f"1-00000000-{i:024x}", "id": f"{i:016x}", "name": "f",
                    "start_time": i, "end_time": i + 1, "pad": "x" * 50})
        log.flush()
        store.refresh()  # a reader that keeps up reads each file to its end
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and all(f.startswith("server.") for f in files)  # bounded
    held = [root for root, _ in store.traces()]
    assert len(held) == 100 and held[0] == f"1-00000000-{99:024x}"
    # A new reader (a restarted server) sees what the kept files hold, oldest first,
    # up to its own bound.
    kept = sum(len((tmp_path / f).read_text().splitlines()) for f in files)
    assert kept < 90
    again = TraceStore(tmp_path, max_traces=5)
    again.refresh()
    assert next(root for root, _ in again.traces()) == f"1-00000000-{99:024x}"
    assert len(list(again.traces())) == 5
    # A half-written line waits for its end.
    with open(tmp_path / files[-1], "a") as f:
        f.write('{"trace_id": "1-00000000-0000000000000000000000ff"')
    again.refresh()
    assert again.trace("1-00000000-0000000000000000000000ff") is None


def test_daemon_protocol_datagrams() -> None:
    header = b'{"format": "json", "version": 1}\n'
    doc = {"trace_id": ROOT, "id": "0123456789abcdef", "name": "## handler",
           "start_time": 1.0, "end_time": 2.0, "type": "subsegment",
           "parent_id": "53995c3f42cd8ad8"}
    assert parse_datagram(header + json.dumps(doc).encode()) == doc
    assert parse_datagram(json.dumps(doc).encode()) is None  # no header line
    assert parse_datagram(b'{"format": "xml", "version": 1}\n' + json.dumps(doc).encode()) is None
    orphan = {k: v for k, v in doc.items() if k != "parent_id"}
    assert parse_datagram(header + json.dumps(orphan).encode()) is None
    unfinished = {k: v for k, v in doc.items() if k != "end_time"}
    assert parse_datagram(header + json.dumps(unfinished).encode()) is None
    assert parse_datagram(header + json.dumps({**unfinished, "in_progress": True}).encode())
    assert parse_datagram(header + b"{not json") is None


_DOC = ('"trace_id": "1-5f84c7a5-aaaaaaaaaaaaaaaaaaaaaaaa", "id": "1111111111111111", '
        '"name": "x", "start_time": 1')
_SUB = '{"id": "1111111111111112", "name": "s", "start_time": 1, "end_time": 2}'


@pytest.mark.parametrize(
    "body",
    [
        # Each made a trace view answer 500, or the store stop writing, once kept.
        "{" + _DOC + ', "end_time": 2, "subsegments": 1}',
        "{" + _DOC + ', "end_time": 2, "subsegments": [' + _SUB + ', {"id": 5}]}',
        "{" + _DOC + ', "end_time": 2, "origin": [1]}',
        "{" + _DOC + ', "end_time": 2, "aws": {"request_id": []}}',
        "{" + _DOC + ', "end_time": NaN}',
        "{" + _DOC.replace('"start_time": 1', '"start_time": -1.7e308') + ', "end_time": 1.7e308}',
        "{" + _DOC + ', "end_time": 1' + "0" * 400 + "}",
        "{" + _DOC + ', "end_time": 2, "metadata": {"deep": ' + "[" * 300 + "]" * 300 + "}}",
        "{" + _DOC + ', "end_time": 2, "annotations": {"k": "\\ud800"}}',
        "[" * 5000,
    ],
)
def test_daemon_drops_documents_the_views_could_not_read(body: str) -> None:
    header = b'{"format": "json", "version": 1}\n'
    assert parse_datagram(header + ("{" + _DOC + ', "end_time": 2}').encode()) is not None
    assert parse_datagram(header + body.encode()) is None


def test_daemon_receives_over_udp() -> None:
    async def scenario() -> list[dict[str, Any]]:
        received: list[dict[str, Any]] = []
        got = asyncio.Event()

        def sink(doc: dict[str, Any]) -> None:
            received.append(doc)
            got.set()

        daemon = XRayDaemon(asyncio.get_running_loop(), sink)
        host, port = daemon.open().split(":")
        doc = {"trace_id": ROOT, "id": "0123456789abcdef", "name": "app",
               "start_time": 1.0, "end_time": 2.0}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"garbage", (host, int(port)))
            s.sendto(b'{"format":"json","version":1}\n' + json.dumps(doc).encode(),
                     (host, int(port)))
        await asyncio.wait_for(got.wait(), 5)
        assert daemon.dropped == 1
        daemon.close()
        return received

    assert asyncio.run(scenario())[0]["name"] == "app"


def seg(name: str, origin: str, sid: str, parent: str | None = None, start: float = 0.0,
        end: float = 1.0, **extra: Any) -> dict[str, Any]:
    doc = {"trace_id": ROOT, "id": sid, "name": name, "origin": origin,
           "start_time": start, "end_time": end, **extra}
    if parent:
        doc["parent_id"] = parent
    return doc


def chain() -> list[dict[str, Any]]:
    """URL -> A -> (async) B -> OnSuccess destination C, as nimbus records it, plus an
    SQS destination of C nobody reads and a subsegment A's SDK streamed."""
    fn, svc = "AWS::Lambda::Function", "AWS::Lambda"
    return [
        seg("lambda-url/u1", "AWS::Lambda::FunctionUrl", "a000000000000001", end=0.5),
        seg("A", fn, "a000000000000002", "a000000000000001", 0.1, 0.4),
        {"trace_id": ROOT, "id": "a000000000000003", "type": "subsegment", "name": "## handler",
         "parent_id": "a000000000000002", "start_time": 0.2, "end_time": 0.3},
        seg("B", svc, "b000000000000001", "a000000000000002", 0.3, 2.0, subsegments=[
            {"id": "b000000000000002", "name": "Dwell Time", "start_time": 0.3, "end_time": 1},
            {"id": "b000000000000003", "name": "C", "namespace": "aws", "start_time": 1.9,
             "end_time": 1.9, "aws": {"resource_type": fn}}]),
        seg("B", fn, "b000000000000004", "b000000000000001", 1.0, 1.8),
        seg("C", svc, "c000000000000001", "b000000000000003", 1.9, 3.0, fault=True,
            subsegments=[{"id": "c000000000000002", "name": "out", "namespace": "aws",
                          "start_time": 2.9, "end_time": 2.95,
                          "aws": {"resource_type": "AWS::SQS::Queue"}}]),
        seg("C", fn, "c000000000000003", "c000000000000001", 2.0, 2.5, fault=True),
    ]


def test_service_map_edges_follow_every_hop_once() -> None:
    result = service_map([chain()])
    edges = {(e["From"], e["To"]): e for e in result["Edges"]}
    fn = "AWS::Lambda::Function/"
    assert set(edges) == {
        ("client/client", "AWS::Lambda::FunctionUrl/lambda-url/u1"),
        ("AWS::Lambda::FunctionUrl/lambda-url/u1", fn + "A"),
        (fn + "A", fn + "B"),
        (fn + "B", fn + "C"),
        (fn + "C", "AWS::SQS::Queue/out"),
    }
    assert edges[(fn + "A", fn + "B")] == {"From": fn + "A", "To": fn + "B", "Count": 1,
                                           "Errors": 0, "P50Ms": 1700.0}
    assert edges[(fn + "B", fn + "C")]["Errors"] == 1
    nodes = {n["Id"]: n for n in result["Nodes"]}
    assert nodes[fn + "B"]["Count"] == 1 and nodes[fn + "B"]["P50Ms"] == 800.0
    assert nodes[fn + "C"]["Errors"] == 1
    doubled = service_map([chain(), chain()])
    assert {(e["From"], e["To"]): e["Count"] for e in doubled["Edges"]}[(fn + "A", fn + "B")] == 2


def test_trace_document_nests_streamed_subsegments_and_hops() -> None:
    doc = trace_document(ROOT, chain())
    segments = {s["Id"]: json.loads(s["Document"]) for s in doc["Segments"]}
    a = segments["a000000000000002"]
    assert [s["name"] for s in a["subsegments"]] == ["## handler"]
    assert "a000000000000003" not in segments
    assert doc["Duration"] == 3.0
    (top,) = doc["Tree"]
    assert top["name"] == "lambda-url/u1"
    (a_node,) = top["children"]
    (b_async,) = a_node["children"]
    assert [c["origin"] for c in b_async["children"]] == ["AWS::Lambda::Function",
                                                          "AWS::Lambda"]
    info = summary(ROOT, chain())
    assert info["Functions"] == ["A", "B", "C"] and info["HasFault"] is True
    assert info["EntryPoint"] == {"Name": "lambda-url/u1", "Type": "AWS::Lambda::FunctionUrl"}
