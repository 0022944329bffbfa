"""The schedule runner, with an injected clock and a recording target: cron, rate and at
fire on time; disabled schedules do not; a restart after missed ticks fires once; two
runners over one store fire each tick once; failed deliveries retry, then go to the
dead-letter queue; flexible windows fire inside the window."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from nimbus.errors import ResourceNotFound, SchedulerNotFound
from nimbus.events.sources.scheduler import ScheduleRunner, schedule_arn
from nimbus.store.database import Database
from nimbus.store.leases import LeaseStore
from nimbus.store.schedules import Schedule, ScheduleStore

FUNCTION = "arn:aws:lambda:us-east-1:000000000000:function:fn"
DLQ = "arn:aws:sqs:us-east-1:000000000000:dlq"
MINUTE = 60_000


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp() * 1000)


T0 = ms("2024-05-01T10:00:30")


class Clock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclass
class Target:
    """Records what the runner queued; can be told to fail."""

    calls: list[tuple[str, str | None, Any, str]] = field(default_factory=list)
    failing: bool = False
    event: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, name: str, qualifier: str | None, payload: bytes, rid: str) -> str:
        if self.failing:
            raise ResourceNotFound(f"Function not found: {name}")
        self.calls.append((name, qualifier, payload.decode(), rid))
        self.event.set()
        return rid


@dataclass
class DeadLetters:
    sent: list[tuple[str, str, dict[str, dict[str, str]]]] = field(default_factory=list)

    async def __call__(self, arn: str, body: str, attributes: dict[str, dict[str, str]]) -> None:
        self.sent.append((arn, body, attributes))


def schedule(name: str, expression: str, **kw: Any) -> Schedule:
    now = kw.pop("now", T0)
    return Schedule(
        group=kw.pop("group", "default"),
        name=name,
        expression=expression,
        timezone=kw.pop("timezone", "UTC"),
        target=kw.pop("target", {"Arn": FUNCTION, "RoleArn": "arn:aws:iam::000000000000:role/r"}),
        created_ms=now,
        modified_ms=now,
        anchor_ms=kw.pop("anchor_ms", now),
        last_tick_ms=now - 1,
        **kw,
    )


@pytest.fixture
def db(tmp_path: Any) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'meta.db'}")
    database.migrate()
    yield database
    database.dispose()


@dataclass
class Rig:
    store: ScheduleStore
    clock: Clock
    target: Target
    dead: DeadLetters

    def runner(self, db: Database | None = None, **kw: Any) -> ScheduleRunner:
        store = ScheduleStore(db) if db is not None else self.store
        kw.setdefault("lease_ttl_ms", 3 * 86_400_000)  # so a pass answers when it is next due
        return ScheduleRunner(
            store, LeaseStore(store.db, self.clock), self.target, region="us-east-1",
            account_id="000000000000", clock=self.clock, dead_letter=self.dead, **kw,
        )  # fmt: skip


@pytest.fixture
def rig(db: Database) -> Rig:
    return Rig(ScheduleStore(db), Clock(), Target(), DeadLetters())


async def test_cron_fires_on_time_and_not_before(rig: Rig) -> None:
    rig.store.create(schedule("nightly", "cron(5 10 * * ? *)"))
    runner = rig.runner()
    assert await runner.run_pass() == 4 * MINUTE + 30_000  # sleeps until 10:05
    assert rig.target.calls == []
    rig.clock.now = ms("2024-05-01T10:05:00")
    await runner.run_pass()
    assert len(rig.target.calls) == 1
    name, qualifier, payload, rid = rig.target.calls[0]
    assert (name, qualifier, payload) == ("fn", None, "{}")  # no Input: "{}"
    await runner.run_pass()  # the same tick never twice
    rig.clock.now = ms("2024-05-02T10:05:00")
    await runner.run_pass()
    assert len(rig.target.calls) == 2 and rig.target.calls[1][3] != rid
    assert rig.store.get("default", "nightly").last_tick_ms == ms("2024-05-02T10:05:00")


async def test_rate_fires_at_once_then_every_period(rig: Rig) -> None:
    rig.store.create(schedule("r", "rate(5 minutes)"))
    runner = rig.runner()
    assert await runner.run_pass() == 5 * MINUTE
    assert len(rig.target.calls) == 1  # rate schedules start immediately
    rig.clock.now += 4 * MINUTE
    await runner.run_pass()
    assert len(rig.target.calls) == 1
    rig.clock.now += MINUTE
    await runner.run_pass()
    assert len(rig.target.calls) == 2


async def test_at_fires_once_and_is_deleted_after_completion(rig: Rig) -> None:
    rig.store.create(schedule("once", "at(2024-05-01T12:01:00)", timezone="Europe/Paris",
                              action_after_completion="DELETE"))  # fmt: skip
    rig.store.create(schedule("kept", "at(2024-05-01T10:01:00)"))
    runner = rig.runner()
    rig.clock.now = ms("2024-05-01T10:01:00")  # 12:01 in Paris (UTC+2)
    await runner.run_pass()
    assert sorted(c[2] for c in rig.target.calls) == ["{}", "{}"]
    with pytest.raises(SchedulerNotFound):
        rig.store.get("default", "once")
    kept = rig.store.get("default", "kept")  # NONE: stays, never fires again
    rig.clock.now += 86_400_000
    await runner.run_pass()
    assert len(rig.target.calls) == 2 and kept.pending_tick_ms is None


async def test_disabled_schedules_do_not_fire(rig: Rig) -> None:
    rig.store.create(schedule("off", "rate(1 minute)", state="DISABLED"))
    runner = rig.runner()
    rig.clock.now += 10 * MINUTE
    await runner.run_pass()
    assert rig.target.calls == []


async def test_restart_after_missed_ticks_fires_once(db: Database, rig: Rig) -> None:
    rig.store.create(schedule("every", "cron(* * * * ? *)"))
    first = rig.runner()
    rig.clock.now = ms("2024-05-01T10:01:00")
    await first.run_pass()
    assert len(rig.target.calls) == 1
    await first.close()  # nimbus goes down for three hours
    rig.clock.now = ms("2024-05-01T13:01:30")
    second = rig.runner()
    await second.run_pass()
    await second.run_pass()
    assert len(rig.target.calls) == 2  # one catch-up, not 180
    assert rig.store.get("default", "every").last_tick_ms == ms("2024-05-01T13:01:00")
    rig.clock.now = ms("2024-05-01T13:02:00")
    await second.run_pass()
    assert len(rig.target.calls) == 3


async def test_input_with_context_attributes(rig: Rig) -> None:
    target = {"Arn": FUNCTION + ":live", "RoleArn": "arn:aws:iam::000000000000:role/r",
              "Input": '{"arn": "<aws.scheduler.schedule-arn>", '
                       '"at": "<aws.scheduler.scheduled-time>", '
                       '"attempt": <aws.scheduler.attempt-number>}'}  # fmt: skip
    rig.store.create(schedule("ctx", "cron(1 10 * * ? *)", target=target))
    rig.clock.now = ms("2024-05-01T10:01:00")
    await rig.runner().run_pass()
    name, qualifier, payload, _ = rig.target.calls[0]
    assert (name, qualifier) == ("fn", "live")
    arn = schedule_arn("us-east-1", "000000000000", "default", "ctx")
    assert payload == f'{{"arn": "{arn}", "at": "2024-05-01T10:01:00Z", "attempt": 1}}'


async def test_failed_delivery_retries_then_dead_letters(rig: Rig) -> None:
    target = {"Arn": FUNCTION, "RoleArn": "arn:aws:iam::000000000000:role/r", "Input": '"x"',
              "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600},
              "DeadLetterConfig": {"Arn": DLQ}}  # fmt: skip
    rig.store.create(schedule("flaky", "cron(1 10 * * ? *)", target=target))
    rig.target.failing = True
    runner = rig.runner(retry_base_ms=1_000)
    rig.clock.now = ms("2024-05-01T10:01:00")
    assert await runner.run_pass() == 1_000  # first retry after 1 s
    assert rig.store.get("default", "flaky").pending_tick_ms == rig.clock.now
    rig.clock.now += 1_000
    assert await runner.run_pass() == 2_000  # then 2 s
    rig.clock.now += 2_000
    await runner.run_pass()  # the third failure exhausts 2 retries
    assert rig.target.calls == []
    [(arn, body, attributes)] = rig.dead.sent
    assert (arn, body) == (DLQ, '"x"')
    assert attributes["EXHAUSTED_RETRY_CONDITION"]["StringValue"] == "MaximumRetryAttempts"
    assert attributes["RETRY_ATTEMPTS"]["StringValue"] == "2"
    assert attributes["ERROR_CODE"]["StringValue"] == "ResourceNotFoundException"
    assert rig.store.get("default", "flaky").pending_tick_ms is None


async def test_pending_tick_of_a_crashed_owner_is_queued_again(db: Database, rig: Rig) -> None:
    rig.store.create(schedule("p", "cron(1 10 * * ? *)"))
    stored = rig.store.get("default", "p")
    assert rig.store.claim(stored, ms("2024-05-01T10:01:00"))  # claimed, then a crash
    await rig.runner().run_pass()
    assert len(rig.target.calls) == 1
    assert rig.store.get("default", "p").pending_tick_ms is None


async def test_flexible_window_fires_inside_the_window(rig: Rig) -> None:
    rig.store.create(schedule("flex", "cron(0 11 * * ? *)", flexible_window_minutes=10))
    runner = rig.runner(jitter=lambda s, tick, window: 7 * MINUTE)
    rig.clock.now = ms("2024-05-01T11:06:59")
    assert await runner.run_pass() == 1_000
    assert rig.target.calls == []
    rig.clock.now = ms("2024-05-01T11:07:00")
    await runner.run_pass()
    assert len(rig.target.calls) == 1


async def test_runner_sleeps_until_due_and_wakes_on_change(rig: Rig) -> None:
    runner = rig.runner()
    await runner.start()
    try:
        rig.clock.now = ms("2024-05-01T10:00:59")
        # Created through another store over the same database: the runner wakes.
        ScheduleStore(rig.store.db).create(schedule("w", "rate(1 minute)", now=rig.clock.now))
        await asyncio.wait_for(rig.target.event.wait(), 5)
        rig.target.event.clear()
        rig.clock.now += MINUTE
        runner.wake()  # what a clock of real time would do by itself
        await asyncio.wait_for(rig.target.event.wait(), 5)
        assert len(rig.target.calls) == 2
    finally:
        await runner.close()


@pytest.fixture
def two_databases(database_url: str) -> Iterator[tuple[Database, Database]]:
    first, second = Database(database_url), Database(database_url)
    first.migrate()
    yield first, second
    first.dispose()
    second.dispose()


async def test_two_runners_fire_each_tick_once(two_databases: tuple[Database, Database]) -> None:
    db1, db2 = two_databases
    clock, target, dead = Clock(), Target(), DeadLetters()
    rig = Rig(ScheduleStore(db1), clock, target, dead)
    for i in range(5):
        rig.store.create(schedule(f"s{i}", "cron(* * * * ? *)"))
    ttl = 2 * MINUTE
    one = rig.runner(db1, owner="one", lease_ttl_ms=ttl)
    two = rig.runner(db2, owner="two", lease_ttl_ms=ttl)
    for minute in range(1, 6):
        clock.now = T0 - 30_000 + minute * MINUTE
        await asyncio.gather(one.run_pass(), two.run_pass(), one.run_pass(), two.run_pass())
    ticks = [c[3] for c in target.calls]
    assert len(ticks) == 25 and len(set(ticks)) == 25
    # The holder dies without releasing its lease: the other stands by while the lease
    # holds, even with a tick due, and takes over (one catch-up fire each) once it expires.
    holder = await asyncio.to_thread(one.leases.owner, "scheduler")
    other = two if holder == "one" else one
    clock.now += MINUTE
    await other.run_pass()
    assert len(target.calls) == 25
    clock.now += ttl
    await other.run_pass()
    assert len(target.calls) == 30
    assert len({c[3] for c in target.calls}) == 30


def test_claim_is_won_by_one_of_two_stores(db: Database, tmp_path: Any) -> None:
    other = Database(db.url)
    try:
        mine, theirs = ScheduleStore(db), ScheduleStore(other)
        mine.create(schedule("c", "rate(1 minute)"))
        a, b = mine.get("default", "c"), theirs.get("default", "c")
        assert [mine.claim(a, T0), theirs.claim(b, T0)] == [True, False]
    finally:
        other.dispose()


async def test_an_update_with_the_same_timing_keeps_a_tick_waiting_in_its_window(
    rig: Rig,
) -> None:
    rig.store.create(schedule("flex", "cron(0 11 * * ? *)", flexible_window_minutes=10))
    runner = rig.runner(jitter=lambda s, tick, window: 7 * MINUTE)
    rig.clock.now = ms("2024-05-01T11:05:00")
    await runner.run_pass()  # the 11:00 tick waits for 11:07
    # A deploy tool re-applies the schedule with a new Input at 11:05.
    rig.store.replace(schedule("flex", "cron(0 11 * * ? *)", flexible_window_minutes=10,
                               now=rig.clock.now, target={"Arn": FUNCTION, "Input": '{"v": 2}'}))
    rig.clock.now = ms("2024-05-01T11:07:00")
    await runner.run_pass()
    assert [call[2] for call in rig.target.calls] == ['{"v": 2}']  # fired, with the new Input


async def test_an_update_with_a_new_expression_starts_from_now(rig: Rig) -> None:
    rig.store.create(schedule("r", "rate(5 minutes)"))
    runner = rig.runner()
    await runner.run_pass()
    rig.clock.now += 2 * MINUTE
    rig.store.replace(schedule("r", "rate(10 minutes)", now=rig.clock.now))
    await runner.run_pass()  # a rate schedule starts at once from its update, as created
    assert len(rig.target.calls) == 2
