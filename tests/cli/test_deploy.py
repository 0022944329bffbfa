"""`nimbus deploy` and `nimbus rm --stack`, run as a user runs them (a subprocess with
NIMBUS_ENDPOINT) against a live server: AWS's `sam init` hello world (its REST `Api`
event, and as an HttpApi), a queue worker with a schedule, templates with unsupported
parts, redeploys and removal."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import nimbus_cli
from tests.nimbus_process import NimbusProcess

# AWS SAM CLI's hello world, as `sam init` generates it (aws-sam-cli-app-templates,
# python3.12/hello, project "sam-app", architecture x86_64): template.yaml and
# hello_world/{app.py, requirements.txt, __init__.py}.
HELLO_TEMPLATE = """\
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Description: >
  sam-app

  Sample SAM Template for sam-app

# More info about Globals: https://github.com/awslabs/serverless-application-model/blob/master/docs/globals.rst
Globals:
  Function:
    Timeout: 3

Resources:
  HelloWorldFunction:
    Type: AWS::Serverless::Function # More info about Function Resource: https://github.com/awslabs/serverless-application-model/blob/master/versions/2016-10-31.md#awsserverlessfunction
    Properties:
      CodeUri: hello_world/
      Handler: app.lambda_handler
      Runtime: python3.12
      Architectures:
        - x86_64
      Events:
        HelloWorld:
          Type: Api # More info about API Event Source: https://github.com/awslabs/serverless-application-model/blob/master/versions/2016-10-31.md#api
          Properties:
            Path: /hello
            Method: get

Outputs:
  # ServerlessRestApi is an implicit API created out of Events key under Serverless::Function
  # Find out more about other implicit resources you can reference within SAM
  # https://github.com/awslabs/serverless-application-model/blob/master/docs/internals/generated_resources.rst#api
  HelloWorldApi:
    Description: "API Gateway endpoint URL for Prod stage for Hello World function"
    Value: !Sub "https://${ServerlessRestApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/Prod/hello/"
  HelloWorldFunction:
    Description: "Hello World Lambda Function ARN"
    Value: !GetAtt HelloWorldFunction.Arn
  HelloWorldFunctionIamRole:
    Description: "Implicit IAM Role created for Hello World function"
    Value: !GetAtt HelloWorldFunctionRole.Arn
