"""Who may call an HTTP trigger, and how often, end to end: AWS_IAM function URLs and
routes (SigV4 signed with botocore, sent with httpx), API keys and usage plans through
boto3's ``apigateway`` client (throttles, quotas, GetUsage), and the account-wide rate
limit. A real ``nimbus up``; functions really run in the sandbox."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.conftest import ROLE, live_server, make_zip, python_runtime
from tests.nimbus_process import NimbusProcess

pytestmark = pytest.mark.sandbox

ACCESS_KEY = "AKIANIMBUSTESTKEY001"
SECRET_KEY = "nimbus-test-secret/0123456789abcdefABCDEFG"
REGION = "us-east-1"
# The module's server (tests/api/conftest.py) has a configured key pair for SigV4; each
# test has APIs, keys and plans of its own.
SERVER_ENV = {"NIMBUS_ACCESS_KEY_ID": ACCESS_KEY, "NIMBUS_SECRET_ACCESS_KEY": SECRET_KEY}

ECHO = """
import json

def handler(event, context):
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps(event)}
"""


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as client:
        yield client


def create_echo(lam) -> tuple[str, str]:
    """A new function that answers with its event: (name, ARN)."""
    name = f"echo-{uuid.uuid4().hex[:8]}"
    made = lam.create_function(
        FunctionName=name,
        Runtime=python_runtime(),
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": ECHO})},
    )
    return name, made["FunctionArn"]


@pytest.fixture(scope="module")
def echo(server: NimbusProcess) -> tuple[str, str]:
    return create_echo(server.client())


def signed(
    method: str,
    url: str,
    service: str,
    *,
    secret: str = SECRET_KEY,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> httpx.Request:
    """``method url`` signed by botocore as any AWS SDK would sign it, as an httpx request."""
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    SigV4Auth(Credentials(ACCESS_KEY, secret), service, REGION).add_auth(request)
    return httpx.Request(method, url, content=body, headers=dict(request.headers.items()))


def api_with_route(
    gw, function_arn: str, route_key: str, stage: str = "prod", **route: object
) -> str:
    """A new HTTP API with one route to the function and one stage: its id."""
    api_id = gw.create_api(Name=f"api-{uuid.uuid4().hex[:6]}", ProtocolType="HTTP")["ApiId"]
    integration = gw.create_integration(
        ApiId=api_id,
        IntegrationType="AWS_PROXY",
        IntegrationUri=function_arn,
        PayloadFormatVersion="2.0",
    )["IntegrationId"]
    gw.create_route(ApiId=api_id, RouteKey=route_key, Target=f"integrations/{integration}", **route)
    gw.create_stage(ApiId=api_id, StageName=stage)
    return api_id


async def _burst(requests: list[httpx.Request]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(*(client.send(r) for r in requests))


def burst(requests: list[httpx.Request]) -> list[httpx.Response]:
    """Send the requests at once: a rate limit sees them within milliseconds, whatever
    the function's cold start costs."""
    return asyncio.run(_burst(requests))


# -- 5. AWS_IAM ------------------------------------------------------------------------------


def test_aws_iam_function_url(lam, http: httpx.Client, echo: tuple[str, str]) -> None:
    made = lam.create_function_url_config(FunctionName=echo[0], AuthType="AWS_IAM")
    url = made["FunctionUrl"] + "private/path?x=1&y=two%20words"

    unsigned = http.get(url)
    assert unsigned.status_code == 403
    assert unsigned.headers["x-amzn-errortype"]

    good = http.send(signed("GET", url, "lambda"))
    assert good.status_code == 200, good.text
    context = good.json()["requestContext"]
    assert context["authorizer"]["iam"]["accessKey"] == ACCESS_KEY
    assert context["authorizer"]["iam"]["accountId"] == "000000000000"
    assert context["accountId"] == "000000000000"  # the caller's account, not "anonymous"
    assert good.json()["queryStringParameters"] == {"x": "1", "y": "two words"}

    body = b'{"order": 66}'
    posted = http.send(
        signed("POST", url, "lambda", body=body, headers={"Content-Type": "application/json"})
    )
    assert posted.status_code == 200, posted.text
    assert posted.json()["body"] == '{"order": 66}'

    wrong = http.send(signed("GET", url, "lambda", secret="not-the-secret"))
    assert wrong.status_code == 403
    # Signed for another service: refused as well.
    other_service = http.send(signed("GET", url, "execute-api"))
    assert other_service.status_code == 403
    # A signature does not carry over to a different body.
    tampered = signed("POST", url, "lambda", body=body)
    tampered = httpx.Request("POST", url, content=b'{"order": 67}', headers=tampered.headers)
    assert http.send(tampered).status_code == 403


