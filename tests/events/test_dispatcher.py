"""The dispatcher leases ahead of its free slots; those leases must not cost deliveries.

A real SQLite queue and stores; the invoker is a stand-in whose invocations the test
holds and releases, so the order of events is the test's, not the scheduler's.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from nimbus.config import Config
from nimbus.errors import NodeLost
from nimbus.events import dispatcher as dispatcher_module
from nimbus.events.dispatcher import Dispatcher
from nimbus.invocation.invoker import InvokeResult
from nimbus.observe.hooks import AsyncEventStarted, Hooks
from nimbus.queue.backend import QueuedEvent
from nimbus.queue.backends.sqlite import SqliteQueue
from nimbus.store.database import Database
from nimbus.store.dead_letters import DeadLetterStore
from nimbus.store.event_configs import EventConfigStore
from nimbus.store.functions import FunctionStore


class HeldInvoker:
    """Runs nothing: each invocation waits until the test lets one more finish."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.started: asyncio.Queue[str] = asyncio.Queue()
        self.release = asyncio.Semaphore(0)

    async def invoke(
        self,
        name: str,
        qualifier: str | None,
        payload: bytes,
        trace_id: str | None = None,
        request_id: str | None = None,
        on_run: Callable[[], None] | None = None,
    ) -> InvokeResult:
        self.calls[request_id] += 1
        self.started.put_nowait(request_id)
        await self.release.acquire()
        return InvokeResult(b"null", None, "$LATEST", "", request_id)


def event(request_id: str) -> QueuedEvent:
    return QueuedEvent(
        function_name="f",
        qualifier=None,
        payload=b"{}",
        request_id=request_id,
        trace_id=None,
        enqueued_ms=dispatcher_module.now_ms(),
    )


@pytest.fixture
async def parts(
    tmp_path: Path,
) -> AsyncIterator[tuple[Config, SqliteQueue, HeldInvoker, Dispatcher]]:
    config = Config(data_dir=tmp_path, async_parallelism=1, async_visibility_seconds=1.0)
    db = Database(config.effective_database_url)
    db.migrate()
    functions = FunctionStore(db, config.function_arn)
    queue = SqliteQueue(tmp_path / "queue.db")
    await queue.open()
    invoker = HeldInvoker()
    dispatcher = Dispatcher(
        config, queue, invoker, functions, EventConfigStore(functions), DeadLetterStore(db)
    )
    yield config, queue, invoker, dispatcher
    for _ in range(10):
        invoker.release.release()
    await dispatcher.close()
    await queue.close()
    db.dispose()


async def test_leased_ahead_events_are_released_on_close(parts) -> None:
    _, queue, invoker, dispatcher = parts
    for rid in ("a", "b", "c"):
        await queue.put(event(rid))
    await dispatcher.start()
    assert await asyncio.wait_for(invoker.started.get(), 10) == "a"
    # One slot: "a" runs, one more event waits leased in the dispatcher.
    stats = await queue.stats()
    assert (stats.in_flight, stats.visible) == (2, 1)
    await dispatcher.close()
    stats = await queue.stats()
    # "a" was cancelled mid-run (it stays leased until its timeout, as after a crash);
    # the event that never started is visible again at once.
    assert (stats.in_flight, stats.visible) == (1, 2)
    assert invoker.calls == {"a": 1}


async def test_a_lease_that_waited_past_its_timeout_runs_once(parts, monkeypatch) -> None:
    monkeypatch.setattr(dispatcher_module, "READY_RENEW_S", 0.1)
    config, queue, invoker, dispatcher = parts
    for rid in ("a", "b"):
        await queue.put(event(rid))
    await dispatcher.start()
    assert await asyncio.wait_for(invoker.started.get(), 10) == "a"
    # "b" is leased ahead; hold "a" until b's lease has timed out.
    await asyncio.sleep(config.async_visibility_seconds * 1.5)
    invoker.release.release()
    assert await asyncio.wait_for(invoker.started.get(), 10) == "b"
    # While "b" runs, the freed lease budget leases again: an expired lease for "b"
    # would be handed out a second time here.
    await asyncio.sleep(0.3)
    for _ in range(3):
        invoker.release.release()
    for _ in range(200):
        stats = await queue.stats()
        if stats.depth == 0 and not dispatcher._running:
            break
        await asyncio.sleep(0.05)
    assert invoker.calls == {"a": 1, "b": 1}
    assert stats.depth == 0


