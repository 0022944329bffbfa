"""Tracing: X-Ray trace headers, and the segments nimbus records for every hop.

Every invocation carries a trace header in Lambda's format,
``Root=1-<8 hex epoch>-<24 hex>;Parent=<16 hex>;Sampled=0|1`` (no ``Lineage``): the
caller's (``X-Amzn-Trace-Id``; W3C ``traceparent`` on HTTP triggers), else a new root.
The function sees it as ``_X_AMZN_TRACE_ID`` / ``Lambda-Runtime-Trace-Id`` with
``Parent`` set to the id of the segment nimbus records for that invocation, so whatever
the function calls with that header (botocore sends it by itself inside Lambda) becomes
that segment's child, and whatever the function's X-Ray SDK sends to the daemon
(observe/xray_daemon.py) nests under it.

Segments are X-Ray segment documents (dicts, as the daemon protocol carries them), one
per hop:

- ``AWS::Lambda::Function``: one per invocation, with ``Initialization`` (cold starts)
  and ``Invocation`` subsegments (``Invoker``);
- ``AWS::Lambda``: one per async attempt, Lambda's service side: ``Dwell Time`` in the
  queue, the ``Attempt``, and the destination the result went to (``Dispatcher``);
- triggers: a function URL, an HTTP API stage, an SQS queue or broker an event source
  mapping reads, a schedule: the callers of the hops they start.

nimbus records its own segments (locally, bounded: see trace_store.py) for sampled
traces only, as Lambda does: a PassThrough function records nothing unless its caller's
header says ``Sampled=1``; an Active one samples the requests that come without a
decision (``sampled_for``). The service map and the dashboard's waterfalls are drawn
from those traces. An unsampled invocation still carries its trace header (so the
function and whatever it calls see one), at no other cost: the warm path builds no
segment for it. The invoker makes the decision (``Tracer.decide``) and the process
remembers the traces it sampled, so the hops around the invocation that record after
it (the function URL's trigger, the async attempt) follow the same decision.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NamedTuple

from nimbus import ids

FUNCTION_ORIGIN = "AWS::Lambda::Function"
SERVICE_ORIGIN = "AWS::Lambda"  # the async side of an invocation (queue, attempts)
URL_ORIGIN = "AWS::Lambda::FunctionUrl"
API_ORIGIN = "AWS::ApiGateway::Stage"
QUEUE_ORIGIN = "AWS::SQS::Queue"
SCHEDULE_ORIGIN = "AWS::Scheduler::Schedule"
BROKER_ORIGIN = "nimbus::EventSource"  # a self-hosted broker an event source mapping reads
TRIGGER_ORIGINS = frozenset({URL_ORIGIN, API_ORIGIN, QUEUE_ORIGIN, SCHEDULE_ORIGIN, BROKER_ORIGIN})

_ROOT = re.compile(r"1-[0-9a-f]{8}-[0-9a-f]{24}")
# The header as nimbus and X-Ray SDKs write it, read in one match (the warm path parses
# every invocation's header); any other spelling goes through the general parse.
_CANONICAL = re.compile(
    r"Root=(1-[0-9a-f]{8}-[0-9a-f]{24})(?:;Parent=([0-9a-f]{16}))?(?:;Sampled=([01]))?"
)
# Traces a process remembers as sampled (see Tracer.decide): far more than are ever in
# flight at once, so the hops of a sampled invocation still find it when they record.
MAX_SAMPLED_ROOTS = 4096
_SEGMENT_ID = re.compile(r"[0-9a-f]{16}")
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


class TraceHeader(NamedTuple):
    """A parsed ``X-Amzn-Trace-Id``. ``sampled`` None: no decision yet (``Sampled=?`` or
    absent), for the function's TracingConfig to make. A tuple rather than a frozen
    dataclass: every invocation builds two or three, and a tuple is built several times
    faster."""

    root: str
    parent: str | None = None
    sampled: bool | None = None

    @classmethod
    def parse(cls, text: str | None) -> TraceHeader | None:
        """The header's Root, Parent and Sampled (in any order; Lineage, Self and other
        fields dropped), or None when it has no valid Root: such a caller starts a new
        trace, as X-Ray does with a header it cannot read."""
        if not text:
            return None
        match = _CANONICAL.fullmatch(text)
        if match is not None:
            flag = match[3]
            return cls(match[1], match[2], None if flag is None else flag == "1")
        root = parent = None
        sampled: bool | None = None
        for part in text.split(";"):
            key, _, value = part.strip().partition("=")
            key, value = key.strip().lower(), value.strip().lower()
            if key == "root" and _ROOT.fullmatch(value):
                root = value
            elif key == "parent" and _SEGMENT_ID.fullmatch(value):
                parent = value
            elif key == "sampled" and value in ("0", "1"):
                sampled = value == "1"
        return cls(root, parent, sampled) if root is not None else None

    @classmethod
    def from_traceparent(cls, text: str | None) -> TraceHeader | None:
        """A W3C ``traceparent`` (``00-<32 hex trace>-<16 hex parent>-<2 hex flags>``) as
        X-Ray's header: the trace id's first 8 hex digits become the Root's epoch part
        (the mapping AWS's OpenTelemetry propagators use), flag bit 0 the decision."""
        match = _TRACEPARENT.fullmatch(text.strip().lower()) if text else None
        if match is None or match[1] == "ff":
            return None
        trace, parent, flags = match[2], match[3], int(match[4], 16)
        if trace == "0" * 32 or parent == "0" * 16:
            return None  # invalid by the W3C spec
        return cls(f"1-{trace[:8]}-{trace[8:]}", parent, bool(flags & 1))

    @classmethod
    def new(cls, sampled: bool | None = None) -> TraceHeader:
        return cls(ids.trace_root(), None, sampled)

    def child(self, parent: str, sampled: bool | None = None) -> TraceHeader:
        """The header a hop passes on: same root, ``parent`` as the new Parent."""
        return TraceHeader(self.root, parent, self.sampled if sampled is None else sampled)

    def __str__(self) -> str:
        text = f"Root={self.root}"
        if self.parent:
            text += f";Parent={self.parent}"
        if self.sampled is not None:
            text += f";Sampled={int(self.sampled)}"
        return text


def http_trace_header(amzn: str | None, traceparent: str | None) -> TraceHeader | None:
    """What an HTTP trigger continues: X-Amzn-Trace-Id first, else W3C traceparent."""
    return TraceHeader.parse(amzn) or TraceHeader.from_traceparent(traceparent)


@dataclass(frozen=True, slots=True)
class Caller:
    """A trigger that is about to invoke or queue (an event source mapping's poller, a
    schedule): which node of the service map it is, and the trace its record carried."""

    origin: str
    name: str
    incoming: TraceHeader | None = None
    detail: dict[str, Any] | None = None  # "aws" fields of its segment (queue_url...)


# Set by a trigger around its call into the invoker or the dispatcher, which record the
# trigger's segment when no trace header is given: a context variable rather than one
# more parameter through the pollers' and the scheduler's call chains (and their fakes).
CALLER: ContextVar[Caller | None] = ContextVar("nimbus_trace_caller", default=None)


@contextlib.contextmanager
def calling(caller: Caller) -> Iterator[None]:
    token = CALLER.set(caller)
    try:
        yield
    finally:
        CALLER.reset(token)


def subsegment(name: str, start: float, end: float, **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": ids.segment_id(), "name": name, "start_time": start,
                           "end_time": end}
    doc.update(fields)
    return doc


Sink = Callable[[dict[str, Any]], None]


class Tracer:
    """One process's segment recorder: documents of sampled traces go to ``sink`` (the
    process's segment log, trace_store.SegmentLog); ``daemon`` starts the X-Ray
    daemon-compatible UDP receiver the first time an Active function's environment asks
    for its address (what functions' SDKs send goes to ``sink`` as it comes: they send
    only for sampled traces)."""

    def __init__(
        self,
        sink: Sink | None = None,
        daemon: Callable[[Sink], str] | None = None,
        account_id: str = "000000000000",
    ) -> None:
        self._sink = sink
        # Starts the UDP receiver; set once the process's event loop runs (Engine.start).
        self.daemon = daemon
        self._daemon_address: str | None = None
        self.account_id = account_id
        # Roots of the traces this process sampled, oldest first (a dict as an ordered
        # set), bounded by MAX_SAMPLED_ROOTS.
        self._sampled: dict[str, None] = {}

    @property
    def enabled(self) -> bool:
        return self._sink is not None

    def decide(self, trace: TraceHeader, active: bool) -> bool:
        """An invocation's sampling decision (``sampled_for``). A sampled trace is
        remembered: the segments of its hops that record afterwards (``record``,
        ``trigger``) are kept, an unsampled one's dropped before they are built where the
        caller asks ``sampled`` first."""
        sampled = trace.sampled if trace.sampled is not None else active
        if sampled and self._sink is not None:
            self._remember(trace.root)
        return sampled

    def sampled(self, root: str) -> bool:
        """Whether this process sampled the trace ``root`` (or was told it is sampled)."""
        return root in self._sampled

    def _remember(self, root: str) -> None:
        roots = self._sampled
        if root not in roots:
            roots[root] = None
            if len(roots) > MAX_SAMPLED_ROOTS:
                del roots[next(iter(roots))]

    def record(self, doc: dict[str, Any]) -> None:
        """Keep one of nimbus's own segment documents if its trace is sampled."""
        if self._sink is not None and doc.get("trace_id") in self._sampled:
            self._sink(doc)

    def daemon_address(self) -> str:
        """``host:port`` of the UDP receiver (started now if need be); "" without one."""
        if self._daemon_address is None:
            if self.daemon is None or self._sink is None:
                return ""
            self._daemon_address = self.daemon(self._sink)
        return self._daemon_address

    def incoming(self, trace_id: str | None) -> TraceHeader:
        """The trace an invocation or a queued event continues: ``trace_id`` if it is a
        valid header, else the calling trigger's (recording the trigger's segment), else
        a new root."""
        header = TraceHeader.parse(trace_id)
        if header is not None:
            if header.sampled and self._sink is not None:
                self._remember(header.root)
            return header
        caller = CALLER.get()
        if caller is None:
            return TraceHeader.new()
        now = time.time()
        # A trigger that starts a trace (a schedule's tick, a batch whose messages carry
        # no trace) records its segment before any function decides: these are rare, and
        # the event may run in another process, whose decision this one never learns.
        return self.trigger(caller.origin, caller.name, caller.incoming, now, now,
                            aws=caller.detail, undecided=True)

    def trigger(
        self,
        origin: str,
        name: str,
        incoming: TraceHeader | None,
        start: float,
        end: float,
        *,
        error: bool = False,
        fault: bool = False,
        aws: dict[str, Any] | None = None,
        http: dict[str, Any] | None = None,
        segment_id: str | None = None,
        undecided: bool = False,
    ) -> TraceHeader:
        """Record a trigger's segment (``segment_id``: the one the hop it started was
        given as Parent) if its trace is sampled (``undecided``: unless the caller said
        it is not); the header for that hop (its child)."""
        trace = incoming or TraceHeader.new()
        segment_id = segment_id or ids.segment_id()
        if self._sink is None or not (
            trace.sampled
            or (trace.sampled is None and undecided)
            or trace.root in self._sampled
        ):
            return trace.child(segment_id)
        doc: dict[str, Any] = {
            "trace_id": trace.root, "id": segment_id, "name": name, "origin": origin,
            "start_time": start, "end_time": end,
        }
        if trace.parent:
            doc["parent_id"] = trace.parent
        if error:
            doc["error"] = True
        if fault:
            doc["fault"] = True
        if aws:
            doc["aws"] = aws
        if http:
            doc["http"] = http
        self._sink(doc)
        return trace.child(segment_id)

    def function_segment(
        self,
        trace: TraceHeader,
        segment_id: str,
        *,
        function: str,
        function_arn: str,
        version: str,
        request_id: str,
        start: float,
        end: float,
        duration_ms: float,
        cold: bool,
        init_ms: float | None,
        error_type: str | None,
        fault: bool,
        throttled: bool = False,
    ) -> None:
        """Record an invocation's ``AWS::Lambda::Function`` segment, with Lambda's
        Initialization and Invocation subsegments (the invoker asks only for sampled
        ones)."""
        if self._sink is None:
            return
        invoke_start = max(start, end - duration_ms / 1000)
        subsegments = []
        if cold and init_ms:
            subsegments.append(subsegment("Initialization", invoke_start - init_ms / 1000,
                                          invoke_start))
        if not throttled:
            subsegments.append(subsegment("Invocation", invoke_start, end,
                                          **({"fault": True} if fault else {})))
        doc: dict[str, Any] = {
            "trace_id": trace.root, "id": segment_id, "name": function,
            "origin": FUNCTION_ORIGIN, "start_time": start, "end_time": end,
            "aws": {"request_id": request_id, "function_arn": function_arn,
                    "account_id": self.account_id, "resource_names": [function]},
            "annotations": {"version": version, "cold_start": cold},
            "subsegments": subsegments,
        }
        if trace.parent:
            doc["parent_id"] = trace.parent
        if fault:
            doc["fault"] = True
            if error_type:
                doc["cause"] = {"exceptions": [{"id": ids.segment_id(), "type": error_type}]}
        if throttled:
            doc["error"] = doc["throttle"] = True
        self._sink(doc)


def sampled_for(trace: TraceHeader, active: bool) -> bool:
    """The sampling decision an invocation passes on: the caller's if it made one, else
    the function's TracingConfig (Active samples every request here: X-Ray's default
    reservoir is about one a second, but a local platform has no bill to keep down)."""
    return trace.sampled if trace.sampled is not None else active


def report_xray(trace_id: str | None, active: bool) -> str:
    """What Lambda adds to the REPORT line of an Active function's sampled invocation,
    after a line break: ``XRAY TraceId: <root>\tSegmentId: <the function's segment>\t
    Sampled: true\t`` (the header the function saw names both); "" for any other."""
    if not active:
        return ""
    trace = TraceHeader.parse(trace_id)
    if trace is None or not trace.sampled or trace.parent is None:
        return ""
    return xray_line(trace.root, trace.parent)


def xray_line(root: str, segment_id: str) -> str:
    """The REPORT line's XRAY part for a sampled invocation of an Active function."""
    return f"\nXRAY TraceId: {root}\tSegmentId: {segment_id}\tSampled: true\t"


def is_active(extra: dict[str, Any]) -> bool:
    """Whether a version's stored TracingConfig is ``Active``."""
    config = extra.get("TracingConfig")
    return isinstance(config, dict) and config.get("Mode") == "Active"