def test_aws_iam_route(gw, http: httpx.Client, echo: tuple[str, str]) -> None:
    api_id = api_with_route(gw, echo[1], "GET /secure/{id}", AuthorizationType="AWS_IAM")
    endpoint = gw.get_api(ApiId=api_id)["ApiEndpoint"]
    url = f"{endpoint}/prod/secure/abc"

    unsigned = http.get(url)
    assert unsigned.status_code == 403
    assert unsigned.headers["x-amzn-errortype"] == "ForbiddenException"

    good = http.send(signed("GET", url, "execute-api"))
    assert good.status_code == 200, good.text
    event = good.json()
    assert event["requestContext"]["authorizer"]["iam"]["accessKey"] == ACCESS_KEY
    assert event["pathParameters"] == {"id": "abc"}
    assert event["requestContext"]["stage"] == "prod"

    assert http.send(signed("GET", url, "execute-api", secret="wrong")).status_code == 403
    assert http.send(signed("GET", url, "lambda")).status_code == 403


# -- 6. API keys and usage plans --------------------------------------------------------------


def test_api_keys(gw, apigw, http: httpx.Client, echo: tuple[str, str]) -> None:
    api_id = api_with_route(gw, echo[1], "GET /items", ApiKeyRequired=True)
    url = f"{gw.get_api(ApiId=api_id)['ApiEndpoint']}/prod/items"
    plan = apigw.create_usage_plan(name="keys", apiStages=[{"apiId": api_id, "stage": "prod"}])
    value = "valid-key-" + uuid.uuid4().hex
    key = apigw.create_api_key(name="valid", value=value, enabled=True)
    apigw.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    disabled_value = "disabled-key-" + uuid.uuid4().hex
    disabled = apigw.create_api_key(name="disabled", value=disabled_value, enabled=False)
    apigw.create_usage_plan_key(usagePlanId=plan["id"], keyId=disabled["id"], keyType="API_KEY")
    planless_value = "planless-key-" + uuid.uuid4().hex
    apigw.create_api_key(name="planless", value=planless_value, enabled=True)

    for headers in (
        {},
        {"x-api-key": "unknown-key-" + uuid.uuid4().hex},
        {"x-api-key": disabled_value},
        {"x-api-key": planless_value},
    ):
        refused = http.get(url, headers=headers)
        assert refused.status_code == 403, headers
        assert refused.headers["x-amzn-errortype"] == "ForbiddenException"
        assert refused.json() == {"message": "Forbidden"}

    good = http.get(url, headers={"x-api-key": value})
    assert good.status_code == 200, good.text
    assert good.json()["headers"]["x-api-key"] == value
    assert good.json()["requestContext"]["stage"] == "prod"

    # Disabling the key takes effect at once; enabling the other one too.
    apigw.update_api_key(
        apiKey=key["id"], patchOperations=[{"op": "replace", "path": "/enabled", "value": "false"}]
    )
    assert http.get(url, headers={"x-api-key": value}).status_code == 403
    apigw.update_api_key(
        apiKey=disabled["id"],
        patchOperations=[{"op": "replace", "path": "/enabled", "value": "true"}],
    )
    assert http.get(url, headers={"x-api-key": disabled_value}).status_code == 200

    # The key is for this API's stage only: another stage of the API is not in the plan.
    gw.create_stage(ApiId=api_id, StageName="dev")
    dev = http.get(url.replace("/prod/", "/dev/"), headers={"x-api-key": disabled_value})
    assert dev.status_code == 403


def test_usage_plan_throttle(gw, apigw, http: httpx.Client, echo: tuple[str, str]) -> None:
    api_id = api_with_route(gw, echo[1], "GET /items", ApiKeyRequired=True)
    url = f"{gw.get_api(ApiId=api_id)['ApiEndpoint']}/prod/items"
    plan = apigw.create_usage_plan(
        name="slow",
        apiStages=[{"apiId": api_id, "stage": "prod"}],
        throttle={"rateLimit": 1, "burstLimit": 2},
    )
    value = "throttled-key-" + uuid.uuid4().hex
    key = apigw.create_api_key(name="throttled", value=value, enabled=True)
    apigw.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")

    responses = burst([httpx.Request("GET", url, headers={"x-api-key": value})] * 3)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 429], [r.text for r in responses]
    throttled = next(r for r in responses if r.status_code == 429)
    assert throttled.json() == {"message": "Too Many Requests"}
    assert int(throttled.headers["retry-after"]) >= 1
    assert throttled.headers["x-amzn-errortype"]

    # The bucket refills at the plan's rate: after Retry-After a request gets through.
    deadline = time.monotonic() + 10
    while True:
        again = http.get(url, headers={"x-api-key": value})
        if again.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(float(again.headers.get("retry-after", "1")))
    assert again.status_code == 200


