"""Rate-limit buckets and quotas shared by the servers of a cluster, in PostgreSQL
(store/shared_limits.py), and usage gates of several servers spending them
(gateway/shared_allowance.py): leases never hand out more than a bucket holds, quota
reservations never pass the limit, whatever the concurrency."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from nimbus.config import Config
from nimbus.errors import GatewayThrottled, LimitExceeded
from nimbus.gateway.limits import UsageGate
from nimbus.models import ApiKey, UsagePlan, UsagePlanStage
from nimbus.store.api_keys import ApiKeyStore
from nimbus.store.database import Database
from nimbus.store.schema import metadata
from nimbus.store.shared_limits import (
    BucketLease,
    QuotaReservation,
    SharedLimitStore,
    quota_reservations,
    rate_buckets,
)

pytestmark = pytest.mark.postgres

VALUE = "v" * 30


def test_the_migration_matches_the_tables(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    names = ("rate_buckets", "quota_reservations", "shared_versions")
    assert [d for d in diff if any(n in repr(d) for n in names)] == []


def test_a_new_bucket_starts_full_and_leases_take_what_is_there(db: Database) -> None:
    shared = SharedLimitStore(db)
    # Refills 1 token in 1000 s: nothing to speak of while the test runs.
    lease = BucketLease("b", rate=0.001, capacity=5, want=2)
    granted = [shared.take([lease])[0].granted for _ in range(4)]
    assert granted == [2, 2, 1, 0]
    empty = shared.take([lease])[0]
    assert empty.granted == 0
    assert 0 <= empty.left < 1  # the fraction of the next token


def test_a_bucket_refills_by_the_database_clock(db: Database) -> None:
    shared = SharedLimitStore(db)
    lease = BucketLease("fast", rate=1000, capacity=3, want=3)
    assert shared.take([lease])[0].granted == 3
    with db.engine.begin() as conn:  # as if the last lease was a second ago
        conn.execute(sa.update(rate_buckets).values(stamp=rate_buckets.c.stamp - 1))
    # A second at 1000/s is far more than the capacity: full again, not more.
    assert shared.take([BucketLease("fast", 1000, 3, want=10)])[0].granted == 3


def test_concurrent_leases_never_hand_out_more_than_the_bucket(db: Database) -> None:
    shared = SharedLimitStore(db)
    lease = BucketLease("contended", rate=0.001, capacity=40, want=3)

    def lease_until_empty() -> int:
        total = 0
        while (grant := shared.take([lease])[0]).granted:
            total += grant.granted
        return total

    with ThreadPoolExecutor(6) as pool:
        totals = list(pool.map(lambda _: lease_until_empty(), range(6)))
    assert sum(totals) == 40


def reservation(limit: int, want: int = 3) -> QuotaReservation:
    return QuotaReservation("key1", "plan1", "DAY", "2026-01-07", "2026-01-08", limit, want)


def test_concurrent_reservations_never_pass_the_limit(db: Database) -> None:
    shared = SharedLimitStore(db)

    def reserve_until_used_up() -> int:
        total = 0
        while (grant := shared.take([reservation(50)])[0]).granted:
            total += grant.granted
        return total

    with ThreadPoolExecutor(6) as pool:
        totals = list(pool.map(lambda _: reserve_until_used_up(), range(6)))
    assert sum(totals) == 50
    # Given back, a reservation is there for another server.
    shared.release("key1", "plan1", "DAY", "2026-01-07", 4)
    assert shared.take([reservation(50, want=10)])[0].granted == 4
    # A raised limit is reserved from at once.
    assert shared.take([reservation(52)])[0].granted == 2


def test_a_period_starts_from_the_usage_stored_for_it(db: Database) -> None:
    store, shared = ApiKeyStore(db), SharedLimitStore(db)
    key, plan = _key_in_plan(store)
    store.add_usage({(key.id, plan.id, "2026-01-07"): 7, (key.id, plan.id, "2026-01-06"): 5})
    grant = shared.take([QuotaReservation(key.id, plan.id, "DAY", "2026-01-07", "2026-01-08",
                                          limit=10, want=5)])[0]  # fmt: skip
    assert (grant.granted, grant.left) == (3, 0)


def test_deleting_a_key_forgets_its_shared_counters(db: Database) -> None:
    store, shared = ApiKeyStore(db), SharedLimitStore(db)
    store.share_changes()
    key, plan = _key_in_plan(store)
    shared.take([QuotaReservation(key.id, plan.id, "DAY", "2026-01-07", "2026-01-08", 10, 2),
                 BucketLease(f"plan/{key.id}/{plan.id}", 1, 1, 1)])  # fmt: skip
    before = shared.version("api_keys")
    store.remove_plan_key(plan.id, key.id)
    assert shared.version("api_keys") == before + 1
    with db.engine.connect() as conn:
        for table in (quota_reservations, rate_buckets):
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0


def _key_in_plan(
    store: ApiKeyStore, value: str = VALUE, **settings: object
) -> tuple[ApiKey, UsagePlan]:
    now = time.time()
    key = store.create_key(ApiKey(id="key1", value=value, enabled=True, created_date=now,
                                  last_updated_date=now))  # fmt: skip
    plan = UsagePlan(id="plan1", name="p", api_stages=[UsagePlanStage("api1", "prod")],
                     **settings)  # fmt: skip
    store.create_plan(plan)
    store.add_plan_key(plan.id, key.id)
    return key, plan


# -- usage gates of two servers -----------------------------------------------------------


def cluster_gate(db: Database) -> UsageGate:
    config = Config(cluster=True, database_url=db.url, queue_url="nats://127.0.0.1:4222/T")
    gate = UsageGate(ApiKeyStore(db), config)
    gate.load()
    return gate


async def admit(gate: UsageGate) -> str:
    try:
        lease = gate.admit(api_id="api1", stage="prod", api_key=VALUE, key_required=True)
        if lease is not None:
            await lease
    except LimitExceeded:
        return "quota"
    except GatewayThrottled:
        return "rate"
    return "ok"


async def test_two_gates_share_one_plan_bucket(db: Database) -> None:
    _key_in_plan(ApiKeyStore(db), rate_limit=0.001, burst_limit=6)
    gates = [cluster_gate(db), cluster_gate(db)]
    # Together, at once: each gate alone would admit the whole burst. Under contention
    # a request may give up after a few leases, and a gate may be left holding a token
    # it leased ahead: fewer, never more.
    results = await asyncio.gather(*(admit(gates[i % 2]) for i in range(20)))
    assert results.count("ok") <= 6
    # One by one to both until both refuse: what was held or left is spent, no more.
    while not (await admit(gates[0]) == "rate" and await admit(gates[1]) == "rate"):
        results.append("ok")
    assert results.count("ok") == 6
    for gate in gates:
        await gate.close()


async def test_two_gates_share_one_quota(db: Database) -> None:
    _key_in_plan(ApiKeyStore(db), quota_limit=9, quota_period="DAY")
    gates = [cluster_gate(db), cluster_gate(db)]
    results: list[str] = []
    # Alternating until both refuse; one may refuse while the other still holds quota it
    # reserved ahead (and then spends), but together they admit the quota exactly.
    while results[-2:] != ["quota", "quota"]:
        results += [await admit(gates[0]), await admit(gates[1])]
        assert results.count("ok") <= 9 and len(results) < 30, results
    assert results.count("ok") == 9
    for gate in gates:
        await gate.close()
    # What was admitted is what GetUsage reports, once written behind.
    usage = ApiKeyStore(db).usage("plan1", ["key1"], "2000-01-01", "2100-01-01")
    assert sum(usage["key1"].values()) == 9


async def test_quota_a_server_held_is_given_back_when_it_stops(db: Database) -> None:
    _key_in_plan(ApiKeyStore(db), quota_limit=3, quota_period="DAY")
    a, b = cluster_gate(db), cluster_gate(db)
    assert [await admit(a), await admit(a)] == ["ok", "ok"]
    # A asked for the next request's quota ahead of time; stopping, it gives it back.
    await a.close()
    assert [await admit(b), await admit(b)] == ["ok", "quota"]
    await b.close()


async def test_without_the_database_a_server_keeps_its_own_limits(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _key_in_plan(ApiKeyStore(db), rate_limit=0.001, burst_limit=3)
    gate = cluster_gate(db)

    def unreachable(self: SharedLimitStore, requests: object) -> None:
        raise sa.exc.OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(SharedLimitStore, "take", unreachable)
    results = [await admit(gate) for _ in range(5)]
    assert results == ["ok"] * 3 + ["rate"] * 2
    await gate.close()


async def test_two_gates_share_a_stage_route_bucket(db: Database) -> None:
    gates = [cluster_gate(db), cluster_gate(db)]

    async def route(gate: UsageGate, route_key: str) -> bool:
        try:
            lease = gate.admit(api_id="api1", stage="prod", api_key=None, key_required=False,
                               stage_rate=0.001, stage_burst=4, route_key=route_key)  # fmt: skip
            if lease is not None:
                await lease
        except GatewayThrottled:
            return False
        return True

    admitted = await asyncio.gather(*(route(gates[i % 2], "GET /a") for i in range(12)))
    assert sum(admitted) <= 4
    while await route(gates[0], "GET /a") or await route(gates[1], "GET /a"):
        admitted.append(True)
    assert sum(admitted) == 4
    # Each route of the stage has a bucket of its own, across the cluster as well.
    assert await route(gates[1], "GET /b")
    for gate in gates:
        await gate.close()


async def test_requests_at_once_are_not_told_the_quota_is_used_up_while_it_is_not(
    db: Database,
) -> None:
    """Quota is leased one request's worth at a time (100/day): twelve requests at once
    contend for the leases, and those that lose get a throttle to retry, not Limit
    Exceeded with a day's Retry-After."""
    _key_in_plan(ApiKeyStore(db), quota_limit=100, quota_period="DAY")
    gate = cluster_gate(db)
    results = await asyncio.gather(*(admit(gate) for _ in range(12)))
    assert "quota" not in results, results
    assert set(results) <= {"ok", "rate"} and "ok" in results
    await gate.close()
