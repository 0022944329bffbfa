"""S3 bucket notifications to SNS topics (``TopicConfigurations``): an object put into the
bucket is published to the topic (the S3 event document as the message, Subject "Amazon
S3 Notification"), which fans it out to its subscribers; a topic that does not exist is
refused when the configuration is put."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.nimbus_process import NimbusProcess
from tests.sns.conftest import queue_arn, receive_all


def test_an_object_put_is_published_to_the_topic(server: NimbusProcess, sns: Any, sqs: Any) -> None:
    s3 = server.client("s3")
    bucket = f"topics-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    topic = sns.create_topic(Name=f"uploads-{uuid.uuid4().hex[:6]}")["TopicArn"]
    url = sqs.create_queue(QueueName=f"uploads-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn(sqs, url))
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "TopicConfigurations": [{
            "Id": "jpgs", "TopicArn": topic, "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": ".jpg"}]}},
        }],
    })  # fmt: skip
    (stored,) = s3.get_bucket_notification_configuration(Bucket=bucket)["TopicConfigurations"]
    assert (stored["Id"], stored["TopicArn"]) == ("jpgs", topic)

    # As S3 does when a configuration is put: a test event, published to the topic.
    (test,) = receive_all(sqs, url, 1)
    assert json.loads(json.loads(test["Body"])["Message"])["Event"] == "s3:TestEvent"

    s3.put_object(Bucket=bucket, Key="skip.txt", Body=b"no")  # filtered out
    s3.put_object(Bucket=bucket, Key="new photo.jpg", Body=b"jpeg")
    (message,) = receive_all(sqs, url, 1)
    envelope = json.loads(message["Body"])
    assert envelope["Type"] == "Notification" and envelope["TopicArn"] == topic
    assert envelope["Subject"] == "Amazon S3 Notification"
    (record,) = json.loads(envelope["Message"])["Records"]
    assert record["eventName"] == "ObjectCreated:Put"
    assert record["s3"]["configurationId"] == "jpgs"
    assert (record["s3"]["bucket"]["name"], record["s3"]["object"]["key"]) == (
        bucket,
        "new+photo.jpg",
    )


def test_a_topic_that_does_not_exist_is_refused(server: NimbusProcess) -> None:
    s3 = server.client("s3")
    bucket = f"topics-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    missing = "arn:aws:sns:us-east-1:000000000000:no-such-topic"
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
            "TopicConfigurations": [{"TopicArn": missing, "Events": ["s3:ObjectCreated:*"]}],
        })  # fmt: skip
    error = exc.value.response["Error"]
    assert error["Code"] == "InvalidArgument"
    assert error["ArgumentName1"] == missing
    assert (
        s3.get_bucket_notification_configuration(Bucket=bucket).get("TopicConfigurations") is None
    )  # nothing stored
