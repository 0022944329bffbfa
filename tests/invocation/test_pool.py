"""The pool of warm environments, on the fake sandbox manager (no root, no processes).

Covers: warm reuse of the most recently used environment and the cold-start details a
run reports; a second environment when the first is busy; the invocation deadline
counted from after the cold start; environments discarded after a timeout, a crash, an
exception or a cancellation, when found dead while idle, or when their function's
revision changes; init errors; idle reaping (the pool reads ``time`` directly, so the
tests swap the module's ``time`` for ``FakeTime`` rather than wait); provisioned
environments (kept, exempt from reaping, replenished, released) and close.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from nimbus.invocation import pool as pool_module
from nimbus.invocation.pool import Pool, PoolKey
from nimbus.sandbox import EnvironmentSpec, InitError, Invocation, SandboxError
from tests.fakes import (
    WAIT_S,
    FakeSandboxManager,
    FakeTime,
    Handler,
    crashes,
    init_error,
    raises,
    returns,
    sequence,
    times_out,
)

KEY = PoolKey("fn", "$LATEST", "rev-1")
ARN = "arn:aws:lambda:us-east-1:000000000000:function:fn"


def spec_for(key: PoolKey = KEY, timeout_s: int = 3) -> Callable[[], EnvironmentSpec]:
    def build() -> EnvironmentSpec:
        return EnvironmentSpec(
            function_name=key.function_name,
            version=key.version,
            function_arn=ARN,
            runtime="python3.12",
            handler="app.handler",
            code_dir=Path("/nonexistent"),
            timeout_s=timeout_s,
            log_stream=f"2026/01/01/[{key.version}]{key.deployment}",
        )

    return build


def invocation(request_id: str = "req") -> Invocation:
    return Invocation(request_id, b"{}", 0, ARN)


@pytest.fixture
async def parts() -> AsyncIterator[tuple[FakeSandboxManager, Pool]]:
    manager = FakeSandboxManager(returns(b'"ok"'), init_logs=b"init output\n")
    pool = Pool(manager.as_manager(), idle_seconds=60.0)
    yield manager, pool
    await pool.close()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    """The pool's view of time, moved by the test (only the pool module's)."""
    fake = FakeTime()
    monkeypatch.setattr(pool_module, "time", fake)
    return fake


async def test_a_warm_environment_is_reused_and_only_the_cold_start_reports_init(
    parts: tuple[FakeSandboxManager, Pool],
) -> None:
    manager, pool = parts
    built: list[EnvironmentSpec] = []

    def counting() -> EnvironmentSpec:
        built.append(spec_for()())
        return built[-1]

    first = await pool.run(KEY, counting, invocation("a"))
    second = await pool.run(KEY, counting, invocation("b"))
    assert manager.cold_starts == 1 and len(built) == 1  # the spec is built only to start
    assert (first.cold, second.cold) == (True, False)
    assert (first.init_ms, second.init_ms) == (manager.init_ms, None)
    assert (first.init_logs, second.init_logs) == (b"init output\n", b"")
    assert first.outcome.payload == second.outcome.payload == b'"ok"'
    (env,) = manager.created
    assert [i.request_id for i in env.invocations] == ["a", "b"]
    assert first.log_stream == second.log_stream == env.spec.log_stream
    assert pool.stats() == {"idle": 1, "busy": 0}


async def test_on_cold_is_called_before_a_cold_start_only(
    parts: tuple[FakeSandboxManager, Pool],
) -> None:
    manager, pool = parts
    calls: list[int] = []

    async def on_cold() -> None:
        calls.append(manager.cold_starts)  # before the start: none yet

    await pool.run(KEY, spec_for(), invocation(), on_cold)
    await pool.run(KEY, spec_for(), invocation(), on_cold)
    assert calls == [0]


async def test_a_busy_environment_makes_a_second_one_and_the_warmest_is_taken_next(
    parts: tuple[FakeSandboxManager, Pool],
) -> None:
    manager, pool = parts
    manager.hold_invocations()
    first = asyncio.ensure_future(pool.run(KEY, spec_for(), invocation("a")))
    env1, _ = await manager.next_invocation()
    assert pool.stats() == {"idle": 0, "busy": 1}
    second = asyncio.ensure_future(pool.run(KEY, spec_for(), invocation("b")))
    env2, _ = await manager.next_invocation()
    assert env2 is not env1 and manager.cold_starts == 2
    assert pool.stats() == {"idle": 0, "busy": 2}
    manager.release_invocations()  # env1's call finishes first, then env2's
    assert (await first).cold
    manager.release_invocations()
    assert (await second).cold
    assert pool.stats() == {"idle": 2, "busy": 0}
    manager.release_invocations()
    third = await pool.run(KEY, spec_for(), invocation("c"))
    assert not third.cold
    assert [i.request_id for i in env2.invocations] == ["b", "c"]  # the most recently used
    assert manager.cold_starts == 2


async def test_the_deadline_counts_from_after_the_cold_start(
    parts: tuple[FakeSandboxManager, Pool], clock: FakeTime
) -> None:
    manager, pool = parts
    manager.hold_starts()
    inv = invocation()
    running = asyncio.ensure_future(pool.run(KEY, spec_for(timeout_s=5), inv))
    await manager.next_start()
    clock.advance(100.0)  # a long cold start: it must not eat the invocation's timeout
    before = clock.time()
    manager.release_starts()
    await running
    after = clock.time()
    assert before * 1000 + 5000 - 1 <= inv.deadline_ms <= after * 1000 + 5000


@pytest.mark.parametrize("handler", [times_out(), crashes()], ids=["timeout", "crash"])
async def test_an_environment_that_timed_out_or_crashed_is_not_reused(
    parts: tuple[FakeSandboxManager, Pool], handler: Handler
) -> None:
    manager, pool = parts
    manager.handler = sequence(handler, returns())
    ran = await pool.run(KEY, spec_for(), invocation("a"))
    assert ran.outcome.function_error == "Unhandled" and not ran.outcome.reusable
    (env1,) = manager.created
    assert env1.stopped.is_set()
    assert pool.stats() == {"idle": 0, "busy": 0}
    again = await pool.run(KEY, spec_for(), invocation("b"))
    assert again.cold and manager.cold_starts == 2


async def test_an_environment_whose_invoke_raises_is_discarded(
    parts: tuple[FakeSandboxManager, Pool],
) -> None:
    manager, pool = parts
    manager.handler = raises(SandboxError("the control channel broke"))
    with pytest.raises(SandboxError):
        await pool.run(KEY, spec_for(), invocation())
    (env,) = manager.created
    await asyncio.wait_for(env.stopped.wait(), WAIT_S)
    assert pool.stats() == {"idle": 0, "busy": 0}


async def test_a_cancelled_invocation_discards_its_environment(
    parts: tuple[FakeSandboxManager, Pool],
) -> None:
    manager, pool = parts
    manager.hold_invocations()
    running = asyncio.ensure_future(pool.run(KEY, spec_for(), invocation()))
    env, _ = await manager.next_invocation()
    running.cancel()  # e.g. the client went away: the environment is mid-invocation
    with pytest.raises(asyncio.CancelledError):
        await running
    await asyncio.wait_for(env.stopped.wait(), WAIT_S)
    assert pool.stats() == {"idle": 0, "busy": 0}


async def test_an_environment_that_died_while_idle_is_skipped_and_stopped(
    parts: tuple[FakeSandboxManager, Pool],
) -> None:
    manager, pool = parts
    await pool.run(KEY, spec_for(), invocation())
    (env1,) = manager.created
    env1.die()
    ran = await pool.run(KEY, spec_for(), invocation())
    assert ran.cold and manager.cold_starts == 2
    await asyncio.wait_for(env1.stopped.wait(), WAIT_S)
    assert pool.stats() == {"idle": 1, "busy": 0}


async def test_a_new_revision_retires_the_old_environments(
    parts: tuple[FakeSandboxManager, Pool],
) -> None:
    manager, pool = parts
    new = KEY._replace(deployment="rev-2")
    manager.hold_invocations()
    warmup = [asyncio.ensure_future(pool.run(KEY, spec_for(), invocation())) for _ in "ab"]
    await manager.next_invocation()
    await manager.next_invocation()
    manager.release_invocations(2)
    await asyncio.gather(*warmup)
    idle_old, busy_old = manager.created  # two warm rev-1 environments
    # One rev-1 invocation is still running when the first rev-2 one arrives.
    old_call = asyncio.ensure_future(pool.run(KEY, spec_for(), invocation("old")))
    assert (await manager.next_invocation())[0] is busy_old
    new_call = asyncio.ensure_future(pool.run(new, spec_for(new), invocation("new")))
    fresh, _ = await manager.next_invocation()
    assert fresh not in (idle_old, busy_old) and fresh.spec.log_stream.endswith("rev-2")
    await asyncio.wait_for(idle_old.stopped.wait(), WAIT_S)  # retired at once
    manager.release_invocations(2)
    await asyncio.gather(old_call, new_call)
    await asyncio.wait_for(busy_old.stopped.wait(), WAIT_S)  # not put back afterwards
    assert pool.stats() == {"idle": 1, "busy": 0}
    manager.release_invocations()
    assert not (await pool.run(new, spec_for(new), invocation())).cold


async def test_other_versions_of_the_function_keep_their_environments(
    parts: tuple[FakeSandboxManager, Pool],
) -> None:
    _, pool = parts
    v1 = PoolKey("fn", "1", "rev-a")
    await pool.run(v1, spec_for(v1), invocation())
    await pool.run(KEY, spec_for(), invocation())
    assert pool.stats() == {"idle": 2, "busy": 0}
    assert not (await pool.run(v1, spec_for(v1), invocation())).cold


async def test_an_init_error_leaves_nothing_behind(
    parts: tuple[FakeSandboxManager, Pool],
) -> None:
    manager, pool = parts
    manager.init_errors = [init_error()]
    with pytest.raises(InitError) as info:
        await pool.run(KEY, spec_for(), invocation())
    assert info.value.error_type == "Runtime.ImportModuleError"
    assert pool.stats() == {"idle": 0, "busy": 0} and manager.cold_starts == 0
    ran = await pool.run(KEY, spec_for(), invocation())  # the next call starts afresh
    assert ran.cold and len(manager.specs) == 2


async def test_reap_stops_only_environments_idle_past_idle_seconds(
    parts: tuple[FakeSandboxManager, Pool], clock: FakeTime
) -> None:
    manager, pool = parts
    other = PoolKey("other", "$LATEST", "rev-x")
    await pool.run(KEY, spec_for(), invocation())
    await pool.run(other, spec_for(other), invocation())
    env_fn, env_other = manager.created
    clock.advance(30.0)
    await pool.run(other, spec_for(other), invocation())  # used again: idle since now
    clock.advance(31.0)  # fn idle 61 s, other 31 s (idle_seconds is 60)
    assert pool.reap() == 1
    await asyncio.wait_for(env_fn.stopped.wait(), WAIT_S)
    assert not env_other.stopped.is_set() and pool.stats()["idle"] == 1
    assert pool.reap() == 0
    clock.advance(30.0)
    assert pool.reap() == 1
    await asyncio.wait_for(env_other.stopped.wait(), WAIT_S)
    assert pool.stats() == {"idle": 0, "busy": 0}


async def test_the_reaper_runs_in_the_background_once_started() -> None:
    manager = FakeSandboxManager()
    pool = Pool(manager.as_manager(), idle_seconds=0.02)  # it looks every 10 ms
    pool.start()
    try:
        await pool.run(KEY, spec_for(), invocation())
        (env,) = manager.created
        await asyncio.wait_for(env.stopped.wait(), WAIT_S)
        assert pool.stats() == {"idle": 0, "busy": 0}
    finally:
        await pool.close()


async def test_provisioned_environments_are_started_used_warm_and_never_reaped(
    parts: tuple[FakeSandboxManager, Pool], clock: FakeTime
) -> None:
    manager, pool = parts
    await pool.provision(KEY, spec_for(), 2)
    assert manager.cold_starts == 2 and pool.provisioned(KEY) == (2, None)
    assert pool.stats() == {"idle": 2, "busy": 0}
    ran = await pool.run(KEY, spec_for(), invocation())
    assert not ran.cold and ran.init_ms is None and manager.cold_starts == 2
    clock.advance(3600.0)
    assert pool.reap() == 0
    assert pool.provisioned(KEY) == (2, None) and pool.stats()["idle"] == 2
    assert not any(env.stopped.is_set() for env in manager.created)


async def test_a_lost_provisioned_environment_is_replaced(
    parts: tuple[FakeSandboxManager, Pool],
) -> None:
    manager, pool = parts
    await pool.provision(KEY, spec_for(), 2)
    manager.handler = sequence(crashes(), returns())
    ran = await pool.run(KEY, spec_for(), invocation())
    assert not ran.outcome.reusable
    lost = next(env for env in manager.created if env.invocations)
    assert lost.stopped.is_set()
    await pool.provision(KEY, spec_for(), 2)  # waits for the replenishing under way
    assert manager.cold_starts == 3 and pool.provisioned(KEY) == (2, None)
    assert pool.stats() == {"idle": 2, "busy": 0}


async def test_provisioning_failures_are_reported_and_cleared_by_a_success(
    parts: tuple[FakeSandboxManager, Pool],
) -> None:
    manager, pool = parts
    await pool.provision(KEY, spec_for(), 1)
    manager.init_error = init_error(message="boom")
    await pool.provision(KEY, spec_for(), 3)
    assert pool.provisioned(KEY) == (1, "InitError: Runtime.ImportModuleError: boom")
    manager.init_error = None
    await pool.provision(KEY, spec_for(), 3)
    assert pool.provisioned(KEY) == (3, None)


async def test_unprovisioned_environments_become_ordinary_idle_ones(
    parts: tuple[FakeSandboxManager, Pool], clock: FakeTime
) -> None:
    manager, pool = parts
    await pool.provision(KEY, spec_for(), 2)
    pool.unprovision(KEY)
    assert pool.provisioned(KEY) == (0, None)
    assert pool.stats()["idle"] == 2  # still warm, for ordinary invocations
    manager.handler = crashes()
    await pool.run(KEY, spec_for(), invocation())
    assert manager.cold_starts == 2  # a lost one is not replaced any more
    clock.advance(61.0)
    assert pool.reap() == 1  # and the rest are reaped like any other
    assert pool.stats() == {"idle": 0, "busy": 0}


async def test_lowering_the_provisioned_count_releases_the_extra_environments(
    parts: tuple[FakeSandboxManager, Pool],
) -> None:
    _, pool = parts
    await pool.provision(KEY, spec_for(), 3)
    await pool.provision(KEY, spec_for(), 1)
    assert pool.provisioned(KEY) == (1, None)
    assert pool.stats() == {"idle": 3, "busy": 0}  # the two extra are ordinary idle ones now


async def test_close_stops_every_idle_environment() -> None:
    manager = FakeSandboxManager()
    pool = Pool(manager.as_manager(), idle_seconds=60.0)
    pool.start()
    await pool.provision(KEY, spec_for(), 2)
    other = PoolKey("other", "$LATEST", "rev-x")
    await pool.run(other, spec_for(other), invocation())
    started = time.monotonic()
    await pool.close()
    assert time.monotonic() - started < 1.0  # the reaper's sleep is cancelled, not awaited
    assert len(manager.created) == 3
    assert all(env.stopped.is_set() for env in manager.created)
    assert pool.stats() == {"idle": 0, "busy": 0}
