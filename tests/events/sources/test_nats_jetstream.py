"""JetStreamSource against the real NATS JetStream on 127.0.0.1:4222."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator
from typing import ClassVar

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from nimbus.errors import InvalidParameterValue, SourceUnavailable
from nimbus.events.sources.nats_jetstream import JetStreamSource
from tests.events.sources.conftest import killed_owner, options

pytestmark = pytest.mark.broker("nats")


class QuickRedelivery(JetStreamSource):
    """Consumers with a 2 s ack wait: a dead poller's messages come back quickly."""

    ack_wait_seconds: ClassVar[float] = 2.0


class Stream:
    def __init__(self, nc: NatsClient, js: JetStreamContext, name: str) -> None:
        self.nc, self.js, self.name = nc, js, name
        self.uri = f"nats://127.0.0.1:4222/{name}"

    async def publish(self, n: int, subject: str = "a", start: int = 0) -> list[int]:
        return [
            (await self.js.publish(f"{self.name}.{subject}", str(i).encode())).seq
            for i in range(start, start + n)
        ]


@pytest.fixture
async def stream() -> AsyncIterator[Stream]:
    nc = await nats.connect("nats://127.0.0.1:4222")
    js = nc.jetstream()
    name = f"NIMBUS_TEST_{uuid.uuid4().hex[:10]}"
    await js.add_stream(name=name, subjects=[f"{name}.>"])
    yield Stream(nc, js, name)
    await js.delete_stream(name)
    await nc.close()


async def drain(source: JetStreamSource, batch: int, wait: float = 0.3) -> list[list[dict]]:
    batches = []
    while records := await source.receive(batch, wait):
        assert len(records) <= batch
        batches.append([r.record for r in records])
        await source.ack(records)
    return batches


def seqs(batches: list[list[dict]]) -> list[int]:
    return [r["nats"]["sequence"] for b in batches for r in b]


@pytest.mark.parametrize(
    ("given", "name", "subject"),
    [
        ("nats://127.0.0.1:4222/ORDERS?subject=orders.>", "ORDERS", "orders.>"),
        ("nats://u:p@h/ORDERS", "ORDERS", None),
        ("tls://h:4443/S1?subject=a.*.b", "S1", "a.*.b"),
    ],
)
def test_uri_forms(given: str, name: str, subject: str | None) -> None:
    JetStreamSource.validate(given)
    source = JetStreamSource(options(given, starting_position="LATEST"))
    assert (source.stream, source.subject) == (name, subject)
    assert "p@" not in source.arn


@pytest.mark.parametrize(
    "given",
    [
        "nats://h",
        "nats://h/",
        "http://h/S",
        "nats://h/a.b",
        "nats://h/S/x",
        "nats://h/S?x=1",
        "nats://h/S?subject=",
        "nats://h:port/S",
    ],
)
def test_bad_uris_say_the_form(given: str) -> None:
    with pytest.raises(InvalidParameterValue, match="expected nats://"):
        JetStreamSource.validate(given)


async def test_thousand_messages_once_in_batches(stream: Stream) -> None:
    sent = await stream.publish(1000)
    source = JetStreamSource(options(stream.uri, batch_size=10, starting_position="TRIM_HORIZON"))
    await source.open()
    assert await source.backlog() == 1000
    batches = await drain(source, 10)
    assert seqs(batches) == sent
    assert [len(b) for b in batches] == [10] * 100
    assert not any(r["nats"]["redelivered"] for b in batches for r in b)
    assert await source.backlog() == 0
    await source.close()
    again = JetStreamSource(source.options)
    await again.open()
    assert await again.receive(10, 0.3) == []
    await again.close()


async def test_record_shape(stream: Stream) -> None:
    ack = await stream.js.publish(f"{stream.name}.x.y", b"\x00raw", headers={"h": "v"})
    # (The local server has no users configured, so it takes any.)
    source = JetStreamSource(
        options(f"nats://u:secret@127.0.0.1:4222/{stream.name}", starting_position="TRIM_HORIZON")
    )
    await source.open()
    (record,) = await source.receive(10, 2.0)
    nats_part = record.record["nats"]
    assert record.item_id == str(ack.seq)
    assert record.record == {
        "eventSource": "nimbus:nats",
        "eventVersion": "1.0",
        "eventName": "nimbus:nats:record",
        "eventID": f"{stream.name}:{ack.seq}",
        "eventSourceARN": stream.uri,
        "awsRegion": "us-east-1",
        "nats": {
            "stream": stream.name,
            "subject": f"{stream.name}.x.y",
            "sequence": ack.seq,
            "approximateArrivalTimestamp": record.timestamp_ms / 1000,
            "deliveryCount": 1,
            "redelivered": False,
            "headers": {"h": "v"},
            "data": base64.b64encode(b"\x00raw").decode(),
        },
    }
    assert nats_part["approximateArrivalTimestamp"] > 1.6e9
    assert source.build_event([record]) == {"Records": [record.record]}
    await source.ack([record])
    await source.close()


