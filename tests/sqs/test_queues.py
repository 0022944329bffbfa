"""The SQS domain over a real database with a moved clock: visibility, delays,
retention, redrive, FIFO ordering and deduplication, receipts, long polling."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from nimbus.errors import (
    InvalidAttributeName,
    InvalidAttributeValue,
    PurgeQueueInProgress,
    QueueDoesNotExist,
    QueueNameExists,
    ReceiptHandleIsInvalid,
    SqsInvalidParameterValue,
    SqsMissingParameter,
)
from nimbus.sqs.messages import Outgoing, SendResult
from nimbus.sqs.queues import Queues
from tests.sqs.conftest import FakeClock

ARN = "arn:aws:sqs:us-east-1:000000000000:"


async def test_create_is_idempotent_and_refuses_other_attributes(queues: Queues) -> None:
    await queues.create("q", {"DelaySeconds": "0"})
    await queues.create("q", {"DelaySeconds": "0"})  # same: fine
    await queues.create("q")  # nothing asked: fine
    with pytest.raises(QueueNameExists) as info:
        await queues.create("q", {"DelaySeconds": "1"})
    assert info.value.message == (
        "A queue already exists with the same name and a different value for attribute DelaySeconds"
    )
    assert await queues.names() == ["q"]


@pytest.mark.parametrize("name", ["", "a" * 81, "has space", "dot.name", "x.fifo"])
async def test_bad_names_are_refused(queues: Queues, name: str) -> None:
    with pytest.raises(SqsInvalidParameterValue, match="1 to 80 in length"):
        await queues.create(name)
    assert await queues.names() == []


async def test_fifo_names_and_attributes(queues: Queues) -> None:
    with pytest.raises(SqsInvalidParameterValue, match=r"must end with \.fifo"):
        await queues.create("nofifo", {"FifoQueue": "true"})
    with pytest.raises(InvalidAttributeName, match=r"Unknown Attribute FifoQueue\."):
        await queues.create("std", {"FifoQueue": "false"})
    with pytest.raises(InvalidAttributeName, match="Unknown Attribute ContentBasedDeduplication"):
        await queues.create("std", {"ContentBasedDeduplication": "true"})
    with pytest.raises(InvalidAttributeName, match="DeduplicationScope only when FifoQueue"):
        await queues.create("std", {"DeduplicationScope": "queue"})
    row = await queues.create("f.fifo", {"FifoQueue": "true", "ContentBasedDeduplication": "TRUE"})
    assert row.fifo and row.settings["ContentBasedDeduplication"] == "true"
    with pytest.raises(InvalidAttributeValue, match="Modifying queue type is not supported"):
        await queues.set_attributes("f.fifo", {"FifoQueue": "false"})


@pytest.mark.parametrize(
    "name, value",
    [
        ("VisibilityTimeout", "43201"),
        ("DelaySeconds", "-1"),
        ("MessageRetentionPeriod", "59"),
        ("MaximumMessageSize", "1023"),
        ("ReceiveMessageWaitTimeSeconds", "21"),
        ("VisibilityTimeout", "soon"),
    ],
)
async def test_attribute_ranges(queues: Queues, name: str, value: str) -> None:
    await queues.create("q")
    with pytest.raises(InvalidAttributeValue) as info:
        await queues.set_attributes("q", {name: value})
    assert info.value.message == f"Invalid value for the parameter {name}."


async def test_unknown_and_read_only_attributes(queues: Queues) -> None:
    await queues.create("q")
    for name in ("Colour", "QueueArn", "ApproximateNumberOfMessages"):
        with pytest.raises(InvalidAttributeName, match=f"Unknown Attribute {name}."):
            await queues.set_attributes("q", {name: "1"})
    with pytest.raises(InvalidAttributeValue, match="KMS"):
        await queues.set_attributes("q", {"KmsMasterKeyId": "alias/aws/sqs"})


async def test_send_receive_delete(queues: Queues, clock: FakeClock) -> None:
    await queues.create("q")
    attrs = {"MyAttribute": {"DataType": "String", "StringValue": "foobar"}}
    result = await queues.send_one("q", Outgoing("foobar", attrs))
    assert result.md5_of_body == "3858f62230ac3c915f300c664312c63f"  # as SQS recorded
    assert result.md5_of_message_attributes == "adb59cd4678ea5a855436b949cd07ab6"
    (msg,) = await queues.receive("q", max_messages=10)
    assert (msg.message_id, msg.body) == (result.message_id, "foobar")
    assert msg.message_attributes == attrs
    assert msg.attributes["ApproximateReceiveCount"] == "1"
    assert msg.attributes["SentTimestamp"] == str(clock.now)
    assert (await queues.counts("q")).in_flight == 1
    assert await queues.receive("q", max_messages=1) == []  # invisible for 30 s
    await queues.delete("q", [msg.receipt_handle])
    assert await queues.counts("q") == (await queues.counts("q")).__class__(0, 0, 0, None)


async def test_visibility_timeout_expires_and_stale_handles(
    queues: Queues, clock: FakeClock
) -> None:
    await queues.create("q", {"VisibilityTimeout": "10"})
    await queues.send("q", "x")
    (first,) = await queues.receive("q", max_messages=1)
    clock.advance(9.9)
    assert await queues.receive("q", max_messages=1) == []
    clock.advance(0.1)
    (second,) = await queues.receive("q", max_messages=1, visibility_timeout=100)
    assert second.attributes["ApproximateReceiveCount"] == "2"
    assert (
        second.attributes["ApproximateFirstReceiveTimestamp"]
        == first.attributes["ApproximateFirstReceiveTimestamp"]
    )
    # The first receive's handle is stale: accepted, but the message stays (as on SQS).
    await queues.delete("q", [first.receipt_handle])
    assert (await queues.counts("q")).in_flight == 1
    with pytest.raises(SqsInvalidParameterValue, match="not available for visibility"):
        await queues.change_visibility("q", first.receipt_handle, 0)
    await queues.change_visibility("q", second.receipt_handle, 0)
    (third,) = await queues.receive("q", max_messages=1)
    await queues.delete("q", [third.receipt_handle])
    await queues.delete("q", [third.receipt_handle])  # already gone: fine
    assert (await queues.counts("q")).visible == 0


async def test_standard_delete_after_visibility_expired_deletes(
    queues: Queues, clock: FakeClock
) -> None:
    await queues.create("q", {"VisibilityTimeout": "1"})
    await queues.send("q", "x")
    (msg,) = await queues.receive("q", max_messages=1)
    clock.advance(5)
    await queues.delete("q", [msg.receipt_handle])
    assert await queues.receive("q", max_messages=1) == []


async def test_bad_receipt_handles(queues: Queues) -> None:
    await queues.create("q")
    await queues.create("other")
    await queues.send("other", "x")
    (msg,) = await queues.receive("other", max_messages=1)
    for handle in ("garbage", msg.receipt_handle):  # another queue's handle is invalid too
        with pytest.raises(ReceiptHandleIsInvalid) as info:
            await queues.delete("q", [handle])
        assert (
            info.value.message
            == f'The input receipt handle "{handle}" is not a valid receipt handle.'
        )


async def test_delays(queues: Queues, clock: FakeClock) -> None:
    await queues.create("q", {"DelaySeconds": "5"})
    await queues.send("q", "queue delay")
    await queues.send("q", "own delay", delay_seconds=1)
    await queues.send("q", "no delay", delay_seconds=0)
    counts = await queues.counts("q")
    assert (counts.visible, counts.delayed) == (1, 2)
    assert [m.body for m in await queues.receive("q", max_messages=10)] == ["no delay"]
    clock.advance(1)
    assert [m.body for m in await queues.receive("q", max_messages=10)] == ["own delay"]
    clock.advance(4)
    assert [m.body for m in await queues.receive("q", max_messages=10)] == ["queue delay"]
    with pytest.raises(SqsInvalidParameterValue, match="DelaySeconds"):
        await queues.send("q", "x", delay_seconds=901)


async def test_retention_drops_expired_messages(queues: Queues, clock: FakeClock) -> None:
    await queues.create("q", {"MessageRetentionPeriod": "60"})
    await queues.send("q", "old")
    clock.advance(30)
    await queues.send("q", "young")
    clock.advance(30)
    assert (await queues.counts("q")).visible == 1  # "old" is gone
    assert [m.body for m in await queues.receive("q", max_messages=10)] == ["young"]


async def test_redrive_after_max_receive_count(queues: Queues, clock: FakeClock) -> None:
    await queues.create("dlq")
    policy = json.dumps({"deadLetterTargetArn": ARN + "dlq", "maxReceiveCount": "2"})
    await queues.create("src", {"RedrivePolicy": policy, "VisibilityTimeout": "1"})
    row = await queues.get("src")
    assert json.loads(row.settings["RedrivePolicy"]) == {
        "deadLetterTargetArn": ARN + "dlq",
        "maxReceiveCount": 2,
    }
    attrs = {"a": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}}
    sent = await queues.send_one("src", Outgoing("poison", attrs))
    for count in (1, 2):
        (msg,) = await queues.receive("src", max_messages=1)
        assert msg.attributes["ApproximateReceiveCount"] == str(count)
        clock.advance(1)
    assert await queues.receive("src", max_messages=1) == []  # the third receive: moved
    (dead,) = await queues.receive("dlq", max_messages=1)
    assert (dead.message_id, dead.body) == (sent.message_id, "poison")
    assert dead.attributes["DeadLetterQueueSourceArn"] == ARN + "src"
    assert dead.attributes["ApproximateReceiveCount"] == "3"
    assert dead.message_attributes == attrs
    assert dead.md5_of_message_attributes == sent.md5_of_message_attributes


async def test_redrive_policy_checks(queues: Queues) -> None:
    await queues.create("q")
    await queues.create("f.fifo", {"FifoQueue": "true"})
    missing = json.dumps({"deadLetterTargetArn": ARN + "nope", "maxReceiveCount": 1})
    with pytest.raises(SqsInvalidParameterValue, match="Dead letter target does not exist"):
        await queues.set_attributes("q", {"RedrivePolicy": missing})
    other = json.dumps({"deadLetterTargetArn": ARN + "f.fifo", "maxReceiveCount": 1})
    with pytest.raises(SqsInvalidParameterValue, match="same type of queue"):
        await queues.set_attributes("q", {"RedrivePolicy": other})
    too_many = json.dumps({"deadLetterTargetArn": ARN + "q", "maxReceiveCount": 1001})
    with pytest.raises(InvalidAttributeValue, match="valid values are from 1 to 1000"):
        await queues.set_attributes("q", {"RedrivePolicy": too_many})
    await queues.set_attributes("q", {"RedrivePolicy": ""})  # removing none: fine
    assert "RedrivePolicy" not in (await queues.get("q")).settings


async def test_fifo_group_ordering_and_in_flight_blocking(queues: Queues, clock: FakeClock) -> None:
    await queues.create("f.fifo", {"FifoQueue": "true", "VisibilityTimeout": "10"})
    for i in range(3):
        await queues.send("f.fifo", f"a{i}", group_id="a", dedup_id=f"a{i}")
        await queues.send("f.fifo", f"b{i}", group_id="b", dedup_id=f"b{i}")
    (a0,) = await queues.receive("f.fifo", max_messages=1)
    assert a0.body == "a0" and a0.attributes["MessageGroupId"] == "a"
    # Group a has a message in flight: only b's messages come, in order.
    got = await queues.receive("f.fifo", max_messages=10)
    assert [m.body for m in got] == ["b0", "b1", "b2"]
    assert [m.attributes["SequenceNumber"] for m in got] == sorted(
        m.attributes["SequenceNumber"] for m in got
    )
    assert await queues.receive("f.fifo", max_messages=10) == []
    await queues.delete("f.fifo", [a0.receipt_handle])
    assert [m.body for m in await queues.receive("f.fifo", max_messages=10)] == ["a1", "a2"]


async def test_fifo_visibility_expiry_redelivers_in_order(queues: Queues, clock: FakeClock) -> None:
    await queues.create("f.fifo", {"FifoQueue": "true", "VisibilityTimeout": "5"})
    await queues.send("f.fifo", "1", group_id="g", dedup_id="1")
    await queues.send("f.fifo", "2", group_id="g", dedup_id="2")
    (one,) = await queues.receive("f.fifo", max_messages=1)
    clock.advance(5)
    # Expired: the handle is refused on a FIFO queue, and "1" comes again before "2".
    with pytest.raises(SqsInvalidParameterValue, match="The receipt handle has expired"):
        await queues.delete("f.fifo", [one.receipt_handle])
    again = await queues.receive("f.fifo", max_messages=10)
    assert [m.body for m in again] == ["1", "2"]


async def test_fifo_deduplication_window(queues: Queues, clock: FakeClock) -> None:
    await queues.create("f.fifo", {"FifoQueue": "true"})
    first = await queues.send_one("f.fifo", Outgoing("x", group_id="g", dedup_id="d"))
    clock.advance(299)
    again = await queues.send_one("f.fifo", Outgoing("y", group_id="g", dedup_id="d"))
    assert again.message_id == first.message_id
    assert again.sequence_number == first.sequence_number
    assert (await queues.counts("f.fifo")).visible == 1
    clock.advance(1)  # 5 minutes on: the id may be used again
    later = await queues.send_one("f.fifo", Outgoing("z", group_id="g", dedup_id="d"))
    assert later.message_id != first.message_id
    assert (await queues.counts("f.fifo")).visible == 2


async def test_fifo_content_based_and_group_scoped_deduplication(queues: Queues) -> None:
    await queues.create("c.fifo", {"FifoQueue": "true", "ContentBasedDeduplication": "true"})
    a = await queues.send_one("c.fifo", Outgoing("same", group_id="g1"))
    b = await queues.send_one("c.fifo", Outgoing("same", group_id="g2"))
    assert a.message_id == b.message_id  # queue scope: the body decides
    await queues.create(
        "s.fifo",
        {
            "FifoQueue": "true",
            "ContentBasedDeduplication": "true",
            "DeduplicationScope": "messageGroup",
        },
    )
    c = await queues.send_one("s.fifo", Outgoing("same", group_id="g1"))
    d = await queues.send_one("s.fifo", Outgoing("same", group_id="g2"))
    assert c.message_id != d.message_id
    (msg,) = await queues.receive("c.fifo", max_messages=10)
    assert len(msg.attributes["MessageDeduplicationId"]) == 64  # the body's SHA-256


async def test_fifo_send_rules(queues: Queues) -> None:
    await queues.create("f.fifo", {"FifoQueue": "true"})
    with pytest.raises(SqsMissingParameter, match="parameter MessageGroupId"):
        await queues.send("f.fifo", "x")
    with pytest.raises(SqsInvalidParameterValue, match="ContentBasedDeduplication enabled"):
        await queues.send("f.fifo", "x", group_id="g")
    with pytest.raises(SqsInvalidParameterValue, match="not valid for this queue type"):
        await queues.send("f.fifo", "x", group_id="g", dedup_id="d", delay_seconds=2)
    with pytest.raises(SqsInvalidParameterValue, match="MessageGroupId can only include"):
        await queues.send("f.fifo", "x", group_id="g 1", dedup_id="d")


async def test_message_checks(queues: Queues) -> None:
    await queues.create("q", {"MaximumMessageSize": "1024"})
    with pytest.raises(SqsMissingParameter, match="parameter MessageBody"):
        await queues.send("q", "")
    with pytest.raises(SqsInvalidParameterValue, match="shorter than 1024 bytes"):
        await queues.send("q", "x" * 1025)
    await queues.send("q", "x" * 1024)
    results = await queues.send_batch("q", [Outgoing("ok"), Outgoing("\x00bad"), Outgoing("ok2")])
    assert isinstance(results[0], SendResult) and isinstance(results[2], SendResult)
    assert results[1].type_name == "InvalidMessageContents"  # type: ignore[union-attr]
    assert (await queues.counts("q")).visible == 3


async def test_unknown_queue_and_purge(queues: Queues, clock: FakeClock) -> None:
    with pytest.raises(QueueDoesNotExist, match=r"The specified queue does not exist\."):
        await queues.send("nope", "x")
    with pytest.raises(QueueDoesNotExist):
        await queues.get_by_arn(ARN + "nope")
    await queues.create("q")
    info = await queues.get_by_arn(ARN + "q")
    assert info.url == "http://127.0.0.1:9000/000000000000/q" and info.visibility_timeout == 30
    await queues.send("q", "x")
    await queues.purge("q")
    assert (await queues.counts("q")).visible == 0
    with pytest.raises(PurgeQueueInProgress, match="Only one PurgeQueue operation on q"):
        await queues.purge("q")
    clock.advance(60)
    await queues.purge("q")
    await queues.delete_queue("q")
    with pytest.raises(QueueDoesNotExist):
        await queues.counts("q")


async def test_long_poll_wakes_on_send(queues: Queues) -> None:
    await queues.create("q")
    start = time.monotonic()
    waiting = asyncio.create_task(queues.receive("q", max_messages=1, wait_seconds=10))
    await asyncio.sleep(0.3)  # the receiver is waiting now (nothing to await on)
    assert not waiting.done()
    await queues.send("q", "wake")
    (msg,) = await asyncio.wait_for(waiting, 5)
    assert msg.body == "wake" and time.monotonic() - start < 5


async def test_long_poll_times_out_empty(queues: Queues) -> None:
    await queues.create("q")
    start = time.monotonic()
    assert await queues.receive("q", max_messages=1, wait_seconds=0.5) == []
    assert time.monotonic() - start >= 0.5


async def test_receive_argument_ranges(queues: Queues) -> None:
    await queues.create("q")
    with pytest.raises(SqsInvalidParameterValue) as info:
        await queues.receive("q", max_messages=11)
    assert info.value.message == (
        "Value 11 for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and "
        "10, if provided."
    )
    with pytest.raises(SqsInvalidParameterValue, match="WaitTimeSeconds is invalid"):
        await queues.receive("q", max_messages=1, wait_seconds=21)


async def test_concurrent_sends_are_grouped_and_fail_alone(queues: Queues) -> None:
    """Sends arriving together are committed together (SQLite); each gets its own
    results, and a send to a queue that does not exist fails without failing the others."""
    await queues.create("a")
    await queues.create("b")
    sends = [
        queues.send_batch(name, [Outgoing(f"{name}-{i}-{j}") for j in range(3)])
        for i in range(5)
        for name in ("a", "missing", "b")
    ]
    outcomes = await asyncio.gather(*sends, return_exceptions=True)
    for i, outcome in enumerate(outcomes):
        if i % 3 == 1:
            assert isinstance(outcome, QueueDoesNotExist)
        else:
            assert isinstance(outcome, list) and len(outcome) == 3
            assert all(isinstance(r, SendResult) for r in outcome)
    for name in ("a", "b"):
        got = await queues.receive_many(name, max_messages=100)
        assert sorted(m.body for m in got) == sorted(
            f"{name}-{i}-{j}" for i in range(5) for j in range(3)
        )


async def test_receive_many_takes_a_whole_batch(queues: Queues, clock: FakeClock) -> None:
    """The event source mappings' receive: beyond SQS's 10 in one call, each message
    once, the rest left for the next."""
    await queues.create("q")
    for start in range(0, 250, 10):
        await queues.send_batch("q", [Outgoing(str(start + i)) for i in range(10)])
    first = await queues.receive_many("q", max_messages=200)
    second = await queues.receive_many("q", max_messages=200)
    assert len(first) == 200 and len(second) == 50
    bodies = [m.body for m in first + second]
    assert sorted(bodies, key=int) == [str(i) for i in range(250)]
    await queues.delete_batch("q", [m.receipt_handle for m in first + second])
    assert (await queues.counts("q")).in_flight == 0
    clock.advance(31)
    assert await queues.receive_many("q", max_messages=200) == []


async def test_concurrent_fifo_receives_never_share_a_group(queues: Queues) -> None:
    """Receivers racing on one FIFO queue (an event source mapping's batch loops): a group
    with messages in flight gives nothing to the others, so no message goes out twice
    and a group is never split between receivers."""
    await queues.create("race.fifo", {"FifoQueue": "true", "VisibilityTimeout": "30"})
    for i in range(20):
        await queues.send("race.fifo", f"m{i}", group_id="g", dedup_id=f"d{i}")
    results = await asyncio.gather(
        *(queues.receive("race.fifo", max_messages=10) for _ in range(6))
    )
    got = [[m.body for m in r] for r in results if r]
    assert len(got) == 1, got  # one receiver got the group, the others nothing
    assert got[0] == [f"m{i}" for i in range(10)]
