"""Template loading (short tags, lines), intrinsics, and validation that lists every
problem with its line before anything is deployed: no server needed."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from rich.console import Console

from nimbus.deploy.intrinsics import NO_VALUE, Resolver, references
from nimbus.deploy.kinds import Context
from nimbus.deploy.package import Package
from nimbus.deploy.problems import DeployError, TemplateInvalid
from nimbus.deploy.stack import Deployer
from nimbus.deploy.template import load_text


def _template(text: str, root: Path = Path(".")):  # type: ignore[no-untyped-def]
    return load_text(text, Path("template.yaml"), root)


def test_short_tags_load_as_long_forms_with_lines() -> None:
    t = _template(
        "AWSTemplateFormatVersion: 2010-09-09\n"
        "Resources:\n"
        "  Q:\n"
        "    Type: AWS::SQS::Queue\n"
        "    Properties:\n"
        "      QueueName: !Sub '${AWS::StackName}-q'\n"
        "      Tags:\n"
        "        - Key: a\n"
        "          Value: !GetAtt Other.Arn\n"
        "        - Key: b\n"
        "          Value: !Join [',', [!Ref X, !Select [0, !Split ['-', 'a-b']]]]\n"
    )
    assert t.body["AWSTemplateFormatVersion"] == "2010-09-09"  # a string, not a date
    props = t.resources["Q"]["Properties"]
    assert props["QueueName"] == {"Fn::Sub": "${AWS::StackName}-q"}
    assert props["Tags"][0]["Value"] == {"Fn::GetAtt": ["Other", "Arn"]}
    join = props["Tags"][1]["Value"]["Fn::Join"]
    assert join[1][0] == {"Ref": "X"} and join[1][1] == {
        "Fn::Select": [0, {"Fn::Split": ["-", "a-b"]}]
    }
    assert t.line("Resources", "Q") == 3
    assert t.line("Resources", "Q", "Properties", "QueueName") == 6
    assert t.line("Resources", "Q", "Properties", "Nope") == 5  # the deepest that exists


def test_yaml_errors_name_the_line() -> None:
    with pytest.raises(DeployError, match="line 3"):
        _template("Resources:\n  A:\n    Type: x: y\n")
    with pytest.raises(DeployError, match="duplicate key 'A'"):
        _template("Resources:\n  A: {Type: x}\n  A: {Type: y}\n")


def _resolver(values: dict, made: dict) -> Resolver:  # type: ignore[type-arg]
    def lookup(lid: str, attribute: str | None) -> object:
        return made[(lid, attribute)]

    conditions = {
        "IsProd": {"Fn::Equals": [{"Ref": "Env"}, "prod"]},
        "NotProd": {"Fn::Not": [{"Condition": "IsProd"}]},
        "Both": {"Fn::And": [{"Condition": "IsProd"}, {"Fn::Or": [True, False]}]},
    }
    mappings = {"Sizes": {"prod": {"Memory": 1024}}}
    pseudo = {"AWS::Region": "us-east-1", "AWS::StackName": "s"}
    return Resolver(values, pseudo, conditions, mappings, lookup)


def test_intrinsics_resolve_as_cloudformation() -> None:
    r = _resolver(
        {"Env": "prod"}, {("Fn", None): "s-Fn", ("Fn", "Arn"): "arn:fn", ("Api", None): "abc"}
    )
    assert (
        r.resolve({"Fn::Sub": "${AWS::StackName}-${Fn}-${Fn.Arn}-${!Literal}"})
        == "s-s-Fn-arn:fn-${Literal}"
    )
    assert r.resolve({"Fn::Sub": ["${A}/${Api}", {"A": {"Ref": "Env"}}]}) == "prod/abc"
    assert r.resolve({"Fn::If": ["IsProd", "big", "small"]}) == "big"
    assert r.resolve({"Fn::If": ["NotProd", "big", "small"]}) == "small"
    assert r.condition("Both") is True
    assert r.resolve({"Fn::FindInMap": ["Sizes", {"Ref": "Env"}, "Memory"]}) == 1024
    assert (
        r.resolve({"Fn::Join": ["-", ["a", {"Fn::Select": [1, {"Fn::Split": [",", "x,y"]}]}]]})
        == "a-y"
    )
    assert r.resolve({"A": {"Ref": "AWS::NoValue"}, "B": 1}) == {"B": 1}
    assert r.resolve({"Ref": "AWS::NoValue"}) is NO_VALUE
    assert references({"Fn::Sub": "${Fn.Arn} ${Api} ${!X}"}) == {"Fn", "Api"}


def _deployer(tmp_path: Path, text: str) -> Deployer:
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src" / "app.py").write_text("def handler(e, c):\n    return 1\n")
    ctx = Context(boto3.session.Session(region_name="us-east-1"), "http://127.0.0.1:1", "s",
                  "us-east-1", "000000000000", {}, Console(stderr=True))  # fmt: skip
    template = load_text(text, tmp_path / "template.yaml", tmp_path)
    return Deployer(template, ctx, tmp_path / ".nimbus" / "stacks" / "s.json")


def _fake_build(folder: Path, runtime: str | None) -> Package:
    return Package(folder, b"zip", "c2hh")


UNSUPPORTED = """\
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage:
    Type: String
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: app.handler
      Runtime: python3.12
      Events:
        Rest:
          Type: Api
          Properties: {Path: /x, Method: get, RequestModel: {Model: M}}
        Stream:
          Type: Kinesis
          Properties: {Stream: arn:aws:kinesis:us-east-1:000000000000:stream/s}
  Table:
    Type: AWS::DynamoDB::Table
    Properties: {}
  Q:
    Type: AWS::SQS::Queue
    Properties:
      KmsMasterKeyId: alias/x
      QueueName: !ImportValue other-stack-queue
