"""Fan-out to functions, as a user sees it: one publish reaches two functions and an
SQS queue, each function gets Lambda's SNS event through the async path (its retries
and destinations), filter policies keep what they should from a function, and SNS
topics serve as a function's OnSuccess / OnFailure destination and dead-letter target."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import ROLE, make_zip, python_runtime
from tests.sink import LOCAL_WEBHOOKS, Sink
from tests.sns.conftest import queue_arn, receive_all

pytestmark = pytest.mark.sandbox
SERVER_ENV = {"NIMBUS_RETRY_BASE_SECONDS": "0.05", **LOCAL_WEBHOOKS}

# Returns its event; fails when asked to, directly or by an SNS message "fail".
ECHO = make_zip({"app.py": (
    "def handler(event, context):\n"
    "    records = event.get('Records') or [{}]\n"
    "    if event.get('fail') or records[0].get('Sns', {}).get('Message') == 'fail':\n"
    "        raise RuntimeError('asked to fail')\n"
    "    return event\n"
)})  # fmt: skip


def function(lam: Any, name: str, **extra: Any) -> str:
    return str(lam.create_function(
        FunctionName=name, Runtime=python_runtime(), Role=ROLE, Handler="app.handler",
        Code={"ZipFile": ECHO}, **extra,
    )["FunctionArn"])  # fmt: skip


def test_publish_fans_out_to_two_functions_and_a_queue(
    sns: Any, sqs: Any, lam: Any, sink: Sink
) -> None:
    topic = sns.create_topic(Name="fanout")["TopicArn"]
    url = sqs.create_queue(QueueName="fanout-q")["QueueUrl"]
    subs = {}
    for name in ("fan-a", "fan-b"):
        arn = function(lam, name)
        lam.put_function_event_invoke_config(
            FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": sink.url}}
        )
        subs[name] = sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint=arn)[
            "SubscriptionArn"]  # fmt: skip
    # fan-b only wants urgent messages.
    sns.set_subscription_attributes(
        SubscriptionArn=subs["fan-b"], AttributeName="FilterPolicy",
        AttributeValue=json.dumps({"priority": ["urgent"]}),
    )  # fmt: skip
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn(sqs, url))

    urgent = sns.publish(TopicArn=topic, Message="fire", Subject="alarm", MessageAttributes={
        "priority": {"DataType": "String", "StringValue": "urgent"}})["MessageId"]  # fmt: skip
    calm = sns.publish(TopicArn=topic, Message="all quiet")["MessageId"]

    records = sink.wait_until(lambda rs: len(rs) >= 3)
    got = {
        (
            r["requestContext"]["functionArn"].split(":")[6],
            r["requestPayload"]["Records"][0]["Sns"]["MessageId"],
        )
        for r in records
    }
    assert got == {("fan-a", urgent), ("fan-a", calm), ("fan-b", urgent)}  # fmt: skip
    by_message = {(r["requestContext"]["functionArn"].split(":")[6],
                   r["requestPayload"]["Records"][0]["Sns"]["MessageId"]): r["requestPayload"]
                  for r in records}  # fmt: skip
    event = by_message[("fan-b", urgent)]
    (record,) = event["Records"]
    assert list(record) == ["EventVersion", "EventSubscriptionArn", "EventSource", "Sns"]
    assert (record["EventSource"], record["EventVersion"]) == ("aws:sns", "1.0")
    assert record["EventSubscriptionArn"] == subs["fan-b"]
    note = record["Sns"]
    assert (note["Type"], note["TopicArn"], note["Subject"], note["Message"]) == (
        "Notification",
        topic,
        "alarm",
        "fire",
    )
    assert note["MessageAttributes"] == {"priority": {"Type": "String", "Value": "urgent"}}
    assert note["SigningCertUrl"].startswith("http") and note["Signature"]
    assert note["UnsubscribeUrl"].endswith(subs["fan-b"])
    quiet = by_message[("fan-a", calm)]["Records"][0]["Sns"]
    assert quiet["Subject"] is None and quiet["MessageAttributes"] == {}

    bodies = [json.loads(m["Body"]) for m in receive_all(sqs, url, 2)]
    assert {b["MessageId"] for b in bodies} == {urgent, calm}


def test_function_failures_retry_then_dead_letter_to_a_topic(sns: Any, sqs: Any, lam: Any) -> None:
    """The function's own async settings govern what SNS handed it: retries, then its
    DeadLetterConfig, here an SNS topic (Lambda allows one) that a queue subscribes to."""
    dead_topic = sns.create_topic(Name="dead-letters")["TopicArn"]
    url = sqs.create_queue(QueueName="dead-letters-q")["QueueUrl"]
    sns.subscribe(TopicArn=dead_topic, Protocol="sqs", Endpoint=queue_arn(sqs, url))
    arn = function(lam, "fails", DeadLetterConfig={"TargetArn": dead_topic})
    lam.put_function_event_invoke_config(FunctionName="fails", MaximumRetryAttempts=1)
    topic = sns.create_topic(Name="work")["TopicArn"]
    sub = sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint=arn)["SubscriptionArn"]
    message_id = sns.publish(TopicArn=topic, Message="fail")["MessageId"]
    (dead,) = receive_all(sqs, url, 1, timeout=120)
    note = json.loads(dead["Body"])
    assert note["TopicArn"] == dead_topic
    # The dead letter's message is the event the function failed on: SNS's own.
    (record,) = json.loads(note["Message"])["Records"]
    assert record["EventSubscriptionArn"] == sub
    assert (record["Sns"]["MessageId"], record["Sns"]["Message"]) == (message_id, "fail")
    attributes = note["MessageAttributes"]
    assert attributes["ErrorCode"] == {"Type": "Number", "Value": "200"}
    assert "asked to fail" in attributes["ErrorMessage"]["Value"]
    assert attributes["RequestID"]["Type"] == "String"


def test_topics_as_destinations(sns: Any, sqs: Any, lam: Any) -> None:
    success = sns.create_topic(Name="on-success")["TopicArn"]
    failure = sns.create_topic(Name="on-failure")["TopicArn"]
    url = sqs.create_queue(QueueName="outcomes")["QueueUrl"]
    for topic in (success, failure):
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn(sqs, url),
                      Attributes={"RawMessageDelivery": "true"})  # fmt: skip
    function(lam, "outcome")
    lam.put_function_event_invoke_config(
        FunctionName="outcome", MaximumRetryAttempts=0,
        DestinationConfig={"OnSuccess": {"Destination": success},
                           "OnFailure": {"Destination": failure}},
    )  # fmt: skip
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.put_function_event_invoke_config(
            FunctionName="outcome",
            DestinationConfig={"OnSuccess": {"Destination": success + "-none"}},
        )
    lam.invoke(FunctionName="outcome", InvocationType="Event", Payload=json.dumps({"n": 1}))
    lam.invoke(FunctionName="outcome", InvocationType="Event",
               Payload=json.dumps({"n": 2, "fail": True}))  # fmt: skip
    records = [json.loads(m["Body"]) for m in receive_all(sqs, url, 2, timeout=120)]
    by_n = {r["requestPayload"]["n"]: r for r in records}
    assert by_n[1]["requestContext"]["condition"] == "Success"
    assert by_n[1]["responsePayload"] == {"n": 1}
    assert by_n[2]["requestContext"]["condition"] == "RetriesExhausted"
    assert by_n[2]["responseContext"]["functionError"] == "Unhandled"
