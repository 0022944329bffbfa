"""The SQS source over real embedded queues (SQLite), with the queue's clock and the
source's monotonic clock moved by the test: visibility extended for long batches in one
store call, released messages redelivered after the queue's timeout, unsettled ones
visible at once on close."""

from __future__ import annotations

from typing import Any

import pytest

from nimbus.events.sources.sqs import SqsSource
from nimbus.sqs.queues import Queues
from nimbus.store.database import Database
from tests.events.sources.conftest import options

ARN = "arn:aws:sqs:us-east-1:000000000000:work"


class Clock:
    def __init__(self) -> None:
        self.ms = 1_700_000_000_000

    def __call__(self) -> int:
        return self.ms


class Counting(Queues):
    """Queues that count the store calls that change visibility."""

    visibility_calls = 0

    async def change_visibility_batch(self, name: str, changes: Any) -> Any:
        Counting.visibility_calls += 1
        return await super().change_visibility_batch(name, changes)


@pytest.fixture
async def rig(tmp_path: Any) -> Any:
    db = Database(f"sqlite:///{tmp_path / 'meta.db'}")
    db.migrate()
    clock = Clock()
    queues = Counting(db, region="us-east-1", account_id="000000000000",
                      base_url="http://127.0.0.1:9000", clock=clock)
    await queues.create("work", {"VisibilityTimeout": "30"})
    now = [0.0]
    source = SqsSource(options(ARN, batch_size=50), queues, monotonic=lambda: now[0])
    await source.open()
    yield queues, source, clock, now
    await source.close()
    db.dispose()


async def test_a_long_batch_is_extended_in_one_call(rig: Any) -> None:
    queues, source, clock, now = rig
    for i in range(40):
        await queues.send("work", f"m{i}")
    records = await source.receive(50, 0)
    assert len(records) == 40
    Counting.visibility_calls = 0
    now[0], clock.ms = 29.0, clock.ms + 29_000  # the batch still runs, its timeout ending
    await source.extend_due()
    assert Counting.visibility_calls == 1  # forty handles, one transaction
    clock.ms += 16_000  # past the first timeout, within the extended one
    assert await queues.receive("work", max_messages=10) == []
    await source.ack(records)
    clock.ms += 60_000
    assert await queues.receive("work", max_messages=10) == []  # all deleted


async def test_released_messages_come_back_after_the_timeout(rig: Any) -> None:
    queues, source, clock, _ = rig
    await queues.send("work", "again")
    (record,) = await source.receive(10, 0)
    await source.release([record])
    assert await queues.receive("work", max_messages=10) == []
    clock.ms += 31_000
    (message,) = await queues.receive("work", max_messages=10)
    assert message.body == "again" and message.attributes["ApproximateReceiveCount"] == "2"


async def test_unsettled_messages_are_visible_at_once_after_close(rig: Any) -> None:
    queues, source, _, _ = rig
    for i in range(3):
        await queues.send("work", f"m{i}")
    assert len(await source.receive(10, 0)) == 3
    await source.close()
    assert sorted(m.body for m in await queues.receive("work", max_messages=10)) == [
        "m0", "m1", "m2",
    ]
