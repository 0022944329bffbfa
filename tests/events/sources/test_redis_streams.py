"""RedisStreamSource against the real Redis on 127.0.0.1:6379."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from nimbus.errors import InvalidParameterValue, SourceUnavailable
from nimbus.events.sources.redis_streams import RedisStreamSource
from tests.events.sources.conftest import killed_owner, options

pytestmark = pytest.mark.broker("redis")


@pytest.fixture
async def stream() -> AsyncIterator[tuple[aioredis.Redis, str]]:
    """A fresh stream name in db 0 (deleted afterwards) and a client to write it."""
    r = aioredis.Redis()
    name = f"nimbus-test-{uuid.uuid4().hex[:10]}"
    yield r, name
    await r.delete(name)
    await r.aclose()


def uri(name: str) -> str:
    return f"redis://127.0.0.1:6379/0/{name}"


async def drain(source: RedisStreamSource, batch: int, wait: float = 0.2) -> list[list[str]]:
    """Every batch received until one comes back empty, acked as they come."""
    batches = []
    while records := await source.receive(batch, wait):
        batches.append([r.item_id for r in records])
        await source.ack(records)
    return batches


@pytest.mark.parametrize(
    ("given", "db", "name"),
    [
        ("redis://127.0.0.1:6379/orders", 0, "orders"),
        ("redis://:pw@127.0.0.1/3/orders", 3, "orders"),
        ("rediss://u:pw@example.com:6380/0/a/b", 0, "a/b"),
        ("redis://h/12", 0, "12"),
        ("redis://h/a%2Fb", 0, "a/b"),
    ],
)
def test_uri_forms(given: str, db: int, name: str) -> None:
    RedisStreamSource.validate(given)
    source = RedisStreamSource(options(given, starting_position="LATEST"))
    assert (source.db, source.stream) == (db, name)
    assert "pw" not in source.arn


@pytest.mark.parametrize(
    "given",
    [
        "redis://127.0.0.1:6379",
        "redis://127.0.0.1:6379/",
        "http://h/s",
        "redis:///s",
        "redis://h:notaport/s",
        "redis://h/s?x=1",
    ],
)
def test_bad_uris_say_the_form(given: str) -> None:
    with pytest.raises(InvalidParameterValue, match="expected redis://"):
        RedisStreamSource.validate(given)


async def test_thousand_entries_once_in_order_in_batches(stream: tuple) -> None:
    r, name = stream
    sent = [await r.xadd(name, {"data": f"m{i}"}) for i in range(1000)]
    source = RedisStreamSource(options(uri(name), starting_position="TRIM_HORIZON"))
    await source.open()
    assert await source.backlog() == 1000
    batches = await drain(source, 10)
    assert all(len(b) == 10 for b in batches)
    assert [i for b in batches for i in b] == [s.decode() for s in sent]
    assert await source.backlog() == 0
    assert await source.receive(10, 0.1) == []
    await source.close()
    # A later poller of the same mapping resumes after the acked entries: nothing again.
    again = RedisStreamSource(source.options)
    await again.open()
    assert await again.receive(10, 0.1) == []
    await again.close()


async def test_record_shape(stream: tuple) -> None:
    r, name = stream
    with_data = (await r.xadd(name, {"data": b"\x00\xffraw", "k": "v"})).decode()
    without = (await r.xadd(name, {"a": "1", "b": "x"})).decode()
    source = RedisStreamSource(
        options(f"redis://:secret@127.0.0.1:6379/0/{name}", starting_position="TRIM_HORIZON")
    )
    await source.open()
    first, second = await source.receive(10, 1.0)
    await source.close()
    assert first.item_id == with_data
    assert first.timestamp_ms == int(with_data.split("-")[0])
    assert first.record == {
        "eventSource": "nimbus:redis",
        "eventVersion": "1.0",
        "eventName": "nimbus:redis:record",
        "eventID": f"{name}:{with_data}",
        "eventSourceARN": f"redis://127.0.0.1:6379/0/{name}",
        "awsRegion": "us-east-1",
        "redis": {
            "stream": name,
            "id": with_data,
            "approximateArrivalTimestamp": first.timestamp_ms / 1000,
            "fields": {"data": "\x00\ufffdraw", "k": "v"},
            "data": base64.b64encode(b"\x00\xffraw").decode(),
        },
    }
    assert json.loads(base64.b64decode(second.record["redis"]["data"])) == {"a": "1", "b": "x"}
    assert second.item_id == without
    assert source.build_event([first, second]) == {"Records": [first.record, second.record]}


async def test_killed_owner_records_come_back(stream: tuple) -> None:
    r, name = stream
    sent = [(await r.xadd(name, {"data": str(i)})).decode() for i in range(20)]
    opts = options(uri(name), starting_position="TRIM_HORIZON")
    held = killed_owner(RedisStreamSource, opts, 10)
    assert held == sent[:10]
    successor = RedisStreamSource(opts)
    await successor.open()
    got = [i for b in await drain(successor, 10) for i in b]
    await successor.close()
    assert got == sent  # the dead owner's 10 first, then the rest, each once


async def test_released_records_come_first_again(stream: tuple) -> None:
    r, name = stream
    for i in range(5):
        await r.xadd(name, {"data": str(i)})
    source = RedisStreamSource(options(uri(name), starting_position="TRIM_HORIZON"))
    await source.open()
    first = await source.receive(3, 1.0)
    await source.release(first[1:])
    again = await source.receive(10, 1.0)
    assert [x.item_id for x in again] == [x.item_id for x in first[1:]]
    rest = await source.receive(10, 1.0)
    assert len(rest) == 2
    await source.ack(first[:1] + again + rest)
    assert await source.backlog() == 0
    await source.close()


async def test_latest_skips_what_is_there(stream: tuple) -> None:
    r, name = stream
    await r.xadd(name, {"data": "old"})
    source = RedisStreamSource(options(uri(name), starting_position="LATEST"))
    await source.open()
    assert await source.receive(10, 0.1) == []
    new = (await r.xadd(name, {"data": "new"})).decode()
    assert [x.item_id for x in await source.receive(10, 1.0)] == [new]
    await source.close()


async def test_latest_on_a_missing_stream_creates_it(stream: tuple) -> None:
    r, name = stream
    source = RedisStreamSource(options(uri(name), starting_position="LATEST"))
    await source.open()
    assert await r.exists(name) == 1
    assert await source.backlog() == 0
    await source.close()


async def test_at_timestamp(stream: tuple) -> None:
    r, name = stream
    for eid in ("1000-0", "1999-5", "2000-0", "2000-1", "3000-0"):
        await r.xadd(name, {"data": eid}, id=eid)
    source = RedisStreamSource(
        options(uri(name), starting_position="AT_TIMESTAMP", starting_position_timestamp_ms=2000)
    )
    await source.open()
    assert [i for b in await drain(source, 10) for i in b] == ["2000-0", "2000-1", "3000-0"]
    await source.close()


async def test_an_existing_group_keeps_its_position(stream: tuple) -> None:
    r, name = stream
    for i in range(4):
        await r.xadd(name, {"data": str(i)})
    opts = options(uri(name), starting_position="TRIM_HORIZON")
    source = RedisStreamSource(opts)
    await source.open()
    await source.ack(await source.receive(2, 1.0))
    await source.close()
    # Same mapping, even asking TRIM_HORIZON again: resumes after the acked two.
    resumed = RedisStreamSource(opts)
    await resumed.open()
    assert len([i for b in await drain(resumed, 10) for i in b]) == 2
    await resumed.close()


async def test_backlog_counts_unread_and_unacked(stream: tuple) -> None:
    r, name = stream
    for i in range(30):
        await r.xadd(name, {"data": str(i)})
    source = RedisStreamSource(options(uri(name), starting_position="TRIM_HORIZON"))
    await source.open()
    assert await source.backlog() == 30
    held = await source.receive(10, 1.0)
    assert await source.backlog() == 30  # 20 unread + 10 unacked
    await source.ack(held)
    assert await source.backlog() == 20
    await source.close()


@pytest.mark.parametrize("position", [None, "AT_TIMESTAMP"])
async def test_starting_position_is_required(position: str | None) -> None:
    source = RedisStreamSource(options(uri("x"), starting_position=position))
    with pytest.raises(InvalidParameterValue, match="StartingPosition"):
        await source.open()


async def test_unreachable_redis() -> None:
    source = RedisStreamSource(options("redis://127.0.0.1:1/0/orders", starting_position="LATEST"))
    with pytest.raises(SourceUnavailable, match=r"redis://127\.0\.0\.1:1/0/orders"):
        await source.open()


async def test_a_key_that_is_not_a_stream(stream: tuple) -> None:
    r, name = stream
    await r.set(name, "plain")
    source = RedisStreamSource(options(uri(name), starting_position="LATEST"))
    with pytest.raises(SourceUnavailable, match="WRONGTYPE"):
        await source.open()