"""
HELLO_APP = '''\
import json

# import requests


def lambda_handler(event, context):
    """Sample pure Lambda function

    Parameters
    ----------
    event: dict, required
        API Gateway Lambda Proxy Input Format

        Event doc: https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html#api-gateway-simple-proxy-for-lambda-input-format

    context: object, required
        Lambda Context runtime methods and attributes

        Context doc: https://docs.aws.amazon.com/lambda/latest/dg/python-context-object.html

    Returns
    ------
    API Gateway Lambda Proxy Output Format: dict

        Return doc: https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html
    """

    # try:
    #     ip = requests.get("http://checkip.amazonaws.com/")
    # except requests.RequestException as e:
    #     # Send some context about this error to Lambda Logs
    #     print(e)

    #     raise e

    return {
        "statusCode": 200,
        "body": json.dumps({
            "message": "hello world",
            # "location": ip.text.replace("\\n", "")
        }),
    }
'''


def sam_app(root: Path, template: str = HELLO_TEMPLATE) -> Path:
    app = root / "sam-app"
    (app / "hello_world").mkdir(parents=True)
    (app / "hello_world" / "__init__.py").write_text("")
    (app / "hello_world" / "app.py").write_text(HELLO_APP)
    (app / "hello_world" / "requirements.txt").write_text("requests")
    (app / "template.yaml").write_text(template)
    return app


def deploy(server: NimbusProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return nimbus_cli(server, "deploy", *args)


def nothing_deployed(server: NimbusProcess) -> None:
    assert server.client().list_functions()["Functions"] == []
    assert server.client("apigatewayv2").get_apis()["Items"] == []
    assert server.client("sqs").list_queues().get("QueueUrls", []) == []
    assert server.client("scheduler").list_schedules()["Schedules"] == []


@pytest.mark.sandbox
def test_sam_init_hello_world_deploys_unchanged_and_answers(
    nimbus: NimbusProcess, tmp_path: Path
) -> None:
    """The unchanged template's `Type: Api` event (a REST API, payload format 1.0): an
    HTTP API with a payload 1.0 route and SAM's stages, its output rewritten to this
    nimbus' URL of the Prod stage, answering the hello world there; rm deletes it all."""
    app = sam_app(tmp_path)
    out = deploy(nimbus, str(app))
    assert out.returncode == 0, out.stderr
    urls = out.stdout.split()
    (api,) = nimbus.client("apigatewayv2").get_apis()["Items"]
    base = f"{nimbus.endpoint}/execute-api/{api['ApiId']}"
    # Prod (the Stage resource) and Stage (the Deployment's StageName), as on AWS.
    assert sorted(urls) == [f"{base}/Prod/hello", f"{base}/Stage/hello"]
    assert f"HelloWorldApi = {base}/Prod/hello/" in out.stderr
    for action, resource in (
        ("created  ", "ServerlessRestApi (AWS::ApiGateway::RestApi)"),
        ("created  ", "ServerlessRestApiProdStage (AWS::ApiGateway::Stage)"),
        ("created  ", "HelloWorldFunctionHelloWorldPermissionProd (AWS::Lambda::Permission)"),
    ):
        assert f"{action} {resource}" in out.stderr, out.stderr
    v2 = nimbus.client("apigatewayv2")
    (route,) = v2.get_routes(ApiId=api["ApiId"])["Items"]
    assert route["RouteKey"] == "GET /hello"
    integration = v2.get_integration(
        ApiId=api["ApiId"], IntegrationId=route["Target"].split("/")[1]
    )
    assert integration["PayloadFormatVersion"] == "1.0"
    assert integration["IntegrationUri"].endswith(
        ":function:sam-app-HelloWorldFunction/invocations"
    )

    # The URL the template's output names on AWS (with its trailing slash), here.
    answer = httpx.get(f"{base}/Prod/hello/", timeout=30)
    assert answer.status_code == 200
    assert answer.json() == {"message": "hello world"}
    assert httpx.get(f"{base}/hello", timeout=30).status_code == 404  # no $default stage

    again = deploy(nimbus, str(app))
    assert again.returncode == 0, again.stderr
    assert "created" not in again.stderr and "updated" not in again.stderr

    # A new path: SAM makes a new Deployment; the same API and stages serve the new route.
    (app / "template.yaml").write_text(HELLO_TEMPLATE.replace("Path: /hello", "Path: /hi"))
    moved = deploy(nimbus, str(app))
    assert moved.returncode == 0, moved.stderr
    assert "updated   ServerlessRestApi (AWS::ApiGateway::RestApi)" in moved.stderr
    assert sorted(moved.stdout.split()) == [f"{base}/Prod/hi", f"{base}/Stage/hi"]
    assert httpx.get(f"{base}/Prod/hi", timeout=30).json() == {"message": "hello world"}
    assert httpx.get(f"{base}/Prod/hello", timeout=30).status_code == 404

    gone = nimbus_cli(nimbus, "rm", "--stack", "sam-app", "--dir", str(app))
    assert gone.returncode == 0, gone.stderr
    nothing_deployed(nimbus)
    assert httpx.get(f"{base}/Prod/hi", timeout=30).status_code == 404


REST_UNSUPPORTED_TEMPLATE = HELLO_TEMPLATE.replace(
    "            Method: get\n",
    "            Method: get\n            Auth:\n              ApiKeyRequired: true\n",
).replace(
    "Resources:\n",
    "Resources:\n"
    "  Api:\n"
    "    Type: AWS::Serverless::Api\n"
    "    Properties:\n"
    "      StageName: dev\n"
    "      BinaryMediaTypes: [image~1png]\n",
)


def test_unsupported_rest_api_features_are_refused_at_their_lines(
    nimbus: NimbusProcess, tmp_path: Path
) -> None:
    """An Api event's Auth (API keys) and an AWS::Serverless::Api's binary media types are
    REST API features nimbus has no equivalent for: each refused at its line, nothing made."""
    app = sam_app(tmp_path, REST_UNSUPPORTED_TEMPLATE)
    out = deploy(nimbus, str(app))
    assert out.returncode == 2, out.stderr
    assert "2 problem(s), nothing was deployed" in out.stderr, out.stderr
    assert "line 18: Api: REST API property BinaryMediaTypes: binary media types" in out.stderr
    assert (
        "line 33: HelloWorldFunction: event HelloWorld (Type: Api): property Auth: "
        "authorizers, API keys" in out.stderr
    ), out.stderr
    assert out.stdout == ""
    nothing_deployed(nimbus)
    assert not (app / ".nimbus" / "stacks" / "sam-app.json").exists()


