"""Ownership leases: one owner at a time, renewal, expiry and take-over, release."""

from __future__ import annotations

import threading

import pytest

from nimbus.store.database import Database
from nimbus.store.leases import LeaseStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def store(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'meta.db'}")
    db.migrate()
    clock = Clock()
    yield LeaseStore(db, clock), clock
    db.dispose()


def test_one_owner_until_expiry_then_takeover(store):
    leases, clock = store
    assert leases.acquire("schedule:a", "p1", 10_000)
    assert not leases.acquire("schedule:a", "p2", 10_000)
    assert leases.owner("schedule:a") == "p1"
    clock.now += 5_000
    assert leases.acquire("schedule:a", "p1", 10_000)  # renewed to now + 10 s
    clock.now += 9_000
    assert not leases.acquire("schedule:a", "p2", 10_000)
    clock.now += 1_000
    assert leases.owner("schedule:a") is None
    assert leases.acquire("schedule:a", "p2", 10_000)
    assert not leases.acquire("schedule:a", "p1", 10_000)


def test_release_hands_over_at_once_and_only_by_its_owner(store):
    leases, _ = store
    assert leases.acquire("mapping:u", "p1", 10_000)
    leases.release("mapping:u", "p2")  # not the owner: nothing changes
    assert leases.owner("mapping:u") == "p1"
    leases.release("mapping:u", "p1")
    assert leases.owner("mapping:u") is None
    assert leases.acquire("mapping:u", "p2", 10_000)


def test_racing_owners_one_wins(store):
    leases, _ = store
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def race(owner: str) -> None:
        barrier.wait()
        results.append(leases.acquire("schedule:race", owner, 10_000))

    threads = [threading.Thread(target=race, args=(f"p{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
