"""Concurrency limits counted across the servers of a cluster (``NIMBUS_CLUSTER=1``):
a reservation of 2 admits two executions in the whole cluster, the account limit holds
for all servers together, and a killed server's slots come back on their own."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from nimbus.errors import ClusterUnavailable
from nimbus.store.cluster_slots import MAX_SLOTS, ClusterSlots, Slot, lock_key
from tests.cluster.servers import front_end, serving, shared_installation
from tests.conftest import POSTGRES_URL, ROLE, make_zip
from tests.nimbus_process import NimbusProcess
from tests.sandbox.test_capacity import HELD, Barrier

pytestmark = [pytest.mark.postgres]


def _schema_url(schema: str) -> str:
    sep = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture
def schema() -> Iterator[str]:
    admin = sa.create_engine(POSTGRES_URL)
    name = f"nimbus_slots_{time.monotonic_ns()}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    yield name
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
    admin.dispose()


def test_slots_are_shared_by_sessions_and_freed_with_their_session(schema: str) -> None:
    async def scenario() -> None:
        a, b = ClusterSlots(_schema_url(schema)), ClusterSlots(_schema_url(schema))
        try:
            first = await a.take("function:f", 2)
            assert first is not None and _locks_held(first.key) == 1  # not one per candidate
            second = await a.take("function:f", 2)  # the same session: another slot
            assert second is not None and first.slot != second.slot
            assert _locks_held(first.key) == 2
            assert await b.take("function:f", 2) is None
            assert await b.take("function:g", 1) is not None  # another scope is apart
            a.give(first)
            again = await _eventually(lambda: b.take("function:f", 2))
            assert again.slot == first.slot
            await a.close()  # second's session ends: PostgreSQL frees its slot
            assert (await _eventually(lambda: b.take("function:f", 2))).slot == second.slot
        finally:
            await a.close()
            await b.close()

    asyncio.run(scenario())


def test_many_slots_of_one_session_are_all_given_back(schema: str) -> None:
    """Past two held slots PostgreSQL once tried the lock before the "already held"
    test, taking a held slot again (re-entrantly) and leaking it."""
    async def scenario() -> None:
        a, b = ClusterSlots(_schema_url(schema)), ClusterSlots(_schema_url(schema))
        try:
            taken = [await a.take("account", 10) for _ in range(8)]
            assert None not in taken and len({t.slot for t in taken if t}) == 8
            for slot in taken:
                assert slot is not None
                a.give(slot)
            got = await _eventually(lambda: _all_ten(b))
            assert len({s.slot for s in got}) == 10
        finally:
            await a.close()
            await b.close()

    async def _all_ten(slots: ClusterSlots) -> list[Slot] | None:
        found = [await slots.take("account", 10) for _ in range(10)]
        held = [s for s in found if s is not None]
        if len(held) == 10:
            return held
        for slot in held:
            slots.give(slot)
        await asyncio.sleep(0.05)
        return None

    asyncio.run(scenario())


def test_takes_of_one_scope_with_two_limits_never_share_a_slot(schema: str) -> None:
    async def scenario() -> None:
        a = ClusterSlots(_schema_url(schema))
        try:
            for _ in range(4):  # batched together: one statement
                one, two = await asyncio.gather(a.take("f", 1), a.take("f", 2))
                held = [s for s in (one, two) if s is not None]
                assert len({s.slot for s in held}) == len(held) == 1  # the least limit: 1
                for slot in held:
                    a.give(slot)  # before the next takes: a batch gives, then takes
        finally:
            await a.close()

    asyncio.run(scenario())


def test_another_installation_in_the_same_database_counts_apart(schema: str) -> None:
    async def scenario() -> None:
        mine, other = ClusterSlots(_schema_url(schema)), ClusterSlots(POSTGRES_URL)
        try:
            assert await mine.take("function:f", 1) is not None
            assert await other.take("function:f", 1) is not None
        finally:
            await mine.close()
            await other.close()

    asyncio.run(scenario())


def test_an_unreachable_database_refuses_with_a_503_not_an_uncounted_run() -> None:
    async def scenario() -> None:
        slots = ClusterSlots("postgresql://127.0.0.1:1/test")
        try:
            with pytest.raises(ClusterUnavailable, match="cannot reach") as caught:
                await slots.take("account", 10)
            assert caught.value.status == 503
            assert caught.value.type_name == "ServiceException"
        finally:
            await slots.close()

    asyncio.run(scenario())


def _locks_held(key: int) -> int:
    """Advisory locks held in the whole database among the slots of ``key`` (bigint
    locks ``key + slot``: pg_locks shows their high and low halves)."""
    engine = sa.create_engine(POSTGRES_URL)
    low = key & 0xFFFFFFFF
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND "
                "objsubid = 1 AND granted AND classid::text::bigint = :high "
                "AND objid::text::bigint >= :low AND objid::text::bigint < :end"),
                {"high": key >> 32, "low": low, "end": low + MAX_SLOTS}).scalar_one()
    finally:
        engine.dispose()


async def _eventually(take):  # type: ignore[no-untyped-def]
    """A release is sent in the background: the next take may come first."""
    for _ in range(200):
        if (slot := await take()) is not None:
            return slot
        await asyncio.sleep(0.01)
    raise AssertionError("the slot never came back")


# -- two servers -----------------------------------------------------------------------


@pytest.fixture
def two(tmp_path: Path) -> Iterator[list[NimbusProcess]]:
    extra = {"NIMBUS_CLUSTER": "1", "NIMBUS_CONCURRENCY_LIMIT": "3",
             "NIMBUS_UNRESERVED_MINIMUM": "0", "NIMBUS_ASYNC_WORKERS": "0"}
    with shared_installation(tmp_path, extra=extra) as env:
        servers = [front_end(tmp_path, name, env) for name in ("a", "b")]
        with serving(servers):
            yield servers


async def _hold(servers: list[NimbusProcess], function: str, per_server: int,
                barrier: Barrier, port: int) -> tuple[list[httpx.Response], int]:
    """``per_server`` invokes at once on each server; every admitted one waits at the
    barrier until all have either arrived there or been answered."""
    body = json.dumps({"barrier": port}).encode()
    async with httpx.AsyncClient(timeout=120) as client:
        calls = [asyncio.ensure_future(client.post(
            f"{server.endpoint}/2015-03-31/functions/{function}/invocations", content=body))
            for server in servers for _ in range(per_server)]
        while len(barrier.held) + sum(c.done() for c in calls) < len(calls):
            failed = [c for c in calls if c.done() and c.exception() is not None]
            assert not failed, failed[0].exception()
            await asyncio.sleep(0.05)
        running = len(barrier.held)
        barrier.release()
        return list(await asyncio.gather(*calls)), running


def _create(server: NimbusProcess, name: str) -> None:
    server.client().create_function(
        FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="app.handler",
        Timeout=120, Code={"ZipFile": make_zip({"app.py": HELD})})


@pytest.mark.sandbox
@pytest.mark.broker("nats")
def test_reserved_and_account_limits_hold_across_two_servers(
    two: list[NimbusProcess],
) -> None:
    a, b = two
    _create(a, "reserved")
    a.client().put_function_concurrency(FunctionName="reserved",
                                        ReservedConcurrentExecutions=2)
    _create(b, "shared")

    async def scenario(function: str, per_server: int) -> tuple[list[httpx.Response], int]:
        barrier = Barrier()
        return await _hold(two, function, per_server, barrier, await barrier.start())

    # Each server alone would admit 2 of its 3 (the reservation), 4 in all.
    responses, running = asyncio.run(scenario("reserved", 3))
    assert running == 2
    assert Counter(r.status_code for r in responses) == Counter({200: 2, 429: 4})
    assert {r.json()["Reason"] for r in responses if r.status_code == 429} == {
        "ReservedFunctionConcurrentInvocationLimitExceeded"}

    # The account limit (3) minus the reservation (2) leaves 1 for everything else,
    # whichever server the invokes reach.
    responses, running = asyncio.run(scenario("shared", 2))
    assert running == 1
    assert Counter(r.status_code for r in responses) == Counter({200: 1, 429: 3})
    assert {r.json()["Reason"] for r in responses if r.status_code == 429} == {
        "ConcurrentInvocationLimitExceeded"}


@pytest.mark.sandbox
@pytest.mark.broker("nats")
def test_a_killed_servers_slots_come_back_to_the_cluster(two: list[NimbusProcess]) -> None:
    a, b = two
    _create(a, "reserved")
    a.client().put_function_concurrency(FunctionName="reserved",
                                        ReservedConcurrentExecutions=1)

    async def scenario() -> httpx.Response:
        barrier = Barrier()
        port = await barrier.start()
        body = json.dumps({"barrier": port}).encode()
        url = "/2015-03-31/functions/reserved/invocations"
        async with httpx.AsyncClient(timeout=120) as client:
            held = asyncio.ensure_future(client.post(b.endpoint + url, content=body))
            while not barrier.held:
                assert not held.done(), held.result().text
                await asyncio.sleep(0.05)
            refused = await client.post(a.endpoint + url, content=body)
            assert refused.status_code == 429, refused.text
            b.stop(signal.SIGKILL)  # its session, and the slot, end with it
            with_slot = None
            for _ in range(600):
                task = asyncio.ensure_future(client.post(a.endpoint + url, content=body))
                while not task.done() and len(barrier.held) < 2:
                    await asyncio.sleep(0.05)
                if len(barrier.held) >= 2:
                    with_slot = task
                    break
                assert task.result().status_code == 429, task.result().text
                await asyncio.sleep(0.05)
            assert with_slot is not None, "the killed server's slot never came back"
            barrier.release()
            held.cancel()
            return await with_slot

    assert asyncio.run(scenario()).status_code == 200


def test_each_scope_has_its_own_range_of_lock_ids() -> None:
    keys = {lock_key(ns, scope) for ns in ("test.a", "test.b")
            for scope in ("account", "function:f", "function:g")}
    assert len(keys) == 6
    for key in keys:  # positive bigints, the low bits left to the slot number
        assert 0 < key < 1 << 63 and key % MAX_SLOTS == 0


async def test_a_limit_beyond_a_scopes_slots_is_refused() -> None:
    with pytest.raises(ValueError, match="slots"):
        await ClusterSlots(POSTGRES_URL).take("account", MAX_SLOTS + 1)
