"""A queue backend that is a client of another process' queue, over a unix socket.

An async worker process runs the Dispatcher against this backend while the nimbus
server keeps sole ownership of the real queue (the SQLite file is flock'd by one owner,
and ``recover`` assumes one consumer). Requests made during one event-loop turn travel
in one frame (see ``frames.py``); the server answers each, and also pushes the names of
functions whose metadata it committed, so the worker's caches stay honest.

``recover`` is a no-op: the owner recovers at its own start, and releases at once the
leases of a worker whose connection drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nimbus.queue import frames
from nimbus.queue.backend import Lease, QueueBackend, QueuedEvent, QueueError, QueueStats

log = logging.getLogger(__name__)

PUSH = 0  # the request id of a message nobody answers (server news, worker reports)
# Settling a lease is not urgent: acks and retries wait this long for company, so that a
# busy worker wakes the server once per batch of finished events, not once per event.
SETTLE_DELAY_S = 0.002
_SETTLING = frozenset({"ack", "retry"})


class RemoteQueue(QueueBackend):
    """The queue served by ``QueueServer`` at ``path``."""

    def __init__(
        self,
        path: Path | str,
        on_change: Callable[[str], None] | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.path = str(path)
        self.on_change = on_change  # called with a function name the server changed
        self.on_lost = on_lost  # called once when the connection ends
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._outbox: list[tuple[int, str, tuple[Any, ...]]] = []
        self._acks: list[tuple[str, str, asyncio.Future[bool]]] = []  # not yet sent
        self._flush_at: asyncio.TimerHandle | asyncio.Handle | None = None
        self._flush_soon = False
        self._waits: set[int] = set()  # request ids of wait_for_work calls
        self._closing = False  # no new requests; those made still finish
        self._closed = False
        self._loop: asyncio.AbstractEventLoop  # set by open()

    async def open(self) -> None:
        if self._writer is not None:
            raise QueueError(f"remote queue {self.path} is already open")
        try:
            reader, self._writer = await asyncio.open_unix_connection(self.path)
        except OSError as exc:
            raise QueueError(f"cannot reach the queue at {self.path}: {exc}") from exc
        # Kept: on Python 3.11 each get_running_loop() is a getpid() syscall, and futures
        # are made per event.
        self._loop = asyncio.get_running_loop()
        self._reader_task = self._loop.create_task(self._read(reader))
        # Answered once the server has registered us: from then on we hear every change,
        # and nothing was cached before (the caches fill as events run).
        await self._call("hello")

    async def close(self) -> None:
        if self._closed or self._closing:
            return
        self._closing = True
        if self._writer is not None:
            self._flush()
            # Like every backend, finish the requests already made (a worker's last acks);
            # a wait_for_work has nothing to finish.
            waits = self._waits
            finishing = [f for i, f in self._pending.items() if i not in waits]
            if finishing:
                await asyncio.wait(finishing)
        self._closed = True
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
        self._fail_pending(QueueError("the remote queue is closed"))

    # -- the interface ----------------------------------------------------------------

    async def put_many(self, events: list[QueuedEvent]) -> list[str]:
        if not events:
            return []
        return await self._call("put", events)

    async def lease(self, max_items: int, visibility_s: float) -> list[Lease]:
        if max_items <= 0:
            return []
        return await self._call("lease", max_items, visibility_s)

    # Only the id and token travel back: the server keeps the rest of each lease.
    async def ack(self, lease: Lease) -> bool:
        # Acks wait for company (SETTLE_DELAY_S) and travel as one request: the server
        # settles a whole batch with one task and one queue transaction.
        if self._writer is None or self._closing:
            raise QueueError(f"remote queue {self.path} is not open")
        future = self._loop.create_future()
        self._acks.append((lease.id, lease.token, future))
        self._schedule("ack")
        return await future

    async def retry(self, lease: Lease, delay_s: float, attempts: int) -> bool:
        return await self._call("retry", lease.id, lease.token, delay_s, attempts)

    async def extend(self, lease: Lease, visibility_s: float) -> bool:
        return await self._call("extend", lease.id, lease.token, visibility_s)

    async def wait_for_work(self, timeout_s: float) -> None:
        request_id, future = self._request("wait", timeout_s)
        self._waits.add(request_id)
        try:
            await future
        finally:
            self._waits.discard(request_id)

    async def stats(self) -> QueueStats:
        return await self._call("stats")

    async def recover(self) -> int:
        return 0  # the owning process recovers; see the module docstring

    def report(self, counters: dict[str, int]) -> None:
        """Send the dispatcher's counters, for the owner's /_nimbus/queue (no answer)."""
        self._send(PUSH, "counters", (counters,))

    def report_metrics(self, delta: object) -> None:
        """Send what this worker's metrics counted since the last report (an
        ``observe.metrics.MetricsDelta``), for the owner's /metrics (no answer)."""
        self._send(PUSH, "metrics", (delta,))

    # -- the wire ---------------------------------------------------------------------

    def _call(self, op: str, *args: Any) -> asyncio.Future[Any]:
        return self._request(op, *args)[1]

    def _request(self, op: str, *args: Any) -> tuple[int, asyncio.Future[Any]]:
        if self._writer is None or self._closing:
            raise QueueError(f"remote queue {self.path} is not open")
        request_id, future = self._request_now(op, *args)
        self._schedule(op)
        return request_id, future

    def _request_now(self, op: str, *args: Any) -> tuple[int, asyncio.Future[Any]]:
        """Put a request in the outbox (sent at the next flush); its reply's future."""
        request_id = next(self._ids)
        future = self._loop.create_future()
        self._pending[request_id] = future
        self._outbox.append((request_id, op, args))
        return request_id, future

    def _send(self, request_id: int, op: str, args: tuple[Any, ...]) -> None:
        if self._writer is None or self._closed:
            return
        self._outbox.append((request_id, op, args))
        self._schedule(op)

    def _schedule(self, op: str) -> None:
        if self._flush_soon:
            return
        loop = self._loop
        if op not in _SETTLING or self._closing:
            if self._flush_at is not None:
                self._flush_at.cancel()
            self._flush_at = loop.call_soon(self._flush)
            self._flush_soon = True
        elif self._flush_at is None:
            self._flush_at = loop.call_later(SETTLE_DELAY_S, self._flush)

    def _flush(self) -> None:
        if self._flush_at is not None:
            self._flush_at.cancel()
        self._flush_at, self._flush_soon = None, False
        if self._acks:
            acks, self._acks = self._acks, []
            _, batch = self._request_now("ack_many", [(i, t) for i, t, _ in acks])
            batch.add_done_callback(lambda done: _distribute(done, [f for *_, f in acks]))
        if self._outbox and self._writer is not None and not self._writer.is_closing():
            self._writer.write(frames.encode(self._outbox))
        self._outbox = []

    async def _read(self, reader: asyncio.StreamReader) -> None:
        error: Exception = QueueError(f"the queue server at {self.path} went away")
        try:
            while (messages := await frames.read(reader)) is not None:
                for request_id, ok, result in messages:
                    if request_id == PUSH:
                        self._push(result)
                        continue
                    future = self._pending.pop(request_id, None)
                    if future is None or future.done():
                        continue
                    if ok:
                        future.set_result(result)
                    else:
                        future.set_exception(QueueError(str(result)))
        except (OSError, ValueError) as exc:
            error = QueueError(f"the queue connection to {self.path} failed: {exc}")
        self._fail_pending(error)
        if not self._closed and self.on_lost is not None:
            self.on_lost()

    def _push(self, news: tuple[str, Any]) -> None:
        kind, value = news
        if kind == "changed" and self.on_change is not None:
            self.on_change(value)

    def _fail_pending(self, error: Exception) -> None:
        acks, self._acks = self._acks, []
        for *_, future in acks:
            if not future.done():
                future.set_exception(error)
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)


def _distribute(batch: asyncio.Future[Any], futures: list[asyncio.Future[bool]]) -> None:
    """Hand an ack_many reply (or its failure) to each ack's own future."""
    if batch.cancelled():
        results: Any = QueueError("the remote queue is closed")
    else:
        results = batch.exception() or batch.result()
    for i, future in enumerate(futures):
        if future.done():
            continue
        if isinstance(results, BaseException):
            future.set_exception(results)
        else:
            future.set_result(results[i])