async def test_the_lease_reserve_follows_the_lease_round_trip(parts) -> None:
    config, _, _, dispatcher = parts
    p = config.async_parallelism
    assert dispatcher.ahead == p
    cap = dispatcher_module.MAX_AHEAD * p
    # Slots went idle while a full lease was on its way: the reserve doubles, up to its cap.
    for expected in (2 * p, 4 * p, 8 * p, 16 * p, 32 * p):
        dispatcher._adapt(in_hand=p, asked=5, got=5)
        assert dispatcher.ahead == min(expected, cap)
    assert dispatcher.ahead == cap
    # The queue ran dry (a short lease): more reserve would not have helped.
    dispatcher._adapt(in_hand=p, asked=5, got=2)
    assert dispatcher.ahead == cap
    # Events were still waiting when the lease came back: the reserve shrinks step by step.
    dispatcher._ready.append((None, 0.0))
    for _ in range(cap):
        dispatcher._adapt(in_hand=p, asked=5, got=5)
    dispatcher._ready.clear()
    assert dispatcher.ahead == p
    # Nothing was in hand when it asked (an idle queue got work): not a slow round trip.
    dispatcher._adapt(in_hand=0, asked=5, got=5)
    assert dispatcher.ahead == p


async def test_the_lease_reserve_is_bounded_in_events_too(parts) -> None:
    # A large parallelism must not hold MAX_AHEAD times its payloads in memory.
    _, _, _, dispatcher = parts
    dispatcher.parallelism = dispatcher.ahead = 1000
    for _ in range(10):
        dispatcher._adapt(in_hand=1000, asked=5, got=5)
    assert dispatcher.ahead == 1000 + dispatcher_module.MAX_AHEAD_EVENTS


class LostOnceInvoker:
    """The first invocation of each event meets a worker node lost mid-run."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.done: asyncio.Queue[str] = asyncio.Queue()

    async def invoke(
        self,
        name: str,
        qualifier: str | None,
        payload: bytes,
        trace_id: str | None = None,
        request_id: str | None = None,
        on_run: Callable[[], None] | None = None,
    ) -> InvokeResult:
        assert request_id is not None
        self.calls[request_id] += 1
        if self.calls[request_id] == 1:
            raise NodeLost("The worker node w stopped answering while it ran this invocation")
        if on_run is not None:
            on_run()
        self.done.put_nowait(request_id)
        return InvokeResult(b"null", None, "$LATEST", "", request_id)


async def test_a_lost_worker_node_sends_the_event_back_to_its_queue(tmp_path: Path) -> None:
    """As Lambda retries its own service errors: no attempt spent, no dead letter."""
    config = Config(data_dir=tmp_path, async_parallelism=1, throttle_delay_seconds=0)
    db = Database(config.effective_database_url)
    db.migrate()
    functions = FunctionStore(db, config.function_arn)
    queue = SqliteQueue(tmp_path / "queue.db")
    await queue.open()
    invoker = LostOnceInvoker()
    dead = DeadLetterStore(db)
    hooks, started = Hooks(), []
    hooks.subscribe(AsyncEventStarted, started.append)
    dispatcher = Dispatcher(config, queue, invoker, functions, EventConfigStore(functions), dead,
                            hooks=hooks)
    try:
        await queue.put(event("a"))
        await dispatcher.start()
        assert await asyncio.wait_for(invoker.done.get(), 10) == "a"
        assert invoker.calls == {"a": 2}
        assert dispatcher.counters["requeued"] == 1 and not dispatcher.counters["failed"]
        assert dispatcher.counters["retried"] == 0  # no attempt spent
        # AsyncEventAge: one sample, of the attempt that invoked the function.
        assert [e.request_id for e in started] == ["a"]
    finally:
        await dispatcher.close()
        await queue.close()
        db.dispose()