"""


def test_unsupported_parts_are_all_listed_with_their_lines(tmp_path: Path) -> None:
    with pytest.raises(TemplateInvalid) as caught:
        _deployer(tmp_path, UNSUPPORTED).prepare({}, _fake_build)
    found = {(p.where, p.line): p.message for p in caught.value.problems}
    assert "parameter Stage has no Default" in found[("Stage", 3)]
    assert "event Rest (Type: Api): property RequestModel: request models" in found[("Fn", 15)]
    assert "Type Kinesis is not supported" in found[("Fn", 17)]
    assert "intrinsic function Fn::ImportValue is not supported" in found[("Q", 26)]
    assert "AWS::DynamoDB::Table is not supported" in found[("Table", 19)]
    assert "property KmsMasterKeyId is not supported" in found[("Q", 25)]
    assert len(caught.value.problems) == 6
    assert not (tmp_path / ".nimbus" / "stacks" / "s.json").exists()


CFN_UNSUPPORTED = """\
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties: {}
  Q:
    Type: AWS::SQS::Queue
    Properties:
      KmsMasterKeyId: alias/x
      VisibilityTimeout: 10
  Rule:
    Type: AWS::Events::Rule
    Properties:
      EventPattern: {source: [x]}
      ScheduleExpression: rate(1 hour)
      Targets: [{Arn: !GetAtt Missing.Arn, Id: t}]
Outputs:
  Out:
    Value: !Ref Nowhere
"""


def test_cloudformation_types_properties_and_references(tmp_path: Path) -> None:
    with pytest.raises(TemplateInvalid) as caught:
        _deployer(tmp_path, CFN_UNSUPPORTED).prepare({}, _fake_build)
    text = str(caught.value)
    assert "line 2: Table: resource type AWS::DynamoDB::Table is not supported" in text
    assert "line 8: Q: AWS::SQS::Queue: property KmsMasterKeyId is not supported" in text
    assert "line 13: Rule: AWS::Events::Rule: rules with an EventPattern are not supported" in text
    assert "line 15: Rule: Fn::GetAtt of ['Missing', 'Arn']" in text
    assert "line 17: Outputs.Out: Ref to 'Nowhere'" in text
    assert "property VisibilityTimeout" not in text


def test_parameters_overrides_and_unknown_ones(tmp_path: Path) -> None:
    text = ("Parameters:\n  Env: {Type: String, Default: dev, AllowedValues: [dev, prod]}\n"
            "Resources:\n  Q: {Type: AWS::SQS::Queue}\n")  # fmt: skip
    params, expanded = _deployer(tmp_path, text).prepare({"Env": "prod"}, _fake_build)
    assert params == {"Env": "prod"} and "Q" in expanded.resources
    with pytest.raises(TemplateInvalid, match="is not one of dev, prod"):
        _deployer(tmp_path, text).prepare({"Env": "qa"}, _fake_build)
    with pytest.raises(TemplateInvalid, match="the template has no parameter Nope"):
        _deployer(tmp_path, text).prepare({"Nope": "1"}, _fake_build)


def test_sam_expands_local_code_and_events(tmp_path: Path) -> None:
    text = (
        "Transform: AWS::Serverless-2016-10-31\nResources:\n  Fn:\n"
        "    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: src/\n"
        "      Handler: app.handler\n      Runtime: python3.12\n      AutoPublishAlias: live\n"
        "      Events:\n        Q:\n          Type: SQS\n"
        "          Properties: {Queue: !GetAtt Jobs.Arn,\n"
        "                       FunctionResponseTypes: [ReportBatchItemFailures]}\n"
        "        Tick:\n          Type: Schedule\n          Properties: {Schedule: rate(1 hour)}\n"
        "  Jobs: {Type: AWS::SQS::Queue}\n"
    )  # fmt: skip
    _, expanded = _deployer(tmp_path, text).prepare({}, _fake_build)
    types = {lid: r["Type"] for lid, r in expanded.resources.items()}
    assert types["Fn"] == "AWS::Lambda::Function"
    assert types["FnQ"] == "AWS::Lambda::EventSourceMapping"
    assert types["FnTick"] == "AWS::Events::Rule"
    assert "AWS::Lambda::Alias" in types.values() and "AWS::Lambda::Version" in types.values()
    code = expanded.resources["Fn"]["Properties"]["Code"]
    assert code == {"S3Bucket": "nimbus-local", "S3Key": "c2hh"}


REST_HELLO = """\
Transform: AWS::Serverless-2016-10-31
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Handler: app.handler
      Runtime: python3.12
      Events:
        Hello:
          Type: Api
          Properties: {Path: "/hello/{name}", Method: any, TimeoutInMillis: 5000}
