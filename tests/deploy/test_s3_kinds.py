"""`nimbus deploy` of S3: a bucket whose NotificationConfiguration sends new objects to a
queue, a SAM function with an S3 event (the transform adds the bucket's
LambdaConfigurations and a permission), and a bucket publishing to an SNS topic; objects
put with boto3 reach them; a redeploy changes the filter in place; what nimbus does not
serve is refused with its line; `nimbus rm --stack` removes what it made."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nimbus.deploy.s3_kinds import s3_notification
from tests.cli.conftest import nimbus_cli
from tests.nimbus_process import NimbusProcess
from tests.sns.conftest import receive_all

TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Resources:
  Uploads:
    Type: AWS::S3::Bucket
  Inbox:
    Type: AWS::SQS::Queue
  Results:
    Type: AWS::SQS::Queue
  Audit:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: !Sub "${AWS::StackName}-audit"
      NotificationConfiguration:
        QueueConfigurations:
          - Event: s3:ObjectCreated:*
            Queue: !GetAtt Inbox.Arn
            Filter:
              S3Key:
                Rules:
                  - Name: prefix
                    Value: __PREFIX__
  OnUpload:
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
        Upload:
          Type: S3
          Properties:
            Bucket: !Ref Uploads
            Events: s3:ObjectCreated:*
            Filter:
              S3Key:
                Rules:
                  - Name: suffix
                    Value: .txt
Outputs:
  Uploads:
    Value: !Ref Uploads
  AuditArn:
    Value: !GetAtt Audit.Arn
"""


def deploy(server: NimbusProcess, app: Path, prefix: str) -> str:
    (app / "template.yaml").write_text(TEMPLATE.replace("__PREFIX__", prefix))
    out = nimbus_cli(server, "deploy", str(app), "--stack", "files")
    assert out.returncode == 0, out.stderr
    return out.stderr + out.stdout


def queue(sqs: Any, suffix: str) -> str:
    (url,) = [u for u in sqs.list_queues()["QueueUrls"] if u.endswith(suffix)]
    return url


@pytest.mark.sandbox
def test_buckets_with_notifications_deploy_work_update_and_go(
    nimbus: NimbusProcess, tmp_path: Path
) -> None:
    app = tmp_path / "files"
    (app / "src").mkdir(parents=True)
    (app / "src" / "app.py").write_text("def handler(event, context):\n    return event\n")
    deploy(nimbus, app, "in/")
    s3, sqs = nimbus.client("s3"), nimbus.client("sqs")
    names = sorted(b["Name"] for b in s3.list_buckets()["Buckets"])
    assert names == ["files-audit", "files-uploads"]
    wired = s3.get_bucket_notification_configuration(Bucket="files-uploads")
    (fn_config,) = wired["LambdaFunctionConfigurations"]
    assert fn_config["LambdaFunctionArn"].endswith(":function:files-OnUpload")

    s3.put_object(Bucket="files-uploads", Key="skip.bin", Body=b"no")  # filtered out
    s3.put_object(Bucket="files-uploads", Key="notes one.txt", Body=b"hello")
    (result,) = [json.loads(m["Body"]) for m in receive_all(sqs, queue(sqs, "-Results"), 1)]
    (record,) = result["requestPayload"]["Records"]
    assert record["eventSource"] == "aws:s3" and record["s3"]["object"]["key"] == "notes+one.txt"
    assert record["s3"]["bucket"]["name"] == "files-uploads"

    inbox = queue(sqs, "-Inbox")
    s3.put_object(Bucket="files-audit", Key="in/a", Body=b"a")
    events = [json.loads(m["Body"]) for m in receive_all(sqs, inbox, 2)]  # test event + put
    keys = [r["s3"]["object"]["key"] for e in events for r in e.get("Records", [])]
    assert keys == ["in/a"]

    # A new filter prefix: the bucket is updated in place, the other resources untouched.
    again = deploy(nimbus, app, "new/")
    assert "updated   Audit (AWS::S3::Bucket)" in again, again
    rules = s3.get_bucket_notification_configuration(Bucket="files-audit")[
        "QueueConfigurations"][0]["Filter"]["Key"]["FilterRules"]  # fmt: skip
    assert [(r["Name"].lower(), r["Value"]) for r in rules] == [("prefix", "new/")]

    gone = nimbus_cli(nimbus, "rm", "--stack", "files", "--dir", str(app))
    assert gone.returncode == 0, gone.stderr
    # Both buckets hold objects: kept, each with a note saying how to remove it.
    out = gone.stdout + gone.stderr
    assert out.count("still holds objects") == 2
    assert "kept      Audit (AWS::S3::Bucket)" in out and "deleted   Audit" not in out, out
    assert nimbus.client().list_functions()["Functions"] == []
    s3.delete_object(Bucket="files-audit", Key="in/a")
    s3.delete_bucket(Bucket="files-audit")


