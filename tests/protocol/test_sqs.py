"""SQS through the protocol layer, in both protocols its clients speak: JSON (boto3, the
AWS CLI) and query (older SDKs), each round-tripped through botocore itself."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from nimbus.protocol.errors import AwsError
from nimbus.protocol.parser import parse
from nimbus.protocol.serializer import serialize_error, serialize_result
from tests.protocol.conftest import client_reads, client_request, load, model_op

SQS = load("sqs")
URL = "http://localhost:9000/000000000000/q1"
BOTH = pytest.mark.parametrize("protocol", ["json", "query"])

SEND = {
    "QueueUrl": URL,
    "MessageBody": 'hello "world" & <you>\r\n',
    "DelaySeconds": 5,
    "MessageAttributes": {
        "s": {"DataType": "String", "StringValue": "v1"},
        "b": {"DataType": "Binary", "BinaryValue": b"\x00\xffbin"},
        "n": {"DataType": "Number", "StringValue": "42"},
    },
    "MessageGroupId": "g",
}


@BOTH
def test_send_message_parses_as_sent(protocol: str) -> None:
    parsed = parse(SQS, protocol, client_request(SQS, protocol, "SendMessage", SEND))
    assert parsed.operation.name == "SendMessage"
    assert parsed.params == SEND


def test_query_send_message_is_flattened_as_sqs_names_it() -> None:
    request = client_request(SQS, "query", "SendMessage", SEND)
    body = request.body.decode()
    assert "MessageAttribute.1.Name=s" in body
    assert "MessageAttribute.1.Value.StringValue=v1" in body
    parsed = parse(SQS, "query", request)
    assert parsed.params["MessageAttributes"]["b"]["BinaryValue"] == b"\x00\xffbin"


@BOTH
def test_batch_entries_and_nested_maps(protocol: str) -> None:
    params = {
        "QueueUrl": URL,
        "Entries": [
            {"Id": "a", "MessageBody": "one", "DelaySeconds": 0},
            {
                "Id": "b",
                "MessageBody": "two",
                "MessageAttributes": {
                    "k": {"DataType": "String.custom", "StringValue": "x"},
                },
            },
        ],
    }
    request = client_request(SQS, protocol, "SendMessageBatch", params)
    if protocol == "query":
        assert b"SendMessageBatchRequestEntry.2.Id=b" in request.body
    assert parse(SQS, protocol, request).params == params


@BOTH
def test_lists_maps_and_booleans(protocol: str) -> None:
    create = {
        "QueueName": "q1.fifo",
        "Attributes": {"FifoQueue": "true", "VisibilityTimeout": "30"},
        "tags": {"team": "a", "env": "dev"},
    }
    request = client_request(SQS, protocol, "CreateQueue", create)
    if protocol == "query":
        assert b"Attribute.1.Name=FifoQueue" in request.body
        assert b"Tag.2.Key=env" in request.body
    assert parse(SQS, protocol, request).params == create
    receive = {
        "QueueUrl": URL,
        "AttributeNames": ["All"],
        "MessageSystemAttributeNames": ["SentTimestamp", "SenderId"],
        "MessageAttributeNames": ["All"],
        "MaxNumberOfMessages": 10,
        "WaitTimeSeconds": 20,
    }
    assert (
        parse(SQS, protocol, client_request(SQS, protocol, "ReceiveMessage", receive)).params
        == receive
    )
    empty = {"QueueUrl": URL, "TagKeys": []}
    assert parse(SQS, protocol, client_request(SQS, protocol, "UntagQueue", empty)).params == empty


def test_query_accepts_member_names_as_the_java_sdk_sends_them() -> None:
    request = client_request(SQS, "query", "GetQueueUrl", {"QueueName": "x"})
    request.body = (
        b"Action=SendMessage&Version=2012-11-05&QueueUrl="
        + URL.encode()
        + b"&MessageBody=hi&MessageAttributes.1.Name=k"
        b"&MessageAttributes.1.Value.DataType=String&MessageAttributes.1.Value.StringValue=v"
    )
    parsed = parse(SQS, "query", request)
    assert parsed.params["MessageAttributes"] == {"k": {"DataType": "String", "StringValue": "v"}}


def test_query_posted_to_the_queue_url_gets_its_queue_url() -> None:
    request = client_request(SQS, "query", "SendMessage", {"QueueUrl": URL, "MessageBody": "x"})
    request.body = b"Action=SendMessage&Version=2012-11-05&MessageBody=x"
    request.raw_path = "/000000000000/q1"
    assert parse(SQS, "query", request).params["QueueUrl"] == URL


RECEIVED = {
    "Messages": [
        {
            "MessageId": "m1",
            "ReceiptHandle": "r1",
            "MD5OfBody": "abc",
            "Body": 'a "quoted" <body>\r\nline2 & more',
            "Attributes": {"SentTimestamp": "1700000000000", "ApproximateReceiveCount": "1"},
            "MessageAttributes": {
                "b": {"DataType": "Binary", "BinaryValue": b"\x01\x02"},
                "s": {"DataType": "String", "StringValue": "v"},
            },
        },
        {"MessageId": "m2", "ReceiptHandle": "r2", "Body": "two"},
    ]
}


@BOTH
def test_results_read_back_by_botocore(protocol: str) -> None:
    for name, result in [
        ("ReceiveMessage", RECEIVED),
        ("GetQueueUrl", {"QueueUrl": URL}),
        ("ListQueues", {"QueueUrls": [URL, URL + "2"], "NextToken": "t"}),
        ("GetQueueAttributes", {"Attributes": {"VisibilityTimeout": "30", "DelaySeconds": "0"}}),
        ("ListQueueTags", {"Tags": {"a": "1"}}),
        (
            "SendMessageBatch",
            {
                "Successful": [{"Id": "a", "MessageId": "m", "MD5OfMessageBody": "x"}],
                "Failed": [{"Id": "b", "SenderFault": True, "Code": "c", "Message": "m"}],
            },
        ),
        ("PurgeQueue", {}),
    ]:
        answer = serialize_result(SQS, protocol, model_op(SQS, protocol, name), result, "rid-1")
        assert answer.status == 200
        parsed = client_reads(SQS, protocol, name, answer)
        metadata = parsed.pop("ResponseMetadata", {})
        assert parsed == result, name
        if protocol == "query":
            assert metadata["RequestId"] == "rid-1"
            assert answer.body.startswith(
                b'<?xml version="1.0" encoding="UTF-8"?><' + name.encode()
            )
        else:
            assert answer.headers["x-amzn-RequestId"] == "rid-1"


@BOTH
def test_modeled_error_carries_the_query_era_code(protocol: str) -> None:
    exc = AwsError("QueueDoesNotExist", "The specified queue does not exist.")
    answer = serialize_error(SQS, protocol, exc, "rid-2")
    assert answer.status == 400
    parsed = client_reads(SQS, protocol, "GetQueueUrl", answer)
    assert parsed["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    assert parsed["Error"]["Message"] == "The specified queue does not exist."
    assert parsed["Error"]["Type"] == "Sender"
    if protocol == "json":
        assert (
            answer.headers["x-amzn-query-error"] == "AWS.SimpleQueueService.NonExistentQueue;Sender"
        )
        assert parsed["Error"]["QueryErrorCode"] == "QueueDoesNotExist"


@BOTH
def test_status_and_fault_come_from_the_model(protocol: str) -> None:
    answer = serialize_error(SQS, protocol, AwsError("PurgeQueueInProgress", "wait"), "r")
    assert answer.status == 403
    assert client_reads(SQS, protocol, "PurgeQueue", answer)["Error"]["Code"] == (
        "AWS.SimpleQueueService.PurgeQueueInProgress"
    )
    internal = serialize_error(SQS, protocol, AwsError("InternalFailure", "boom", status=500), "r")
    assert internal.status == 500
    assert client_reads(SQS, protocol, "PurgeQueue", internal)["Error"]["Type"] == "Receiver"


@BOTH
def test_missing_required_member(protocol: str) -> None:
    request = client_request(SQS, protocol, "SendMessage", {"QueueUrl": URL, "MessageBody": "x"})
    if protocol == "json":
        request.body = b'{"QueueUrl": "%s"}' % URL.encode()
    else:
        request.body = b"Action=SendMessage&Version=2012-11-05&QueueUrl=x"
    with pytest.raises(AwsError) as raised:
        parse(SQS, protocol, request)
    expected = "MissingRequiredParameterException" if protocol == "json" else "MissingParameter"
    assert raised.value.type_name == expected
    assert "MessageBody" in raised.value.message
    parsed = client_reads(
        SQS, protocol, "SendMessage", serialize_error(SQS, protocol, raised.value, "r")
    )
    assert parsed["Error"]["Code"] == "MissingParameter"


@BOTH
def test_wrong_type_and_unknown_action(protocol: str) -> None:
    request = client_request(SQS, protocol, "SendMessage", {"QueueUrl": URL, "MessageBody": "x"})
    if protocol == "json":
        request.body = b'{"QueueUrl": "u", "MessageBody": "x", "DelaySeconds": "soon"}'
    else:
        request.body = b"Action=SendMessage&QueueUrl=u&MessageBody=x&DelaySeconds=soon"
    with pytest.raises(AwsError) as raised:
        parse(SQS, protocol, request)
    assert "DelaySeconds" in raised.value.message
    if protocol == "json":
        request.headers = {**request.headers, "x-amz-target": "AmazonSQS.Frobnicate"}
    else:
        request.body = b"Action=Frobnicate"
    with pytest.raises(AwsError) as raised:
        parse(SQS, protocol, request)
    assert raised.value.type_name == (
        "InvalidAction" if protocol == "query" else "UnknownOperationException"
    )


def test_timestamps_read_as_aware_datetimes() -> None:
    # SQS has no timestamp inputs; ListMessageMoveTasks' output has epoch-millis longs.
    from nimbus.protocol.values import timestamp

    moment = datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=UTC)
    assert timestamp("2024-05-01T12:30:15.250Z") == moment
    assert timestamp(str(moment.timestamp())) == moment
    assert timestamp("Wed, 01 May 2024 12:30:15 GMT") == moment.replace(microsecond=0)
