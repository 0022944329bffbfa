"""S3 bucket notifications end to end: object changes reach SQS queues and functions as
Lambda's S3 event, filtered by prefix and suffix, through the durable async path, and
survive a kill -9 of the server while they cannot be delivered."""

from __future__ import annotations

import json
import signal
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROLE, live_server, make_zip
from tests.nimbus_process import NimbusProcess
from tests.s3.conftest import s3_client


def new_queue(server: NimbusProcess, name: str | None = None) -> tuple[str, str]:
    sqs = server.client("sqs")
    url = sqs.create_queue(QueueName=name or f"q-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


def receive(server: NimbusProcess, url: str, count: int) -> list[dict[str, Any]]:
    """``count`` message bodies (long polling: returns as soon as they are there)."""
    sqs = server.client("sqs")
    bodies: list[dict[str, Any]] = []
    for _ in range(30):
        if len(bodies) >= count:
            break
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=2)
        for message in got.get("Messages", []):
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    assert len(bodies) == count, bodies
    return bodies


def test_queue_notifications(server: NimbusProcess, s3: Any, bucket: str) -> None:
    url, arn = new_queue(server)
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "Id": "images",
                    "QueueArn": arn,
                    "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
                    "Filter": {
                        "Key": {
                            "FilterRules": [
                                {"Name": "Prefix", "Value": "in/"},
                                {"Name": "Suffix", "Value": ".jpg"},
                            ]
                        }
                    },
                }
            ]
        },
    )
    (test_event,) = receive(server, url, 1)
    assert test_event["Event"] == "s3:TestEvent" and test_event["Bucket"] == bucket
    key = "in/red flower@1.jpg"
    put = s3.put_object(Bucket=bucket, Key=key, Body=b"picture")
    s3.put_object(Bucket=bucket, Key="in/notes.txt", Body=b"not a jpg")  # filtered out
    s3.put_object(Bucket=bucket, Key="out/x.jpg", Body=b"other prefix")  # filtered out
    s3.copy_object(Bucket=bucket, Key="in/copy.jpg", CopySource={"Bucket": bucket, "Key": key})
    upload = s3.create_multipart_upload(Bucket=bucket, Key="in/big.jpg")["UploadId"]
    etag = s3.upload_part(
        Bucket=bucket, Key="in/big.jpg", UploadId=upload, PartNumber=1, Body=b"x" * 10
    )["ETag"]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="in/big.jpg",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    s3.delete_object(Bucket=bucket, Key=key)
    records = [body["Records"][0] for body in receive(server, url, 4)]
    records.sort(key=lambda r: r["s3"]["object"]["sequencer"])
    assert [r["eventName"] for r in records] == [
        "ObjectCreated:Put",
        "ObjectCreated:Copy",
        "ObjectCreated:CompleteMultipartUpload",
        "ObjectRemoved:Delete",
    ]
    first = records[0]
    assert first["eventSource"] == "aws:s3" and first["eventVersion"] == "2.1"
    assert first["awsRegion"] == "us-east-1"
    assert first["s3"]["configurationId"] == "images"
    assert first["s3"]["bucket"]["name"] == bucket
    assert first["s3"]["bucket"]["arn"] == f"arn:aws:s3:::{bucket}"
    obj = first["s3"]["object"]
    assert obj["key"] == "in/red+flower%401.jpg"
    assert urllib.parse.unquote_plus(obj["key"]) == key
    assert obj["size"] == 7 and f'"{obj["eTag"]}"' == put["ETag"]
    assert records[2]["s3"]["object"]["eTag"].endswith("-1")
    removed = records[3]["s3"]["object"]
    assert "size" not in removed and "eTag" not in removed
    assert first["userIdentity"]["principalId"] == "AWS:test"
    assert first["requestParameters"]["sourceIPAddress"] == "127.0.0.1"


def test_undeliverable_notifications_survive_kill_9(tmp_path: Path) -> None:
    """A notification whose queue is gone waits in the store: across a kill -9 of the
    server, until the queue exists again."""
    with live_server(tmp_path / "data", {"NIMBUS_ASYNC_WORKERS": "0"}) as server:
        s3 = s3_client(server)
        s3.create_bucket(Bucket="durable-bucket")
        url, arn = new_queue(server, "later")
        s3.put_bucket_notification_configuration(
            Bucket="durable-bucket",
            NotificationConfiguration={
                "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]
            },
        )
        sqs = server.client("sqs")
        sqs.delete_queue(QueueUrl=url)
        s3.put_object(Bucket="durable-bucket", Key="kept", Body=b"accepted")
        server.stop(signal.SIGKILL)
        server.start()
        url, _ = new_queue(server, "later")
        (body,) = receive(server, url, 1)
        record = body["Records"][0]
        assert record["eventName"] == "ObjectCreated:Put"
        assert record["s3"]["object"]["key"] == "kept"


HANDLER = make_zip(
    {
        "app.py": (
            "def handler(event, context):\n"
            "    record = event['Records'][0]\n"
            "    return {'key': record['s3']['object']['key'],\n"
            "            'event': record['eventName']}\n"
        )
    }
)


@pytest.mark.sandbox
def test_function_notifications_run_through_the_async_path(
    server: NimbusProcess, s3: Any, bucket: str
) -> None:
    """A function configured on the bucket runs with the S3 event as an async invoke:
    its OnSuccess destination gets the request (the event) and the response."""
    lam = server.client()
    name = f"thumbs-{uuid.uuid4().hex[:6]}"
    arn = lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": HANDLER},
    )["FunctionArn"]
    url, queue_arn = new_queue(server)
    lam.put_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": queue_arn}}
    )
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "LambdaFunctionConfigurations": [
                {"Id": "run", "LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:Put"]}
            ]
        },
    )
    s3.put_object(Bucket=bucket, Key="uploads/a b.png", Body=b"image")
    (record,) = receive(server, url, 1)
    assert record["requestContext"]["condition"] == "Success"
    event = record["requestPayload"]["Records"][0]
    assert event["eventName"] == "ObjectCreated:Put"
    assert event["s3"]["bucket"]["name"] == bucket
    assert event["s3"]["object"]["size"] == 5
    assert record["responsePayload"] == {"key": "uploads/a+b.png", "event": "ObjectCreated:Put"}
