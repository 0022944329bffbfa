"""RabbitMqSource against the real RabbitMQ on 127.0.0.1:5672 (guest/guest)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aio_pika
import pytest

from nimbus.errors import InvalidParameterValue, SourceUnavailable
from nimbus.events.sources.rabbitmq import RabbitMqSource
from tests.events.sources.conftest import killed_owner, options

pytestmark = pytest.mark.broker("rabbitmq")
BROKER = "amqp://guest:guest@127.0.0.1:5672"


class Queue:
    """A fresh queue on the default vhost (deleted afterwards), and a way to publish."""

    def __init__(self, channel: aio_pika.abc.AbstractChannel, name: str) -> None:
        self.channel, self.name = channel, name
        self.uri = f"{BROKER}/%2F?queue={name}"

    async def publish(self, body: bytes, **props: object) -> None:
        await self.channel.default_exchange.publish(
            aio_pika.Message(body, **props),
            routing_key=self.name,  # type: ignore[arg-type]
        )


@pytest.fixture
async def queue() -> AsyncIterator[Queue]:
    connection = await aio_pika.connect(BROKER)
    channel = await connection.channel(publisher_confirms=True)
    name = f"nimbus-test-{uuid.uuid4().hex[:10]}"
    declared = await channel.declare_queue(name)
    yield Queue(channel, name)
    await declared.delete(if_unused=False, if_empty=False)
    await connection.close()


async def drain(source: RabbitMqSource, batch: int, wait: float = 0.5) -> list[list[dict]]:
    """Batches as the poller gathers them (receive until full or quiet), acked."""
    batches = []
    while records := await source.receive(batch, wait):
        while len(records) < batch and (more := await source.receive(batch - len(records), 0.2)):
            records += more
        assert len(records) <= batch
        batches.append([r.record for r in records])
        await source.ack(records)
    return batches


@pytest.mark.parametrize(
    ("given", "vhost", "name"),
    [
        ("amqp://guest:guest@127.0.0.1:5672/%2F?queue=orders", "/", "orders"),
        ("amqp://127.0.0.1?queue=orders", "/", "orders"),
        ("amqp://u:p@h/%2F/orders", "/", "orders"),
        ("amqps://u:p@h:5671/prod/orders%2Feu", "prod", "orders/eu"),
        ("amqp://h/prod?queue=a.b", "prod", "a.b"),
    ],
)
def test_uri_forms(given: str, vhost: str, name: str) -> None:
    RabbitMqSource.validate(given)
    source = RabbitMqSource(options(given))
    assert (source.vhost, source.queue_name) == (vhost, name)
    assert "p@" not in source.arn and "guest" not in source.arn


@pytest.mark.parametrize(
    "given",
    [
        "amqp://h",
        "amqp://h/%2F",
        "http://h/?queue=q",
        "amqp://h/a/b/c",
        "amqp://h/v/q?queue=q",
        "amqp://h/?queue=q&x=1",
        "amqp://h:port/?queue=q",
    ],
)
def test_bad_uris_say_the_form(given: str) -> None:
    with pytest.raises(InvalidParameterValue, match=r"expected amqp\[s\]://"):
        RabbitMqSource.validate(given)


async def test_thousand_messages_once_in_batches(queue: Queue) -> None:
    for i in range(1000):
        await queue.publish(f"m{i}".encode())
    source = RabbitMqSource(options(queue.uri, batch_size=10))
    await source.open()
    assert await source.backlog() == 1000
    batches = await drain(source, 10)
    bodies = [base64.b64decode(m["data"]).decode() for b in batches for m in b]
    assert bodies == [f"m{i}" for i in range(1000)]
    assert not any(m["redelivered"] for b in batches for m in b)
    assert [len(b) for b in batches] == [10] * 100
    assert await source.backlog() == 0
    await source.close()
    again = RabbitMqSource(options(queue.uri, batch_size=10))
    await again.open()
    assert await again.receive(10, 0.3) == []
    await again.close()


async def test_record_shape_and_event(queue: Queue) -> None:
    stamp = datetime(2024, 3, 5, 14, 7, 9, tzinfo=UTC)
    await queue.publish(
        b'{"order": 1}',
        content_type="application/json",
        headers={"h1": "value1", "n": 10},
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        priority=3,
        correlation_id="c-1",
        message_id="m-1",
        timestamp=stamp,
        expiration=60,
        app_id="shop",
    )
    source = RabbitMqSource(options(f"{BROKER}/%2F/{queue.name}"))
    await source.open()
    (record,) = await source.receive(10, 2.0)
    assert record.timestamp_ms == int(stamp.timestamp() * 1000)
    assert record.record == {
        "basicProperties": {
            "contentType": "application/json",
            "contentEncoding": None,
            "headers": {"h1": {"bytes": list(b"value1")}, "n": 10},
            "deliveryMode": 2,
            "priority": 3,
            "correlationId": "c-1",
            "replyTo": None,
            "expiration": "60000",
            "messageId": "m-1",
            "timestamp": "Mar 5, 2024, 2:07:09 PM",
            "type": None,
            "userId": None,
            "appId": "shop",
            "clusterId": None,
            "bodySize": 12,
        },
        "redelivered": False,
        "data": base64.b64encode(b'{"order": 1}').decode(),
    }
    assert source.build_event([record]) == {
        "eventSource": "aws:rmq",
        "eventSourceArn": f"amqp://127.0.0.1:5672/%2F?queue={queue.name}",
        "rmqMessagesByQueue": {f"{queue.name}::/": [record.record]},
    }
    await source.ack([record])
    await source.close()


async def test_released_messages_are_redelivered(queue: Queue) -> None:
    for i in range(3):
        await queue.publish(str(i).encode())
    source = RabbitMqSource(options(queue.uri, batch_size=3))
    await source.open()
    first = []
    while len(first) < 3:
        first += await source.receive(3 - len(first), 2.0)
    await source.ack(first[:1])
    await source.release(first[1:])
    again = []
    while len(again) < 2:
        again += await source.receive(3, 2.0)
    assert [base64.b64decode(r.record["data"]) for r in again] == [b"1", b"2"]
    assert all(r.record["redelivered"] for r in again)
    await source.ack(again)
    assert await source.receive(3, 0.3) == []
    assert await source.backlog() == 0
    await source.close()


async def test_killed_owner_messages_come_back(queue: Queue) -> None:
    for i in range(20):
        await queue.publish(str(i).encode())
    opts = options(queue.uri, batch_size=10)
    held = killed_owner(RabbitMqSource, opts, 10)
    assert len(held) == 10
    successor = RabbitMqSource(opts)
    await successor.open()
    got = [m for b in await drain(successor, 10, wait=2.0) for m in b]
    await successor.close()
    assert sorted(int(base64.b64decode(m["data"])) for m in got) == list(range(20))
    redelivered = {int(base64.b64decode(m["data"])) for m in got if m["redelivered"]}
    # The ten it held come again, marked; so do any it had prefetched (prefetch is
    # batch size x concurrency).
    assert set(range(10)) <= redelivered


async def test_backlog_counts_ready_and_held(queue: Queue) -> None:
    for i in range(30):
        await queue.publish(str(i).encode())
    source = RabbitMqSource(options(queue.uri, batch_size=10))
    await source.open()
    assert await source.backlog() == 30
    held = []
    while len(held) < 10:
        held += await source.receive(10 - len(held), 2.0)
    assert await source.backlog() == 30  # 20 ready + 10 delivered, unsettled
    await source.ack(held)
    assert await source.backlog() == 20
    await source.close()


async def test_missing_queue() -> None:
    source = RabbitMqSource(options(f"{BROKER}/%2F?queue=nimbus-missing-{uuid.uuid4().hex}"))
    with pytest.raises(SourceUnavailable, match="no queue"):
        await source.open()


async def test_unreachable_broker() -> None:
    source = RabbitMqSource(options("amqp://127.0.0.1:1/%2F?queue=orders"))
    with pytest.raises(SourceUnavailable, match="unreachable"):
        await source.open()


async def test_starting_position_is_refused(queue: Queue) -> None:
    source = RabbitMqSource(options(queue.uri, starting_position="LATEST"))
    with pytest.raises(InvalidParameterValue, match="StartingPosition"):
        await source.open()