@pytest.mark.sandbox
def test_hello_world_http_api_deploy_redeploy_update_rm(
    nimbus: NimbusProcess, tmp_path: Path
) -> None:
    """The hello world with its event as `Type: HttpApi` (and its output's API name):
    answers at the printed URL; unchanged on redeploy; a code change updates it; rm
    deletes everything the stack made."""
    template = (
        HELLO_TEMPLATE.replace("Type: Api #", "Type: HttpApi #")
        .replace("${ServerlessRestApi}", "${ServerlessHttpApi}")
        .replace("/Prod/hello/", "/hello/")
    )
    app = sam_app(tmp_path, template)
    out = deploy(nimbus, str(app))
    assert out.returncode == 0, out.stderr
    (url,) = out.stdout.split()
    assert url.startswith(nimbus.endpoint + "/execute-api/") and url.endswith("/hello")
    assert httpx.get(url, timeout=30).json() == {"message": "hello world"}
    assert "created   HelloWorldFunction (AWS::Lambda::Function)" in out.stderr
    assert "skipped   HelloWorldFunctionRole (AWS::IAM::Role)" in out.stderr
    # The output's AWS URL, as this nimbus serves it.
    assert f"HelloWorldApi = {url}/" in out.stderr
    package = nimbus.client().get_function(FunctionName="sam-app-HelloWorldFunction")
    assert package["Configuration"]["Timeout"] == 3  # Globals applied
    assert package["Configuration"]["Runtime"] == "python3.12"

    again = deploy(nimbus, str(app))
    assert again.returncode == 0, again.stderr
    assert again.stdout.split() == [url]
    assert "created" not in again.stderr and "updated" not in again.stderr
    assert "unchanged HelloWorldFunction (AWS::Lambda::Function)" in again.stderr

    source = app / "hello_world" / "app.py"
    source.write_text(source.read_text().replace('"hello world"', '"hello nimbus"'))
    changed = deploy(nimbus, str(app))
    assert changed.returncode == 0, changed.stderr
    assert "updated   HelloWorldFunction (AWS::Lambda::Function)" in changed.stderr
    assert "unchanged ServerlessHttpApi" in changed.stderr
    assert httpx.get(url, timeout=30).json() == {"message": "hello nimbus"}

    gone = nimbus_cli(nimbus, "rm", "--stack", "sam-app", "--dir", str(app))
    assert gone.returncode == 0, gone.stderr
    nothing_deployed(nimbus)
    assert not (app / ".nimbus" / "stacks" / "sam-app.json").exists()
    assert httpx.get(url, timeout=30).status_code == 404


WORKER_TEMPLATE = """\
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Parameters:
  Every:
    Type: String
    Default: rate(1 hour)
Resources:
  Jobs:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 30
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt Failed.Arn
        maxReceiveCount: 1
  Failed:
    Type: AWS::SQS::Queue
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: worker/
      Handler: app.handler
      Runtime: python3.12
      Environment:
        Variables:
          STAGE: !Sub "${AWS::StackName}-test"
      EventInvokeConfig:
        MaximumRetryAttempts: 1
      Events:
        Queue:
          Type: SQS
          Properties:
            Queue: !GetAtt Jobs.Arn
            BatchSize: 10
            FunctionResponseTypes: [ReportBatchItemFailures]
        Tick:
          Type: ScheduleV2
          Properties:
            ScheduleExpression: !Ref Every
            Input: '{"tick": true}'
Outputs:
  JobsUrl:
    Value: !Ref Jobs
"""
WORKER_APP = """\
def handler(event, context):
    failed = [{"itemIdentifier": r["messageId"]} for r in event.get("Records", [])
              if r["body"] == "bad"]
    return {"batchItemFailures": failed}
"""


