"""What stored segments say: one trace as X-Ray's BatchGetTraces shows it (and as a tree
of hops), trace summaries, and the service map.

The map's nodes are the functions, their triggers (function URLs, HTTP API stages, SQS
queues and brokers read by event source mappings, schedules), what they call downstream
(a destination queue or webhook, an AWS call the function's SDK recorded) and "client"
for hops nobody recorded a caller of. An edge joins a segment's node to the node of the
segment that encloses its parent: a function calling another function synchronously
(Parent is the caller's segment, or a subsegment of it), an async event (the callee's
``AWS::Lambda`` segment, whose Parent is what the caller sent), a destination (the
callee's parent is the destination subsegment of the caller's ``AWS::Lambda`` segment).
A function's ``AWS::Lambda`` segment and its ``AWS::Lambda::Function`` segment are one
node, so only the hop into a node makes an edge, once per call (per async attempt).
"""

from __future__ import annotations

import copy
import json
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nimbus.observe.tracing import FUNCTION_ORIGIN, SERVICE_ORIGIN

CLIENT = ("client", "client")
Doc = dict[str, Any]
NodeKey = tuple[str, str]  # (name, type)


def _duration(doc: Doc) -> float:
    start, end = doc.get("start_time"), doc.get("end_time")
    if isinstance(start, int | float) and isinstance(end, int | float):
        return max(0.0, float(end) - float(start))
    return 0.0


def _failed(doc: Doc) -> bool:
    return bool(doc.get("error") or doc.get("fault") or doc.get("throttle"))


def _walk(doc: Doc) -> Iterable[Doc]:
    yield doc
    for sub in doc.get("subsegments") or ():
        if isinstance(sub, dict):
            yield from _walk(sub)


class TraceIndex:
    """One trace's documents, indexed: which top-level segment encloses every id."""

    def __init__(self, docs: Iterable[Doc]) -> None:
        self.segments: list[Doc] = []
        self.standalone: list[Doc] = []  # subsegments sent on their own (SDKs, daemon)
        for doc in docs:
            (self.standalone if doc.get("type") == "subsegment" else self.segments).append(doc)
        self.enclosing: dict[str, Doc] = {}  # any id -> its top-level segment
        self.by_id: dict[str, Doc] = {}
        for segment in self.segments:
            for doc in _walk(segment):
                if isinstance(doc.get("id"), str):
                    self.enclosing[doc["id"]] = segment
                    self.by_id[doc["id"]] = doc
        pending = list(self.standalone)
        while pending:  # parents may arrive after children: resolve until stable
            left = []
            for sub in pending:
                parent = self.enclosing.get(sub.get("parent_id", ""))
                if parent is None:
                    left.append(sub)
                    continue
                for doc in _walk(sub):
                    if isinstance(doc.get("id"), str):
                        self.enclosing[doc["id"]] = parent
                        self.by_id[doc["id"]] = doc
            if len(left) == len(pending):
                break
            pending = left
        self.continued = {s["parent_id"] for s in self.segments if s.get("parent_id")}


def node_of(segment: Doc) -> NodeKey:
    origin = segment.get("origin") or ""
    if origin in (FUNCTION_ORIGIN, SERVICE_ORIGIN):
        return (str(segment.get("name")), FUNCTION_ORIGIN)
    return (str(segment.get("name")), origin or "application")


def _downstream_type(sub: Doc) -> str:
    aws = sub.get("aws")
    if isinstance(aws, dict) and isinstance(aws.get("resource_type"), str):
        return aws["resource_type"]
    if sub.get("namespace") == "remote":
        return "remote"
    return f"AWS::{sub.get('name')}"


@dataclass
class _Stats:
    durations: list[float] = field(default_factory=list)
    errors: int = 0

    def add(self, duration: float, failed: bool) -> None:
        self.durations.append(duration)
        self.errors += failed

    def as_json(self) -> dict[str, Any]:
        p50 = statistics.median(self.durations) * 1000 if self.durations else 0.0
        return {"Count": len(self.durations), "Errors": self.errors, "P50Ms": round(p50, 3)}


