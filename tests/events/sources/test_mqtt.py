"""MqttSource against the real Mosquitto on 127.0.0.1:1883."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator

import aiomqtt
import pytest

from nimbus.errors import InvalidParameterValue, SourceUnavailable
from nimbus.events.sources.mqtt import MqttSource
from nimbus.events.sources.source import SourceOptions
from tests.events.sources.conftest import killed_owner, options

pytestmark = pytest.mark.broker("mqtt")


@pytest.fixture
def prefix() -> str:
    return f"nimbus-test/{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def publisher() -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client("127.0.0.1", 1883) as client:
        yield client


async def publish(client: aiomqtt.Client, topic: str, bodies: list[str]) -> None:
    for body in bodies:
        await client.publish(topic, body.encode(), qos=1)  # returns on PUBACK


async def drain(source: MqttSource, batch: int, wait: float = 0.5) -> list[list[dict]]:
    """Batches as the poller gathers them (receive until full or quiet), acked."""
    batches = []
    while records := await source.receive(batch, wait):
        while len(records) < batch and (more := await source.receive(batch - len(records), 0.2)):
            records += more
        batches.append([r.record for r in records])
        await source.ack(records)
    return batches


def bodies(batches: list[list[dict]]) -> list[str]:
    return [base64.b64decode(r["mqtt"]["data"]).decode() for b in batches for r in b]


async def forget(opts: SourceOptions) -> None:
    """End the mapping's session on the broker (a clean-session connect of its id)."""
    async with aiomqtt.Client(
        "127.0.0.1", 1883, identifier=f"nimbus-{opts.mapping_uuid}", clean_session=True
    ):
        pass


@pytest.mark.parametrize(
    ("given", "topic"),
    [
        ("mqtt://127.0.0.1:1883/sensors/+/temp", "sensors/+/temp"),
        ("mqtt://u:p@h/sensors/#", "sensors/#"),
        ("mqtts://h:8883/sensors/%23", "sensors/#"),
        ("mqtt://h/#", "#"),
    ],
)
def test_uri_forms(given: str, topic: str) -> None:
    MqttSource.validate(given)
    source = MqttSource(options(given))
    assert source.topic_filter == topic
    assert "p@" not in source.arn


@pytest.mark.parametrize(
    "given",
    [
        "mqtt://h",
        "mqtt://h/",
        "http://h/t",
        "mqtt:///t",
        "mqtt://h/a/#/b",
        "mqtt://h/a+/b",
        "mqtt://h:port/t",
        "mqtt://h/a#",
    ],
)
def test_bad_uris_say_the_form(given: str) -> None:
    with pytest.raises(InvalidParameterValue, match=r"expected mqtt\[s\]://"):
        MqttSource.validate(given)


async def test_thousand_messages_once_in_order(prefix: str, publisher: aiomqtt.Client) -> None:
    opts = options(f"mqtt://127.0.0.1:1883/{prefix}/+/temp", batch_size=10)
    source = MqttSource(opts)
    await source.open()
    assert source.session_present is False
    sent = [f"m{i}" for i in range(1000)]
    await publish(publisher, f"{prefix}/s1/temp", sent)
    await publish(publisher, f"{prefix}/s1/humidity", ["not matched"])
    batches = await drain(source, 10)
    assert bodies(batches) == sent
    assert [len(b) for b in batches] == [10] * 100
    assert not any(r["mqtt"]["dup"] for b in batches for r in b)
    assert await source.backlog() is None
    await source.close()
    # Acked means gone: the session's next connection gets nothing again.
    again = MqttSource(opts)
    await again.open()
    assert again.session_present is True
    assert await again.receive(10, 0.5) == []
    await again.close()
    await forget(opts)