Outputs:
  Url:
    Value: !Sub "https://${ServerlessRestApi}.execute-api.${AWS::Region}.amazonaws.com/Prod/"
"""


def test_sam_api_event_becomes_a_rest_api_nimbus_deploys(tmp_path: Path) -> None:
    """The implicit ServerlessRestApi: a RestApi with a proxy Body, a Deployment and the
    Prod Stage, all kinds nimbus deploys, with nothing to refuse."""
    from nimbus.deploy.kinds import KINDS

    _, expanded = _deployer(tmp_path, REST_HELLO).prepare({}, _fake_build)
    types = {lid: r["Type"] for lid, r in expanded.resources.items()}
    assert types["ServerlessRestApi"] == "AWS::ApiGateway::RestApi"
    assert types["ServerlessRestApiProdStage"] == "AWS::ApiGateway::Stage"
    assert "AWS::ApiGateway::Deployment" in types.values()
    assert all(t in KINDS for t in types.values())
    body = expanded.resources["ServerlessRestApi"]["Properties"]["Body"]
    method = body["paths"]["/hello/{name}"]["x-amazon-apigateway-any-method"]
    assert method["x-amazon-apigateway-integration"]["timeoutInMillis"] == 5000
    assert KINDS["AWS::ApiGateway::RestApi"].check({"Body": body}) == []


REST_UNSUPPORTED = """\
Transform: AWS::Serverless-2016-10-31
Globals:
  Api:
    Cors: "'*'"
Resources:
  Api:
    Type: AWS::Serverless::Api
    Properties:
      StageName: dev
      EndpointConfiguration: PRIVATE
      DefinitionBody:
        swagger: "2.0"
        securityDefinitions: {key: {type: apiKey}}
        paths:
          /a:
            get:
              security: [{key: []}]
              x-amazon-apigateway-integration: {type: aws_proxy, uri: x}
            post:
              x-amazon-apigateway-integration: {type: mock}
"""


def test_rest_api_features_without_an_equivalent_are_refused_at_their_lines(
    tmp_path: Path,
) -> None:
    with pytest.raises(TemplateInvalid) as caught:
        _deployer(tmp_path, REST_UNSUPPORTED).prepare({}, _fake_build)
    found = {(p.where, p.line): p.message for p in caught.value.problems}
    assert "REST API property Cors: CORS of REST APIs" in found[("Globals", 4)]
    assert "REST API property EndpointConfiguration" in found[("Api", 10)]
    assert "securityDefinitions: authorizers and API keys" in found[("Api", 13)]
    assert "GET /a: security: authorizers and API keys" in found[("Api", 17)]
    assert "POST /a: only Lambda proxy (aws_proxy)" in found[("Api", 19)]
    assert len(caught.value.problems) == 5


def test_http_api_integrations_take_payload_format_1_0_too() -> None:
    from nimbus.deploy.api_kinds import body_problems
    from nimbus.deploy.kinds import KINDS

    integration = KINDS["AWS::ApiGatewayV2::Integration"]
    assert integration.check({"IntegrationType": "AWS_PROXY", "PayloadFormatVersion": "1.0"}) == []
    assert integration.check({"IntegrationType": "AWS_PROXY", "PayloadFormatVersion": "3.0"}) == [
        ("PayloadFormatVersion", "payload formats are 2.0 and 1.0")
    ]
    spec = {"x-amazon-apigateway-integration": {"type": "aws_proxy", "uri": "x",
                                                "payloadFormatVersion": "1.0"}}  # fmt: skip
    assert body_problems({"openapi": "3.0.1", "paths": {"/a": {"get": spec}}}) == []
