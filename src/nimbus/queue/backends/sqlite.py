"""The embedded queue: one SQLite file (WAL) served by one thread.

Every request (put, lease, ack, ...) is handed to a single writer thread that owns the
connection. The thread takes everything that arrived while its previous transaction was
committing and runs it as one transaction, so a thousand concurrent puts cost one fsync
(group commit), and every caller's await resolves only after the commit holding its
request. Nothing blocking ever runs on the event loop.

Rows are ordered for delivery by ``(visible_ms, id)``: an event may be leased once
``visible_ms`` has passed. For a waiting event that is the time it became due (its put,
or the end of its retry delay); for a leased one, the end of its lease. One index serves
both the lease query and the "when is the next event due" question that lets
``wait_for_work`` sleep exactly until then.

Only what must survive a power cut pays for an fsync: a transaction that puts events
commits with ``synchronous=FULL`` (fsync'd before any put's await resolves). Leases,
acks and retries commit with ``NORMAL``: in WAL mode that is durable across a crash of
the process (the commit is in the kernel), and the next FULL commit fsyncs it along. A
power cut can only lose such a change, which re-delivers an event: at-least-once holds.

One process owns a queue file (an exclusive ``flock`` on ``<file>.lock``): ``recover``
assumes every lease on disk belongs to a dead process, and ``wait_for_work`` only hears
about changes made through this object.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import queue
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nimbus.queue.backend import Lease, QueueBackend, QueuedEvent, QueueError, QueueStats

SCHEMA_VERSION = 1
# A batch is whatever queued up during the previous commit, within these bounds (so one
# transaction, and its WAL growth, stays a few megabytes).
MAX_BATCH = 2048
MAX_BATCH_BYTES = 16 * 1024 * 1024

_SCHEMA = """
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, so a stale Lease.id stays stale
    visible_ms INTEGER NOT NULL,   -- may be leased from then on: due_ms, or a lease's end
    due_ms INTEGER NOT NULL,       -- when it became due; restored when a lease is given up
    token TEXT,                    -- the current lease's token, NULL when not leased
    enqueued_ms INTEGER NOT NULL,
    not_before_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    kind TEXT NOT NULL,
    function_name TEXT NOT NULL,
    qualifier TEXT,
    request_id TEXT NOT NULL,
    trace_id TEXT,
    extra TEXT,                    -- JSON, NULL when empty
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
    "INSERT INTO events (id, visible_ms, due_ms, enqueued_ms, not_before_ms, attempts, kind,"
    " function_name, qualifier, request_id, trace_id, extra, payload) VALUES "
)
_INSERTS = {n: _INSERT + ", ".join(["(" + ", ".join("?" * 13) + ")"] * n) for n in _CHUNKS}
# Acks in one statement each way: which of the [id, token] pairs still hold their lease
# (as one JSON row, so one step), then delete those. JSON arguments keep the text fixed.
_ACK_MATCH = (
    "SELECT json_group_array(json_array(e.id, e.token)) FROM json_each(?) AS j"
    " JOIN events AS e ON e.id = json_extract(j.value, '$[0]')"
    " AND e.token = json_extract(j.value, '$[1]')"
)
_DELETE_IDS = "DELETE FROM events WHERE id IN (SELECT value FROM json_each(?))"
_COLUMNS = (
    "id, enqueued_ms, not_before_ms, attempts, kind, function_name, qualifier,"
    " request_id, trace_id, extra, payload"
)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class _Request:
    op: str  # names a ``_do_<op>`` method of the writer, or "close"
    args: tuple[Any, ...]
    future: asyncio.Future[Any]
    size: int = 0  # payload bytes, to bound a batch


@dataclass
class _Outcome:
    """What one batch produced, handed from the writer thread back to the loop."""

    results: list[Any] = field(default_factory=list)  # a value or an exception per request
    next_visible_ms: int | None = None  # earliest visible_ms after the batch


