"""The notification outbox over each database backend: rows written with the change that
raised them (and rolled back with it), handed on in order, retried with backoff, and
dead-lettered when a function never takes them. The function side is a recording stand-in
for the invoker and dispatcher (the live path is tests/s3/test_notifications.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from nimbus.errors import ResourceNotFound
from nimbus.events.sources.buckets import MAX_FUNCTION_ATTEMPTS, BucketNotifier
from nimbus.protocol.errors import AwsError
from nimbus.s3.conditions import WriteConditions
from nimbus.s3.records import ObjectInfo
from nimbus.s3.store import S3Store
from nimbus.s3.tables import s3_notifications
from nimbus.sqs.queues import Queues
from nimbus.store.database import Database
from nimbus.store.dead_letters import DeadLetterStore

FUNCTION = "arn:aws:lambda:us-east-1:000000000000:function:thumbs"


class Functions:
    """Stands in for the invoker (``dry_run``) and the dispatcher (``enqueue``)."""

    def __init__(self) -> None:
        self.exists = True
        self.queued: list[tuple[str, str | None, dict[str, Any], str]] = []

    async def dry_run(self, name: str, qualifier: str | None) -> None:
        if not self.exists:
            raise ResourceNotFound(f"Function not found: {name}")

    async def enqueue(self, name: str, qualifier: str | None, payload: bytes,
                      trace_id: str | None, request_id: str) -> str:  # fmt: skip
        self.queued.append((name, qualifier, json.loads(payload), request_id))
        return request_id


@dataclass
class World:
    store: S3Store
    notifier: BucketNotifier
    functions: Functions
    clock: Clock
    queues: Queues
    db: Database


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[World]:
    db = Database(database_url)
    db.migrate()
    store = S3Store.open(db, tmp_path, "us-east-1")
    functions = Functions()
    clock = Clock()
    queues = Queues(db, region="us-east-1", account_id="000000000000",
                    base_url="http://127.0.0.1:9000")  # fmt: skip
    notifier = BucketNotifier(
        db, functions, functions, queues, DeadLetterStore(db),  # type: ignore[arg-type]
        region="us-east-1", account_id="000000000000", clock=clock,
    )  # fmt: skip
    store.events.subscribe(notifier)
    store.buckets.create("bkt", "us-east-1")
    store.buckets.set_notification("bkt", {
        "LambdaFunctionConfigurations": [
            {"Id": "fn", "LambdaFunctionArn": FUNCTION, "Events": ["s3:ObjectCreated:*"]}],
        "QueueConfigurations": [
            {"Id": "q", "QueueArn": "arn:aws:sqs:us-east-1:000000000000:events",
             "Events": ["s3:ObjectRemoved:*"]}],
    })  # fmt: skip
    yield World(store, notifier, functions, clock, queues, db)
    db.dispose()


def put(store: S3Store, key: str, data: bytes, **kw: Any) -> None:
    writer = store.blobs.writer()
    writer.write(data)
    info = ObjectInfo("bkt", key, writer.commit(), writer.size, writer.etag, 0)
    store.objects.put(info, event="ObjectCreated:Put", **kw)


def outbox(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(s3_notifications)).scalar())


async def test_outbox_rows_go_with_their_change(world: World) -> None:
    store, notifier, functions, db = world.store, world.notifier, world.functions, world.db
    put(store, "a.jpg", b"one")
    with pytest.raises(AwsError):  # refused: its notification rolls back with it
        put(store, "a.jpg", b"two", conditions=WriteConditions.of(None, "*"))
    put(store, "b.jpg", b"three")
    assert outbox(db) == 2
    await notifier._drain()
    assert [q[0] for q in functions.queued] == ["thumbs", "thumbs"]
    keys = [q[2]["Records"][0]["s3"]["object"]["key"] for q in functions.queued]
    assert keys == ["a.jpg", "b.jpg"] and outbox(db) == 0
    assert len({q[3] for q in functions.queued}) == 2  # a request id each


async def test_queue_targets_wait_for_their_queue(world: World) -> None:
    store, notifier, clock, queues, db = (
        world.store,
        world.notifier,
        world.clock,
        world.queues,
        world.db,
    )
    put(store, "gone", b"x")
    store.objects.delete("bkt", "gone")
    await notifier._drain()
    assert outbox(db) == 1  # no such queue yet: kept, due again later
    due_in = await notifier._drain()
    assert due_in is not None and due_in > 0
    await queues.create("events")
    clock.now += 60_000
    await notifier._drain()
    assert outbox(db) == 0
    (message,) = await queues.receive("events", max_messages=10)
    record = json.loads(message.body)["Records"][0]
    assert record["eventName"] == "ObjectRemoved:Delete"


async def test_a_function_that_never_takes_them_gets_a_dead_letter(world: World) -> None:
    store, notifier, functions, clock, db = (
        world.store,
        world.notifier,
        world.functions,
        world.clock,
        world.db,
    )
    functions.exists = False
    put(store, "k", b"x")
    for _ in range(MAX_FUNCTION_ATTEMPTS):
        await notifier._drain()
        clock.now += 10 * 60_000
    assert outbox(db) == 0 and functions.queued == []
    (letter,) = notifier.dead_letters.list(queue="s3")
    assert letter.function_name == "thumbs" and letter.condition == "S3NotificationFailed"
    assert json.loads(letter.payload)["Records"][0]["s3"]["object"]["key"] == "k"
