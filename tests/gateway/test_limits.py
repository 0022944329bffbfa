"""The usage gate: token buckets, API keys, usage plans and quotas, with fake clocks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from nimbus.config import Config
from nimbus.errors import GatewayForbidden, GatewayThrottled, LimitExceeded
from nimbus.gateway.limits import UsageGate, period_bounds
from nimbus.models import ApiKey, UsagePlan, UsagePlanStage
from nimbus.store.api_keys import ApiKeyStore
from nimbus.store.database import Database

VALUE = "k" * 30
OTHER = "o" * 30


class Clock:
    """A monotonic clock and a wall clock (UTC seconds) that tests move by hand."""

    def __init__(self, wall: datetime) -> None:
        self.mono = 1000.0
        self.wall = wall.timestamp()

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds

    def set_wall(self, wall: datetime) -> None:
        self.mono += max(0.0, wall.timestamp() - self.wall)
        self.wall = wall.timestamp()


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.fixture
def store(database_url: str) -> Iterator[ApiKeyStore]:
    """A migrated store on each backend (SQLite, the local PostgreSQL)."""
    db = Database(database_url)
    db.migrate()
    yield ApiKeyStore(db)
    db.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock(utc(2026, 1, 7, 12, 0, 0))  # a Wednesday


def make_key(store: ApiKeyStore, value: str = VALUE, enabled: bool = True) -> ApiKey:
    now = time.time()
    key = ApiKey(
        id=f"key{len(value)}{value[0]}", value=value, enabled=enabled, created_date=now,
        last_updated_date=now,
    )  # fmt: skip
    return store.create_key(key)


def make_plan(
    store: ApiKeyStore, key: ApiKey | None, plan_id: str = "plan01", **settings: object
) -> UsagePlan:
    plan = UsagePlan(
        id=plan_id, name=plan_id, api_stages=[UsagePlanStage("api1", "prod")], **settings
    )
    store.create_plan(plan)
    if key is not None:
        store.add_plan_key(plan.id, key.id)
    return plan


def gate_for(store: ApiKeyStore, clock: Clock, **config: object) -> UsageGate:
    gate = UsageGate(
        store,
        Config(**config),
        clock=lambda: clock.mono,
        wall_clock=lambda: clock.wall,
    )
    gate.load()
    return gate


def keyed(gate: UsageGate, value: str | None = VALUE, stage: str = "prod") -> None:
    gate.admit(api_id="api1", stage=stage, api_key=value, key_required=True)


def test_burst_then_refusal_then_refill(store: ApiKeyStore, clock: Clock) -> None:
    make_plan(store, make_key(store), rate_limit=2.0, burst_limit=3)
    gate = gate_for(store, clock)
    for _ in range(3):
        keyed(gate)
    with pytest.raises(GatewayThrottled) as refused:
        keyed(gate)
    assert refused.value.status == 429 and refused.value.type_name == "TooManyRequestsException"
    assert refused.value.body() == {"message": "Too Many Requests"}
    assert refused.value.retry_after == 1  # half a second to the next token, rounded up
    assert refused.value.headers() == {"Retry-After": "1"}
    clock.advance(0.5)  # one token back at 2/s
    keyed(gate)
    with pytest.raises(GatewayThrottled):
        keyed(gate)
    clock.advance(10)  # refills to the burst, not beyond
    for _ in range(3):
        keyed(gate)
    with pytest.raises(GatewayThrottled):
        keyed(gate)


def test_retry_after_follows_the_rate(store: ApiKeyStore, clock: Clock) -> None:
    make_plan(store, make_key(store), rate_limit=0.1, burst_limit=1)
    gate = gate_for(store, clock)
    keyed(gate)
    with pytest.raises(GatewayThrottled) as refused:
        keyed(gate)
    assert refused.value.retry_after == 10
    clock.advance(4)
    with pytest.raises(GatewayThrottled) as refused:
        keyed(gate)
    assert refused.value.retry_after == 6
    clock.advance(6)
    keyed(gate)


def test_plan_rate_without_burst_allows_a_second_worth(store: ApiKeyStore, clock: Clock) -> None:
    make_plan(store, make_key(store), rate_limit=2.5)
    gate = gate_for(store, clock)
    for _ in range(3):
        keyed(gate)
    with pytest.raises(GatewayThrottled):
        keyed(gate)


def test_daily_quota_and_rollover(store: ApiKeyStore, clock: Clock) -> None:
    make_plan(store, make_key(store), quota_limit=3, quota_period="DAY")
    clock.set_wall(utc(2026, 1, 7, 23, 0, 0))
    gate = gate_for(store, clock)
    for _ in range(3):
        keyed(gate)
    with pytest.raises(LimitExceeded) as refused:
        keyed(gate)
    error = refused.value
    assert (error.status, error.type_name, error.body()) == (
        429,
        "LimitExceededException",
        {"message": "Limit Exceeded"},
    )
    assert error.retry_after == 3600  # until midnight UTC
    clock.set_wall(utc(2026, 1, 7, 23, 59, 59, 500000))
    with pytest.raises(LimitExceeded) as refused:
        keyed(gate)
    assert refused.value.retry_after == 1
    clock.set_wall(utc(2026, 1, 8, 0, 0, 0))
    for _ in range(3):
        keyed(gate)
    with pytest.raises(LimitExceeded):
        keyed(gate)


def test_weekly_quota_starts_on_the_offset_weekday(store: ApiKeyStore, clock: Clock) -> None:
    # offset 1: weeks start on Monday; 2026-01-07 is a Wednesday, 2026-01-12 a Monday.
    make_plan(store, make_key(store), quota_limit=2, quota_period="WEEK", quota_offset=1)
    gate = gate_for(store, clock)
    keyed(gate)
    clock.set_wall(utc(2026, 1, 9, 8, 0, 0))  # Friday, same week
    keyed(gate)
    with pytest.raises(LimitExceeded) as refused:
        keyed(gate)
    assert refused.value.retry_after == (utc(2026, 1, 12) - utc(2026, 1, 9, 8)).total_seconds()
    clock.set_wall(utc(2026, 1, 11, 23, 59, 0))  # Sunday: still the same week
    with pytest.raises(LimitExceeded):
        keyed(gate)
    clock.set_wall(utc(2026, 1, 12, 0, 0, 0))
    keyed(gate)
    keyed(gate)
    with pytest.raises(LimitExceeded):
        keyed(gate)


def test_monthly_quota_rolls_over_on_the_offset_day(store: ApiKeyStore, clock: Clock) -> None:
    # offset 14: months run from the 15th to the 14th.
    make_plan(store, make_key(store), quota_limit=1, quota_period="MONTH", quota_offset=14)
    clock.set_wall(utc(2026, 1, 10, 0, 0, 0))
    gate = gate_for(store, clock)
    keyed(gate)
    with pytest.raises(LimitExceeded) as refused:
        keyed(gate)
    assert refused.value.retry_after == 5 * 86400
    clock.set_wall(utc(2026, 1, 15, 0, 0, 1))
    keyed(gate)
    clock.set_wall(utc(2026, 2, 14, 23, 0, 0))
    with pytest.raises(LimitExceeded):
        keyed(gate)
    clock.set_wall(utc(2026, 2, 15, 0, 0, 0))
    keyed(gate)


def test_period_bounds() -> None:
    wednesday = date(2026, 1, 7)
    assert period_bounds(wednesday, "DAY") == (wednesday, date(2026, 1, 8))
    assert period_bounds(wednesday, "WEEK", 0) == (date(2026, 1, 4), date(2026, 1, 11))
    assert period_bounds(wednesday, "WEEK", 3) == (wednesday, date(2026, 1, 14))
    assert period_bounds(wednesday, "WEEK", 4) == (date(2026, 1, 1), date(2026, 1, 8))
    assert period_bounds(wednesday, "MONTH") == (date(2026, 1, 1), date(2026, 2, 1))
    assert period_bounds(date(2026, 12, 31), "MONTH") == (date(2026, 12, 1), date(2027, 1, 1))
    assert period_bounds(date(2026, 1, 3), "MONTH", 27) == (date(2025, 12, 28), date(2026, 1, 28))


def test_bad_keys_are_forbidden(store: ApiKeyStore, clock: Clock) -> None:
    key = make_key(store)
    disabled = make_key(store, OTHER, enabled=False)
    plan = make_plan(store, key)
    store.add_plan_key(plan.id, disabled.id)
    gate = gate_for(store, clock)
    for value in (None, "", "x" * 30, OTHER):
        with pytest.raises(GatewayForbidden) as refused:
            keyed(gate, value)
        error = refused.value
        assert (error.status, error.type_name, error.body()) == (
            403,
            "ForbiddenException",
            {"message": "Forbidden"},
        )
    with pytest.raises(GatewayForbidden):  # the key's plan does not list this stage
        keyed(gate, VALUE, stage="dev")
    with pytest.raises(GatewayForbidden):  # no API at all (e.g. a function URL)
        gate.admit(api_id=None, stage=None, api_key=VALUE, key_required=True)
    keyed(gate)
    # A route that does not require a key ignores whatever key is sent.
    gate.admit(api_id="api1", stage="prod", api_key="nonsense", key_required=False)


def test_key_in_no_plan_is_forbidden(store: ApiKeyStore, clock: Clock) -> None:
    make_key(store)
    make_plan(store, None)
    gate = gate_for(store, clock)
    with pytest.raises(GatewayForbidden):
        keyed(gate)


def test_store_changes_reach_the_gate(store: ApiKeyStore, clock: Clock) -> None:
    key = make_key(store)
    plan = make_plan(store, key)
    gate = gate_for(store, clock)
    keyed(gate)
    store.update_key(key.id, lambda k: ApiKey(**{**k.__dict__, "enabled": False}))
    with pytest.raises(GatewayForbidden):
        keyed(gate)
    store.update_key(key.id, lambda k: ApiKey(**{**k.__dict__, "enabled": True}))
    keyed(gate)
    store.update_plan(plan.id, lambda p: UsagePlan(**{**p.__dict__, "rate_limit": 1.0}))
    keyed(gate)  # a new bucket, full
    with pytest.raises(GatewayThrottled):
        keyed(gate)
    store.remove_plan_key(plan.id, key.id)
    with pytest.raises(GatewayForbidden):
        keyed(gate)


def test_account_wide_limit(store: ApiKeyStore, clock: Clock) -> None:
    gate = gate_for(store, clock, http_rate_limit=1.0, http_burst_limit=2)
    gate.admit(api_id="a", stage="s", api_key=None, key_required=False)
    gate.admit(api_id="b", stage="t", api_key=None, key_required=False)
    with pytest.raises(GatewayThrottled) as refused:
        gate.admit(api_id=None, stage=None, api_key=None, key_required=False)
    assert refused.value.retry_after == 1
    clock.advance(1)
    gate.admit(api_id="c", stage="u", api_key=None, key_required=False)


def test_stage_throttling(store: ApiKeyStore, clock: Clock) -> None:
    gate = gate_for(store, clock)

    def call(stage: str, rate: float | None = 1.0, burst: int | None = 1) -> None:
        gate.admit(
            api_id="api1", stage=stage, api_key=None, key_required=False,
            stage_rate=rate, stage_burst=burst,
        )  # fmt: skip

    call("prod")
    with pytest.raises(GatewayThrottled):
        call("prod")
    call("dev")  # each stage has its own bucket
    clock.advance(1)
    call("prod")
    # New settings apply to the existing bucket at once.
    for _ in range(5):
        call("dev", rate=100.0, burst=None)
    with pytest.raises(GatewayThrottled) as refused:
        call("zero", rate=0.0, burst=0)
    assert refused.value.retry_after == 3600  # never refills: an hour, not infinity


def test_routes_of_a_stage_are_throttled_apart(store: ApiKeyStore, clock: Clock) -> None:
    gate = gate_for(store, clock)

    def call(route: str) -> None:
        gate.admit(
            api_id="api1", stage="prod", api_key=None, key_required=False,
            stage_rate=1.0, stage_burst=1, route_key=route,
        )  # fmt: skip

    call("GET /a")
    call("GET /b")
    with pytest.raises(GatewayThrottled):
        call("GET /a")


def test_refused_requests_cost_no_tokens(store: ApiKeyStore, clock: Clock) -> None:
    make_plan(store, make_key(store), rate_limit=1.0, burst_limit=1)
    gate = gate_for(store, clock, http_rate_limit=1.0, http_burst_limit=3)
    keyed(gate)
    for _ in range(5):  # refused by the plan: the account bucket keeps its 2 tokens
        with pytest.raises(GatewayThrottled):
            keyed(gate)
    gate.admit(api_id="x", stage="y", api_key=None, key_required=False)
    gate.admit(api_id="x", stage="y", api_key=None, key_required=False)
    with pytest.raises(GatewayThrottled):
        gate.admit(api_id="x", stage="y", api_key=None, key_required=False)


def test_quota_refusals_do_not_count(store: ApiKeyStore, clock: Clock) -> None:
    make_plan(store, make_key(store), quota_limit=1, quota_period="DAY")
    gate = gate_for(store, clock)
    keyed(gate)
    for _ in range(3):
        with pytest.raises(LimitExceeded):
            keyed(gate)
    assert gate.take_pending() == {("key30k", "plan01", "2026-01-07"): 1}


def test_usage_survives_a_new_gate(store: ApiKeyStore, clock: Clock) -> None:
    key = make_key(store)
    plan = make_plan(store, key, quota_limit=3, quota_period="WEEK")
    first = gate_for(store, clock)
    keyed(first)
    clock.advance(86400)
    keyed(first)
    assert first.flush_blocking() == 2
    assert first.flush_blocking() == 0  # nothing new
    assert store.usage(plan.id, [key.id], "2026-01-01", "2026-01-31") == {
        key.id: {"2026-01-07": 1, "2026-01-08": 1}
    }
    second = gate_for(store, clock)  # as after a restart
    keyed(second)
    with pytest.raises(LimitExceeded):
        keyed(second)
    second.flush_blocking()
    assert store.usage(plan.id, [key.id], "2026-01-08", "2026-01-08") == {key.id: {"2026-01-08": 2}}


def test_usage_of_a_removed_key_is_dropped(store: ApiKeyStore, clock: Clock) -> None:
    key = make_key(store)
    plan = make_plan(store, key)
    gate = gate_for(store, clock)
    keyed(gate)
    store.remove_plan_key(plan.id, key.id)
    assert gate.flush_blocking() == 0
    assert store.usage(plan.id, [key.id], "2026-01-01", "2026-01-31") == {}


async def test_start_flushes_behind_and_close_flushes_the_rest(
    store: ApiKeyStore, clock: Clock
) -> None:
    key = make_key(store)
    plan = make_plan(store, key)
    gate = UsageGate(
        store,
        Config(),
        clock=lambda: clock.mono,
        wall_clock=lambda: clock.wall,
        flush_interval=0.05,
    )
    await gate.start()
    keyed(gate)
    deadline = time.monotonic() + 5
    while not store.usage(plan.id, [key.id], "2026-01-07", "2026-01-07"):
        assert time.monotonic() < deadline, "usage was not written behind"
        await _sleep(0.02)
    keyed(gate)
    await gate.close()
    assert store.usage(plan.id, [key.id], "2026-01-07", "2026-01-07") == {key.id: {"2026-01-07": 2}}


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)