async def test_record_shape(prefix: str, publisher: aiomqtt.Client) -> None:
    opts = options(f"mqtt://u:secret@127.0.0.1:1883/{prefix}/#")  # anonymous broker
    source = MqttSource(opts)
    await source.open()
    await publisher.publish(f"{prefix}/a/b", b"\x00raw", qos=1)
    (record,) = await source.receive(10, 5.0)
    assert record.item_id == "1"
    assert record.record == {
        "eventSource": "nimbus:mqtt",
        "eventVersion": "1.0",
        "eventName": "nimbus:mqtt:record",
        "eventID": f"nimbus-{opts.mapping_uuid}:1",
        "eventSourceARN": f"mqtt://127.0.0.1:1883/{prefix}/#",
        "awsRegion": "us-east-1",
        "mqtt": {
            "topic": f"{prefix}/a/b",
            "qos": 1,
            "retain": False,
            "dup": False,
            "approximateArrivalTimestamp": record.timestamp_ms / 1000,
            "data": base64.b64encode(b"\x00raw").decode(),
        },
    }
    assert source.build_event([record]) == {"Records": [record.record]}
    await source.ack([record])
    await source.close()
    await forget(opts)


async def test_messages_published_while_away_arrive(prefix: str, publisher: aiomqtt.Client) -> None:
    opts = options(f"mqtt://127.0.0.1:1883/{prefix}/t")
    first = MqttSource(opts)
    await first.open()
    await first.close()
    await publish(publisher, f"{prefix}/t", ["while", "away"])
    back = MqttSource(opts)
    await back.open()
    assert bodies(await drain(back, 10)) == ["while", "away"]
    await back.close()
    await forget(opts)


async def test_unacked_messages_come_back_after_a_clean_close(
    prefix: str, publisher: aiomqtt.Client
) -> None:
    opts = options(f"mqtt://127.0.0.1:1883/{prefix}/t")
    source = MqttSource(opts)
    await source.open()
    await publish(publisher, f"{prefix}/t", ["a", "b"])
    held = []
    while len(held) < 2:
        held += await source.receive(2, 5.0)
    await source.close()
    back = MqttSource(opts)
    await back.open()
    batches = await drain(back, 10)
    assert bodies(batches) == ["a", "b"]
    assert all(r["mqtt"]["dup"] for b in batches for r in b)
    await back.close()
    await forget(opts)


async def test_killed_owner_messages_come_back(prefix: str, publisher: aiomqtt.Client) -> None:
    opts = options(f"mqtt://127.0.0.1:1883/{prefix}/t", batch_size=10)
    session = MqttSource(opts)  # the mapping's session exists (subscribed) from here on
    await session.open()
    await session.close()
    sent = [str(i) for i in range(20)]
    await publish(publisher, f"{prefix}/t", sent)
    assert len(killed_owner(MqttSource, opts, 10)) == 10
    successor = MqttSource(opts)
    await successor.open()
    got = bodies(await drain(successor, 10, wait=5.0))
    await successor.close()
    await forget(opts)
    assert got == sent  # the dead owner's ten first (sent again), then the rest


async def test_released_records_come_first_again(prefix: str, publisher: aiomqtt.Client) -> None:
    opts = options(f"mqtt://127.0.0.1:1883/{prefix}/t")
    source = MqttSource(opts)
    await source.open()
    await publish(publisher, f"{prefix}/t", ["0", "1", "2"])
    first = []
    while len(first) < 3:
        first += await source.receive(3 - len(first), 5.0)
    await source.ack(first[:1])
    await source.release(first[1:])
    again = await source.receive(10, 1.0)
    assert [r.item_id for r in again] == [r.item_id for r in first[1:]]
    await source.ack(again)
    assert await source.receive(10, 0.3) == []
    await source.close()
    back = MqttSource(opts)
    await back.open()
    assert await back.receive(10, 0.5) == []  # all three were acked
    await back.close()
    await forget(opts)


@pytest.mark.parametrize("position", ["TRIM_HORIZON", "AT_TIMESTAMP"])
async def test_only_latest(position: str) -> None:
    source = MqttSource(options("mqtt://127.0.0.1:1883/t", starting_position=position))
    with pytest.raises(InvalidParameterValue, match="LATEST"):
        await source.open()


async def test_unreachable_broker() -> None:
    source = MqttSource(options("mqtt://127.0.0.1:1/t"))
    with pytest.raises(SourceUnavailable, match="unreachable"):
        await source.open()
