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
about changes made through this object. The table and its SQL are ``sqlite_table.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import queue
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nimbus.clock import now_ms
from nimbus.private_files import secure_sqlite
from nimbus.queue.backend import Lease, QueueBackend, QueuedEvent, QueueError, QueueStats
from nimbus.queue.backends.sqlite_table import (
    MIGRATIONS,
    SCHEMA,
    SCHEMA_VERSION,
    EventTable,
    row_of,
)

# A batch is whatever queued up during the previous commit, within these bounds (so one
# transaction, and its WAL growth, stays a few megabytes).
MAX_BATCH = 2048
MAX_BATCH_BYTES = 16 * 1024 * 1024



@dataclass(slots=True)
class _Request:
    op: str  # names an ``EventTable`` method, or "close"
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
        self._table: EventTable | None = None
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
        rows = [row_of(e) for e in events]
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
        db, table = self._db, self._table
        assert db is not None and table is not None
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
                    puts = iter(table.put(now, [r.args[0] for r in run if r.op == "put"]))
                    acks = iter(
                        table.ack(now, [pair for r in run if r.op != "put" for pair in _acks(r)])
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
                    results.append(getattr(table, request.op)(now, *request.args))
                    i += 1
            next_visible = table.next_visible()
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
            assert self._table is not None
            return self._table.next_visible()
        except Exception:
            # Unknown: "due now" makes waiters look for themselves instead of sleeping.
            return now_ms()

    def _connect(self) -> int | None:
        """Lock, open and (first time) create the file; returns the next visible time."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                                0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise QueueError(f"queue {self.path} is in use by another process") from None
        # 0600 before SQLite creates it (its -wal and -shm take its mode): queued events
        # carry their payloads.
        secure_sqlite(self.path)
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
                f"BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            )
            version = SCHEMA_VERSION
        for older in range(version, SCHEMA_VERSION):
            db.executescript(
                f"BEGIN IMMEDIATE; {MIGRATIONS[older]} PRAGMA user_version = {older + 1}; COMMIT;"
            )
        # The WAL file may be new: make its directory entry durable too.
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._table = EventTable(db)
        return self._table.next_visible()

    def _disconnect(self) -> Exception | None:
        error: Exception | None = None
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error as exc:
                error = _error(self.path, exc)
            self._db = None
            self._table = None
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
