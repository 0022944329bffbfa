"""The embedded queue's table: its schema and the SQL of each operation.

``SqliteQueue`` (``sqlite.py``) owns the connection, batches requests and runs them in
transactions; ``EventTable`` is what one request does inside such a transaction. Every
method takes ``now`` (epoch ms, one value per transaction) first.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from typing import Any

from nimbus.queue.backend import Lease, QueuedEvent, QueueStats

SCHEMA_VERSION = 2
# From each older version to the next (run in one transaction with the version bump).
MIGRATIONS = {
    # Version 1 had a "kind" and a JSON "extra" column that nothing read.
    1: "ALTER TABLE events DROP COLUMN kind; ALTER TABLE events DROP COLUMN extra;",
}
SCHEMA = """
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so a stale Lease.id stays stale
    visible_ms INTEGER NOT NULL,   -- may be leased from then on: due_ms, or a lease's end
    due_ms INTEGER NOT NULL,       -- when it became due; restored when a lease is given up
    token TEXT,                    -- the current lease's token, NULL when not leased
    enqueued_ms INTEGER NOT NULL,
    not_before_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    function_name TEXT NOT NULL,
    qualifier TEXT,
    request_id TEXT NOT NULL,
    trace_id TEXT,
    payload BLOB NOT NULL
);
CREATE INDEX events_visible ON events (visible_ms);
-- Leased rows are few (bounded by consumers' parallelism): cheap to keep, and they make
-- recover() and the in-flight count independent of the backlog.
CREATE INDEX events_leased ON events (visible_ms) WHERE token IS NOT NULL;
CREATE INDEX events_enqueued ON events (enqueued_ms);
"""

# Python's sqlite3 releases the GIL around every statement step, and executemany steps
# once per row. Under load each such hand-off costs the event loop a wait to get the GIL
# back, so the writer covers a batch with a few multi-row statements instead: rows go in
# chunks of these sizes (largest first), each size one statement that sqlite3 caches.
_CHUNKS = (128, 64, 32, 16, 8, 4, 2, 1)
_INSERT = (
    "INSERT INTO events (id, visible_ms, due_ms, enqueued_ms, not_before_ms, attempts,"
    " function_name, qualifier, request_id, trace_id, payload) VALUES "
)
_INSERTS = {n: _INSERT + ", ".join(["(" + ", ".join("?" * 11) + ")"] * n) for n in _CHUNKS}
# Acks in one statement each way: which of the [id, token] pairs still hold their lease
# (as one JSON row, so one step), then delete those. JSON arguments keep the text fixed.
_ACK_MATCH = (
    "SELECT json_group_array(json_array(e.id, e.token)) FROM json_each(?) AS j"
    " JOIN events AS e ON e.id = json_extract(j.value, '$[0]')"
    " AND e.token = json_extract(j.value, '$[1]')"
)
_DELETE_IDS = "DELETE FROM events WHERE id IN (SELECT value FROM json_each(?))"
_COLUMNS = (
    "id, enqueued_ms, not_before_ms, attempts, function_name, qualifier,"
    " request_id, trace_id, payload"
)


class EventTable:
    """The ``events`` table over one connection, used by the queue's writer thread."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def next_visible(self) -> int | None:
        """The earliest time any event may be leased (None: the queue is empty)."""
        return self.db.execute("SELECT min(visible_ms) FROM events").fetchone()[0]

    def put(self, now: int, puts: list[list[tuple[Any, ...]]]) -> list[list[str]]:
        if not puts:
            return []
        # Ids are assigned here (one writer holds the write lock) so a few statements
        # insert the whole run; AUTOINCREMENT's sequence keeps them from being reused.
        seq = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
        last = seq.fetchone()
        next_id = (last[0] if last else 0) + 1
        rows = []
        ids = []
        for events in puts:
            batch_ids = []
            for enqueued, not_before, *rest in events:
                due = max(not_before, now)
                rows.append((next_id, due, due, enqueued or now, not_before, *rest))
                batch_ids.append(str(next_id))
                next_id += 1
            ids.append(batch_ids)
        i = 0
        for size in _CHUNKS:
            while len(rows) - i >= size:
                params = tuple(value for row in rows[i : i + size] for value in row)
                self.db.execute(_INSERTS[size], params)
                i += size
        return ids

    def lease(self, now: int, max_items: int, visibility_ms: int) -> list[Lease]:
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM events WHERE visible_ms <= ? ORDER BY visible_ms, id LIMIT ?",
            (now, max_items),
        ).fetchall()
        if not rows:
            return []
        # One token for the whole call: it is always checked together with the id.
        token = secrets.token_hex(8)
        self.db.execute(
            "UPDATE events SET visible_ms = ?, token = ? WHERE id IN"
            " (SELECT value FROM json_each(?))",
            (now + visibility_ms, token, json.dumps([row[0] for row in rows])),
        )
        return [Lease(str(row[0]), event_of(row), token) for row in rows]

    def ack(self, now: int, acks: list[tuple[int, str]]) -> list[bool]:
        """Delete each (id, token) whose lease still holds; one result per ack, in order
        (an ack repeated in the run succeeds once, as it would one at a time)."""
        if not acks:
            return []
        (matched,) = self.db.execute(_ACK_MATCH, (json.dumps(acks),)).fetchone()
        held: dict[int, str] = dict(json.loads(matched))  # id -> its current token
        if held:
            self.db.execute(_DELETE_IDS, (json.dumps(list(held)),))
        results = []
        for event_id, token in acks:
            ok = held.get(event_id) == token
            if ok:
                del held[event_id]
            results.append(ok)
        return results

    def retry(self, now: int, event_id: int, token: str, delay_ms: int, attempts: int) -> bool:
        due = now + delay_ms
        cur = self.db.execute(
            "UPDATE events SET visible_ms = ?, due_ms = ?, not_before_ms = ?, attempts = ?,"
            " token = NULL WHERE id = ? AND token = ?",
            (due, due, due, attempts, event_id, token),
        )
        return cur.rowcount == 1

    def extend(self, now: int, event_id: int, token: str, visibility_ms: int) -> bool:
        cur = self.db.execute(
            "UPDATE events SET visible_ms = ? WHERE id = ? AND token = ?",
            (now + visibility_ms, event_id, token),
        )
        return cur.rowcount == 1

    def release(self, now: int, event_id: int, token: str) -> bool:
        cur = self.db.execute(
            "UPDATE events SET visible_ms = due_ms, token = NULL WHERE id = ? AND token = ?",
            (event_id, token),
        )
        return cur.rowcount == 1

    def recover(self, now: int) -> int:
        # Back to the time they first became due, so they keep their place in line.
        cur = self.db.execute(
            "UPDATE events SET visible_ms = due_ms, token = NULL WHERE token IS NOT NULL"
        )
        return cur.rowcount

    def stats(self, now: int) -> QueueStats:
        depth, visible, in_flight, oldest = self.db.execute(
            "SELECT (SELECT count(*) FROM events),"
            " (SELECT count(*) FROM events WHERE visible_ms <= :now),"
            " (SELECT count(*) FROM events WHERE token IS NOT NULL AND visible_ms > :now),"
            " (SELECT min(enqueued_ms) FROM events)",
            {"now": now},
        ).fetchone()
        return QueueStats(
            depth=depth,
            visible=visible,
            in_flight=in_flight,
            delayed=depth - visible - in_flight,
            oldest_age_ms=max(0, now - oldest) if oldest is not None else 0,
        )


def row_of(event: QueuedEvent) -> tuple[Any, ...]:
    """The columns of an event row put can fill before the writer stamps time and id."""
    payload = event.payload
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise TypeError(f"QueuedEvent.payload must be bytes, not {type(payload).__name__}")
    return (
        event.enqueued_ms,
        event.not_before_ms,
        event.attempts,
        event.function_name,
        event.qualifier,
        event.request_id,
        event.trace_id,
        bytes(payload),
    )


def event_of(row: tuple[Any, ...]) -> QueuedEvent:
    _, enqueued, not_before, attempts, function, qualifier, request, trace, payload = row
    return QueuedEvent(
        function_name=function,
        qualifier=qualifier,
        payload=payload,
        request_id=request,
        trace_id=trace,
        enqueued_ms=enqueued,
        attempts=attempts,
        not_before_ms=not_before,
    )
