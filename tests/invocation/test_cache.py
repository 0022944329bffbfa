"""The read-through cache on the invocation path: misses for one key share one load
(a change under load costs one read, not one per event in flight), a load that raced
with a change is used but not kept, and a failed load is not cached."""

from __future__ import annotations

import asyncio
import threading

from nimbus.invocation.cache import Cache


class Source:
    """A store stand-in whose reads block until released, counting them."""

    def __init__(self) -> None:
        self.generation = 0
        self.reads = 0
        self.release = threading.Event()
        self.fail = False

    def load(self, key: str) -> str:
        self.reads += 1
        self.release.wait(10)
        if self.fail:
            raise LookupError(key)
        return f"{key}@{self.generation}"


async def test_concurrent_misses_share_one_load() -> None:
    source = Source()
    cache: Cache[str, str] = Cache(source.load, lambda: source.generation)
    waiting = [asyncio.ensure_future(cache.get("fn")) for _ in range(50)]
    await asyncio.sleep(0.05)
    source.release.set()
    assert set(await asyncio.gather(*waiting)) == {"fn@0"}
    assert source.reads == 1
    assert await cache.get("fn") == "fn@0" and source.reads == 1  # kept


async def test_a_change_during_a_load_starts_a_fresh_one_which_alone_is_kept() -> None:
    source = Source()
    cache: Cache[str, str] = Cache(source.load, lambda: source.generation)
    before = asyncio.ensure_future(cache.get("fn"))
    await asyncio.sleep(0.05)
    source.generation += 1  # a commit: callers from now on must not join the old read
    cache.drop(lambda key, _: key == "fn")
    after = asyncio.ensure_future(cache.get("fn"))
    await asyncio.sleep(0.05)
    source.release.set()
    await asyncio.gather(before, after)
    assert source.reads == 2
    assert await cache.get("fn") == "fn@1"  # the fresh read was kept


async def test_a_failed_load_reaches_every_waiter_and_is_not_cached() -> None:
    source = Source()
    source.fail = True
    cache: Cache[str, str] = Cache(source.load, lambda: source.generation)
    waiting = [asyncio.ensure_future(cache.get("fn")) for _ in range(3)]
    await asyncio.sleep(0.05)
    source.release.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, LookupError) for r in results) and source.reads == 1
    source.fail = False
    assert await cache.get("fn") == "fn@0" and source.reads == 2