def service_map(traces: Iterable[list[Doc]]) -> dict[str, Any]:
    """Nodes and edges (counts, errors, p50 latency) over ``traces``' documents."""
    nodes: dict[NodeKey, _Stats] = defaultdict(_Stats)
    edges: dict[tuple[NodeKey, NodeKey], _Stats] = defaultdict(_Stats)
    for docs in traces:
        index = TraceIndex(docs)
        for segment in index.segments:
            node = node_of(segment)
            if segment.get("origin") != SERVICE_ORIGIN:  # a function counts its runs
                nodes[node].add(_duration(segment), _failed(segment))
            parent = index.enclosing.get(segment.get("parent_id") or "")
            caller = node_of(parent) if parent is not None else CLIENT
            if caller == node:
                continue  # the async side and the run of one function: one node
            if caller == CLIENT:
                nodes.setdefault(CLIENT, _Stats())  # the client is a node once it calls
            edges[(caller, node)].add(_duration(segment), _failed(segment))
        for doc in index.by_id.values():
            if doc.get("namespace") not in ("aws", "remote") or doc.get("id") in index.continued:
                continue
            enclosing = index.enclosing.get(doc["id"])
            if enclosing is None:
                continue
            target = (str(doc.get("name")), _downstream_type(doc))
            nodes[target].add(_duration(doc), _failed(doc))
            edges[(node_of(enclosing), target)].add(_duration(doc), _failed(doc))
    return {
        "Nodes": [
            {"Id": _id(key), "Name": key[0], "Type": key[1], **stats.as_json()}
            for key, stats in sorted(nodes.items())
        ],
        "Edges": [
            {"From": _id(a), "To": _id(b), **stats.as_json()}
            for (a, b), stats in sorted(edges.items())
        ],
    }


def _id(key: NodeKey) -> str:
    return f"{key[1]}/{key[0]}"


def trace_document(root: str, docs: list[Doc]) -> dict[str, Any]:
    """One trace as BatchGetTraces answers it (standalone subsegments merged into the
    segment they belong to, each segment's document as a JSON string), plus ``Tree``:
    the segments nested by who called whom, for reading without X-Ray's console."""
    index = TraceIndex(copy.deepcopy(docs))
    orphans = [s for s in index.standalone if index.by_id.get(s.get("parent_id", "")) is None]
    for sub in sorted(index.standalone, key=lambda d: d.get("start_time", 0)):
        parent = index.by_id.get(sub.get("parent_id", ""))
        if parent is not None and parent is not sub:
            for key in ("type", "trace_id", "parent_id"):  # implied once nested
                sub.pop(key, None)
            parent.setdefault("subsegments", []).append(sub)
    segments = sorted(index.segments + orphans, key=lambda d: d.get("start_time", 0))
    starts = [d["start_time"] for d in segments if isinstance(d.get("start_time"), int | float)]
    ends = [float(e) for d in segments
            if isinstance(e := d.get("end_time", d.get("start_time")), int | float)]
    children: dict[str, list[Doc]] = defaultdict(list)
    tops: list[Doc] = []
    for segment in segments:
        parent = index.enclosing.get(segment.get("parent_id") or "")
        if parent is None or parent is segment:
            tops.append(segment)
        else:
            children[parent["id"]].append(segment)

    def tree(segment: Doc) -> Doc:
        return {**segment, "children": [tree(c) for c in children.get(segment["id"], [])]}

    return {
        "Id": root,
        "Duration": round(max(ends) - min(starts), 6) if starts and ends else 0,
        "LimitExceeded": False,
        "Segments": [{"Id": s["id"], "Document": json.dumps(s)} for s in segments],
        "Tree": [tree(s) for s in tops],
    }


def summary(root: str, docs: list[Doc]) -> dict[str, Any]:
    """A trace's summary, as GetTraceSummaries gives it (the parts nimbus has)."""
    starts = [d["start_time"] for d in docs if isinstance(d.get("start_time"), int | float)]
    ends = [d["end_time"] for d in docs if isinstance(d.get("end_time"), int | float)]
    functions = sorted({str(d.get("name")) for d in docs if d.get("origin") == FUNCTION_ORIGIN})
    index = TraceIndex(docs)
    entry = next((s for s in sorted(index.segments, key=lambda d: d.get("start_time", 0))
                  if index.enclosing.get(s.get("parent_id") or "") is None), None)
    return {
        "Id": root,
        "StartTime": min(starts) if starts else None,
        "Duration": round(max(ends) - min(starts), 6) if starts and ends else 0,
        "EntryPoint": {"Name": entry.get("name"), "Type": node_of(entry)[1]} if entry else None,
        "Functions": functions,
        "HasError": any(d.get("error") for d in docs),
        "HasFault": any(d.get("fault") for d in docs),
        "HasThrottle": any(d.get("throttle") for d in docs),
        "SegmentCount": len(docs),
    }
