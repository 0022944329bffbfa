"""The supervisor: one poller per mapping across processes (leases, with an injected
clock), state settling, restart on update, take-over when the owner dies."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from nimbus.config import Config
from nimbus.events.sources.supervisor import MappingSupervisor
from nimbus.store.database import Database
from nimbus.store.event_source_mappings import (
    EventSourceMapping,
    MappingSettings,
    MappingStore,
)
from nimbus.store.leases import LeaseStore
from tests.events.sources.fakes import FakeFunction, FakeSource, record

UUID = "0f8fad5b-d9cb-469f-a165-70867728950e"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'nimbus.db'}")
    database.migrate()
    yield database
    database.dispose()


def add_mapping(db: Database, enabled: bool = True) -> EventSourceMapping:
    mapping = EventSourceMapping(
        uuid=UUID,
        function_name="f",
        qualifier=None,
        event_source_arn="arn:aws:sqs:us-east-1:000000000000:q",
        kind="sqs",
        enabled=enabled,
        state="Creating" if enabled else "Disabled",
        state_reason="USER_INITIATED",
        settings=MappingSettings(batch_size=10, maximum_batching_window=0),
        created_ms=1,
        last_modified=time.time(),
    )
    MappingStore(db).create(mapping, lambda existing: "duplicate")
    return mapping


class World:
    """The sources each supervisor built, and the function both invoke."""

    def __init__(self) -> None:
        self.sources: dict[str, list[FakeSource]] = {"a": [], "b": []}
        self.fn = FakeFunction(lambda recs: None)

    def supervisor(self, db: Database, name: str, clock: Clock) -> MappingSupervisor:
        def factory(mapping: EventSourceMapping) -> FakeSource:
            source = FakeSource([record(i) for i in range(3)] if name == "a" else [])
            self.sources[name].append(source)
            return source

        async def invoke(fn: str, qualifier: str | None, payload: bytes) -> Any:
            return await self.fn(payload)

        return MappingSupervisor(
            db,
            Config(),
            invoke,
            source_factory=factory,
            clock=clock,
            lease_ttl_ms=15_000,
            owner=name,
        )


async def wait_for(predicate: Any, timeout: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_one_owner_settles_enabled_and_takes_over_after_expiry(db: Database) -> None:
    clock, world = Clock(), World()
    store, leases = MappingStore(db), LeaseStore(db, clock)
    add_mapping(db)
    a, b = world.supervisor(db, "a", clock), world.supervisor(db, "b", clock)
    await a.reconcile()
    await b.reconcile()
    assert a.owns(UUID) and not b.owns(UUID)
    assert leases.owner(f"mapping:{UUID}") == "a"
    await wait_for(lambda: store.get(UUID).state == "Enabled")
    await wait_for(lambda: len(world.sources["a"][0].acked) == 3)
    # "a" stalls (no renewal); once its lease expired, "b" takes the mapping over...
    clock.now += 16_000
    await b.reconcile()
    assert b.owns(UUID) and leases.owner(f"mapping:{UUID}") == "b"
    # ...and "a", waking up, finds its lease lost and stops its poller.
    await a.reconcile()
    assert not a.owns(UUID)
    assert world.sources["a"][0].closed
    await b.close()
    assert leases.owner(f"mapping:{UUID}") is None  # released on shutdown
    await a.close()


async def test_disable_update_and_delete(db: Database) -> None:
    clock, world = Clock(), World()
    store = MappingStore(db)
    add_mapping(db)
    a = world.supervisor(db, "a", clock)
    await a.reconcile()
    await wait_for(lambda: store.get(UUID).state == "Enabled")

    def disable(m: EventSourceMapping) -> EventSourceMapping:
        m.enabled, m.state = False, "Disabling"
        return m

    store.replace(UUID, disable)
    await a.reconcile()
    assert not a.owns(UUID) and store.get(UUID).state == "Disabled"

    def enable(m: EventSourceMapping) -> EventSourceMapping:
        m.enabled, m.state = True, "Enabling"
        return m

    store.replace(UUID, enable)
    await a.reconcile()
    await wait_for(lambda: store.get(UUID).state == "Enabled")
    first = world.sources["a"][-1]

    def resize(m: EventSourceMapping) -> EventSourceMapping:
        m.settings.batch_size, m.state = 5, "Updating"
        return m

    store.replace(UUID, resize)
    await a.reconcile()
    assert first.closed and world.sources["a"][-1] is not first  # restarted
    await wait_for(lambda: store.get(UUID).state == "Enabled")

    def delete(m: EventSourceMapping) -> EventSourceMapping:
        m.state = "Deleting"
        return m

    store.replace(UUID, delete)
    await a.reconcile()
    assert store.find(UUID) is None and not a.owns(UUID)
    await a.close()


async def test_changes_through_this_process_wake_the_supervisor(db: Database) -> None:
    clock, world = Clock(), World()
    a = world.supervisor(db, "a", clock)
    a.tick_s = 3600  # only a wake-up can make it notice
    await a.start()
    add_mapping(db)
    await wait_for(lambda: a.owns(UUID))
    await a.close()
    assert not a.owns(UUID)
