"""The worker nodes' board as a server reads it (cluster/nodes.py), against the machine's
NATS: a node counted out by the watch is confirmed silent only if the bucket still holds
the announcement last heard. A newer one (the watch fell behind), a withdrawal the watch
missed, or NATS not answering never make a speaking worker look silent."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import nats
import pytest

from nimbus.cluster.nodes import BEAT_S, STALE_S, NodeBoard, NodeState
from tests.cluster.test_placement import Clock

pytestmark = pytest.mark.broker("nats")
NATS_URL = "nats://127.0.0.1:4222"


def state(node_id: str, free_mb: int = 1000) -> NodeState:
    return NodeState(node_id, f"http://{node_id}:9000", 2, 4096, free_mb)


@contextlib.asynccontextmanager
async def boards() -> AsyncIterator[tuple[NodeBoard, NodeBoard, Clock]]:
    """A worker's board and a server's (on a clock of the test's), one fresh bucket."""
    stream = f"NIMBUS_BOARD_{uuid.uuid4().hex[:12]}"
    clock = Clock()
    worker = NodeBoard(f"{NATS_URL}/{stream}")
    server = NodeBoard(f"{NATS_URL}/{stream}", clock=clock)
    await worker.open()
    await server.open()
    try:
        yield worker, server, clock
    finally:
        await server.close()
        await worker.close()
        nc = await nats.connect(NATS_URL)
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_stream(f"KV_{stream}_nodes")
        await nc.close()


async def until(check: object, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)


def test_silence_is_confirmed_only_by_the_announcement_last_heard() -> None:
    async def scenario() -> None:
        async with boards() as (worker, server, clock):
            await server.watch()
            await worker.announce(state("w1"))
            await worker.announce(state("w2"))
            await until(lambda: len(server.alive()) == 2)
            clock.now += STALE_S + BEAT_S + 1  # nothing heard since, on the server's clock
            assert server.silent(["w1", "w2"]) == {"w1", "w2"}
            # w2 spoke meanwhile, unheard by the watch (stopped here, as a watch that
            # fell behind when NATS restarted): the bucket's newer revision says so.
            assert server._watcher is not None
            server._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server._watcher
            await worker.announce(state("w2", free_mb=900))
            assert await server.confirm_silent(["w1", "w2"]) == {"w1"}
            assert {n.node_id: n.free_mb for n in server.alive()} == {"w2": 900}
            # A clean stop the watch missed is not silence either.
            await worker.withdraw("w1")
            assert await server.confirm_silent(["w1"]) == set()
            assert server.silent(["w1"]) == set()

    asyncio.run(scenario())


async def heard_once(worker: NodeBoard, server: NodeBoard, clock: Clock) -> None:
    """w1 announced itself once, the server heard it, and has heard nothing since."""
    await server.watch()
    await worker.announce(state("w1"))
    await until(lambda: len(server.alive()) == 1)
    clock.now += STALE_S + BEAT_S + 1


def test_nothing_is_confirmed_just_after_this_server_reconnected() -> None:
    async def scenario() -> None:
        async with boards() as (worker, server, clock):
            await heard_once(worker, server, clock)
            await server._reconnected()  # back from an outage of its own, just now
            assert await server.confirm_silent(["w1"]) == set()
            clock.now += STALE_S + BEAT_S  # the workers had their time to speak
            assert await server.confirm_silent(["w1"]) == {"w1"}

    asyncio.run(scenario())


def test_nothing_is_confirmed_when_nats_does_not_answer() -> None:
    async def scenario() -> None:
        async with boards() as (worker, server, clock):
            await heard_once(worker, server, clock)
            assert server._nc is not None
            await server._nc.close()  # this server cut off: its workers may be fine
            assert await server.confirm_silent(["w1"]) == set()

    asyncio.run(scenario())


def test_a_worker_makes_a_deleted_bucket_again() -> None:
    async def scenario() -> None:
        async with boards() as (worker, server, _clock):
            await worker.announce(state("w1"))
            nc = await nats.connect(NATS_URL)
            try:
                await nc.jetstream().delete_key_value(worker.bucket)
            finally:
                await nc.close()
            await worker.announce(state("w1", free_mb=7))  # not an error: made again
            assert server._kv is not None
            entry = await server._kv.get("w1")
            assert NodeState.decode(entry.value or b"").free_mb == 7

    asyncio.run(scenario())
