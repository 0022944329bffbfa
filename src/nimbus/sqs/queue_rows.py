"""Queue records in the metadata database (blocking; ``Queues`` calls it off the event
loop): create, look up, update, delete and purge queues, count their messages, and the
write transaction every SQS store operation runs in.

Every operation is one write transaction and commits before it returns (SQLite in WAL
mode, or PostgreSQL). The messages themselves are ``message_store.MessageStore``'s.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, case, delete, func, insert, select, update

from nimbus.clock import Clock, now_ms
from nimbus.errors import QueueDoesNotExist
from nimbus.sqs.attributes import settings_of
from nimbus.sqs.messages import QueueCounts
from nimbus.store.database import Database
from nimbus.store.schema import sqs_dedup, sqs_messages, sqs_queues

M = sqs_messages.c
Q = sqs_queues.c
SETTINGS_TTL_S = 1.0

# Built once: building SQLAlchemy expressions per call costs more than SQLite running them.
_GET = select(sqs_queues).where(Q.name == bindparam("name"))
_SEQUENCE = select(Q.sequence).where(Q.name == bindparam("name"))
_SET_SEQUENCE = update(sqs_queues).where(Q.name == bindparam("b_name"))
# The same lookup on SQLite's own cursor, for the hot paths (see ``QueueRows.raw_get``).
_RAW_GET = (
    "SELECT name, fifo, attributes, tags, created_ms, modified_ms, purged_ms "
    "FROM sqs_queues WHERE name = ?"
)


@dataclass(frozen=True)
class QueueRow:
    """A queue as stored: its attributes as set (no defaults) and its tags."""

    name: str
    fifo: bool
    attributes: dict[str, str]  # as set (no defaults)
    tags: dict[str, str]
    created_ms: int
    modified_ms: int
    purged_ms: int | None

    @functools.cached_property
    def settings(self) -> dict[str, str]:
        """The settable attributes in effect (defaults included); do not modify."""
        return settings_of(self.attributes, self.fifo)

    def setting(self, name: str) -> int:
        return int(self.settings[name])


def row_of(r: Any) -> QueueRow:
    return QueueRow(
        r.name,
        bool(r.fifo),
        dict(r.attributes),
        dict(r.tags),
        r.created_ms,
        r.modified_ms,
        r.purged_ms,
    )


class QueueRows:
    """Blocking access to the queue records, and the write transaction of the store."""

    def __init__(self, db: Database, clock: Clock = now_ms) -> None:
        self.db = db
        self.clock = clock
        # SQLite has one writer at a time; threads of this process take turns here rather
        # than in SQLite's busy handler, whose back-off sleeps (1, 2, 5, 10... ms) would
        # idle the store under load.
        self._turn = threading.Lock() if db.is_sqlite else contextlib.nullcontext()
        # Receives on PostgreSQL read their queue's settings from here for up to
        # SETTINGS_TTL_S (a poller receives many times a second); this process's own
        # changes drop them at once, another process's show within that time (SQS allows
        # itself 60 s).
        self._rows: dict[str, tuple[QueueRow, float]] = {}
        # SQLite's hot paths read the row afresh in their transaction (microseconds on its
        # own cursor) and reuse the parsed record while the stored one is unchanged.
        self._parsed: dict[str, tuple[tuple[Any, ...], QueueRow]] = {}

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction through SQLAlchemy (both backends)."""
        with self._turn, self.db.write() as conn:
            yield conn

    @contextlib.contextmanager
    def raw_write(self) -> Iterator[sqlite3.Connection]:
        """SQLite only: one write transaction on the driver's own connection, without
        SQLAlchemy's per-statement and per-transaction work (several times the cost of
        the statements themselves on the hot paths). Committed on leaving; rolled back
        on an error."""
        assert self.db.is_sqlite
        with self._turn:
            pooled = self.db.engine.raw_connection()
            try:
                conn = pooled.driver_connection
                assert isinstance(conn, sqlite3.Connection)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                pooled.close()

    def raw_get(self, conn: sqlite3.Connection, name: str) -> QueueRow:
        """The queue's record, read in ``conn``'s transaction (SQLite)."""
        found = conn.execute(_RAW_GET, (name,)).fetchone()
        if found is None:
            raise QueueDoesNotExist()
        cached = self._parsed.get(name)
        if cached is not None and cached[0] == found:
            return cached[1]
        row = QueueRow(
            found[0],
            bool(found[1]),
            json.loads(found[2]),
            json.loads(found[3]),
            found[4],
            found[5],
            found[6],
        )
        self._parsed[name] = (found, row)
        return row

    def get_in(self, conn: Connection, name: str, lock: bool = False) -> QueueRow:
        """The queue's record, read in ``conn``'s transaction (locked on PostgreSQL)."""
        if lock and not self.db.is_sqlite:
            row = conn.execute(_GET.with_for_update(), {"name": name}).first()
        else:
            row = conn.execute(_GET, {"name": name}).first()
        if row is None:
            raise QueueDoesNotExist()
        return row_of(row)

    def cached(self, conn: Connection, name: str) -> QueueRow:
        """The queue's record as read at most SETTINGS_TTL_S ago."""
        found = self._rows.get(name)
        if found is not None and time.monotonic() - found[1] < SETTINGS_TTL_S:
            return found[0]
        row = self.get_in(conn, name)
        self._rows[name] = (row, time.monotonic())
        return row

    def forget(self, name: str) -> None:
        self._rows.pop(name, None)

    def get(self, name: str) -> QueueRow:
        with self.db.read() as conn:
            return self.get_in(conn, name)

    def find(self, name: str) -> QueueRow | None:
        try:
            return self.get(name)
        except QueueDoesNotExist:
            return None

    def sequence(self, conn: Connection, name: str) -> int:
        """The FIFO queue's last sequence number (in ``conn``'s transaction)."""
        return int(conn.execute(_SEQUENCE, {"name": name}).scalar_one())

    def set_sequence(self, conn: Connection, name: str, sequence: int) -> None:
        conn.execute(_SET_SEQUENCE, {"b_name": name, "sequence": sequence})

    def create(
        self, name: str, fifo_queue: bool, attributes: dict[str, str], tags: dict[str, str]
    ) -> tuple[QueueRow, bool]:
        """Insert the queue, or return the existing one (False) for the caller to compare."""
        now = self.clock()
        with self.write() as conn:
            existing = conn.execute(_GET, {"name": name}).first()
            if existing is not None:
                return row_of(existing), False
            values = {
                "name": name,
                "fifo": fifo_queue,
                "attributes": attributes,
                "tags": tags,
                "created_ms": now,
                "modified_ms": now,
                "sequence": 0,
                "purged_ms": None,
            }
            conn.execute(insert(sqs_queues).values(**values))
            return QueueRow(name, fifo_queue, attributes, tags, now, now, None), True

    def delete_queue(self, name: str) -> None:
        self.forget(name)
        with self.write() as conn:
            self.get_in(conn, name)
            # Messages first: PostgreSQL cascades too, this keeps SQLite independent of it.
            conn.execute(delete(sqs_messages).where(M.queue == name))
            conn.execute(delete(sqs_dedup).where(sqs_dedup.c.queue == name))
            conn.execute(delete(sqs_queues).where(Q.name == name))

    def names(self, prefix: str = "") -> list[str]:
        query = select(Q.name).order_by(Q.name)
        with self.db.read() as conn:
            names = [r.name for r in conn.execute(query)]
        return [n for n in names if n.startswith(prefix)]

    def update(
        self,
        name: str,
        attributes: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        untag: Sequence[str] = (),
    ) -> QueueRow:
        self.forget(name)
        with self.write() as conn:
            row = self.get_in(conn, name, lock=True)
            values: dict[str, Any] = {}
            if attributes is not None:
                merged = {**row.attributes, **attributes}
                values["attributes"] = {k: v for k, v in merged.items() if v != ""}
                values["modified_ms"] = self.clock()
            if tags is not None or untag:
                new_tags = {**row.tags, **(tags or {})}
                for key in untag:
                    new_tags.pop(key, None)
                values["tags"] = new_tags
            if values:
                conn.execute(update(sqs_queues).where(Q.name == name).values(**values))
            row = self.get_in(conn, name)
        self.forget(name)  # again: a receive may have cached it meanwhile
        return row

    def purge(self, name: str, min_interval_ms: int) -> bool:
        """Delete every message; False (nothing done) if the last purge was too recent."""
        now = self.clock()
        with self.write() as conn:
            row = self.get_in(conn, name, lock=True)
            if row.purged_ms is not None and now - row.purged_ms < min_interval_ms:
                return False
            conn.execute(delete(sqs_messages).where(M.queue == name))
            conn.execute(update(sqs_queues).where(Q.name == name).values(purged_ms=now))
            return True

    def counts(self, name: str) -> QueueCounts:
        now = self.clock()
        with self.db.read() as conn:
            row = self.get_in(conn, name)
            cutoff = now - row.setting("MessageRetentionPeriod") * 1000
            visible = func.sum(case((M.visible_ms <= now, 1), else_=0))
            flight = func.sum(case(((M.visible_ms > now) & (M.receive_count > 0), 1), else_=0))
            delayed = func.sum(case(((M.visible_ms > now) & (M.receive_count == 0), 1), else_=0))
            r = conn.execute(
                select(visible, flight, delayed, func.min(M.sent_ms)).where(
                    M.queue == name, M.sent_ms > cutoff
                )
            ).one()
        return QueueCounts(int(r[0] or 0), int(r[1] or 0), int(r[2] or 0), r[3])