@pytest.mark.sandbox
def test_queue_worker_and_schedule(nimbus: NimbusProcess, tmp_path: Path) -> None:
    app = tmp_path / "worker-app"
    (app / "worker").mkdir(parents=True)
    (app / "worker" / "app.py").write_text(WORKER_APP)
    (app / "template.yaml").write_text(WORKER_TEMPLATE)
    out = deploy(nimbus, str(app), "--stack", "jobs", "--param", "Every=rate(5 minutes)")
    assert out.returncode == 0, out.stderr
    # What starts events by itself (the schedule fires at once, the mapping polls) comes
    # last, so the function's retry settings are in place before its first event.
    made = re.findall(r"^\s*created\s+(\w+) \(", out.stderr, re.MULTILINE)
    assert made[-2:] == ["WorkerQueue", "WorkerTick"], out.stderr
    assert "WorkerEventInvokeConfig" in made, out.stderr
    sqs, lam = nimbus.client("sqs"), nimbus.client()
    urls = sqs.list_queues()["QueueUrls"]
    jobs = next(u for u in urls if u.endswith("/jobs-Jobs"))
    failed = next(u for u in urls if u.endswith("/jobs-Failed"))
    redrive = json.loads(sqs.get_queue_attributes(QueueUrl=jobs, AttributeNames=["All"])
                         ["Attributes"]["RedrivePolicy"])  # fmt: skip
    assert redrive["deadLetterTargetArn"].endswith(":jobs-Failed")
    config = lam.get_function_configuration(FunctionName="jobs-Worker")
    assert config["Environment"]["Variables"] == {"STAGE": "jobs-test"}
    (mapping,) = lam.list_event_source_mappings(FunctionName="jobs-Worker")["EventSourceMappings"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    (schedule,) = nimbus.client("scheduler").list_schedules()["Schedules"]
    got = nimbus.client("scheduler").get_schedule(Name=schedule["Name"])
    assert got["ScheduleExpression"] == "rate(5 minutes)"
    assert got["Target"]["Arn"].endswith(":function:jobs-Worker")
    assert got["Target"]["Input"] == '{"tick": true}'

    # The worker ran: the good message is consumed, the one it reported failed goes to
    # the redrive queue after one receive.
    sqs.send_message(QueueUrl=jobs, MessageBody="good")
    sqs.send_message(QueueUrl=jobs, MessageBody="bad")
    received: list[str] = []
    for _ in range(6):
        answer = sqs.receive_message(QueueUrl=failed, WaitTimeSeconds=20)
        received += [m["Body"] for m in answer.get("Messages", [])]
        if received:
            break
    assert received == ["bad"]

    # A parameter change updates only the schedule.
    again = deploy(nimbus, str(app), "--stack", "jobs", "--param", "Every=rate(1 hour)")
    assert again.returncode == 0, again.stderr
    assert "updated   WorkerTick (AWS::Scheduler::Schedule)" in again.stderr
    assert "unchanged Worker (AWS::Lambda::Function)" in again.stderr
    assert "unchanged Jobs (AWS::SQS::Queue)" in again.stderr
    got = nimbus.client("scheduler").get_schedule(Name=schedule["Name"])
    assert got["ScheduleExpression"] == "rate(1 hour)"

    # A resource removed from the template is deleted on the next deploy.
    trimmed = WORKER_TEMPLATE.replace(
        "        Tick:\n          Type: ScheduleV2\n          Properties:\n"
        "            ScheduleExpression: !Ref Every\n            Input: '{\"tick\": true}'\n",
        "",
    )
    (app / "template.yaml").write_text(trimmed)
    third = deploy(nimbus, str(app), "--stack", "jobs")
    assert third.returncode == 0, third.stderr
    assert "deleted   WorkerTick (AWS::Scheduler::Schedule)" in third.stderr
    assert nimbus.client("scheduler").list_schedules()["Schedules"] == []

    gone = nimbus_cli(nimbus, "rm", "--stack", "jobs", "--dir", str(app))
    assert gone.returncode == 0, gone.stderr
    nothing_deployed(nimbus)


UNSUPPORTED_TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Resources:
  Table:
    Type: AWS::Serverless::SimpleTable
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: app.handler
      Runtime: python3.12
      Events:
        Upload:
          Type: Kinesis
          Properties: {Stream: !Ref Bucket, StartingPosition: LATEST}
  Bucket:
    Type: AWS::S3::BucketPolicy
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      KmsMasterKeyId: alias/aws/sqs
      DelaySeconds: !ImportValue shared-delay
"""


def test_unsupported_parts_listed_with_lines_nothing_deployed(
    nimbus: NimbusProcess, tmp_path: Path
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("def handler(event, context):\n    return 1\n")
    (tmp_path / "template.yaml").write_text(UNSUPPORTED_TEMPLATE)
    out = deploy(nimbus, str(tmp_path / "template.yaml"), "--stack", "bad")
    assert out.returncode == 2, out.stderr
    assert "5 problem(s), nothing was deployed" in out.stderr
    for expected in (
        "line 4: Table: resource type AWS::Serverless::SimpleTable is not supported",
        "line 13: Fn: event Upload: Type Kinesis is not supported",
        "line 15: Bucket: resource type AWS::S3::BucketPolicy is not supported",
        "line 20: Queue: AWS::SQS::Queue: property KmsMasterKeyId is not supported",
        "line 21: Queue: intrinsic function Fn::ImportValue is not supported",
    ):
        assert expected in out.stderr, out.stderr
    nothing_deployed(nimbus)


@pytest.mark.sandbox
def test_plain_folder_is_one_function_with_a_url(nimbus: NimbusProcess, tmp_path: Path) -> None:
    folder = tmp_path / "greeter"
    folder.mkdir()
    (folder / "app.py").write_text(
        "def handler(event, context):\n    return {'hi': event.get('rawPath')}\n"
    )
    out = deploy(nimbus, str(folder))
    assert out.returncode == 0, out.stderr
    (url,) = out.stdout.split()
    assert httpx.get(url + "x", timeout=30).json() == {"hi": "/x"}
    assert nimbus.client().get_function(FunctionName="greeter")["Configuration"]["Handler"] == (
        "app.handler"
    )
    gone = nimbus_cli(nimbus, "rm", "--stack", "greeter", "--dir", str(folder))
    assert gone.returncode == 0, gone.stderr
    nothing_deployed(nimbus)
