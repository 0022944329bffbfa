"""The SNS API against a live server, as boto3 and the AWS CLI use it: topics,
subscriptions and their attributes, SQS and http(s) delivery, filter policies, raw
delivery, signatures, and errors in SNS's words."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from tests.conftest import aws_json
from tests.nimbus_process import NimbusProcess
from tests.sink import LOCAL_WEBHOOKS
from tests.sns.conftest import Endpoint, queue_arn, receive_all

SERVER_ENV = LOCAL_WEBHOOKS  # the http endpoint these tests subscribe is on loopback


def error(call: Any, **kwargs: Any) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as exc:
        call(**kwargs)
    answer = exc.value.response
    return answer["Error"]["Code"], answer["Error"]["Message"], answer["ResponseMetadata"][
        "HTTPStatusCode"]  # fmt: skip


def queue(sqs: Any, name: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    return url, queue_arn(sqs, url)


def verify(message: dict[str, Any]) -> None:
    """Check a message's signature as an endpoint does: the certificate from
    SigningCertURL, the fields SNS signs, SHA1 (v1) or SHA256 (v2) with RSA."""
    cert = x509.load_pem_x509_certificate(httpx.get(message["SigningCertURL"]).content)
    if message["Type"] == "Notification":
        fields = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        fields = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    text = "".join(f"{k}\n{message[k]}\n" for k in fields if k in message)
    algorithm = hashes.SHA256() if message["SignatureVersion"] == "2" else hashes.SHA1()
    cert.public_key().verify(  # type: ignore[union-attr, call-arg]
        base64.b64decode(message["Signature"]), text.encode(), padding.PKCS1v15(), algorithm
    )


def test_topic_lifecycle(sns: Any) -> None:
    arn = sns.create_topic(Name="orders", Attributes={"DisplayName": "Orders"},
                           Tags=[{"Key": "team", "Value": "a"}])["TopicArn"]  # fmt: skip
    assert arn == "arn:aws:sns:us-east-1:000000000000:orders"
    assert sns.create_topic(Name="orders")["TopicArn"] == arn  # idempotent
    assert sns.create_topic(Name="orders", Attributes={"DisplayName": "Orders"})["TopicArn"] == arn
    assert error(sns.create_topic, Name="orders", Attributes={"DisplayName": "Other"}) == (
        "InvalidParameter",
        "Invalid parameter: Attributes Reason: Topic already exists with different attributes",
        400,
    )
    assert error(sns.create_topic, Name="orders", Tags=[{"Key": "team", "Value": "b"}])[1] == (
        "Invalid parameter: Tags Reason: Topic already exists with different tags"
    )
    got = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
    assert got["DisplayName"] == "Orders" and got["TopicArn"] == arn
    assert got["Owner"] == "000000000000" and got["SubscriptionsConfirmed"] == "0"
    assert json.loads(got["Policy"])["Statement"][0]["Resource"] == arn
    retry = json.loads(got["EffectiveDeliveryPolicy"])["http"]["defaultHealthyRetryPolicy"]
    assert retry["numRetries"] == 3 and retry["minDelayTarget"] == 20
    sns.set_topic_attributes(TopicArn=arn, AttributeName="DisplayName", AttributeValue="New")
    sns.set_topic_attributes(TopicArn=arn, AttributeName="SignatureVersion", AttributeValue="2")
    got = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
    assert (got["DisplayName"], got["SignatureVersion"]) == ("New", "2")

    sns.tag_resource(ResourceArn=arn, Tags=[{"Key": "env", "Value": "dev"}])
    sns.untag_resource(ResourceArn=arn, TagKeys=["team"])
    assert sns.list_tags_for_resource(ResourceArn=arn)["Tags"] == [{"Key": "env", "Value": "dev"}]
    assert error(sns.tag_resource, ResourceArn=arn, Tags=[{"Key": "k", "Value": "1"},
                                                          {"Key": "k", "Value": "2"}])[1] == (
        "Invalid parameter: Duplicated keys are not allowed."
    )  # fmt: skip

    sns.delete_topic(TopicArn=arn)
    sns.delete_topic(TopicArn=arn)  # gone already: fine, as SNS
    assert error(sns.get_topic_attributes, TopicArn=arn) == (
        "NotFound",
        "Topic does not exist",
        404,
    )


def test_list_topics_pages(sns: Any) -> None:
    made = {sns.create_topic(Name=f"page-{i:03d}")["TopicArn"] for i in range(105)}
    seen: list[str] = []
    page = sns.list_topics()
    assert len(page["Topics"]) == 100 and "NextToken" in page
    seen += [t["TopicArn"] for t in page["Topics"]]
    page = sns.list_topics(NextToken=page["NextToken"])
    seen += [t["TopicArn"] for t in page["Topics"]]
    assert "NextToken" not in page
    assert made <= set(seen) and len(seen) == len(set(seen))
    listed = {
        t["TopicArn"] for p in sns.get_paginator("list_topics").paginate() for t in p["Topics"]
    }
    assert made <= listed


@pytest.mark.parametrize(
    ("call", "kwargs", "expected"),
    [
        ("publish", {"TopicArn": "bad", "Message": "m"},
         ("InvalidParameter",
          "Invalid parameter: TopicArn Reason: An ARN must have at least 6 elements, not 1")),
        ("publish", {"TopicArn": "arn:aws:sns:eu-west-1:000000000000:x", "Message": "m"},
         ("InvalidParameter", "Invalid parameter: TopicArn")),
        ("publish", {"TopicArn": "arn:aws:sns:us-east-1:000000000000:none", "Message": "m"},
         ("NotFound", "Topic does not exist")),
        ("create_topic", {"Name": "bad name"},
         ("InvalidParameter", "Invalid parameter: Topic Name")),
        ("create_topic", {"Name": "f.fifo", "Attributes": {"FifoTopic": "true"}},
         ("InvalidParameter", "Invalid parameter: FifoTopic: FIFO topics are not supported by "
          "nimbus yet; create a standard topic (a name without .fifo)")),
        ("create_topic", {"Name": "k", "Attributes": {"KmsMasterKeyId": "alias/aws/sns"}},
         ("InvalidParameter", "Invalid parameter: KmsMasterKeyId: nimbus has no KMS: topics are "
          "not encrypted at rest")),
        ("create_topic", {"Name": "k", "Attributes": {"Nope": "1"}},
         ("InvalidParameter", "Invalid parameter: AttributeName")),
        ("publish", {"PhoneNumber": "+15555550100", "Message": "m"},
         ("InvalidParameter", "Invalid parameter: PhoneNumber: nimbus does not send SMS; "
          "publish to a topic")),
        ("add_permission", {"TopicArn": "arn:aws:sns:us-east-1:000000000000:x", "Label": "l",
                            "AWSAccountId": ["000000000000"], "ActionName": ["Publish"]},
         ("InvalidAction", "sns operation AddPermission is not implemented in nimbus.")),
        ("unsubscribe", {"SubscriptionArn": "arn:aws:sns:us-east-1:000000000000:t:not-a-uuid"},
         ("InvalidParameter", "Invalid parameter: SubscriptionId")),
        ("get_subscription_attributes",
         {"SubscriptionArn": "arn:aws:sns:us-east-1:000000000000:t:"
                             "3d7c5d5e-3c3a-4f7e-9d3f-000000000000"},
         ("NotFound", "Subscription does not exist")),
    ],
)  # fmt: skip
def test_refusals_in_sns_words(sns: Any, call: str, kwargs: dict, expected: tuple) -> None:
    assert error(getattr(sns, call), **kwargs)[:2] == expected


def test_publish_and_subscribe_checks(sns: Any, sqs: Any) -> None:
    topic = sns.create_topic(Name="checks")["TopicArn"]
    _, arn = queue(sqs, "checks-q")
    cases = [
        ({"Message": ""}, "Invalid parameter: Empty message"),
        ({"Message": "m", "Subject": ""}, "Invalid parameter: Subject"),
        ({"Message": "m", "Subject": "a\nb"}, "Invalid parameter: Subject"),
        ({"Message": "x" * 262_145}, "Invalid parameter: Message too long"),
        ({"Message": "{", "MessageStructure": "json"},
         "Invalid parameter: Message Structure - JSON message body failed to parse"),
        ({"Message": '{"sqs": "x"}', "MessageStructure": "json"},
         "Invalid parameter: Message Structure - No default entry in JSON message body"),
        ({"Message": "m", "MessageAttributes": {"a": {"DataType": "String", "StringValue": ""}}},
         "The message attribute 'a' must contain non-empty message attribute value for message "
         "attribute type 'String'."),
        ({"Message": "m", "MessageAttributes": {"a^": {"DataType": "String", "StringValue": "v"}}},
         "Invalid non-alphanumeric character '#x5E' was found in the message attribute name. "
         "Can only include alphanumeric characters, hyphens, underscores, or dots."),
        ({"Message": "m", "MessageAttributes": {"a": {"DataType": "Float", "StringValue": "1"}}},
         "The message attribute 'a' has an invalid message attribute type, the set of supported "
         "type prefixes is Binary, Number, and String."),
    ]  # fmt: skip
    for kwargs, message in cases:
        assert error(sns.publish, TopicArn=topic, **kwargs)[1] == message
    subscribe_cases = [
        ({"Protocol": "test-protocol", "Endpoint": "x"},
         "Invalid parameter: Amazon SNS does not support this protocol string: test-protocol"),
        ({"Protocol": "email", "Endpoint": "a@example.com"},
         "Invalid parameter: Protocol: nimbus does not deliver to email endpoints (it delivers "
         "to lambda, sqs, http, https)"),
        ({"Protocol": "sqs", "Endpoint": "http://example.com/q"},
         "Invalid parameter: SQS endpoint ARN"),
        ({"Protocol": "sqs", "Endpoint": arn, "Attributes": {"RawMessageDelivery": "yes"}},
         "Invalid parameter: Attributes Reason: RawMessageDelivery: Invalid value [yes]. Must be "
         "true or false."),
        ({"Protocol": "sqs", "Endpoint": arn, "Attributes": {"FilterPolicy": "{invalid"}},
         "Invalid parameter: Attributes Reason: FilterPolicy: failed to parse JSON. Expecting "
         "property name enclosed in double quotes: line 1 column 2 (char 1)"),
        ({"Protocol": "lambda", "Endpoint": "arn:aws:lambda:us-east-1:000000000000:fn",
          "Attributes": {}}, "Invalid parameter: Lambda endpoint ARN"),
    ]  # fmt: skip
    for kwargs, message in subscribe_cases:
        assert error(sns.subscribe, TopicArn=topic, **kwargs)[1] == message
    assert error(sns.subscribe, TopicArn=topic + "-none", Protocol="sqs", Endpoint=arn)[:2] == (
        "NotFound",
        "Topic does not exist",
    )
    # Nothing of a refused request was stored.
    assert sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []


def test_sqs_delivery_envelope_raw_filters_and_structure(sns: Any, sqs: Any) -> None:
    topic = sns.create_topic(Name="fan")["TopicArn"]
    plain_url, plain_arn = queue(sqs, "fan-plain")
    raw_url, raw_arn = queue(sqs, "fan-raw")
    plain = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=plain_arn)["SubscriptionArn"]
    raw = sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=raw_arn,
        Attributes={"RawMessageDelivery": "true",
                    "FilterPolicy": json.dumps({"size": [{"numeric": [">", 10]}],
                                                "kind": [{"prefix": "im"}]})},
    )["SubscriptionArn"]  # fmt: skip
    # Subscribing again with the same endpoint is the same subscription.
    assert sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=plain_arn)[
        "SubscriptionArn"] == plain  # fmt: skip
    attributes = sns.get_subscription_attributes(SubscriptionArn=raw)["Attributes"]
    assert attributes["RawMessageDelivery"] == "true"
    assert attributes["FilterPolicyScope"] == "MessageAttributes"
    assert attributes["PendingConfirmation"] == "false" and attributes["TopicArn"] == topic
    assert sns.get_topic_attributes(TopicArn=topic)["Attributes"]["SubscriptionsConfirmed"] == "2"

    def publish(message: str, **attrs: tuple[str, str]) -> str:
        return sns.publish(TopicArn=topic, Message=message, Subject="hi", MessageAttributes={
            k: {"DataType": t, "StringValue": v} for k, (t, v) in attrs.items()
        })["MessageId"]  # fmt: skip

    passes = publish("big image", size=("Number", "11"), kind=("String", "image"))
    publish("small image", size=("Number", "10"), kind=("String", "image"))
    publish("big video", size=("Number", "99"), kind=("String", "video"))
    structured = sns.publish(TopicArn=topic, MessageStructure="json",
                             Message=json.dumps({"default": "for all", "sqs": "for queues"}))[
        "MessageId"]  # fmt: skip

    envelopes = [json.loads(m["Body"]) for m in receive_all(sqs, plain_url, 4)]
    by_id = {e["MessageId"]: e for e in envelopes}
    first = by_id[passes]
    assert list(first) == [
        "Type",
        "MessageId",
        "TopicArn",
        "Subject",
        "Message",
        "Timestamp",
        "SignatureVersion",
        "Signature",
        "SigningCertURL",
        "UnsubscribeURL",
        "MessageAttributes",
    ]
    assert (first["Type"], first["TopicArn"], first["Subject"], first["Message"]) == (
        "Notification",
        topic,
        "hi",
        "big image",
    )
    assert first["MessageAttributes"] == {
        "size": {"Type": "Number", "Value": "11"},
        "kind": {"Type": "String", "Value": "image"},
    }
    assert first["UnsubscribeURL"].endswith(f"?Action=Unsubscribe&SubscriptionArn={plain}")
    verify(first)
    assert by_id[structured]["Message"] == "for queues"
    assert "Subject" not in by_id[structured] and "MessageAttributes" not in by_id[structured]

    (only,) = receive_all(sqs, raw_url, 1)
    assert only["Body"] == "big image"
    assert only["MessageAttributes"]["size"] == {"DataType": "Number", "StringValue": "11"}
    # The filter dropped the others: nothing more arrives once the rest was delivered.
    assert sqs.receive_message(QueueUrl=raw_url, WaitTimeSeconds=1).get("Messages") is None


def test_body_filter_policy_and_publish_batch(sns: Any, sqs: Any) -> None:
    topic = sns.create_topic(Name="batch")["TopicArn"]
    url, arn = queue(sqs, "batch-q")
    policy = {"order": {"status": ["paid"], "total": [{"numeric": [">=", 100]}]}}
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={
        "FilterPolicy": json.dumps(policy), "FilterPolicyScope": "MessageBody",
        "RawMessageDelivery": "true",
    })  # fmt: skip
    bodies = [
        {"order": {"status": "paid", "total": 150}},
        {"order": {"status": "paid", "total": 50}},
        {"order": {"status": "open", "total": 500}},
        {"order": {"status": "paid", "total": 100}},
    ]
    answer = sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=[
        {"Id": f"m{i}", "Message": json.dumps(b)} for i, b in enumerate(bodies)
    ])  # fmt: skip
    assert [s["Id"] for s in answer["Successful"]] == ["m0", "m1", "m2", "m3"]
    assert answer["Failed"] == []
    got = sorted(json.loads(m["Body"])["order"]["total"] for m in receive_all(sqs, url, 2))
    assert got == [100, 150]
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages") is None
    entries = [{"Id": "same", "Message": "a"}, {"Id": "same", "Message": "b"}]
    assert error(sns.publish_batch, TopicArn=topic, PublishBatchRequestEntries=entries)[:2] == (
        "BatchEntryIdsNotDistinct",
        "Two or more batch entries in the request have the same Id.",
    )
    entries = [{"Id": str(i), "Message": "a"} for i in range(11)]
    assert error(sns.publish_batch, TopicArn=topic, PublishBatchRequestEntries=entries)[0] == (
        "TooManyEntriesInBatchRequest"
    )
    entries = [{"Id": "a.b", "Message": "a"}]
    assert error(sns.publish_batch, TopicArn=topic, PublishBatchRequestEntries=entries)[:2] == (
        "InvalidBatchEntryId",
        "The Id of a batch entry in the batch request contains an impermissible character: a.b",
    )


def test_http_subscription_is_confirmed_then_delivered_with_retries(
    sns: Any, endpoint: Endpoint
) -> None:
    topic = sns.create_topic(Name="web")["TopicArn"]
    answer = sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=endpoint.url)
    assert answer["SubscriptionArn"] == "pending confirmation"
    (ask,) = endpoint.wait_until(lambda posts: len(posts) >= 1)
    message = json.loads(ask.body)
    assert message["Type"] == "SubscriptionConfirmation" and message["TopicArn"] == topic
    assert ask.headers["x-amz-sns-message-type"] == "SubscriptionConfirmation"
    assert ask.headers["Content-Type"] == "text/plain; charset=UTF-8"
    assert ask.headers["User-Agent"] == "Amazon Simple Notification Service Agent"
    verify(message)
    (listed,) = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert listed["SubscriptionArn"] == "PendingConfirmation"
    # Not delivered while pending.
    sns.publish(TopicArn=topic, Message="early")

    assert httpx.get(message["SubscribeURL"].replace("Token=", "Token=x")).status_code == 400
    confirmed = httpx.get(message["SubscribeURL"])  # as the endpoint's owner would
    assert confirmed.status_code == 200, confirmed.text
    (listed,) = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    sub = listed["SubscriptionArn"]
    assert sub.startswith(topic + ":") and sub in confirmed.text
    sns.set_subscription_attributes(
        SubscriptionArn=sub, AttributeName="DeliveryPolicy",
        AttributeValue=json.dumps({"healthyRetryPolicy": {"numRetries": 3, "minDelayTarget": 1,
                                                          "maxDelayTarget": 1}}),
    )  # fmt: skip
    endpoint.fail_first = 2  # the next two posts fail: SNS retries
    message_id = sns.publish(TopicArn=topic, Message="hello web", Subject="s")["MessageId"]
    posts = endpoint.wait_until(lambda posts: len(posts) >= 2)
    assert endpoint.failed == 2
    note = json.loads(posts[1].body)
    assert (note["Type"], note["MessageId"], note["Message"]) == ("Notification", message_id,
                                                                  "hello web")  # fmt: skip
    assert posts[1].headers["x-amz-sns-subscription-arn"] == sub
    assert posts[1].headers["x-amz-sns-message-id"] == message_id
    verify(note)
    assert all(json.loads(p.body).get("Message") != "early" for p in posts)

    sns.set_subscription_attributes(SubscriptionArn=sub, AttributeName="RawMessageDelivery",
                                    AttributeValue="true")  # fmt: skip
    sns.publish(TopicArn=topic, Message="raw text")
    posts = endpoint.wait_until(lambda posts: len(posts) >= 3)
    assert posts[2].body == "raw text" and posts[2].headers["x-amz-sns-rawdelivery"] == "true"

    # The UnsubscribeURL works as a link, too.
    assert httpx.get(note["UnsubscribeURL"]).status_code == 200
    assert sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"] == []


def test_undeliverable_messages_go_to_the_redrive_queue(sns: Any, sqs: Any) -> None:
    topic = sns.create_topic(Name="redrive")["TopicArn"]
    dlq_url, dlq_arn = queue(sqs, "redrive-dlq")
    gone_url, gone_arn = queue(sqs, "redrive-gone")
    sub = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=gone_arn, Attributes={
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn})
    })["SubscriptionArn"]  # fmt: skip
    sqs.delete_queue(QueueUrl=gone_url)  # the endpoint is gone: a client-side failure
    message_id = sns.publish(TopicArn=topic, Message="lost?")["MessageId"]
    (dead,) = receive_all(sqs, dlq_url, 1)
    body = json.loads(dead["Body"])
    assert (body["MessageId"], body["Message"]) == (message_id, "lost?")
    assert body["UnsubscribeURL"].endswith(sub)
    assert error(sns.set_subscription_attributes, SubscriptionArn=sub,
                 AttributeName="RedrivePolicy",
                 AttributeValue=json.dumps({"deadLetterTargetArn": "nope"}))[1] == (
        "Invalid parameter: RedrivePolicy: deadLetterTargetArn is an invalid arn"
    )  # fmt: skip


def test_aws_cli_publishes(server: NimbusProcess, sns: Any, sqs: Any) -> None:
    topic = aws_json(server.endpoint, "sns", "create-topic", "--name", "cli")["TopicArn"]
    url, arn = queue(sqs, "cli-q")
    aws_json(
        server.endpoint,
        "sns",
        "subscribe",
        "--topic-arn",
        topic,
        "--protocol",
        "sqs",
        "--notification-endpoint",
        arn,
        "--attributes",
        "RawMessageDelivery=true",
    )
    out = aws_json(server.endpoint, "sns", "publish", "--topic-arn", topic, "--message",
                   "from the cli", "--message-attributes",
                   '{"k": {"DataType": "String", "StringValue": "v"}}')  # fmt: skip
    (message,) = receive_all(sqs, url, 1)
    assert message["Body"] == "from the cli" and out["MessageId"]
    assert message["MessageAttributes"]["k"]["StringValue"] == "v"
    listed = aws_json(server.endpoint, "sns", "list-subscriptions-by-topic", "--topic-arn", topic)
    assert [s["Endpoint"] for s in listed["Subscriptions"]] == [arn]