def test_topic_configurations_publish_to_the_stack_s_topic(
    nimbus: NimbusProcess, tmp_path: Path
) -> None:
    app = tmp_path / "topics"
    app.mkdir()
    (app / "template.yaml").write_text(
        "Resources:\n"
        "  Alerts:\n"
        "    Type: AWS::SNS::Topic\n"
        "    Properties:\n"
        "      Subscription:\n"
        "        - Protocol: sqs\n"
        "          Endpoint: !GetAtt Inbox.Arn\n"
        "  Inbox:\n"
        "    Type: AWS::SQS::Queue\n"
        "  Files:\n"
        "    Type: AWS::S3::Bucket\n"
        "    Properties:\n"
        "      NotificationConfiguration:\n"
        "        TopicConfigurations:\n"
        "          - Event: s3:ObjectCreated:*\n"
        "            Topic: !Ref Alerts\n"
    )
    out = nimbus_cli(nimbus, "deploy", str(app), "--stack", "topics")
    assert out.returncode == 0, out.stderr
    s3, sqs = nimbus.client("s3"), nimbus.client("sqs")
    s3.put_object(Bucket="topics-files", Key="report.csv", Body=b"a,b")
    envelopes = [json.loads(m["Body"]) for m in receive_all(sqs, queue(sqs, "-Inbox"), 2)]
    assert {e["Subject"] for e in envelopes} == {"Amazon S3 Notification"}
    documents = [json.loads(e["Message"]) for e in envelopes]
    assert [d["Event"] for d in documents if "Event" in d] == ["s3:TestEvent"]  # as S3 sends
    (record,) = [r for d in documents for r in d.get("Records", [])]
    assert record["s3"]["object"]["key"] == "report.csv"


def test_what_nimbus_does_not_serve_is_refused_with_its_line(
    nimbus: NimbusProcess, tmp_path: Path
) -> None:
    app = tmp_path / "refused"
    app.mkdir()
    (app / "template.yaml").write_text(
        "Resources:\n"
        "  Files:\n"
        "    Type: AWS::S3::Bucket\n"
        "    Properties:\n"
        "      NotificationConfiguration:\n"
        "        EventBridgeConfiguration:\n"
        "          EventBridgeEnabled: true\n"
        "      VersioningConfiguration:\n"
        "        Status: Enabled\n"
    )
    out = nimbus_cli(nimbus, "deploy", str(app), "--stack", "refused")
    assert out.returncode != 0
    text = out.stderr + out.stdout
    assert "line 5" in text and "EventBridgeConfiguration is not supported" in text, text
    assert "line 8" in text and "VersioningConfiguration" in text, text
    assert nimbus.client("s3").list_buckets()["Buckets"] == []  # nothing deployed


def test_cloudformation_s_notification_shape_becomes_s3_s() -> None:
    converted = s3_notification({
        "LambdaConfigurations": [{
            "Event": "s3:ObjectCreated:*", "Function": "arn:fn",
            "Filter": {"S3Key": {"Rules": [{"Name": "suffix", "Value": ".jpg"}]}},
        }],
        "QueueConfigurations": [{"Event": "s3:ObjectRemoved:*", "Queue": "arn:q"}],
        "TopicConfigurations": [{"Event": "s3:ObjectCreated:Put", "Topic": "arn:t"}],
    })  # fmt: skip
    assert converted == {
        "LambdaFunctionConfigurations": [{
            "LambdaFunctionArn": "arn:fn", "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": ".jpg"}]}},
        }],
        "QueueConfigurations": [{"QueueArn": "arn:q", "Events": ["s3:ObjectRemoved:*"]}],
        "TopicConfigurations": [{"TopicArn": "arn:t", "Events": ["s3:ObjectCreated:Put"]}],
    }  # fmt: skip
