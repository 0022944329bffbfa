"""What a cluster server shows of the invocations its worker nodes ran: their minutes
(metrics, cost) and their trace segments, asked of every live worker at read time and
added to the server's own. Outside a cluster (no forwarder) these are the server's own.

Each node serves its own under ``/_nimbus/metrics/minutes`` and ``/_nimbus/segments``
(signed as the servers sign invocations). A worker that does not answer within a second
is left out of that answer (and logged): figures then lack what it ran, for that read.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlencode

from nimbus.api.services import Services
from nimbus.observe import node_series
from nimbus.observe.metrics import Minute, Series
from nimbus.observe.service_map import summary
from nimbus.observe.trace_store import TraceStore, end_of
from nimbus.threads import blocking

log = logging.getLogger("nimbus.api.cluster_views")

MINUTES_PATH = "/_nimbus/metrics/minutes"
SEGMENTS_PATH = "/_nimbus/segments"


async def series(svc: Services, since_minute: int) -> Series:
    """The minutes from ``since_minute`` on of this server and of every live worker."""
    own = svc.engine.metrics.series
    forwarder = svc.engine.forwarder
    if forwarder is None:
        return own
    answers = await forwarder.ask_all(
        "GET", MINUTES_PATH, urlencode({"Since": since_minute}),
        unanswered="what it ran is missing from these figures")
    others: list[tuple[str, int, Minute]] = []
    for node, body in answers:
        if body is None:
            continue
        try:
            others += node_series.parse(json.loads(body)["Minutes"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("worker node %s sent minutes nimbus cannot read (%s): left out",
                        node.node_id, exc)
    return node_series.merge(own, since_minute, others)  # one copy, of the window only


async def traces(svc: Services, store: TraceStore, query: dict[str, str]) -> TraceStore:
    """On a cluster server, a store of its own holding what ``store`` and every live
    worker hold for ``query`` (``Root``; or ``Limit`` traces, ``Since`` epoch seconds
    and ``FunctionName``); elsewhere ``store`` itself."""
    forwarder = svc.engine.forwarder
    if forwarder is None:
        return store
    answers = await forwarder.ask_all(
        "GET", SEGMENTS_PATH, urlencode(query),
        unanswered="the segments it recorded are missing from this answer")
    bodies = [(node.node_id, body) for node, body in answers if body is not None]
    return await blocking(_merged, store, query, bodies, len(answers))


def _merged(store: TraceStore, query: dict[str, str], bodies: list[tuple[str, bytes]],
            nodes: int) -> TraceStore:
    """This node's documents for ``query`` and the workers' answers in one store
    (blocking: thousands of documents may be parsed)."""
    since = float(query["Since"]) if "Since" in query else None
    own = node_segments(store, query.get("Root"), since, int(query.get("Limit", "1")),
                        query.get("FunctionName"))
    merged = TraceStore(store.directory, max_traces=store.max_traces * (1 + nodes))
    for doc in own:
        merged.add(doc)
    for node_id, body in bodies:
        try:
            docs = json.loads(body)["Segments"]
            for doc in docs:
                if isinstance(doc, dict):
                    merged.add(doc)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("worker node %s sent segments nimbus cannot read (%s): left out",
                        node_id, exc)
    return merged


def node_segments(store: TraceStore, root: str | None, since: float | None, limit: int,
                  function: str | None = None) -> list[dict[str, Any]]:
    """This node's documents: of trace ``root``, else of its newest ``limit`` traces
    (those with a segment ended at or after ``since``, and of ``function``, if given)."""
    if root is not None:
        return store.trace(root) or []
    out: list[dict[str, Any]] = []
    taken = 0
    for trace_root, docs in store.traces():
        if since is not None and not any(end_of(d) >= since for d in docs):
            continue
        if function is not None and function not in summary(trace_root, docs)["Functions"]:
            continue
        out.extend(docs)
        taken += 1
        if taken == limit:
            break
    return out

