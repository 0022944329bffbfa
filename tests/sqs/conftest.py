"""Fixtures of the SQS domain tests: ``Queues`` over a freshly migrated database (each
backend) with a clock the test moves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nimbus.sqs.queues import Queues
from nimbus.store.database import Database

START_MS = 1_700_000_000_000


class FakeClock:
    """Epoch milliseconds that move only when the test says."""

    def __init__(self) -> None:
        self.now = START_MS

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queues(database_url: str, clock: FakeClock) -> Iterator[Queues]:
    db = Database(database_url)
    db.migrate()
    yield Queues(
        db,
        region="us-east-1",
        account_id="000000000000",
        base_url="http://127.0.0.1:9000",
        clock=clock,
    )
    db.dispose()
