"""Serves a queue to async worker processes over a unix socket (the other end is
``backends/remote.py``).

The server process stays the queue's only owner. It remembers which leases it handed to
each connection, so when a worker dies (even by kill -9) the kernel closes its socket and
every event that worker held becomes visible again at once, rather than after the
visibility timeout. It also forwards committed metadata changes (``changed``) to every
worker, and keeps the dispatcher counters the workers report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nimbus.observe.metrics import MetricsDelta
from nimbus.queue import frames
from nimbus.queue.backend import Lease, QueueBackend
from nimbus.queue.backends.remote import PUSH

log = logging.getLogger(__name__)


class _Connection:
    """One worker's link: its leases in hand and its reply buffer."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.leases: dict[str, Lease] = {}
        self.counters: Counter[str] = Counter()
        self.in_flight: dict[str, int] = {}  # the worker's invocations running now
        self.closed = False
        self._outbox: list[tuple[int, bool, Any]] = []

    def send(self, request_id: int, ok: bool, result: Any) -> None:
        if self.closed:
            return
        if not self._outbox:
            # One write per loop turn for every reply ready by then.
            asyncio.get_running_loop().call_soon(self._flush)
        self._outbox.append((request_id, ok, result))

    def _flush(self) -> None:
        if self._outbox and not self.closed and not self.writer.is_closing():
            self.writer.write(frames.encode(self._outbox))
        self._outbox = []


class QueueServer:
    """Listens at ``path`` and serves ``queue`` to every connecting worker."""

    def __init__(
        self,
        queue: QueueBackend,
        path: Path,
        on_metrics: Callable[[MetricsDelta], None] | None = None,
    ) -> None:
        self.queue = queue
        self.path = path
        self.on_metrics = on_metrics  # what workers counted (the server's Metrics.absorb)
        self._server: asyncio.base_events.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connections: set[_Connection] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._finished = Counter[str]()  # counters of workers that have gone

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by a server that died
        # Created 0600 from the start: the protocol trusts its peer (see frames.py).
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, str(self.path))
        finally:
            os.umask(old)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.writer.close()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def changed(self, name: str) -> None:
        """A FunctionStore listener: tell every worker (thread-safe, as commits run in
        worker threads). Queued before the committing request answers, so a worker hears
        of a change before it can lease an event enqueued after it."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._broadcast, ("changed", name))

    def _broadcast(self, news: tuple[str, Any]) -> None:
        for conn in self._connections:
            conn.send(PUSH, True, news)

    @property
    def counters(self) -> Counter[str]:
        """The dispatcher counters of every worker since this server started."""
        total = Counter(self._finished)
        for conn in self._connections:
            total.update(conn.counters)
        return total

    @property
    def in_flight(self) -> Counter[str]:
        """Invocations running in the workers now, by function."""
        total: Counter[str] = Counter()
        for conn in self._connections:
            total.update(conn.in_flight)
        return total

    @property
    def workers(self) -> int:
        return len(self._connections)

    # -- one connection ---------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        conn = _Connection(writer)
        self._connections.add(conn)
        requests: set[asyncio.Task[None]] = set()
        try:
            while (messages := await frames.read(reader)) is not None:
                for request_id, op, args in messages:
                    if request_id == PUSH:
                        if op == "counters":
                            conn.counters = Counter(args[0])
                        elif op == "metrics":
                            delta: MetricsDelta = args[0]
                            conn.in_flight = delta.in_flight
                            if self.on_metrics is not None:
                                self.on_metrics(delta)
                        continue
                    request = asyncio.get_running_loop().create_task(
                        self._answer(conn, request_id, op, args),
                        name="wait" if op == "wait" else None,
                    )
                    requests.add(request)
                    request.add_done_callback(requests.discard)
        except (OSError, ValueError, EOFError) as exc:
            log.warning("queue connection failed: %s", exc)
        finally:
            conn.closed = True
            self._connections.discard(conn)
            self._finished.update(conn.counters)
            writer.close()
            # Waits (wait_for_work) have nobody to wake; the rest finish so that a lease
            # in progress is recorded before the connection's leases are handed back.
            for request in list(requests):
                if request.get_name() == "wait":
                    request.cancel()
            if requests:
                await asyncio.gather(*requests, return_exceptions=True)
            await self._release(conn)
            self._handlers.discard(task)

    async def _release(self, conn: _Connection) -> None:
        leases, conn.leases = list(conn.leases.values()), {}
        if not leases:
            return
        outcomes = await asyncio.gather(
            *(self.queue.retry(lease, 0, lease.event.attempts) for lease in leases),
            return_exceptions=True,
        )
        released = sum(1 for o in outcomes if o is True)
        log.warning("a worker went away; %d of its %d leases are visible again",
                    released, len(leases))

    async def _answer(self, conn: _Connection, request_id: int, op: str, args: tuple) -> None:
        try:
            result = await self._do(conn, op, args)
        except Exception as exc:  # the caller gets it, as a QueueError
            conn.send(request_id, False, f"{type(exc).__name__}: {exc}")
        else:
            conn.send(request_id, True, result)

    async def _do(self, conn: _Connection, op: str, args: tuple) -> Any:
        queue = self.queue
        if op == "lease":
            leases = await queue.lease(*args)
            for lease in leases:
                conn.leases[lease.id] = lease
            if conn.closed:  # the worker left while we leased: hand them back now
                await self._release(conn)
                return []
            return leases
        if op == "ack_many":
            return await queue.ack_many([_settled(conn, *pair) for pair in args[0]])
        if op == "extend":
            lease_id, token, visibility_s = args
            held = conn.leases.get(lease_id)
            current = held if held is not None and held.token == token else None
            return await queue.extend(current or _foreign(lease_id, token), visibility_s)
        if op in ("ack", "retry"):
            lease_id, token, *rest = args
            lease = _settled(conn, lease_id, token)
            if op == "ack":
                return await queue.ack(lease)
            return await queue.retry(lease, *rest)
        if op == "put":
            return await queue.put_many(args[0])
        if op == "wait":
            await queue.wait_for_work(args[0])
            return None
        if op == "hello":
            return None
        if op == "stats":
            return await queue.stats()
        raise ValueError(f"unknown queue operation {op!r}")


def _settled(conn: _Connection, lease_id: str, token: str) -> Lease:
    """The lease an ack or retry names, no longer this connection's to hand back."""
    held = conn.leases.get(lease_id)
    if held is not None and held.token == token:
        del conn.leases[lease_id]
        return held
    return _foreign(lease_id, token)


def _foreign(lease_id: str, token: str) -> Lease:
    """Not one of the connection's current leases: the backend judges the token."""
    # A backend settles a lease by its id and token alone, so no event is carried.
    return Lease(lease_id, None, token)  # type: ignore[arg-type]
