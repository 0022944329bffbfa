"""`nimbus url` and `nimbus api`, run as a user runs them, against a live server: the URL
each prints must serve the function."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.exceptions
import httpx
import pytest

from nimbus.cli.apis import route_url
from nimbus.cli.client import function_arn_of, function_label
from nimbus.cli.urls import browser_url
from tests.cli.conftest import nimbus_cli
from tests.conftest import ROLE, live_server, make_zip
from tests.nimbus_process import NimbusProcess

ECHO = (
    "import json\n"
    "def handler(event, context):\n"
    "    body = {'path': event.get('rawPath'), 'params': event.get('pathParameters'),\n"
    "            'route': event.get('routeKey'), 'stage': event['requestContext'].get('stage'),\n"
    "            'method': event['requestContext']['http']['method']}\n"
    "    return {'statusCode': 200, 'body': json.dumps(body)}\n"
)


@pytest.fixture(autouse=True)
def wide_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich lays tables out 80 columns wide when not on a terminal; URLs need more."""
    monkeypatch.setenv("COLUMNS", "300")


def make_function(nimbus: NimbusProcess, name: str) -> None:
    nimbus.client().create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": ECHO})},
    )


def ok(nimbus: NimbusProcess, *args: str) -> tuple[str, str]:
    """(stdout stripped, stderr) of a command that must succeed."""
    result = nimbus_cli(nimbus, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip(), result.stderr


def fails(nimbus: NimbusProcess, *args: str) -> str:
    """The stderr of a command that must be refused as the caller's mistake (exit 2)."""
    result = nimbus_cli(nimbus, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


@pytest.mark.sandbox
def test_url_create_show_update_ls_rm(nimbus: NimbusProcess) -> None:
    lam = nimbus.client()
    make_function(nimbus, "web")

    url, said = ok(nimbus, "url", "create", "web")
    assert url.startswith(f"{nimbus.endpoint}/lambda-url/") and url.endswith("/")
    assert "created" in said and "AuthType NONE" in said
    url_id = url.rstrip("/").rsplit("/", 1)[1]
    browser = f"http://{url_id}.lambda-url.localhost:{nimbus.port}/"
    assert f"in a browser (absolute links work): {browser}" in said
    # What a browser sends to that address (Python does not resolve .localhost names).
    by_host = httpx.get(f"{nimbus.endpoint}/hello", headers={"Host": browser[7:-1]})
    assert by_host.json()["path"] == "/hello"
    answer = httpx.get(url + "hello/there")
    assert answer.status_code == 200, answer.text
    assert answer.json()["path"] == "/hello/there"

    # Again: the existing URL, unchanged.
    again, said = ok(nimbus, "url", "create", "web")
    assert again == url and "exists" in said
    assert ok(nimbus, "url", "show", "web")[0] == url

    # Flags on an existing URL update it; other Cors settings are kept.
    lam.update_function_url_config(FunctionName="web", Cors={"AllowMethods": ["GET"]})
    updated, said = ok(
        nimbus,
        "url",
        "create",
        "web",
        "--auth",
        "aws_iam",
        "--cors-origin",
        "https://a.example",
        "--cors-origin",
        "https://b.example",
    )
    assert updated == url and "updated" in said
    config = lam.get_function_url_config(FunctionName="web")
    assert config["AuthType"] == "AWS_IAM"
    assert config["Cors"]["AllowOrigins"] == ["https://a.example", "https://b.example"]
    assert config["Cors"]["AllowMethods"] == ["GET"]
    assert httpx.get(url).status_code == 403  # unsigned
    ok(nimbus, "url", "create", "web", "--auth", "NONE")
    assert httpx.get(url).status_code == 200

    # An alias gets its own URL.
    lam.publish_version(FunctionName="web")
    lam.create_alias(FunctionName="web", Name="live", FunctionVersion="1")
    live, _ = ok(nimbus, "url", "create", "web", "--qualifier", "live")
    assert live != url and httpx.get(live + "x").json()["path"] == "/x"

    listed, _ = ok(nimbus, "url", "ls")
    assert url in listed and live in listed and "web:live" in listed
    named, _ = ok(nimbus, "url", "ls", "web")
    assert url in named and live in named

    _, said = ok(nimbus, "url", "rm", "web")
    assert "deleted" in said
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_url_config(FunctionName="web")
    assert httpx.get(url).status_code == 404
    assert lam.get_function_url_config(FunctionName="web", Qualifier="live")["FunctionUrl"] == live
    shown = fails(nimbus, "url", "show", "web")
    assert "ResourceNotFoundException: The resource you requested does not exist." in shown
    assert "web has no function URL (or does not exist): `nimbus url create web`" in shown
    ok(nimbus, "url", "rm", "web", "--qualifier", "live")
    assert url not in ok(nimbus, "url", "ls")[0]


def test_url_errors(nimbus: NimbusProcess) -> None:
    missing = fails(nimbus, "url", "create", "nope")
    assert "ResourceNotFoundException: Function does not exist" in missing
    assert "create the function" in missing
    make_function(nimbus, "web")
    version = fails(nimbus, "url", "create", "web", "--qualifier", "1")
    assert "ValidationException" in version
    assert (
        "invalid value for '--auth'"
        in nimbus_cli(nimbus, "url", "create", "web", "--auth", "SOMETIMES").stderr.lower()
    )
    assert nimbus.client().list_function_url_configs(FunctionName="web")["FunctionUrlConfigs"] == []


@pytest.mark.sandbox
def test_api_route_finds_or_creates_everything(nimbus: NimbusProcess) -> None:
    v2 = nimbus.client("apigatewayv2")
    make_function(nimbus, "pets")

    url, said = ok(nimbus, "api", "route", "get /pets/{id}", "pets")
    (api,) = v2.get_apis()["Items"]
    assert api["Name"] == "nimbus"
    assert url == f"{api['ApiEndpoint']}/pets/{{id}}"
    assert "created HTTP API nimbus" in said and "created route GET /pets/{id}" in said
    answer = httpx.get(url.replace("{id}", "42"))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "path": "/pets/42",
        "params": {"id": "42"},
        "route": "GET /pets/{id}",
        "stage": "$default",
        "method": "GET",
    }
    api_id = api["ApiId"]
    (stage,) = v2.get_stages(ApiId=api_id)["Items"]
    assert stage["StageName"] == "$default" and stage["AutoDeploy"] is True
    (integration,) = v2.get_integrations(ApiId=api_id)["Items"]
    assert integration["IntegrationType"] == "AWS_PROXY"
    assert integration["PayloadFormatVersion"] == "2.0"
    assert integration["IntegrationUri"].endswith(":function:pets")

    # The same route again, with --key-required: updated in place.
    again, said = ok(nimbus, "api", "route", "GET /pets/{id}", "pets", "--key-required")
    assert again == url and "updated route" in said and "x-api-key" in said
    (route,) = v2.get_routes(ApiId=api_id)["Items"]
    assert route["ApiKeyRequired"] is True
    assert route["Target"] == f"integrations/{integration['IntegrationId']}"
    assert httpx.get(url.replace("{id}", "1")).status_code == 403
    apigw = nimbus.client("apigateway")
    key = apigw.create_api_key(name="cli", enabled=True)
    plan = apigw.create_usage_plan(name="cli", apiStages=[{"apiId": api_id, "stage": "$default"}])
    apigw.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    keyed = httpx.get(url.replace("{id}", "1"), headers={"x-api-key": key["value"]})
    assert keyed.status_code == 200, keyed.text

    # Another route to the same function on a new stage: the integration is reused.
    items, said = ok(nimbus, "api", "route", "POST /items", "pets", "--stage", "prod", "--iam")
    assert items == f"{api['ApiEndpoint']}/prod/items"
    assert "created stage prod" in said and "created integration" not in said
    assert len(v2.get_integrations(ApiId=api_id)["Items"]) == 1
    assert {s["StageName"] for s in v2.get_stages(ApiId=api_id)["Items"]} == {"$default", "prod"}
    iam_route = next(
        r for r in v2.get_routes(ApiId=api_id)["Items"] if r["RouteKey"] == "POST /items"
    )
    assert iam_route["AuthorizationType"] == "AWS_IAM" and not iam_route.get("ApiKeyRequired")
    assert httpx.post(items).status_code == 403  # unsigned
    ok(nimbus, "api", "route", "POST /items", "pets", "--stage", "prod")  # back to NONE
    served = httpx.post(items)
    assert served.status_code == 200, served.text
    assert served.json()["stage"] == "prod" and served.json()["path"] == "/prod/items"

    # A greedy route and $default on a second API.
    other, _ = ok(nimbus, "api", "route", "ANY /files/{proxy+}", "pets", "--api", "other")
    assert other.endswith("/files/{proxy+}")
    assert httpx.delete(other.replace("{proxy+}", "a/b")).json()["params"] == {"proxy": "a/b"}
    fallback, _ = ok(nimbus, "api", "route", "$default", "pets", "--api", "other")
    assert (
        fallback.endswith("/") and httpx.get(fallback + "any/where").json()["route"] == "$default"
    )

    listed, _ = ok(nimbus, "api", "ls")
    for text in ("GET /pets/{id}", "POST /items", "ANY /files/{proxy+}", "$default", url, items):
        assert text in listed
    assert "AWS_IAM" not in listed and "yes" in listed
    only, _ = ok(nimbus, "api", "ls", "--api", "other")
    assert "ANY /files/{proxy+}" in only and "GET /pets/{id}" not in only

    _, said = ok(nimbus, "api", "rm", "other")
    assert "deleted HTTP API other" in said
    assert [a["Name"] for a in v2.get_apis()["Items"]] == ["nimbus"]
    assert httpx.get(fallback + "x").status_code == 404
    assert "no HTTP API named 'other'" in fails(nimbus, "api", "rm", "other")
    assert "no HTTP API named 'other'" in fails(nimbus, "api", "ls", "--api", "other")


def test_api_route_errors_create_nothing(nimbus: NimbusProcess) -> None:
    v2 = nimbus.client("apigatewayv2")
    missing = fails(nimbus, "api", "route", "GET /a", "nope", "--api", "fresh")
    assert "ResourceNotFoundException: Function not found" in missing
    assert "create the function" in missing
    assert "Invalid route key 'FOO /a'" in fails(nimbus, "api", "route", "FOO /a", "nope")
    assert "Invalid route key" in fails(nimbus, "api", "route", "GET", "nope")
    assert v2.get_apis()["Items"] == []

    make_function(nimbus, "fn")
    ok(nimbus, "api", "route", "GET /pets/{id}", "fn")
    (api,) = v2.get_apis()["Items"]
    clash = fails(nimbus, "api", "route", "GET /pets/{petId}", "fn")
    assert "would match the same requests" in clash and "GET /pets/{id}" in clash
    assert [r["RouteKey"] for r in v2.get_routes(ApiId=api["ApiId"])["Items"]] == ["GET /pets/{id}"]

    # Names need not be unique: two APIs of one name are told apart by id.
    first = v2.create_api(Name="dup", ProtocolType="HTTP")["ApiId"]
    v2.create_api(Name="dup", ProtocolType="HTTP")
    assert "2 HTTP APIs are named 'dup'" in fails(
        nimbus, "api", "route", "GET /x", "fn", "--api", "dup"
    )
    assert "2 HTTP APIs are named 'dup'" in fails(nimbus, "api", "rm", "dup")
    by_id, _ = ok(nimbus, "api", "route", "GET /x", "fn", "--api", first)
    assert f"/execute-api/{first}/x" in by_id
    ok(nimbus, "api", "rm", first)
    with pytest.raises(botocore.exceptions.ClientError):
        v2.get_api(ApiId=first)


@pytest.fixture
def signed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NimbusProcess]:
    """A nimbus with api_auth = "sigv4", a function "web" on it, and the CLI pointed at
    its data dir (where it finds the keys)."""
    with live_server(tmp_path / "data", {"NIMBUS_API_AUTH": "sigv4"}) as server:
        monkeypatch.setenv("NIMBUS_DATA_DIR", str(server.data_dir))
        monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
        stored = json.loads((server.data_dir / "credentials.json").read_text())
        boto3.client(
            "lambda",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            aws_access_key_id=stored["AccessKeyId"],
            aws_secret_access_key=stored["SecretAccessKey"],
        ).create_function(
            FunctionName="web",
            Runtime="python3.12",
            Role=ROLE,
            Handler="app.handler",
            Code={"ZipFile": make_zip({"app.py": ECHO})},
        )
        yield server


