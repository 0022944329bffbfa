"""The queue contract, run against every backend (see ``backends.py``)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from nimbus.queue.backend import Lease, QueueBackend, QueuedEvent, QueueError
from tests.queue.backends import QueueSpec
from tests.queue.conftest import OpenQueue


def event(n: int | str, **kw: object) -> QueuedEvent:
    return QueuedEvent("fn", None, f'{{"n": "{n}"}}'.encode(), f"req-{n}", **kw)


def names(leases: list[Lease]) -> list[str]:
    return [lease.event.request_id.removeprefix("req-") for lease in leases]


async def drain(queue: QueueBackend) -> list[Lease]:
    """Lease everything visible now."""
    leases: list[Lease] = []
    while batch := await queue.lease(100, 60):
        leases += batch
    return leases


async def test_put_lease_ack(backend: QueueBackend) -> None:
    sent = QueuedEvent(
        function_name="fn",
        qualifier="live",
        payload=b"\x00\xffbinary",
        request_id="r-1",
        trace_id="Root=1-abc",
    )
    before = int(time.time() * 1000)
    event_id = await backend.put(sent)
    (lease,) = await backend.lease(10, 30)
    assert lease.id == event_id
    got = lease.event
    assert got.enqueued_ms >= before  # stamped by put
    assert (got.function_name, got.qualifier, got.payload) == ("fn", "live", b"\x00\xffbinary")
    assert (got.request_id, got.trace_id, got.attempts) == ("r-1", "Root=1-abc", 0)
    assert await backend.lease(10, 30) == []  # invisible while leased
    assert await backend.ack(lease) is True
    assert (await backend.stats()).depth == 0


async def test_put_keeps_given_fields_and_large_payload(backend: QueueBackend) -> None:
    payload = bytes(range(256)) * 1024  # 256 KB, Lambda's async limit
    await backend.put(event(1, enqueued_ms=1_000, attempts=2))
    await backend.put(QueuedEvent("fn", "3", payload, "big"))
    first, big = await backend.lease(10, 30)
    assert (first.event.enqueued_ms, first.event.attempts) == (1_000, 2)
    assert big.event.payload == payload


async def test_put_many_is_ordered_and_empty_is_a_no_op(backend: QueueBackend) -> None:
    assert await backend.put_many([]) == []
    ids = await backend.put_many([event(i) for i in range(5)])
    assert len(set(ids)) == 5
    leases = await backend.lease(10, 30)
    assert [lease.id for lease in leases] == ids
    assert names(leases) == ["0", "1", "2", "3", "4"]


async def test_oldest_first(backend: QueueBackend) -> None:
    for n in "abc":
        await backend.put(event(n))
    await backend.put_many([event("d"), event("e")])
    assert names(await backend.lease(2, 30)) == ["a", "b"]
    leases = await backend.lease(10, 30)
    assert names(leases) == ["c", "d", "e"]
    # A retried event takes its place by the time it became due again (ahead of later
    # puts; events due in the same millisecond go in put order).
    assert await backend.retry(leases[0], 0, 1)
    await backend.put(event("f"))
    assert names(await backend.lease(10, 30)) == ["c", "f"]


async def test_visibility_timeout_redelivers(backend: QueueBackend) -> None:
    await backend.put(event(1))
    (first,) = await backend.lease(10, 0.2)
    started = time.monotonic()
    assert await backend.lease(10, 30) == []
    await backend.wait_for_work(10)  # wakes when the lease runs out
    assert time.monotonic() - started >= 0.15
    (again,) = await backend.lease(10, 30)
    assert again.id == first.id
    assert again.token != first.token
    assert again.event.attempts == 0  # a lapsed lease is not a failed attempt
    assert await backend.ack(first) is False  # someone else holds it now
    assert await backend.ack(again) is True


async def test_retry_waits_for_its_delay(backend: QueueBackend) -> None:
    await backend.put(event(1))
    (lease,) = await backend.lease(10, 30)
    retried_at = int(time.time() * 1000)
    assert await backend.retry(lease, 0.3, 1) is True
    assert await backend.lease(10, 30) == []
    stats = await backend.stats()
    assert (stats.delayed, stats.in_flight, stats.visible) == (1, 0, 0)
    await backend.wait_for_work(10)  # wakes when the delay is over
    assert int(time.time() * 1000) >= retried_at + 300
    (again,) = await backend.lease(10, 30)
    assert again.id == lease.id
    assert again.event.attempts == 1
    assert again.event.not_before_ms >= retried_at + 300
    assert await backend.ack(lease) is False  # the retry ended that lease
    assert await backend.ack(again) is True


async def test_extend_keeps_the_lease(backend: QueueBackend) -> None:
    await backend.put(event(1))
    (lease,) = await backend.lease(10, 0.2)
    assert await backend.extend(lease, 30) is True
    started = time.monotonic()
    await backend.wait_for_work(0.5)  # nothing becomes due: it times out
    assert time.monotonic() - started >= 0.45
    assert await backend.lease(10, 30) == []
    assert (await backend.stats()).in_flight == 1
    assert await backend.ack(lease) is True


async def test_stale_tokens_are_refused(backend: QueueBackend) -> None:
    await backend.put(event(1))
    (old,) = await backend.lease(10, 0.05)
    await backend.wait_for_work(10)
    (new,) = await backend.lease(10, 30)
    assert await backend.ack(old) is False
    assert await backend.retry(old, 0, 5) is False
    assert await backend.extend(old, 0) is False
    forged = Lease(new.id, new.event, "not-the-token")
    assert await backend.ack(forged) is False
    assert (await backend.stats()).in_flight == 1  # untouched by any of those
    assert await backend.ack(new) is True
    assert await backend.ack(new) is False  # already done


async def test_a_late_holder_may_settle_until_someone_else_leases(backend: QueueBackend) -> None:
    await backend.put(event(1))
    (lease,) = await backend.lease(10, 0.05)
    await backend.wait_for_work(10)  # its lease has run out
    assert await backend.ack(lease) is True  # nobody else took it: the outcome counts
    assert await backend.lease(10, 30) == []


async def test_stats(backend: QueueBackend) -> None:
    empty = await backend.stats()
    assert (empty.depth, empty.visible, empty.in_flight, empty.delayed) == (0, 0, 0, 0)
    assert empty.oldest_age_ms == 0
    old = int(time.time() * 1000) - 5_000
    await backend.put(event("old", enqueued_ms=old))
    await backend.put_many([event(i) for i in range(3)])
    _, b = await backend.lease(2, 30)
    await backend.retry(b, 60, 1)
    stats = await backend.stats()
    assert (stats.depth, stats.visible, stats.in_flight, stats.delayed) == (4, 2, 1, 1)
    assert 5_000 <= stats.oldest_age_ms < 60_000


async def test_concurrent_puts_are_durable_and_leased_exactly_once(
    open_queue: OpenQueue,
) -> None:
    queue = await open_queue()

    async def producer(k: int) -> list[str]:
        return [await queue.put(event(f"{k}-{i}")) for i in range(50)]

    per_producer = await asyncio.gather(*(producer(k) for k in range(40)))
    ids = [i for batch in per_producer for i in batch]
    assert len(set(ids)) == 2000
    await queue.close()

    queue = await open_queue()  # everything acknowledged is on disk
    assert (await queue.stats()).depth == 2000
    seen: Counter[str] = Counter()

    async def consumer() -> None:
        while leases := await queue.lease(50, 30):
            for lease in leases:
                seen[lease.id] += 1
            assert all(await asyncio.gather(*(queue.ack(lease) for lease in leases)))

    await asyncio.gather(*(consumer() for _ in range(4)))
    assert set(seen) == set(ids)
    assert set(seen.values()) == {1}
    assert (await queue.stats()).depth == 0


async def test_wait_for_work_wakes_on_put(backend: QueueBackend) -> None:
    waiter = asyncio.create_task(backend.wait_for_work(30))
    for _ in range(5):
        await asyncio.sleep(0)  # let it start waiting
    assert not waiter.done()
    started = time.monotonic()
    await backend.put(event(1))
    await asyncio.wait_for(waiter, 5)
    assert time.monotonic() - started < 1
    assert len(await backend.lease(10, 30)) == 1


async def test_wait_for_work_returns_at_once_when_work_is_due(backend: QueueBackend) -> None:
    await backend.put_many([event(1), event(2)])
    await backend.lease(1, 30)
    await asyncio.wait_for(backend.wait_for_work(30), 1)


async def test_wait_for_work_times_out_when_idle(backend: QueueBackend) -> None:
    started = time.monotonic()
    await backend.wait_for_work(0.1)
    assert 0.09 <= time.monotonic() - started < 5


async def test_recover_after_a_crash(open_queue: OpenQueue, queue_spec: QueueSpec) -> None:
    if queue_spec.name == "remote":
        pytest.skip("a remote client's leases come back when it disconnects (test_remote.py)")
    if queue_spec.name == "nats":
        pytest.skip("shared by several servers: a stopped one hands its events back itself, "
                    "a dead one's come back after JetStream's ack wait (test_nats.py)")
    queue = await open_queue()
    await queue.put_many([event(i) for i in range(5)])
    held = await queue.lease(3, 300)
    # The process stops with three events in flight; nobody will ack them.
    await queue.close()

    queue = await open_queue()
    stats = await queue.stats()
    assert (stats.in_flight, stats.visible) == (3, 2)  # still hidden after the restart...
    assert await queue.recover() == 3  # ...until start-up hands them back
    assert await queue.recover() == 0
    leases = await queue.lease(10, 300)
    assert names(leases) == ["0", "1", "2", "3", "4"]  # in their original order
    assert all([not await queue.ack(lease) for lease in held])  # the dead holder's tokens
    assert all([await queue.ack(lease) for lease in leases])
    assert (await queue.stats()).depth == 0


async def test_close_finishes_pending_puts(open_queue: OpenQueue) -> None:
    queue = await open_queue()
    puts = [asyncio.create_task(queue.put(event(i))) for i in range(500)]
    await asyncio.sleep(0)  # every put has been handed over
    await queue.close()
    assert all(put.done() for put in puts)
    assert len({put.result() for put in puts}) == 500
    with pytest.raises(QueueError):
        await queue.put(event("late"))
    queue = await open_queue()
    assert (await queue.stats()).depth == 500