async def test_subject_filter(stream: Stream) -> None:
    await stream.publish(3, subject="a")
    wanted = await stream.publish(2, subject="b")
    source = JetStreamSource(
        options(f"{stream.uri}?subject={stream.name}.b", starting_position="TRIM_HORIZON")
    )
    await source.open()
    assert seqs(await drain(source, 10)) == wanted
    await source.close()


async def test_released_messages_are_redelivered(stream: Stream) -> None:
    sent = await stream.publish(3)
    source = JetStreamSource(options(stream.uri, batch_size=3, starting_position="TRIM_HORIZON"))
    await source.open()
    first = await source.receive(3, 2.0)
    assert [int(r.item_id) for r in first] == sent
    await source.ack(first[:1])
    await source.release(first[1:])
    again = await source.receive(3, 2.0)
    assert [int(r.item_id) for r in again] == sent[1:]
    assert all(r.record["nats"]["redelivered"] for r in again)
    assert [r.record["nats"]["deliveryCount"] for r in again] == [2, 2]
    await source.ack(again)
    assert await source.receive(3, 0.3) == []
    await source.close()


async def test_killed_owner_messages_come_back(stream: Stream) -> None:
    sent = await stream.publish(20)
    opts = options(stream.uri, batch_size=10, starting_position="TRIM_HORIZON")
    held = killed_owner(QuickRedelivery, opts, 10)
    assert [int(i) for i in held] == sent[:10]
    successor = QuickRedelivery(opts)
    await successor.open()
    got = seqs(await drain(successor, 10, wait=4.0))  # the ack wait (2 s) must run out
    await successor.close()
    assert sorted(got) == sent
    assert len(got) == 20


async def test_held_messages_outlive_the_ack_wait(stream: Stream) -> None:
    await stream.publish(2)
    source = QuickRedelivery(options(stream.uri, starting_position="TRIM_HORIZON"))
    await source.open()
    held = await source.receive(10, 2.0)
    assert len(held) == 2
    # Twice the ack wait: in-progress acks keep them ours, so nothing comes again.
    assert await source.receive(10, 4.0) == []
    await source.ack(held)
    assert await source.backlog() == 0
    await source.close()


async def test_closing_gives_held_messages_back_at_once(stream: Stream) -> None:
    sent = await stream.publish(2)
    opts = options(stream.uri, starting_position="TRIM_HORIZON")
    source = JetStreamSource(opts)  # 60 s ack wait: only the nak on close can explain it
    await source.open()
    assert len(await source.receive(10, 2.0)) == 2
    await source.close()
    successor = JetStreamSource(opts)
    await successor.open()
    assert seqs(await drain(successor, 10, wait=2.0)) == sent
    await successor.close()


async def test_latest_and_at_timestamp(stream: Stream) -> None:
    await stream.publish(3)
    latest = JetStreamSource(options(stream.uri, starting_position="LATEST"))
    await latest.open()
    assert await latest.receive(10, 0.3) == []
    # AT_TIMESTAMP: a millisecond after the first three were stored (the server's clock
    # is this host's); the next ones are stored from then on.
    mark = int(time.time() * 1000) + 1
    while int(time.time() * 1000) <= mark:
        pass
    later = await stream.publish(2, start=3)
    assert seqs(await drain(latest, 10)) == later
    await latest.close()
    at = JetStreamSource(
        options(stream.uri, starting_position="AT_TIMESTAMP", starting_position_timestamp_ms=mark)
    )
    await at.open()
    assert seqs(await drain(at, 10)) == later
    await at.close()
    trim = JetStreamSource(options(stream.uri, starting_position="TRIM_HORIZON"))
    await trim.open()
    assert seqs(await drain(trim, 10)) == [1, 2, 3, *later]
    await trim.close()


async def test_backlog_counts_pending_and_unacked(stream: Stream) -> None:
    await stream.publish(30)
    source = JetStreamSource(options(stream.uri, starting_position="TRIM_HORIZON"))
    await source.open()
    assert await source.backlog() == 30
    held = await source.receive(10, 2.0)
    assert len(held) == 10
    assert await source.backlog() == 30
    await source.ack(held)
    assert await source.backlog() == 20
    await source.close()


async def test_missing_stream() -> None:
    source = JetStreamSource(
        options("nats://127.0.0.1:4222/NO_SUCH_STREAM", starting_position="LATEST")
    )
    with pytest.raises(SourceUnavailable, match="no stream 'NO_SUCH_STREAM'"):
        await source.open()


async def test_unreachable_server() -> None:
    source = JetStreamSource(options("nats://127.0.0.1:1/S", starting_position="LATEST"))
    with pytest.raises(SourceUnavailable, match="unreachable"):
        await source.open()


async def test_without_starting_position_it_starts_at_the_beginning(stream: Stream) -> None:
    sent = await stream.publish(3)
    source = JetStreamSource(options(stream.uri))
    await source.open()
    assert seqs(await drain(source, 10)) == sent
    await source.close()


async def test_a_bad_starting_position(stream: Stream) -> None:
    source = JetStreamSource(options(stream.uri, starting_position="EARLIEST"))
    with pytest.raises(InvalidParameterValue, match="StartingPosition"):
        await source.open()