def test_url_commands_sign_requests(signed: NimbusProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = ok(signed, "url", "create", "web")
    assert url in ok(signed, "url", "ls")[0]
    monkeypatch.setenv("NIMBUS_DATA_DIR", str(signed.data_dir.parent / "elsewhere"))
    unsigned = fails(signed, "url", "ls")
    assert "MissingAuthenticationTokenException" in unsigned and "NIMBUS_DATA_DIR" in unsigned


def test_api_commands_sign_requests(signed: NimbusProcess) -> None:
    route, _ = ok(signed, "api", "route", "GET /a", "web")
    assert route.endswith("/a") and "GET /a" in ok(signed, "api", "ls")[0]


def test_unreachable_server(tmp_path: Path) -> None:
    server = NimbusProcess(tmp_path)  # not started: nothing listens on its port
    for args in (("url", "ls"), ("api", "ls")):
        result = nimbus_cli(server, *args)
        assert result.returncode == 3
        assert "cannot reach" in result.stderr and "nimbus up" in result.stderr


def test_urls_and_labels() -> None:
    endpoint = "http://h:1/execute-api/abc"
    assert route_url(endpoint, "$default", "GET /pets/{id}") == f"{endpoint}/pets/{{id}}"
    assert route_url(endpoint, "prod", "ANY /f/{proxy+}") == f"{endpoint}/prod/f/{{proxy+}}"
    assert route_url(endpoint, "prod", "$default") == f"{endpoint}/prod/"
    arn = "arn:aws:lambda:us-east-1:000000000000:function:fn"
    wrapped = f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{arn}/invocations"
    assert function_arn_of(wrapped) == arn == function_arn_of(f"{arn}:$LATEST")
    assert function_label(f"{arn}:live") == "fn:live" and function_label(wrapped) == "fn"
    assert function_label(arn) == "fn"
    uid = "abcdefghij0123456789abcdefghij01"
    assert browser_url(f"http://127.0.0.1:9000/lambda-url/{uid}/") == (
        f"http://{uid}.lambda-url.localhost:9000/"
    )
    # Only on loopback: elsewhere a .localhost name would not reach the server.
    assert browser_url(f"http://10.0.0.5:9000/lambda-url/{uid}/") is None