def test_usage_plan_quota_and_usage(
    gw, apigw, http: httpx.Client, echo: tuple[str, str], server: NimbusProcess
) -> None:
    api_id = api_with_route(gw, echo[1], "GET /items", ApiKeyRequired=True)
    url = f"{gw.get_api(ApiId=api_id)['ApiEndpoint']}/prod/items"
    plan = apigw.create_usage_plan(
        name="metered",
        apiStages=[{"apiId": api_id, "stage": "prod"}],
        quota={"limit": 3, "period": "DAY"},
    )
    value = "metered-key-" + uuid.uuid4().hex
    key = apigw.create_api_key(name="metered", value=value, enabled=True)
    apigw.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")

    for _ in range(3):
        assert http.get(url, headers={"x-api-key": value}).status_code == 200
    over = http.get(url, headers={"x-api-key": value})
    assert over.status_code == 429
    assert over.json() == {"message": "Limit Exceeded"}
    assert over.headers["x-amzn-errortype"] == "LimitExceededException"
    # Until the quota period (a UTC day) ends.
    now = datetime.now(UTC)
    to_midnight = 86400 - (now.hour * 3600 + now.minute * 60 + now.second)
    assert 1 <= int(over.headers["retry-after"]) <= to_midnight + 2

    # Usage is written behind, about once a second: poll until it shows.
    today = datetime.now(UTC).date().isoformat()
    deadline = time.monotonic() + 15
    while True:
        usage = apigw.get_usage(usagePlanId=plan["id"], startDate=today, endDate=today)
        if usage["items"].get(key["id"]) == [[3, 0]] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert usage["items"] == {key["id"]: [[3, 0]]}  # [used, remaining] for today

    # The count is durable: a restarted server still refuses the key for today.
    server.restart()
    again = http.get(url, headers={"x-api-key": value})
    assert again.status_code == 429
    assert again.json() == {"message": "Limit Exceeded"}


def test_stage_route_throttling(gw, http: httpx.Client, echo: tuple[str, str]) -> None:
    api_id = api_with_route(gw, echo[1], "GET /items")
    gw.update_stage(
        ApiId=api_id,
        StageName="prod",
        DefaultRouteSettings={"ThrottlingBurstLimit": 1, "ThrottlingRateLimit": 0.5},
    )
    url = f"{gw.get_api(ApiId=api_id)['ApiEndpoint']}/prod/items"
    responses = burst([httpx.Request("GET", url)] * 2)
    assert sorted(r.status_code for r in responses) == [200, 429]
    throttled = next(r for r in responses if r.status_code == 429)
    assert throttled.json() == {"message": "Too Many Requests"}
    assert int(throttled.headers["retry-after"]) >= 1


def test_function_concurrency_limit(lam, http: httpx.Client) -> None:
    """A function that may not run (reserved concurrency 0) is throttled, not failed."""
    name, _ = create_echo(lam)
    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    throttled = http.get(url)
    assert throttled.status_code == 429
    assert throttled.headers["x-amzn-errortype"]
    lam.delete_function_concurrency(FunctionName=name)
    assert http.get(url).status_code == 200


# -- the account-wide rate limit ------------------------------------------------------------


def test_account_rate_limit(tmp_path: Path) -> None:
    env = {"NIMBUS_HTTP_RATE_LIMIT": "1", "NIMBUS_HTTP_BURST_LIMIT": "2"}
    with live_server(tmp_path / "data", env) as proc:
        lam = proc.client()
        name, _ = create_echo(lam)
        url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
        responses = burst([httpx.Request("GET", url + "ping")] * 3)
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200, 200, 429], [r.text for r in responses]
        throttled = next(r for r in responses if r.status_code == 429)
        assert int(throttled.headers["retry-after"]) >= 1
        # The control plane is not rate limited by it.
        for _ in range(4):
            lam.get_function_url_config(FunctionName=name)
