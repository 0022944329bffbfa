"""`nimbus deploy` of SNS: a topic with an inline queue subscription, an
AWS::SNS::Subscription with a filter policy and raw delivery, and a SAM function with an
SNS event, deployed, used, redeployed with a new policy, and removed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import nimbus_cli
from tests.nimbus_process import NimbusProcess
from tests.sns.conftest import receive_all

TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Resources:
  Alerts:
    Type: AWS::SNS::Topic
    Properties:
      DisplayName: Alerts
      Subscription:
        - Protocol: sqs
          Endpoint: !GetAtt Everything.Arn
      Tags:
        - Key: team
          Value: ops
  Everything:
    Type: AWS::SQS::Queue
  Urgent:
    Type: AWS::SQS::Queue
  UrgentOnly:
    Type: AWS::SNS::Subscription
    Properties:
      TopicArn: !Ref Alerts
      Protocol: sqs
      Endpoint: !GetAtt Urgent.Arn
      RawMessageDelivery: true
      FilterPolicy:
        level: [__LEVEL__]
  Results:
    Type: AWS::SQS::Queue
  Handler:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: app.handler
      Runtime: python3.12
      EventInvokeConfig:
        DestinationConfig:
          OnSuccess:
            Type: SQS
            Destination: !GetAtt Results.Arn
      Events:
        Alert:
          Type: SNS
          Properties:
            Topic: !Ref Alerts
Outputs:
  Topic:
    Value: !Ref Alerts
"""


def deploy(server: NimbusProcess, app: Path, level: str) -> str:
    (app / "template.yaml").write_text(TEMPLATE.replace("__LEVEL__", level))
    out = nimbus_cli(server, "deploy", str(app), "--stack", "alerts")
    assert out.returncode == 0, out.stderr
    return out.stderr


def urls(sqs: Any) -> dict[str, str]:
    return {u.rsplit("-", 1)[-1]: u for u in sqs.list_queues().get("QueueUrls", [])}


@pytest.mark.sandbox
def test_sns_resources_deploy_work_update_and_go(nimbus: NimbusProcess, tmp_path: Path) -> None:
    app = tmp_path / "alerts"
    (app / "src").mkdir(parents=True)
    (app / "src" / "app.py").write_text("def handler(event, context):\n    return event\n")
    deploy(nimbus, app, "critical")
    sns, sqs = nimbus.client("sns"), nimbus.client("sqs")
    (topic,) = [t["TopicArn"] for t in sns.list_topics()["Topics"]]
    assert topic.endswith(":alerts-Alerts")
    assert sns.get_topic_attributes(TopicArn=topic)["Attributes"]["DisplayName"] == "Alerts"
    assert sns.list_tags_for_resource(ResourceArn=topic)["Tags"] == [
        {"Key": "team", "Value": "ops"}
    ]
    subs = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert sorted(s["Protocol"] for s in subs) == ["lambda", "sqs", "sqs"]

    queues = urls(sqs)
    sns.publish(TopicArn=topic, Message="disk full", MessageAttributes={
        "level": {"DataType": "String", "StringValue": "critical"}})  # fmt: skip
    sns.publish(TopicArn=topic, Message="cpu warm", MessageAttributes={
        "level": {"DataType": "String", "StringValue": "warning"}})  # fmt: skip
    assert [m["Body"] for m in receive_all(sqs, queues["Urgent"], 1)] == ["disk full"]
    everything = [
        json.loads(m["Body"])["Message"] for m in receive_all(sqs, queues["Everything"], 2)
    ]
    assert sorted(everything) == ["cpu warm", "disk full"]
    records = [json.loads(m["Body"]) for m in receive_all(sqs, queues["Results"], 2, timeout=120)]
    events = [r["requestPayload"]["Records"][0] for r in records]
    assert {e["EventSource"] for e in events} == {"aws:sns"}
    assert sorted(e["Sns"]["Message"] for e in events) == ["cpu warm", "disk full"]

    # A new filter policy updates the subscription in place.
    again = deploy(nimbus, app, "warning")
    assert "updated   UrgentOnly (AWS::SNS::Subscription)" in again, again
    assert "unchanged Alerts (AWS::SNS::Topic)" in again, again
    (urgent_sub,) = [
        s["SubscriptionArn"]
        for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
        if s["Endpoint"].endswith(":alerts-Urgent")
    ]
    policy = sns.get_subscription_attributes(SubscriptionArn=urgent_sub)["Attributes"]
    assert json.loads(policy["FilterPolicy"]) == {"level": ["warning"]}

    gone = nimbus_cli(nimbus, "rm", "--stack", "alerts", "--dir", str(app))
    assert gone.returncode == 0, gone.stderr
    assert sns.list_topics()["Topics"] == []
    assert sns.list_subscriptions()["Subscriptions"] == []