class SqliteQueue(QueueBackend):
    """The default queue backend: a SQLite file, e.g. ``<data_dir>/queue.db``."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closing = False
        self.commits = 0  # transactions committed: puts / commits is the group-commit gain
        # Owned by the writer thread.
        self._db: sqlite3.Connection | None = None
        self._synchronous = "FULL"  # the connection's current PRAGMA synchronous
        self._lock_fd: int | None = None
        # Owned by the loop: the earliest visible_ms on disk (None: queue empty), and the
        # event that wakes wait_for_work; replaced on each wake so no waiter misses one.
        self._next_visible_ms: int | None = None
        self._wake = asyncio.Event()

    # -- the interface, on the event loop ---------------------------------------------

    async def open(self) -> None:
        if self._thread is not None:
            raise QueueError(f"queue {self.path} is already open")
        self._loop = asyncio.get_running_loop()
        opened: asyncio.Future[int | None] = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._serve, args=(opened,), name="nimbus-queue", daemon=True
        )
        self._thread.start()
        try:
            self._next_visible_ms = await opened
        except BaseException:
            self._closing = True
            raise

    async def close(self) -> None:
        if self._thread is None or self._closing:
            return
        # Queued after every request already made, so those all finish first.
        closed = self._send("close")
        self._closing = True
        await closed
        thread = self._thread
        await asyncio.get_running_loop().run_in_executor(None, thread.join)

    async def put_many(self, events: list[QueuedEvent]) -> list[str]:
        if not events:
            return []
        # Serialised here so a bad event fails its own caller, not the batch it joins.
        rows = [_prepare(e) for e in events]
        return await self._send("put", rows, size=sum(len(r[-1]) for r in rows))

    async def lease(self, max_items: int, visibility_s: float) -> list[Lease]:
        if max_items <= 0:
            return []
        return await self._send("lease", max_items, _ms(visibility_s))

    async def ack(self, lease: Lease) -> bool:
        return await self._send("ack", int(lease.id), lease.token)

    async def ack_many(self, leases: list[Lease]) -> list[bool]:
        if not leases:
            return []
        return await self._send("ack_many", [(int(lease.id), lease.token) for lease in leases])

    async def retry(self, lease: Lease, delay_s: float, attempts: int) -> bool:
        return await self._send("retry", int(lease.id), lease.token, _ms(delay_s), attempts)

    async def extend(self, lease: Lease, visibility_s: float) -> bool:
        return await self._send("extend", int(lease.id), lease.token, _ms(visibility_s))

    async def stats(self) -> QueueStats:
        return await self._send("stats")

    async def recover(self) -> int:
        return await self._send("recover")

    async def wait_for_work(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            due = self._next_visible_ms
            now = now_ms()
            if due is not None and due <= now:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            if due is not None:
                # A millisecond late, so the lease that follows finds the event due.
                remaining = min(remaining, (due - now + 1) / 1000)
            wake = self._wake
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), remaining)

    # -- between the loop and the writer thread ---------------------------------------

    def _send(self, op: str, *args: Any, size: int = 0) -> asyncio.Future[Any]:
        if self._loop is None or self._closing:
            raise QueueError(f"queue {self.path} is not open")
        future = self._loop.create_future()
        self._inbox.put(_Request(op, args, future, size))
        return future

    def _settle(self, batch: list[_Request], outcome: _Outcome) -> None:
        """On the loop: resolve each request's future and wake waiters if work is due."""
        for request, result in zip(batch, outcome.results, strict=True):
            future = request.future
            if future.done():
                # Its caller was cancelled. A lease nobody received is handed back at once
                # rather than waiting out its visibility timeout.
                if request.op == "lease" and result and not isinstance(result, BaseException):
                    self._release(result)
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        previous, due = self._next_visible_ms, outcome.next_visible_ms
        self._next_visible_ms = due
        if due is not None and (previous is None or due < previous or due <= now_ms()):
            self._wake.set()
            self._wake = asyncio.Event()

    def _release(self, leases: list[Lease]) -> None:
        if self._closing:
            return  # recover() at the next start hands them back
        for lease in leases:
            future = self._send("release", int(lease.id), lease.token)
            # Best effort: a failure only means the lease runs out on its own.
            future.add_done_callback(lambda f: f.cancelled() or f.exception())

    # -- the writer thread ------------------------------------------------------------

    def _serve(self, opened: asyncio.Future[int | None]) -> None:
        assert self._loop is not None
        try:
            next_visible = self._connect()
        except Exception as exc:
            self._disconnect()
            self._loop.call_soon_threadsafe(_resolve, opened, _error(self.path, exc))
            return
        self._loop.call_soon_threadsafe(_resolve, opened, next_visible)
        while True:
            batch = [self._inbox.get()]
            size = batch[0].size
            while len(batch) < MAX_BATCH and size < MAX_BATCH_BYTES:
                try:
                    request = self._inbox.get_nowait()
                except queue.Empty:
                    break
                batch.append(request)
                size += request.size
            closing = batch[-1].op == "close"  # close is always the last request sent
            work = batch[:-1] if closing else batch
            outcome = self._run(work) if work else _Outcome(next_visible_ms=next_visible)
            next_visible = outcome.next_visible_ms
            if closing:
                outcome.results.append(self._disconnect())
            try:
                self._loop.call_soon_threadsafe(self._settle, batch, outcome)
            except RuntimeError:
                # The loop is gone without close(): nobody is left to answer.
                self._disconnect()
                return
            if closing:
                return

    def _run(self, work: list[_Request]) -> _Outcome:
        """Run requests in one transaction; if it fails, run them one by one so a request
        that cannot succeed fails alone."""
        try:
            return self._transaction(work)
        except Exception as exc:
            if len(work) == 1:
                return _Outcome([_error(self.path, exc)], self._peek_next_visible())
        outcomes = [self._run([request]) for request in work]
        return _Outcome([o.results[0] for o in outcomes], outcomes[-1].next_visible_ms)

    def _transaction(self, work: list[_Request]) -> _Outcome:
        db = self._db
        assert db is not None
        now = now_ms()
        results: list[Any] = []
        self._set_synchronous("FULL" if any(r.op == "put" for r in work) else "NORMAL")
        db.execute("BEGIN IMMEDIATE")
        try:
            i = 0
            while i < len(work):
                if work[i].op in _COALESCED:
                    # A run of puts and acks becomes one insert and one delete. They touch
                    # disjoint rows (an ack names an event leased in an earlier commit, a
                    # put a new one), so running all puts first changes no result.
                    j = i + 1
                    while j < len(work) and work[j].op in _COALESCED:
                        j += 1
                    run = work[i:j]
                    puts = iter(self._do_put(now, [r.args[0] for r in run if r.op == "put"]))
                    acks = iter(
                        self._do_ack(now, [pair for r in run if r.op != "put" for pair in _acks(r)])
                    )
                    for r in run:
                        if r.op == "put":
                            results.append(next(puts))
                        elif r.op == "ack":
                            results.append(next(acks))
                        else:  # ack_many: one result per pair
                            results.append([next(acks) for _ in r.args[0]])
                    i = j
                else:
                    request = work[i]
                    results.append(getattr(self, f"_do_{request.op}")(now, *request.args))
                    i += 1
            next_visible = db.execute("SELECT min(visible_ms) FROM events").fetchone()[0]
            db.execute("COMMIT")
            self.commits += 1
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        return _Outcome(results, next_visible)

    def _set_synchronous(self, mode: str) -> None:
        if mode != self._synchronous:
            assert self._db is not None
            self._db.execute(f"PRAGMA synchronous = {mode}")
            self._synchronous = mode

    def _peek_next_visible(self) -> int | None:
        try:
            assert self._db is not None
            return self._db.execute("SELECT min(visible_ms) FROM events").fetchone()[0]
        except Exception:
            # Unknown: "due now" makes waiters look for themselves instead of sleeping.
            return now_ms()

    def _do_put(self, now: int, puts: list[list[tuple[Any, ...]]]) -> list[list[str]]:
        assert self._db is not None
        if not puts:
            return []
        # Ids are assigned here (one writer holds the write lock) so a few statements
        # insert the whole run; AUTOINCREMENT's sequence keeps them from being reused.
        seq = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
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
                self._db.execute(_INSERTS[size], params)
                i += size
        return ids

    def _do_lease(self, now: int, max_items: int, visibility_ms: int) -> list[Lease]:
        assert self._db is not None
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM events WHERE visible_ms <= ? ORDER BY visible_ms, id LIMIT ?",
            (now, max_items),
        ).fetchall()
        if not rows:
            return []
        # One token for the whole call: it is always checked together with the id.
        token = secrets.token_hex(8)
        self._db.execute(
            "UPDATE events SET visible_ms = ?, token = ? WHERE id IN"
            " (SELECT value FROM json_each(?))",
            (now + visibility_ms, token, json.dumps([row[0] for row in rows])),
        )
        return [Lease(str(row[0]), _event(row), token) for row in rows]

    def _do_ack(self, now: int, acks: list[tuple[int, str]]) -> list[bool]:
        """Delete each (id, token) whose lease still holds; one result per ack, in order
        (an ack repeated in the run succeeds once, as it would one at a time)."""
        assert self._db is not None
        if not acks:
            return []
        (matched,) = self._db.execute(_ACK_MATCH, (json.dumps(acks),)).fetchone()
        held: dict[int, str] = dict(json.loads(matched))  # id -> its current token
        if held:
            self._db.execute(_DELETE_IDS, (json.dumps(list(held)),))
        results = []
        for event_id, token in acks:
            ok = held.get(event_id) == token
            if ok:
                del held[event_id]
            results.append(ok)
        return results

    def _do_retry(self, now: int, event_id: int, token: str, delay_ms: int, attempts: int) -> bool:
        assert self._db is not None
        due = now + delay_ms
        cur = self._db.execute(
            "UPDATE events SET visible_ms = ?, due_ms = ?, not_before_ms = ?, attempts = ?,"
            " token = NULL WHERE id = ? AND token = ?",
            (due, due, due, attempts, event_id, token),
        )
        return cur.rowcount == 1

    def _do_extend(self, now: int, event_id: int, token: str, visibility_ms: int) -> bool:
        assert self._db is not None
        cur = self._db.execute(
            "UPDATE events SET visible_ms = ? WHERE id = ? AND token = ?",
            (now + visibility_ms, event_id, token),
        )
        return cur.rowcount == 1

    def _do_release(self, now: int, event_id: int, token: str) -> bool:
        assert self._db is not None
        cur = self._db.execute(
            "UPDATE events SET visible_ms = due_ms, token = NULL WHERE id = ? AND token = ?",
            (event_id, token),
        )
        return cur.rowcount == 1

    def _do_recover(self, now: int) -> int:
        assert self._db is not None
        # Back to the time they first became due, so they keep their place in line.
        cur = self._db.execute(
            "UPDATE events SET visible_ms = due_ms, token = NULL WHERE token IS NOT NULL"
        )
        return cur.rowcount

    def _do_stats(self, now: int) -> QueueStats:
        assert self._db is not None
        depth, visible, in_flight, oldest = self._db.execute(
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

    def _connect(self) -> int | None:
        """Lock, open and (first time) create the file; returns the next visible time."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise QueueError(f"queue {self.path} is in use by another process") from None
        db = self._db = sqlite3.connect(self.path, isolation_level=None)
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise QueueError(f"queue {self.path}: cannot use WAL mode (got {mode!r})")
        # FULL: a WAL commit is fsync'd before it returns, which is what "durable" means.
        db.execute("PRAGMA synchronous = FULL")
        self._synchronous = "FULL"
        db.execute("PRAGMA busy_timeout = 10000")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise QueueError(
                f"queue {self.path} has schema version {version}, newer than this nimbus"
                f" ({SCHEMA_VERSION})"
            )
        if version == 0:
            db.executescript(
                f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            )
        # The WAL file may be new: make its directory entry durable too.
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return db.execute("SELECT min(visible_ms) FROM events").fetchone()[0]

    def _disconnect(self) -> Exception | None:
        error: Exception | None = None
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error as exc:
                error = _error(self.path, exc)
            self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
        return error


_COALESCED = frozenset({"put", "ack", "ack_many"})


def _acks(request: _Request) -> list[tuple[int, str]]:
    """The (id, token) pairs of an ack or ack_many request."""
    return request.args[0] if request.op == "ack_many" else [request.args]


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _prepare(event: QueuedEvent) -> tuple[Any, ...]:
    """The columns of an event row put can fill before the writer stamps time and id."""
    payload = event.payload
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise TypeError(f"QueuedEvent.payload must be bytes, not {type(payload).__name__}")
    return (
        event.enqueued_ms,
        event.not_before_ms,
        event.attempts,
        event.kind,
        event.function_name,
        event.qualifier,
        event.request_id,
        event.trace_id,
        json.dumps(event.extra, separators=(",", ":")) if event.extra else None,
        bytes(payload),
    )


def _event(row: tuple[Any, ...]) -> QueuedEvent:
    (_, enqueued, not_before, attempts, kind, function, qualifier, request, trace, extra,
     payload) = row  # fmt: skip
    return QueuedEvent(
        function_name=function,
        qualifier=qualifier,
        payload=payload,
        request_id=request,
        trace_id=trace,
        enqueued_ms=enqueued,
        attempts=attempts,
        not_before_ms=not_before,
        kind=kind,
        extra=json.loads(extra) if extra else {},
    )


def _error(path: Path, exc: Exception) -> Exception:
    if isinstance(exc, sqlite3.Error):
        wrapped = QueueError(f"queue {path}: {exc}")
        wrapped.__cause__ = exc
        return wrapped
    return exc


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
