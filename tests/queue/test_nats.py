"""What only the NATS JetStream backend has: its URL, its stream, and JetStream's own
redelivery of a dead consumer's messages (ack wait), held off by heartbeats while the
consumer lives. The contract itself is ``test_backend.py``, run on this backend too."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import nats
import pytest

from nimbus.config import ConfigError, load_config
from nimbus.queue.backend import QueuedEvent, QueueError
from nimbus.queue.backends.nats_jetstream import ACK_WAIT_S, DEFAULT_STREAM, NatsQueue
from tests.queue.backends import NATS_URL


def event(n: int) -> QueuedEvent:
    return QueuedEvent("fn", None, b"{}", f"req-{n}")


def test_the_url_names_servers_and_stream() -> None:
    queue = NatsQueue.from_url("nats://127.0.0.1:4222/ORDERS")
    assert (queue.servers, queue.stream) == ("nats://127.0.0.1:4222", "ORDERS")
    assert NatsQueue.from_url("nats://10.0.0.1:4222").stream == DEFAULT_STREAM
    with pytest.raises(QueueError, match="stream name"):
        NatsQueue("nats://127.0.0.1:4222", stream="a.b")


def test_the_url_may_set_the_ack_wait() -> None:
    queue = NatsQueue.from_url("nats://127.0.0.1:4222/ORDERS?ack_wait=4.5")
    assert (queue.servers, queue.stream, queue.ack_wait_s) == (
        "nats://127.0.0.1:4222", "ORDERS", 4.5)  # fmt: skip
    assert NatsQueue.from_url("nats://127.0.0.1:4222").ack_wait_s == ACK_WAIT_S
    with pytest.raises(QueueError, match="unknown option 'x'"):
        NatsQueue.from_url("nats://127.0.0.1:4222/Q?x=1")
    with pytest.raises(QueueError, match="ack_wait"):
        NatsQueue.from_url("nats://127.0.0.1:4222/Q?ack_wait=0")


def test_config_refuses_other_schemes() -> None:
    assert load_config(queue_url="nats://127.0.0.1:4222/Q").queue_url == "nats://127.0.0.1:4222/Q"
    with pytest.raises(ConfigError, match=r"unsupported queue URL 'redis://127\.0\.0\.1'"):
        load_config(queue_url="redis://127.0.0.1")


async def test_an_unreachable_server_is_a_clear_error() -> None:
    queue = NatsQueue("nats://127.0.0.1:1", stream="NOPE")  # nothing listens on port 1
    with pytest.raises(QueueError, match=r"cannot reach NATS at nats://127\.0\.0\.1:1"):
        await queue.open()
    with pytest.raises(QueueError, match="not open"):
        await queue.put(event(1))


@pytest.fixture
async def stream() -> AsyncIterator[str]:
    name = f"NIMBUS_TEST_{uuid.uuid4().hex[:12]}"
    yield name
    nc = await nats.connect(NATS_URL)
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await nc.jetstream().delete_stream(name)
    await nc.close()


@pytest.mark.broker("nats")
async def test_a_foreign_stream_of_that_name_is_refused(stream: str) -> None:
    nc = await nats.connect(NATS_URL)
    await nc.jetstream().add_stream(name=stream, subjects=[f"other.{stream}"])
    await nc.close()
    with pytest.raises(QueueError, match="not a nimbus queue"):
        await NatsQueue(NATS_URL, stream=stream).open()


@pytest.mark.broker("nats")
async def test_heartbeats_hold_a_lease_and_a_dead_holders_comes_back(stream: str) -> None:
    holder = NatsQueue(NATS_URL, stream=stream, ack_wait_s=1)
    other = NatsQueue(NATS_URL, stream=stream, ack_wait_s=1)
    await holder.open()
    await other.open()
    try:
        event_id = await holder.put(event(1))
        (lease,) = await holder.lease(10, 60)
        # Three ack waits: without its heartbeats JetStream would have redelivered it.
        await holder.wait_for_work(3)
        assert await other.lease(10, 60) == []
        assert (await other.stats()).in_flight == 1
        # The holder dies (no close: its heartbeats just stop).
        assert holder._heartbeat is not None
        holder._heartbeat.cancel()
        deadline = time.monotonic() + 15
        while not (leases := await other.lease(10, 60)):
            assert time.monotonic() < deadline, "JetStream never redelivered the message"
            await asyncio.sleep(0.2)  # a redelivery is no put: nothing to wait on
        (again,) = leases
        assert again.id == event_id
        assert await holder.ack(lease) is True  # the holder's own view: still its lease...
        assert await other.ack(again) is True  # ...but the message is the redelivered one's
        assert (await other.stats()).depth == 0
    finally:
        await holder.close()
        await other.close()


@pytest.mark.broker("nats")
async def test_a_put_through_another_connection_wakes_a_waiter(stream: str) -> None:
    producer = NatsQueue(NATS_URL, stream=stream)
    consumer = NatsQueue(NATS_URL, stream=stream)
    await producer.open()
    await consumer.open()
    try:
        await consumer.wait_for_work(0.01)  # learns the stream is empty
        waiter = asyncio.create_task(consumer.wait_for_work(30))
        await asyncio.sleep(0.05)  # it is waiting on its wake subscription
        assert not waiter.done()
        await producer.put(event(1))
        await asyncio.wait_for(waiter, 5)
        (lease,) = await consumer.lease(10, 30)
        assert await consumer.ack(lease) is True
    finally:
        await producer.close()
        await consumer.close()


@pytest.mark.broker("nats")
async def test_a_second_consumers_start_up_leaves_the_firsts_leases_alone(stream: str) -> None:
    first = NatsQueue(NATS_URL, stream=stream, ack_wait_s=1)
    second = NatsQueue(NATS_URL, stream=stream, ack_wait_s=1)
    await first.open()
    try:
        await first.put_many([event(i) for i in range(5)])
        held = await first.lease(3, 60)
        await second.open()
        recovered = await second.recover()  # a server starting up beside a live one
        # Three ack waits: the first one's leases stay its own while it heartbeats.
        await second.wait_for_work(3)
        leases = await second.lease(10, 60)
        assert sorted(lease.event.request_id for lease in leases) == ["req-3", "req-4"]
        assert recovered == 0
        assert await second.lease(10, 60) == []
        assert all([await first.ack(lease) for lease in held])
        assert all([await second.ack(lease) for lease in leases])
        assert (await second.stats()).depth == 0
    finally:
        await first.close()
        await second.close()


@pytest.mark.broker("nats")
async def test_a_clean_close_hands_held_events_back_at_once(stream: str) -> None:
    # An ack wait far longer than the test: what comes back came back through the close.
    first = NatsQueue(NATS_URL, stream=stream, ack_wait_s=600)
    second = NatsQueue(NATS_URL, stream=stream, ack_wait_s=600)
    await first.open()
    await second.open()
    try:
        await first.put_many([event(i) for i in range(3)])
        held = await first.lease(2, 60)
        assert len(held) == 2
        await first.close()
        found: list[str] = []
        while len(found) < 3:
            await second.wait_for_work(5)
            leases = await second.lease(10, 60)
            assert leases, "the closed consumer's events did not come back"
            found += [lease.event.request_id for lease in leases]
            assert all([await second.ack(lease) for lease in leases])
        assert sorted(found) == ["req-0", "req-1", "req-2"]
    finally:
        await first.close()
        await second.close()


@pytest.mark.broker("nats")
async def test_servers_with_different_ack_waits_heartbeat_for_the_shortest(stream: str) -> None:
    first = NatsQueue(NATS_URL, stream=stream, ack_wait_s=3)
    second = NatsQueue(NATS_URL, stream=stream, ack_wait_s=1)
    await first.open()
    try:
        await second.open()  # the last one started sets the consumer's ack wait
        assert second._beat_s == pytest.approx(1 / 3)
        deadline = time.monotonic() + 10
        while first._beat_s > 1 / 3 + 1e-6:  # it notices at its next heartbeat
            assert time.monotonic() < deadline, "the first server kept its longer beat"
            await asyncio.sleep(0.1)
        await first.put(event(1))
        (lease,) = await first.lease(10, 60)
        await second.wait_for_work(3)  # three of the shorter ack waits
        assert await second.lease(10, 60) == []  # still the first one's
        assert await first.ack(lease) is True
    finally:
        await first.close()
        await second.close()
