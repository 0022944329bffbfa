"""SQS's domain edges through boto3 on a live server, as SQS answers them: characters a
body may not hold, message attribute names and numbers, receipt handles that are garbage
or another queue's, visibility limits, batch sizes and ids, queue attributes of the
wrong type or range, FIFO sends without a group or with a delay. Each refusal is checked
by code and message and leaves nothing behind (the queue stays empty)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import live_server
from tests.nimbus_process import NimbusProcess

FEW = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
BAD_CHARS = (
    "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF "
    "| #xE000 to #xFFFD | #x10000 to #x10FFFF"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NimbusProcess]:
    with live_server(tmp_path_factory.mktemp("sqs-edges") / "data") as proc:
        yield proc


@pytest.fixture(scope="module")
def sqs(server: NimbusProcess) -> Any:
    return server.client("sqs", validate=False)


def new_queue(sqs: Any, fifo: bool = False) -> str:
    name = f"e-{uuid.uuid4().hex[:8]}" + (".fifo" if fifo else "")
    attributes = {"FifoQueue": "true"} if fifo else {}
    url: str = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return url


@pytest.fixture(scope="module")
def queue(sqs: Any) -> str:
    return new_queue(sqs)


def refused(call: Any, **params: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as info:
        call(**params)
    response = info.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400, response
    return response["Error"]["Code"], response["Error"]["Message"]


def count(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def allowed(c: str) -> bool:
    n = ord(c)
    return n in (0x9, 0xA, 0xD) or 0x20 <= n <= 0xD7FF or 0xE000 <= n <= 0xFFFD or n >= 0x10000


# -- bodies -----------------------------------------------------------------------------------


@FEW
@given(body=st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=20))
@example(body="a\x00b")
@example(body="\x08")
@example(body="\x0b\x0c")
@example(body="\ufffe")
@example(body="\uffff")
@example(body="\t\n\r \ud7ff\ue000\ufffd\U00010000\U0010ffff")
def test_a_body_is_taken_iff_every_character_is_allowed(sqs: Any, queue: str, body: str) -> None:
    before = count(sqs, queue)
    if all(allowed(c) for c in body):
        sqs.send_message(QueueUrl=queue, MessageBody=body)
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1)["Messages"][0]
        assert got["Body"] == body
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=got["ReceiptHandle"])
        return
    assert refused(sqs.send_message, QueueUrl=queue, MessageBody=body) == (
        "InvalidMessageContents",
        BAD_CHARS,
    )
    assert count(sqs, queue) == before


def test_a_bad_character_in_a_batch_fails_only_its_entry(sqs: Any) -> None:
    url = new_queue(sqs)
    answer = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[{"Id": "ok", "MessageBody": "fine"}, {"Id": "bad", "MessageBody": "x\x01"}],
    )
    assert [e["Id"] for e in answer["Successful"]] == ["ok"]
    assert answer["Failed"] == [
        {"Id": "bad", "SenderFault": True, "Code": "InvalidMessageContents", "Message": BAD_CHARS}
    ]
    assert count(sqs, url) == 1


# -- message attributes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        (
            {"": {"DataType": "String", "StringValue": "v"}},
            "Message (user) attributes name can only contain upper and lower score characters, "
            "digits, periods, hyphens and underscores. ",
        ),
        (
            {"AWS.x": {"DataType": "String", "StringValue": "v"}},
            "You can't use message attribute names beginning with 'AWS.' or 'Amazon.'. These "
            "strings are reserved for internal use. Additionally, they cannot start or end "
            "with '.'.",
        ),
        (
            {"amazon.x": {"DataType": "String", "StringValue": "v"}},
            "You can't use message attribute names beginning with 'AWS.' or 'Amazon.'. These "
            "strings are reserved for internal use. Additionally, they cannot start or end "
            "with '.'.",
        ),
        (
            {f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(11)},
            "Number of message attributes [11] exceeds the allowed maximum [10].",
        ),
        (
            {"n": {"DataType": "Number", "StringValue": "nan"}},
            "Can't cast the value of message (user) attribute 'n' to a number.",
        ),
        (
            {"n": {"DataType": "Number", "StringValue": "1e127"}},
            "Can't cast the value of message (user) attribute 'n' to a number.",
        ),
        (
            {"n": {"DataType": "Number", "StringValue": "1" * 39}},
            "Can't cast the value of message (user) attribute 'n' to a number.",
        ),
        (
            {"n": {"DataType": "Number", "StringValue": "1_000"}},
            "Can't cast the value of message (user) attribute 'n' to a number.",
        ),
        (
            {"s": {"DataType": "String", "StringValue": "a\x00"}},
            BAD_CHARS,
        ),
    ],
)
def test_bad_message_attributes_are_refused(
    sqs: Any, queue: str, attributes: dict[str, Any], message: str
) -> None:
    before = count(sqs, queue)
    code, text = refused(
        sqs.send_message, QueueUrl=queue, MessageBody="x", MessageAttributes=attributes
    )
    assert text == message
    assert code in ("InvalidParameterValue", "InvalidMessageContents")
    assert count(sqs, queue) == before


def test_numbers_sqs_takes_are_taken(sqs: Any) -> None:
    url = new_queue(sqs)
    for number in ("0", "-1.5", "1e126", "1e-128", ".5", "1" * 38, "+7"):
        sqs.send_message(
            QueueUrl=url,
            MessageBody="x",
            MessageAttributes={"n": {"DataType": "Number", "StringValue": number}},
        )
    assert count(sqs, url) == 7


def test_a_trace_header_needs_a_value(sqs: Any, queue: str) -> None:
    code, message = refused(
        sqs.send_message,
        QueueUrl=queue,
        MessageBody="x",
        MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String"}},
    )
    assert code == "InvalidParameterValue"
    assert message == (
        "Message system attribute 'AWSTraceHeader' must contain a non-empty value of type 'String'."
    )


# -- receipt handles and visibility -----------------------------------------------------------


def test_garbage_and_foreign_receipt_handles_are_refused(sqs: Any) -> None:
    mine, other = new_queue(sqs), new_queue(sqs)
    sqs.send_message(QueueUrl=other, MessageBody="theirs")
    handle = sqs.receive_message(QueueUrl=other)["Messages"][0]["ReceiptHandle"]
    for bad in ("garbage", "", "é" * 10, handle):
        code, message = refused(sqs.delete_message, QueueUrl=mine, ReceiptHandle=bad)
        assert code == "ReceiptHandleIsInvalid"
        assert message == f'The input receipt handle "{bad}" is not a valid receipt handle.'
        code, _ = refused(
            sqs.change_message_visibility, QueueUrl=mine, ReceiptHandle=bad, VisibilityTimeout=5
        )
        assert code == "ReceiptHandleIsInvalid"
    # The other queue's message was not deleted through the wrong queue.
    assert (
        int(
            sqs.get_queue_attributes(
                QueueUrl=other, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
            )["Attributes"]["ApproximateNumberOfMessagesNotVisible"]
        )
        == 1
    )


def test_visibility_past_12_hours_is_refused(sqs: Any) -> None:
    url = new_queue(sqs)
    sqs.send_message(QueueUrl=url, MessageBody="x")
    handle = sqs.receive_message(QueueUrl=url)["Messages"][0]["ReceiptHandle"]
    code, message = refused(
        sqs.change_message_visibility, QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=43201
    )
    assert code == "InvalidParameterValue"
    assert "43201" in message and "VisibilityTimeout" in message
    code, _ = refused(sqs.receive_message, QueueUrl=url, VisibilityTimeout=43201)
    assert code == "InvalidParameterValue"


# -- batches ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "code", "message"),
    [
        (
            [],
            "AWS.SimpleQueueService.EmptyBatchRequest",
            "There should be at least one SendMessageBatchRequestEntry in the request.",
        ),
        (
            [{"Id": f"m{i}", "MessageBody": "x"} for i in range(11)],
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            "Maximum number of entries per request are 10. You have sent 11.",
        ),
        (
            [{"Id": "same", "MessageBody": "x"}, {"Id": "same", "MessageBody": "y"}],
            "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
            "Id same repeated.",
        ),
        (
            [{"Id": "bad:id", "MessageBody": "x"}],
            "AWS.SimpleQueueService.InvalidBatchEntryId",
            "A batch entry id can only contain alphanumeric characters, hyphens and "
            "underscores. It can be at most 80 letters long.",
        ),
    ],
)
def test_bad_batches_are_refused_whole(
    sqs: Any, entries: list[dict[str, str]], code: str, message: str
) -> None:
    url = new_queue(sqs)
    assert refused(sqs.send_message_batch, QueueUrl=url, Entries=entries) == (code, message)
    assert count(sqs, url) == 0


# -- queue attributes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attributes",
    [
        {"DelaySeconds": "901"},
        {"DelaySeconds": "-1"},
        {"DelaySeconds": "1.5"},
        {"DelaySeconds": "abc"},
        {"VisibilityTimeout": "43201"},
        {"MaximumMessageSize": "1023"},
        {"MessageRetentionPeriod": "59"},
        {"ReceiveMessageWaitTimeSeconds": "21"},
        {"RedrivePolicy": '{"deadLetterTargetArn":"x","maxReceiveCount":1e400}'},
        {"RedrivePolicy": '{"deadLetterTargetArn":"x","maxReceiveCount":1.5}'},
        {"RedrivePolicy": "[" * 5000 + "]" * 5000},
        {"RedriveAllowPolicy": '{"redrivePermission":"sometimes"}'},
        {"RedriveAllowPolicy": '{"redrivePermission":"byQueue","sourceQueueArns":5}'},
        {"RedriveAllowPolicy": '{"redrivePermission":"byQueue"}'},
        {"RedriveAllowPolicy": '{"redrivePermission":"allowAll","sourceQueueArns":["a"]}'},
        {"ContentBasedDeduplication": "true"},
    ],
)
def test_queue_attributes_of_the_wrong_type_or_range_are_refused(
    sqs: Any, attributes: dict[str, str]
) -> None:
    name = f"a-{uuid.uuid4().hex[:8]}"
    code, message = refused(sqs.create_queue, QueueName=name, Attributes=attributes)
    assert code in ("InvalidAttributeValue", "InvalidAttributeName"), message
    assert next(iter(attributes)) in message
    assert not sqs.list_queues(QueueNamePrefix=name).get("QueueUrls")  # nothing created


# -- FIFO -------------------------------------------------------------------------------------


def test_fifo_needs_a_group_and_takes_no_message_delay(sqs: Any) -> None:
    url = new_queue(sqs, fifo=True)
    assert refused(sqs.send_message, QueueUrl=url, MessageBody="x", MessageDeduplicationId="d") == (
        "MissingParameter",
        "The request must contain the parameter MessageGroupId.",
    )
    assert refused(
        sqs.send_message,
        QueueUrl=url,
        MessageBody="x",
        MessageGroupId="g",
        MessageDeduplicationId="d",
        DelaySeconds=2,
    ) == (
        "InvalidParameterValue",
        "Value 2 for parameter DelaySeconds is invalid. Reason: The request include parameter "
        "that is not valid for this queue type.",
    )
    assert count(sqs, url) == 0
