"""What the remote backend adds to the shared contract (``test_backend.py`` runs that):
a client that vanishes gives its leases back at once, and the server's news (metadata
changes) and the clients' reports (dispatcher counters) cross the socket."""

from __future__ import annotations

import asyncio
import pickle
from pathlib import Path

from nimbus.queue import frames
from nimbus.queue.backend import Lease, QueuedEvent
from nimbus.queue.backends.remote import RemoteQueue
from nimbus.queue.backends.sqlite import SqliteQueue
from nimbus.workers.queue_server import QueueServer


def event(n: int) -> QueuedEvent:
    return QueuedEvent("fn", None, b"{}", f"req-{n}")


def test_a_lease_crosses_the_socket_with_every_field() -> None:
    # Leases are pickled as constructor calls (QueuedEvent.__reduce__): a field left out
    # there would come back with its default, and this event has none of them.
    lease = Lease(
        "42",
        QueuedEvent(
            function_name="fn",
            qualifier="live",
            payload=b'{"x": 1}',
            request_id="req-1",
            trace_id="Root=1-abc",
            enqueued_ms=1700000000000,
            attempts=2,
            not_before_ms=1700000001000,
        ),
        "token",
    )
    encoded = frames.encode([(1, True, [lease])])
    assert pickle.loads(encoded[frames.HEADER.size :]) == [(1, True, [lease])]


async def serve(tmp_path: Path) -> tuple[SqliteQueue, QueueServer]:
    owner = SqliteQueue(tmp_path / "queue.db")
    await owner.open()
    server = QueueServer(owner, tmp_path / "queue.sock")
    await server.start()
    return owner, server


async def test_a_vanished_client_gives_its_leases_back_at_once(tmp_path: Path) -> None:
    owner, server = await serve(tmp_path)
    lost = asyncio.Event()
    worker = RemoteQueue(server.path, on_lost=lost.set)
    other = RemoteQueue(server.path)
    try:
        await worker.open()
        await other.open()
        await worker.put_many([event(i) for i in range(5)])
        held = await worker.lease(3, 900)
        assert (await owner.stats()).in_flight == 3
        assert worker._writer is not None
        worker._writer.transport.abort()  # as the kernel does for a kill -9'd process
        await asyncio.wait_for(lost.wait(), 5)
        for _ in range(100):  # the server notices the end of stream in its own time
            if (await owner.stats()).in_flight == 0:
                break
            await asyncio.sleep(0.02)
        leases = await other.lease(10, 900)
        assert sorted(lease.event.request_id for lease in leases) == [
            f"req-{i}" for i in range(5)
        ]
        assert all([not await other.ack(lease) for lease in held])  # the dead one's tokens
        assert all([await other.ack(lease) for lease in leases])
        assert (await owner.stats()).depth == 0
    finally:
        await other.close()
        await worker.close()
        await server.close()
        await owner.close()


async def test_changes_and_counters_cross_the_socket(tmp_path: Path) -> None:
    owner, server = await serve(tmp_path)
    heard: asyncio.Queue[str] = asyncio.Queue()
    worker = RemoteQueue(server.path, on_change=heard.put_nowait)
    try:
        await worker.open()
        # Commits happen in threads: the listener must be safe to call from one.
        await asyncio.to_thread(server.changed, "fn")
        assert await asyncio.wait_for(heard.get(), 5) == "fn"
        worker.report({"succeeded": 3})
        await worker.stats()  # sent after the report, so answered after it arrived
        assert server.counters == {"succeeded": 3}
        await worker.close()
        for _ in range(100):
            if server.workers == 0:
                break
            await asyncio.sleep(0.02)
        assert server.counters == {"succeeded": 3}  # a gone worker's work still counts
    finally:
        await worker.close()
        await server.close()
        await owner.close()
