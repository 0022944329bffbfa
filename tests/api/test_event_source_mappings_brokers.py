"""Event source mappings on the self-hosted brokers, end to end as a user drives them: a
mapping created with boto3's ``create_event_source_mapping(EventSourceArn="redis://...")``
delivers 1,000 messages published to the real broker to a real function, each once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import aio_pika
import aiomqtt
import nats
import pytest
import redis

from nimbus.events.sources.kinds import shown
from tests.api.test_event_source_mappings import function, wait_state
from tests.conftest import make_zip
from tests.nimbus_process import NimbusProcess
from tests.sink import Sink

# Each batch the function gets is posted to the sink: the event's source and bodies.
REPORTER = """
import base64, json, os, urllib.request

def handler(event, context):
    if "rmqMessagesByQueue" in event:
        messages = [m for ms in event["rmqMessagesByQueue"].values() for m in ms]
        source = event["eventSource"]
    else:
        messages = event["Records"]
        source = messages[0].get("eventSource", "no eventSource")
    key = source.split(":")[-1] if source.startswith("nimbus:") else None
    bodies = [base64.b64decode((m[key] if key else m)["data"]).decode() for m in messages]
    req = urllib.request.Request(os.environ["SINK"], data=json.dumps(
        {"source": source, "bodies": bodies}).encode(),
        headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=30).read()
"""

N = 1000
SENT = [str(i) for i in range(N)]
pytestmark = pytest.mark.sandbox


def deliver(
    lam: Any, sink: Sink, uri: str, batch: int, publish: Any = None, **mapping: Any
) -> tuple[list[dict], str]:
    """A REPORTER function and a mapping from ``uri`` to it; ``publish`` (if given) runs
    once the mapping is Enabled; returns the batches the function saw once it saw N."""
    fn = function(lam, make_zip({"app.py": REPORTER}), SINK=sink.url)
    created = lam.create_event_source_mapping(
        FunctionName=fn,
        EventSourceArn=uri,
        BatchSize=batch,
        MaximumBatchingWindowInSeconds=1,
        **mapping,
    )
    assert created["EventSourceArn"] == shown(uri)  # a password is never shown
    assert ":guest@" not in created["EventSourceArn"]
    wait_state(lam, created["UUID"], "Enabled")
    if publish is not None:
        publish()
    sink.wait_until(lambda r: sum(len(b["bodies"]) for b in r) >= N, timeout=120)
    lam.delete_event_source_mapping(UUID=created["UUID"])
    return list(sink.received), created["UUID"]


def check(batches: list[dict], source: str, batch: int) -> None:
    assert {b["source"] for b in batches} == {source}
    bodies = [x for b in batches for x in b["bodies"]]
    assert sorted(bodies, key=int) == SENT  # each exactly once
    assert all(len(b["bodies"]) <= batch for b in batches)


@pytest.mark.broker("redis")
def test_redis_stream(server: NimbusProcess, lam: Any, sink: Sink) -> None:
    r = redis.Redis()
    name = f"nimbus-e2e-{uuid.uuid4().hex[:10]}"
    try:
        for i in SENT:
            r.xadd(name, {"data": i})
        uri = f"redis://127.0.0.1:6379/0/{name}"
        batches, _ = deliver(lam, sink, uri, 100, StartingPosition="TRIM_HORIZON")
        check(batches, "nimbus:redis", 100)
        bodies = [x for b in batches for x in b["bodies"]]
        assert bodies == SENT  # a stream is delivered in order
    finally:
        r.delete(name)
        r.close()


@pytest.mark.broker("nats")
def test_nats_jetstream(server: NimbusProcess, lam: Any, sink: Sink) -> None:
    name = f"E2E_{uuid.uuid4().hex[:10]}"

    async def setup() -> None:
        nc = await nats.connect("nats://127.0.0.1:4222")
        js = nc.jetstream()
        await js.add_stream(name=name, subjects=[f"{name}.>"])
        for i in SENT:
            await js.publish(f"{name}.orders", i.encode())
        await nc.close()

    async def teardown() -> None:
        nc = await nats.connect("nats://127.0.0.1:4222")
        await nc.jetstream().delete_stream(name)
        await nc.close()

    asyncio.run(setup())
    try:
        uri = f"nats://127.0.0.1:4222/{name}?subject={name}.orders"
        batches, _ = deliver(lam, sink, uri, 50)
        check(batches, "nimbus:nats", 50)
    finally:
        asyncio.run(teardown())


@pytest.mark.broker("mqtt")
def test_mqtt(server: NimbusProcess, lam: Any, sink: Sink) -> None:
    topic = f"nimbus-e2e/{uuid.uuid4().hex[:10]}"

    async def publish() -> None:
        async with aiomqtt.Client("127.0.0.1", 1883) as client:
            for i in SENT:
                await client.publish(f"{topic}/s1/temp", i.encode(), qos=1)

    uri = f"mqtt://127.0.0.1:1883/{topic}/+/temp"
    batches, mapping_uuid = deliver(
        lam, sink, uri, 10, lambda: asyncio.run(publish()), StartingPosition="LATEST"
    )
    check(batches, "nimbus:mqtt", 10)

    async def forget() -> None:  # end the mapping's persistent session on the broker
        async with aiomqtt.Client(
            "127.0.0.1", 1883, identifier=f"nimbus-{mapping_uuid}", clean_session=True
        ):
            pass

    asyncio.run(forget())


@pytest.fixture
def rabbit_queue() -> Iterator[str]:
    name = f"nimbus-e2e-{uuid.uuid4().hex[:10]}"

    async def setup() -> None:
        connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672")
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(name)
        for i in SENT:
            await channel.default_exchange.publish(aio_pika.Message(i.encode()), routing_key=name)
        await connection.close()

    async def teardown() -> None:
        connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672")
        channel = await connection.channel()
        await channel.queue_delete(name)
        await connection.close()

    asyncio.run(setup())
    yield name
    asyncio.run(teardown())


@pytest.mark.broker("rabbitmq")
def test_rabbitmq(server: NimbusProcess, lam: Any, sink: Sink, rabbit_queue: str) -> None:
    uri = f"amqp://guest:guest@127.0.0.1:5672/%2F?queue={rabbit_queue}"
    batches, _ = deliver(lam, sink, uri, 50)
    check(batches, "aws:rmq", 50)
