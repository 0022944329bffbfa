"""The SQS API on a live server, through boto3's sqs client and the AWS CLI as a user
would: queues, attributes, messages and batches, FIFO, redrive, long polling, errors
by code and message, durability across kill -9, and SQS as an async destination and a
function's dead-letter queue."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.api.conftest import error
from tests.conftest import ROLE, live_server, make_zip
from tests.nimbus_process import NimbusProcess

ARN = "arn:aws:sqs:us-east-1:000000000000:"
AWS = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "aws"


@pytest.fixture
def sqs(server: NimbusProcess) -> Any:
    return server.client("sqs")


def new_name(prefix: str = "q") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_queue_lifecycle(sqs: Any, server: NimbusProcess) -> None:
    name = new_name()
    url = sqs.create_queue(QueueName=name, Attributes={"DelaySeconds": "0"})["QueueUrl"]
    assert url == f"{server.endpoint}/000000000000/{name}"
    assert sqs.create_queue(QueueName=name, Attributes={"DelaySeconds": "0"})["QueueUrl"] == url
    with pytest.raises(sqs.exceptions.QueueNameExists) as info:
        sqs.create_queue(QueueName=name, Attributes={"DelaySeconds": "5"})
    assert error(info) == (
        "QueueAlreadyExists",
        400,
        "A queue already exists with the same name and a different value for attribute "
        "DelaySeconds",
    )
    assert sqs.get_queue_url(QueueName=name)["QueueUrl"] == url
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["QueueArn"] == ARN + name
    assert (attrs["VisibilityTimeout"], attrs["MaximumMessageSize"]) == ("30", "1048576")
    assert attrs["MessageRetentionPeriod"] == "345600" and "FifoQueue" not in attrs
    assert abs(int(attrs["CreatedTimestamp"]) - time.time()) < 60
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "45"})
    named = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])
    assert named["Attributes"] == {"VisibilityTimeout": "45"}
    sqs.tag_queue(QueueUrl=url, Tags={"team": "a", "env": "dev"})
    sqs.untag_queue(QueueUrl=url, TagKeys=["env"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "a"}
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as gone:
        sqs.get_queue_url(QueueName=name)
    assert error(gone) == (
        "AWS.SimpleQueueService.NonExistentQueue",
        400,
        "The specified queue does not exist.",
    )


def test_attribute_errors(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=new_name())["QueueUrl"]
    with pytest.raises(ClientError) as info:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "43201"})
    assert error(info) == (
        "InvalidAttributeValue",
        400,
        "Invalid value for the parameter VisibilityTimeout.",
    )
    with pytest.raises(ClientError) as info:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"FifoQueue": "true"})
    assert error(info) == ("InvalidAttributeName", 400, "Unknown Attribute FifoQueue.")
    with pytest.raises(ClientError) as info:
        sqs.create_queue(QueueName="bad name")
    assert error(info) == (
        "InvalidParameterValue",
        400,
        "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
    )


def test_list_queues_prefix_and_pages(sqs: Any) -> None:
    prefix = new_name("list")
    urls = [sqs.create_queue(QueueName=f"{prefix}-{i}")["QueueUrl"] for i in range(5)]
    assert sqs.list_queues(QueueNamePrefix=prefix)["QueueUrls"] == urls
    first = sqs.list_queues(QueueNamePrefix=prefix, MaxResults=2)
    assert first["QueueUrls"] == urls[:2] and first["NextToken"]
    rest = sqs.list_queues(QueueNamePrefix=prefix, MaxResults=2, NextToken=first["NextToken"])
    assert rest["QueueUrls"] == urls[2:4]
    paged = [u for page in sqs.get_paginator("list_queues").paginate(
        QueueNamePrefix=prefix, PaginationConfig={"PageSize": 2}
    ) for u in page["QueueUrls"]]  # fmt: skip
    assert paged == urls
    assert "QueueUrls" not in sqs.list_queues(QueueNamePrefix=new_name("none"))


def test_send_receive_delete_with_attributes(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=new_name())["QueueUrl"]
    attrs = {
        "MyAttribute": {"DataType": "String", "StringValue": "foobar"},
        "other.blob": {"DataType": "Binary", "BinaryValue": b"\x00\xff"},
        "n": {"DataType": "Number", "StringValue": "42"},
    }
    sent = sqs.send_message(QueueUrl=url, MessageBody="foobar", MessageAttributes=attrs)
    assert sent["MD5OfMessageBody"] == "3858f62230ac3c915f300c664312c63f"
    (msg,) = sqs.receive_message(
        QueueUrl=url,
        MessageAttributeNames=["My*", "other.*"],
        MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
    )["Messages"]
    assert msg["MessageId"] == sent["MessageId"] and msg["Body"] == "foobar"
    assert set(msg["Attributes"]) == {"SentTimestamp", "ApproximateReceiveCount"}
    assert msg["MessageAttributes"] == {"other.blob": attrs["other.blob"]}  # prefix.* only
    # The digest of what was returned, as SQS computes it (recorded value for MyAttribute).
    only = sqs.send_message(
        QueueUrl=url, MessageBody="x", MessageAttributes={"MyAttribute": attrs["MyAttribute"]}
    )
    assert only["MD5OfMessageAttributes"] == "adb59cd4678ea5a855436b949cd07ab6"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])
    (second,) = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"]
    assert second["Body"] == "x"
    assert second["MD5OfMessageAttributes"] == "adb59cd4678ea5a855436b949cd07ab6"
    assert "Attributes" not in second
    sqs.delete_message(QueueUrl=url, ReceiptHandle=second["ReceiptHandle"])
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid) as info:
        sqs.delete_message(QueueUrl=url, ReceiptHandle="nonsense")
    assert error(info) == (
        "ReceiptHandleIsInvalid",
        400,
        'The input receipt handle "nonsense" is not a valid receipt handle.',
    )


def test_message_errors(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=new_name())["QueueUrl"]
    with pytest.raises(ClientError) as info:
        sqs.send_message(QueueUrl=url, MessageBody="")
    assert error(info) == (
        "MissingParameter",
        400,
        "The request must contain the parameter MessageBody.",
    )
    with pytest.raises(ClientError) as info:
        sqs.send_message(QueueUrl=url, MessageBody="x" * 1048577)
    assert error(info) == (
        "InvalidParameterValue",
        400,
        "One or more parameters are invalid. Reason: Message must be shorter than 1048576 bytes.",
    )
    with pytest.raises(ClientError) as info:
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=11)
    assert error(info)[2] == (
        "Value 11 for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 "
        "and 10, if provided."
    )
    with pytest.raises(ClientError) as info:
        sqs.send_message(
            QueueUrl=url,
            MessageBody="x",
            MessageAttributes={"ErrorDetails": {"DataType": "String", "StringValue": ""}},
        )
    assert error(info)[2] == (
        "Message (user) attribute 'ErrorDetails' must contain a non-empty value of type 'String'."
    )


def test_batches(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=new_name(), Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    out = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "a", "MessageBody": "one"},
            {"Id": "b", "MessageBody": "two", "DelaySeconds": 0},
            {"Id": "c", "MessageBody": "three", "DelaySeconds": 901},
        ],
    )
    assert [e["Id"] for e in out["Successful"]] == ["a", "b"]
    (failed,) = out["Failed"]
    assert (failed["Id"], failed["Code"], failed["SenderFault"]) == (
        "c",
        "InvalidParameterValue",
        True,
    )
    msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in msgs) == ["one", "two"]
    changed = sqs.change_message_visibility_batch(
        QueueUrl=url,
        Entries=[{"Id": f"m{i}", "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                 for i, m in enumerate(msgs)],
    )  # fmt: skip
    assert len(changed["Successful"]) == 2 and changed["Failed"] == []
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert len(again) == 2
    deleted = sqs.delete_message_batch(
        QueueUrl=url,
        Entries=[{"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(again)]
        + [{"Id": "bad", "ReceiptHandle": "nonsense"}],
    )
    assert sorted(e["Id"] for e in deleted["Successful"]) == ["d0", "d1"]
    assert deleted["Failed"][0]["Id"] == "bad"
    assert deleted["Failed"][0]["Code"] == "ReceiptHandleIsInvalid"
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert counts["ApproximateNumberOfMessages"] == "0"
    assert counts["ApproximateNumberOfMessagesNotVisible"] == "0"

    cases = [
        ([], "AWS.SimpleQueueService.EmptyBatchRequest",
         "There should be at least one SendMessageBatchRequestEntry in the request."),
        ([{"Id": str(i), "MessageBody": "x"} for i in range(20)],
         "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
         "Maximum number of entries per request are 10. You have sent 20."),
        ([{"Id": "x", "MessageBody": "1"}, {"Id": "x", "MessageBody": "2"}],
         "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", "Id x repeated."),
        ([{"Id": "invalid:id", "MessageBody": "1"}], "AWS.SimpleQueueService.InvalidBatchEntryId",
         "A batch entry id can only contain alphanumeric characters, hyphens and underscores. "
         "It can be at most 80 letters long."),
    ]  # fmt: skip
    for entries, code, message in cases:
        with pytest.raises(ClientError) as info:
            sqs.send_message_batch(QueueUrl=url, Entries=entries)
        assert error(info) == (code, 400, message)


def test_fifo_queue(sqs: Any) -> None:
    name = new_name("f") + ".fifo"
    url = sqs.create_queue(
        QueueName=name, Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    )["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (attrs["FifoQueue"], attrs["ContentBasedDeduplication"]) == ("true", "true")
    first = sqs.send_message(QueueUrl=url, MessageBody="a1", MessageGroupId="a")
    dup = sqs.send_message(QueueUrl=url, MessageBody="a1", MessageGroupId="a")
    assert dup["MessageId"] == first["MessageId"] and first["SequenceNumber"]
    sqs.send_message(QueueUrl=url, MessageBody="a2", MessageGroupId="a")
    sqs.send_message(QueueUrl=url, MessageBody="b1", MessageGroupId="b", MessageDeduplicationId="x")
    (head,) = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=1, MessageSystemAttributeNames=["All"]
    )["Messages"]
    assert head["Body"] == "a1" and head["Attributes"]["MessageGroupId"] == "a"
    assert head["Attributes"]["SequenceNumber"] == first["SequenceNumber"]
    rest = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in rest] == ["b1"]  # group a waits for a1
    sqs.delete_message(QueueUrl=url, ReceiptHandle=head["ReceiptHandle"])
    (a2,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert a2["Body"] == "a2"
    with pytest.raises(ClientError) as info:
        sqs.send_message(QueueUrl=url, MessageBody="x")
    assert error(info) == (
        "MissingParameter",
        400,
        "The request must contain the parameter MessageGroupId.",
    )


def test_redrive_to_dead_letter_queue(sqs: Any) -> None:
    dlq = sqs.create_queue(QueueName=new_name("dlq"))["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
    src_name = new_name("src")
    src = sqs.create_queue(QueueName=src_name, Attributes={"RedrivePolicy": policy})["QueueUrl"]
    sent = sqs.send_message(QueueUrl=src, MessageBody="poison")
    for _ in range(2):  # VisibilityTimeout=0: visible again at once
        (msg,) = sqs.receive_message(QueueUrl=src, VisibilityTimeout=0)["Messages"]
        assert msg["MessageId"] == sent["MessageId"]
    assert "Messages" not in sqs.receive_message(QueueUrl=src)
    (dead,) = sqs.receive_message(QueueUrl=dlq, MessageSystemAttributeNames=["All"])["Messages"]
    assert dead["MessageId"] == sent["MessageId"] and dead["Body"] == "poison"
    assert dead["Attributes"]["DeadLetterQueueSourceArn"] == ARN + src_name
    sources = sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"]
    assert sources == [src]
    with pytest.raises(ClientError) as info:
        sqs.set_queue_attributes(
            QueueUrl=src,
            Attributes={"RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": ARN + "missing", "maxReceiveCount": 1})},
        )  # fmt: skip
    assert "Dead letter target does not exist" in error(info)[2]


def test_long_poll_woken_by_a_send_from_another_thread(sqs: Any, server: NimbusProcess) -> None:
    url = sqs.create_queue(QueueName=new_name())["QueueUrl"]
    other = server.client("sqs")
    received: list[dict] = []
    started = threading.Event()

    def poll() -> None:
        started.set()
        received.extend(sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20).get("Messages", []))

    poller = threading.Thread(target=poll)
    t0 = time.monotonic()
    poller.start()
    started.wait()
    time.sleep(0.5)  # let the receive reach the server and wait there
    other.send_message(QueueUrl=url, MessageBody="wake up")
    poller.join(25)
    assert [m["Body"] for m in received] == ["wake up"]
    assert time.monotonic() - t0 < 10  # woken by the send, not the 20 s timeout


def test_purge(sqs: Any) -> None:
    name = new_name()
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="x")
    sqs.purge_queue(QueueUrl=url)
    assert "Messages" not in sqs.receive_message(QueueUrl=url)
    with pytest.raises(sqs.exceptions.PurgeQueueInProgress) as info:
        sqs.purge_queue(QueueUrl=url)
    assert error(info) == (
        "AWS.SimpleQueueService.PurgeQueueInProgress",
        403,
        f"Only one PurgeQueue operation on {name} is allowed every 60 seconds.",
    )


def aws(server: NimbusProcess, *args: str) -> Any:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    out = subprocess.run(
        [str(AWS), "--endpoint-url", server.endpoint, "--output", "json", "sqs", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else None


def test_aws_cli(server: NimbusProcess) -> None:
    name = new_name("cli")
    url = aws(server, "create-queue", "--queue-name", name)["QueueUrl"]
    assert url.endswith(f"/000000000000/{name}")
    sent = aws(server, "send-message", "--queue-url", url, "--message-body", "from the cli")
    assert sent["MD5OfMessageBody"] == hashlib.md5(b"from the cli").hexdigest()
    got = aws(server, "receive-message", "--queue-url", url)
    (msg,) = got["Messages"]
    assert msg["Body"] == "from the cli" and msg["MessageId"] == sent["MessageId"]
    aws(server, "delete-message", "--queue-url", url, "--receipt-handle", msg["ReceiptHandle"])
    assert aws(server, "receive-message", "--queue-url", url) is None  # nothing left


def test_acknowledged_sends_survive_kill_9(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with live_server(data) as first:
        sqs = first.client("sqs")
        url = sqs.create_queue(QueueName="durable")["QueueUrl"]
        ids = {sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")["MessageId"] for i in range(50)}
        for batch in range(5):
            out = sqs.send_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "MessageBody": f"b{batch}-{i}"} for i in range(10)],
            )
            ids |= {e["MessageId"] for e in out["Successful"]}
        first.stop(signal.SIGKILL)
    with live_server(data) as second:
        sqs = second.client("sqs")
        url = sqs.get_queue_url(QueueName="durable")["QueueUrl"]
        found: set[str] = set()
        while True:
            msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not msgs:
                break
            found |= {m["MessageId"] for m in msgs}
        assert len(ids) == 100 and found == ids


# -- SQS as an async destination and a dead-letter queue (these run functions) --------------

FAILING = "def handler(event, context):\n    raise RuntimeError('no: ' + str(event.get('id')))\n"


def _failing_function(lam: Any, **kw: Any) -> str:
    name = new_name("fails")
    lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": FAILING})},
        **kw,
    )
    lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    return name


@pytest.mark.sandbox
def test_on_failure_destination_queue_gets_the_invocation_record(lam: Any, sqs: Any) -> None:
    qname = new_name("failures")
    url = sqs.create_queue(QueueName=qname)["QueueUrl"]
    fn = _failing_function(lam)
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as info:
        lam.put_function_event_invoke_config(
            FunctionName=fn, DestinationConfig={"OnFailure": {"Destination": ARN + "nope"}}
        )
    assert info.value.response["Error"]["Message"] == f"The destination ARN {ARN}nope is invalid."
    lam.put_function_event_invoke_config(
        FunctionName=fn,
        MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination": ARN + qname}},
    )
    invoked = lam.invoke(FunctionName=fn, InvocationType="Event", Payload=b'{"id": 7}')
    request_id = invoked["ResponseMetadata"]["RequestId"]
    (msg,) = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20)["Messages"]
    record = json.loads(msg["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestPayload"] == {"id": 7}
    assert record["responsePayload"]["errorMessage"] == "no: 7"


@pytest.mark.sandbox
def test_dead_letter_config_queue_gets_the_event(lam: Any, sqs: Any) -> None:
    qname = new_name("dlq")
    url = sqs.create_queue(QueueName=qname)["QueueUrl"]
    fn = _failing_function(lam, DeadLetterConfig={"TargetArn": ARN + qname})
    invoked = lam.invoke(FunctionName=fn, InvocationType="Event", Payload=b'{"id": 8}')
    (msg,) = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=20, MessageAttributeNames=["All"])[
        "Messages"
    ]
    assert json.loads(msg["Body"]) == {"id": 8}
    attrs = msg["MessageAttributes"]
    assert attrs["RequestID"]["StringValue"] == invoked["ResponseMetadata"]["RequestId"]
    assert attrs["ErrorCode"] == {"DataType": "Number", "StringValue": "200"}
    assert "no: 8" in attrs["ErrorMessage"]["StringValue"]
