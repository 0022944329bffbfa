"""The pool's part in freezing and retiring environments, on the fake sandbox manager:
idle environments are frozen once idle for ``FREEZE_AFTER_S`` (never one in use), and a
change to a function stops the environments it no longer runs at once (idle ones now,
a busy one when its invocation ends), whatever the change was reported from.

The live behaviour (cgroups frozen, processes gone) is tests/sandbox/test_freeze.py's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from nimbus.invocation import pool as pool_module
from nimbus.invocation.pool import Pool, PoolKey
from tests.fakes import FakeSandboxManager, returns
from tests.invocation.test_pool import KEY, invocation, spec_for


@pytest.fixture
async def parts() -> AsyncIterator[tuple[FakeSandboxManager, Pool]]:
    manager = FakeSandboxManager(returns(b'"ok"'))
    pool = Pool(manager.as_manager(), idle_seconds=60.0)
    pool.start()
    yield manager, pool
    await pool.close()


async def settled(pool: Pool) -> None:
    """Wait for the pool's freezer and change checks under way to end."""
    tasks = [t for t in [pool._freezer, *pool._checks] if t is not None]
    await asyncio.wait_for(asyncio.gather(*tasks), 5)


async def test_an_idle_environment_is_frozen_and_thawed_by_its_next_invocation(
    parts: tuple[FakeSandboxManager, Pool], monkeypatch: pytest.MonkeyPatch
) -> None:
    manager, pool = parts
    monkeypatch.setattr(pool_module, "FREEZE_AFTER_S", 0.0)
    await pool.run(KEY, spec_for(), invocation())
    (env,) = manager.created
    await settled(pool)
    assert env.frozen and env.freezes == 1
    await pool.run(KEY, spec_for(), invocation())  # reused: the invocation thaws it
    assert manager.created == [env] and len(env.invocations) == 2
    await settled(pool)
    assert env.freezes == 2


async def test_an_environment_in_steady_use_is_not_frozen(
    parts: tuple[FakeSandboxManager, Pool], monkeypatch: pytest.MonkeyPatch
) -> None:
    manager, pool = parts
    monkeypatch.setattr(pool_module, "FREEZE_AFTER_S", 3600.0)
    for _ in range(5):
        await pool.run(KEY, spec_for(), invocation())
    (env,) = manager.created
    assert env.freezes == 0  # taken again before it was idle long enough


async def test_a_changed_function_stops_its_stale_idle_environments_at_once(
    parts: tuple[FakeSandboxManager, Pool],
) -> None:
    manager, pool = parts
    other = PoolKey("other", "$LATEST", "rev-1")
    await pool.run(KEY, spec_for(), invocation())
    await pool.run(other, spec_for(other), invocation())
    env, kept = manager.created
    asked: list[tuple[str, str]] = []

    def same(name: str, version: str) -> str | None:
        asked.append((name, version))
        return KEY.deployment

    pool.changed("fn", same)  # a tag or concurrency change: same deployment
    await asyncio.sleep(0)  # changed() hands over to the loop, as from another thread
    await settled(pool)
    assert asked == [("fn", "$LATEST")] and not env.stopped.is_set()
    pool.changed("fn", lambda name, version: "rev-2")  # new code or configuration
    await asyncio.sleep(0)
    await settled(pool)
    await asyncio.wait_for(env.stopped.wait(), 5)
    assert not kept.stopped.is_set()  # another function's environment stays
    pool.changed("other", lambda name, version: None)  # deleted
    await asyncio.sleep(0)
    await settled(pool)
    await asyncio.wait_for(kept.stopped.wait(), 5)


async def test_a_busy_environment_of_a_deleted_function_stops_after_its_invocation(
    parts: tuple[FakeSandboxManager, Pool],
) -> None:
    manager, pool = parts
    manager.hold_invocations()
    running = asyncio.ensure_future(pool.run(KEY, spec_for(), invocation()))
    env, _ = await manager.next_invocation()
    pool.changed("fn", lambda name, version: None)
    await asyncio.sleep(0)
    await settled(pool)
    assert not env.stopped.is_set()  # its invocation finishes first
    manager.release_invocations()
    ran = await running
    assert ran.outcome.payload == b'"ok"'
    await asyncio.wait_for(env.stopped.wait(), 5)
