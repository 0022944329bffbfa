"""HTTP API integrations with payload format 1.0 (the REST API style event), as a user
drives them: boto3's apigatewayv2 client to make the API, httpx for the requests, a
function that really runs in the sandbox and echoes what it was sent."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.api.conftest import error
from tests.conftest import ROLE, make_zip
from tests.nimbus_process import NimbusProcess

ECHO = """
import base64, json

def handler(event, context):
    action = event["path"].rstrip("/").rsplit("/", 1)[-1]
    if action == "plain-dict":  # fine with payload 2.0, malformed with 1.0
        return {"message": "no statusCode"}
    if action == "fail":
        raise RuntimeError("the function failed")
    if action == "multi":
        return {
            "statusCode": 201,
            "headers": {"Content-Type": "text/plain", "X-One": "1"},
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"], "X-Many": ["x", "y"]},
            "body": "made",
        }
    if action == "binary":
        return {"statusCode": 200, "isBase64Encoded": True,
                "headers": {"content-type": "application/octet-stream"},
                "body": base64.b64encode(bytes(range(8))).decode()}
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
            "body": json.dumps(event)}
"""


@pytest.fixture
def echo(lam: Any) -> str:
    name = f"v1-{uuid.uuid4().hex[:8]}"
    code = {"ZipFile": make_zip({"app.py": ECHO})}
    lam.create_function(
        FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="app.handler", Code=code
    )
    return name


def _api(gw: Any, server: NimbusProcess, function: str, stage: str) -> tuple[str, str]:
    """(api id, base URL of ``stage``) of a new API routing GET /items/{id} and ANY
    /{proxy+} to ``function`` with payload format 1.0."""
    api = gw.create_api(Name=f"v1-{uuid.uuid4().hex[:6]}", ProtocolType="HTTP")["ApiId"]
    integration = gw.create_integration(
        ApiId=api, IntegrationType="AWS_PROXY", PayloadFormatVersion="1.0",
        IntegrationUri=f"arn:aws:lambda:us-east-1:000000000000:function:{function}",
    )  # fmt: skip
    assert integration["PayloadFormatVersion"] == "1.0"
    target = f"integrations/{integration['IntegrationId']}"
    gw.create_route(ApiId=api, RouteKey="GET /items/{id}", Target=target)
    gw.create_route(ApiId=api, RouteKey="ANY /{proxy+}", Target=target)
    gw.create_stage(ApiId=api, StageName=stage, StageVariables={"env": "test"})
    return api, f"{server.endpoint}/execute-api/{api}/{stage}"


@pytest.mark.sandbox
def test_payload_v1_event_as_api_gateway_sends_it(
    gw: Any, echo: str, server: NimbusProcess
) -> None:
    api, base = _api(gw, server, echo, "Prod")
    answer = httpx.get(
        f"{base}/items/7?a=1&a=2&b=x+y",
        headers=[("X-Repeat", "one"), ("X-Repeat", "two"), ("Cookie", "s=1")],
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    event = answer.json()
    assert event["version"] == "1.0"
    assert (event["resource"], event["path"], event["httpMethod"]) == (
        "/items/{id}", "/Prod/items/7", "GET",
    )  # fmt: skip
    assert event["headers"]["x-repeat"] == "two"
    assert event["multiValueHeaders"]["x-repeat"] == ["one", "two"]
    assert event["headers"]["cookie"] == "s=1"
    assert event["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert event["queryStringParameters"] == {"a": "2", "b": "x y"}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": ["x y"]}
    assert event["pathParameters"] == {"id": "7"}
    assert event["stageVariables"] == {"env": "test"}
    assert (event["body"], event["isBase64Encoded"]) == (None, False)
    context = event["requestContext"]
    assert context["apiId"] == context["domainPrefix"] == api
    assert context["stage"] == "Prod"
    assert context["resourceId"] == "GET /items/{id}"
    assert context["resourcePath"] == "/items/{id}"
    assert context["path"] == "/Prod/items/7"
    assert context["httpMethod"] == "GET"
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["identity"]["userAgent"].startswith("python-httpx/")
    assert context["requestId"] == answer.headers["x-amzn-RequestId"]
    assert isinstance(context["requestTimeEpoch"], int)

    posted = httpx.post(f"{base}/things", json={"k": 1}, timeout=30).json()
    assert posted["resource"] == "/{proxy+}"
    assert posted["pathParameters"] == {"proxy": "things"}
    assert (json.loads(posted["body"]), posted["isBase64Encoded"]) == ({"k": 1}, False)
    assert posted["queryStringParameters"] is None


@pytest.mark.sandbox
def test_payload_v1_responses_and_malformed_ones(gw: Any, echo: str, server: NimbusProcess) -> None:
    _, base = _api(gw, server, echo, "dev")
    made = httpx.get(f"{base}/multi", timeout=30)
    assert made.status_code == 201
    assert made.text == "made"
    assert made.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert made.headers.get_list("x-many") == ["x", "y"]
    assert made.headers["x-one"] == "1"
    assert httpx.get(f"{base}/binary", timeout=30).content == bytes(range(8))
    for action in ("plain-dict", "fail"):
        answer = httpx.get(f"{base}/{action}", timeout=30)
        assert answer.status_code == 500, (action, answer.text)
        assert answer.json() == {"message": "Internal Server Error"}
        assert answer.headers["x-amzn-ErrorType"] == "InternalServerErrorException"


def test_payload_version_can_be_changed_and_is_checked(gw: Any, server: NimbusProcess) -> None:
    api = gw.create_api(Name=f"v1-{uuid.uuid4().hex[:6]}", ProtocolType="HTTP")["ApiId"]
    made = gw.create_integration(
        ApiId=api, IntegrationType="AWS_PROXY", PayloadFormatVersion="1.0",
        IntegrationUri="arn:aws:lambda:us-east-1:000000000000:function:any",
    )  # fmt: skip
    iid = made["IntegrationId"]
    assert gw.get_integration(ApiId=api, IntegrationId=iid)["PayloadFormatVersion"] == "1.0"
    gw.update_integration(ApiId=api, IntegrationId=iid, PayloadFormatVersion="2.0")
    assert gw.get_integration(ApiId=api, IntegrationId=iid)["PayloadFormatVersion"] == "2.0"
    with pytest.raises(ClientError) as info:
        gw.update_integration(ApiId=api, IntegrationId=iid, PayloadFormatVersion="1.1")
    code, status, message = error(info)
    assert (code, status) == ("BadRequestException", 400)
    assert "use 2.0 or 1.0" in message
    assert gw.get_integration(ApiId=api, IntegrationId=iid)["PayloadFormatVersion"] == "2.0"
