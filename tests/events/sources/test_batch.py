"""Batching: BatchSize, the batching window, the 6 MB cap; nothing is dropped."""

from __future__ import annotations

import asyncio

from nimbus.events.sources.batch import Batcher
from tests.events.sources.fakes import FakeSource, record


async def test_window_zero_sends_what_is_ready_up_to_batch_size() -> None:
    source = FakeSource([record(i) for i in range(25)])
    batcher = Batcher(source, batch_size=10, window_s=0)
    sizes = [len(await batcher.next_batch(0.01)) for _ in range(4)]
    assert sizes == [10, 10, 5, 0]


async def test_window_waits_for_more_records_until_full() -> None:
    source = FakeSource([record(0)])
    batcher = Batcher(source, batch_size=3, window_s=5)

    async def later() -> None:
        await asyncio.sleep(0.05)
        source.add(record(1), record(2))

    task = asyncio.create_task(later())
    batch = await batcher.next_batch(1)
    await task
    assert [r.item_id for r in batch.records] == ["m0", "m1", "m2"]


async def test_window_closes_with_a_partial_batch() -> None:
    source = FakeSource([record(0)])
    batcher = Batcher(source, batch_size=100, window_s=0.1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    batch = await batcher.next_batch(1)
    assert len(batch) == 1 and loop.time() - started >= 0.09


async def test_payload_cap_carries_the_rest_over() -> None:
    big = "x" * 1000
    source = FakeSource([record(i, big) for i in range(10)])
    batcher = Batcher(source, batch_size=10, window_s=0, payload_limit=3500)
    first = await batcher.next_batch(0.01)
    second = await batcher.next_batch(0.01)
    assert len(first) == 3 and first.size <= 3500
    assert [r.item_id for r in second.records] == ["m3", "m4", "m5"]
    seen = [r.item_id for r in first.records + second.records]
    while batch := (await batcher.next_batch(0.01)).records:
        seen += [r.item_id for r in batch]
    assert seen == [f"m{i}" for i in range(10)]
