"""HTTP APIs through boto3's apigatewayv2 client against a live server: quick create,
APIs, integrations, routes and stages, errors, cascades; and the store's route table on
every backend."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError

from nimbus.errors import Conflict, NotFound
from nimbus.gateway.routes import RouteTable
from nimbus.models import ApiIntegration, ApiRoute, ApiStage, HttpApi
from nimbus.store.database import Database
from nimbus.store.http_apis import HttpApiStore
from tests.api.conftest import error
from tests.conftest import aws_cli, store_url
from tests.nimbus_process import NimbusProcess

ARN = "arn:aws:lambda:us-east-1:000000000000:function:"
APIGW_URI = "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{}/invocations"


@pytest.fixture
def api(gw: Any) -> str:
    """A new HTTP API on the module's server (tests/api/conftest.py), which every test
    shares, working on APIs of its own."""
    return gw.create_api(Name=f"api-{uuid.uuid4().hex[:6]}", ProtocolType="HTTP")["ApiId"]


def integration(gw, api: str, uri: str = ARN + "fn") -> str:
    return gw.create_integration(
        ApiId=api, IntegrationType="AWS_PROXY", IntegrationUri=uri, PayloadFormatVersion="2.0"
    )["IntegrationId"]


def rows(server: NimbusProcess, table: str, api_id: str) -> int:
    engine = sa.create_engine(store_url(server))
    try:
        with engine.connect() as conn:
            query = sa.text(f"SELECT count(*) FROM {table} WHERE api_id = :a")
            return int(conn.execute(query, {"a": api_id}).scalar_one())
    finally:
        engine.dispose()


# -- APIs ------------------------------------------------------------------------------


def test_quick_create(gw, server: NimbusProcess) -> None:
    created = gw.create_api(Name="quick", ProtocolType="HTTP", Target=ARN + "hello")
    api_id = created["ApiId"]
    assert re.fullmatch(r"[a-z0-9]{10}", api_id)
    assert created["ApiEndpoint"] == f"{server.endpoint}/execute-api/{api_id}"
    assert created["RouteSelectionExpression"] == "${request.method} ${request.path}"
    assert created["ProtocolType"] == "HTTP"
    assert created["CreatedDate"].year >= 2024
    (integ,) = gw.get_integrations(ApiId=api_id)["Items"]
    assert integ["IntegrationType"] == "AWS_PROXY"
    assert integ["IntegrationUri"] == ARN + "hello"
    assert integ["PayloadFormatVersion"] == "2.0"
    assert integ["TimeoutInMillis"] == 30000
    assert integ["ApiGatewayManaged"] is True
    (route,) = gw.get_routes(ApiId=api_id)["Items"]
    assert route["RouteKey"] == "$default"
    assert route["Target"] == f"integrations/{integ['IntegrationId']}"
    assert route["AuthorizationType"] == "NONE" and route["ApiKeyRequired"] is False
    (stage,) = gw.get_stages(ApiId=api_id)["Items"]
    assert stage["StageName"] == "$default" and stage["AutoDeploy"] is True


def test_quick_create_with_route_key(gw) -> None:
    api_id = gw.create_api(
        Name="q2", ProtocolType="HTTP", Target=ARN + "hello:live", RouteKey="GET /hello"
    )["ApiId"]
    (route,) = gw.get_routes(ApiId=api_id)["Items"]
    assert route["RouteKey"] == "GET /hello"


def test_quick_create_is_all_or_nothing(gw, server: NimbusProcess) -> None:
    before = len(gw.get_apis()["Items"])
    with pytest.raises(ClientError) as info:
        gw.create_api(Name="bad", ProtocolType="HTTP", Target=ARN + "f", RouteKey="GET nope")
    assert error(info)[:2] == ("BadRequestException", 400)
    with pytest.raises(ClientError) as info:
        gw.create_api(Name="bad", ProtocolType="HTTP", Target="https://example.com")
    assert error(info)[:2] == ("BadRequestException", 400)
    assert "Lambda function ARN" in error(info)[2]
    assert len(gw.get_apis()["Items"]) == before


def test_get_update_delete_api(gw) -> None:
    cors = {"AllowOrigins": ["https://example.com"], "AllowMethods": ["GET"], "MaxAge": 60}
    api_id = gw.create_api(
        Name="full",
        ProtocolType="HTTP",
        Description="d",
        CorsConfiguration=cors,
        Tags={"team": "a"},
        Version="v1",
    )["ApiId"]
    got = gw.get_api(ApiId=api_id)
    assert got["Name"] == "full" and got["Description"] == "d" and got["Version"] == "v1"
    assert got["CorsConfiguration"] == cors
    assert got["Tags"] == {"team": "a"}
    assert got["DisableExecuteApiEndpoint"] is False
    updated = gw.update_api(ApiId=api_id, Name="renamed", DisableExecuteApiEndpoint=True)
    assert updated["Name"] == "renamed" and updated["Description"] == "d"
    assert updated["DisableExecuteApiEndpoint"] is True
    gw.delete_cors_configuration(ApiId=api_id)
    assert "CorsConfiguration" not in gw.get_api(ApiId=api_id)
    gw.delete_api(ApiId=api_id)
    with pytest.raises(ClientError) as info:
        gw.get_api(ApiId=api_id)
    assert error(info)[:2] == ("NotFoundException", 404)
    assert info.value.response["Error"]["Message"].startswith("Invalid API identifier")


def test_get_apis_pages(gw) -> None:
    ids = {gw.create_api(Name=f"page{i}", ProtocolType="HTTP")["ApiId"] for i in range(3)}
    seen: list[str] = []
    token = None
    while True:
        kwargs = {"MaxResults": "2", **({"NextToken": token} if token else {})}
        page = gw.get_apis(**kwargs)
        assert len(page["Items"]) <= 2
        seen += [a["ApiId"] for a in page["Items"]]
        token = page.get("NextToken")
        if not token:
            break
    assert ids <= set(seen) and len(seen) == len(set(seen))
    paginated = [a["ApiId"] for p in gw.get_paginator("get_apis").paginate() for a in p["Items"]]
    assert sorted(paginated) == sorted(seen)
    with pytest.raises(ClientError) as info:
        gw.get_apis(MaxResults="0")
    assert error(info)[:2] == ("BadRequestException", 400)
    with pytest.raises(ClientError) as info:
        gw.get_apis(NextToken="not-a-token")
    assert error(info)[:2] == ("BadRequestException", 400)


def test_api_validation(gw) -> None:
    cases = [
        ({"Name": "w", "ProtocolType": "WEBSOCKET"}, "WebSocket APIs are not supported"),
        ({"Name": "x", "ProtocolType": "HTTP", "RouteKey": "GET /x"}, "quick create"),
        (
            {"Name": "x", "ProtocolType": "HTTP", "RouteSelectionExpression": "$request.body"},
            "routeSelectionExpression",
        ),
        ({"Name": "x", "ProtocolType": "HTTP", "CredentialsArn": ROLE_ARN}, "credentialsArn"),
        ({"Name": "", "ProtocolType": "HTTP"}, "name"),
        (
            {
                "Name": "x",
                "ProtocolType": "HTTP",
                "CorsConfiguration": {"AllowOrigins": ["*"], "AllowCredentials": True},
            },
            "allowCredentials",
        ),
        (
            {
                "Name": "x",
                "ProtocolType": "HTTP",
                "Target": "arn:aws:lambda:eu-west-1:000000000000:function:f",
            },
            "region us-east-1",
        ),
    ]
    for kwargs, text in cases:
        with pytest.raises(ClientError) as info:
            gw.create_api(**kwargs)
        code, status, message = error(info)
        assert (code, status) == ("BadRequestException", 400), kwargs
        assert text in message, (kwargs, message)


ROLE_ARN = "arn:aws:iam::000000000000:role/r"


def test_unknown_operations_are_refused(gw, api: str) -> None:
    with pytest.raises(ClientError) as info:
        gw.create_deployment(ApiId=api)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_error_wire_shape(server: NimbusProcess) -> None:
    """API Gateway's shape: the type in X-Amzn-ErrorType, a body with only "message"."""
    reply = httpx.post(
        f"{server.endpoint}/v2/apis", json={"name": "w", "protocolType": "WEBSOCKET"}
    )
    assert reply.status_code == 400
    assert reply.headers["x-amzn-errortype"] == "BadRequestException"
    assert reply.json() == {
        "message": "WebSocket APIs are not supported by nimbus; use protocolType HTTP."
    }
    reply = httpx.get(f"{server.endpoint}/v2/apis/nosuchapi0")
    assert reply.status_code == 404
    assert reply.json() == {
        "message": "Invalid API identifier specified 000000000000:nosuchapi0",
        "resourceType": "Api",
    }
    reply = httpx.post(f"{server.endpoint}/v2/apis", content=b"{not json")
    assert reply.status_code == 400
    assert reply.headers["x-amzn-errortype"] == "BadRequestException"


def test_aws_cli_works_unchanged(server: NimbusProcess) -> None:

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return aws_cli(server.endpoint, "apigatewayv2", *args, ok=ok)

    created = json.loads(
        run("create-api", "--name", "cli", "--protocol-type", "HTTP", "--target", ARN + "f").stdout
    )
    api_id = created["ApiId"]
    routes = json.loads(run("get-routes", "--api-id", api_id).stdout)["Items"]
    assert [r["RouteKey"] for r in routes] == ["$default"]
    bad = run("create-route", "--api-id", api_id, "--route-key", "GET x", ok=False)
    assert "BadRequestException" in bad.stderr and "must start with '/'" in bad.stderr
    run("delete-api", "--api-id", api_id)


# -- integrations ----------------------------------------------------------------------


def test_integration_lifecycle(gw, api: str) -> None:
    created = gw.create_integration(
        ApiId=api,
        IntegrationType="AWS_PROXY",
        IntegrationUri=ARN + "fn:live",
        PayloadFormatVersion="2.0",
        TimeoutInMillis=5000,
        Description="first",
        IntegrationMethod="POST",
    )
    iid = created["IntegrationId"]
    assert re.fullmatch(r"[a-z0-9]{7}", iid)
    assert created["TimeoutInMillis"] == 5000 and created["Description"] == "first"
    assert created["IntegrationMethod"] == "POST" and created["ConnectionType"] == "INTERNET"
    assert gw.get_integration(ApiId=api, IntegrationId=iid)["IntegrationUri"] == ARN + "fn:live"
    wrapped = APIGW_URI.format(ARN + "other:3")
    updated = gw.update_integration(
        ApiId=api, IntegrationId=iid, IntegrationUri=wrapped, TimeoutInMillis=100
    )
    assert updated["IntegrationUri"] == wrapped and updated["TimeoutInMillis"] == 100
    assert updated["Description"] == "first"
    second = integration(gw, api)
    items = gw.get_integrations(ApiId=api)["Items"]
    assert {i["IntegrationId"] for i in items} == {iid, second}
    gw.delete_integration(ApiId=api, IntegrationId=iid)
    with pytest.raises(ClientError) as info:
        gw.get_integration(ApiId=api, IntegrationId=iid)
    assert error(info)[:2] == ("NotFoundException", 404)
    with pytest.raises(ClientError) as info:
        gw.delete_integration(ApiId=api, IntegrationId=iid)
    assert error(info)[:2] == ("NotFoundException", 404)


def test_integration_validation(gw, api: str, server: NimbusProcess) -> None:
    base = {"ApiId": api, "IntegrationType": "AWS_PROXY", "IntegrationUri": ARN + "f"}
    cases = [
        ({**base, "PayloadFormatVersion": "3.0"}, "use 2.0 or 1.0"),
        (base, "payloadFormatVersion is required"),
        (
            {**base, "IntegrationType": "HTTP_PROXY", "PayloadFormatVersion": "2.0"},
            "only AWS_PROXY",
        ),
        ({**base, "IntegrationUri": "f", "PayloadFormatVersion": "2.0"}, "integrationUri"),
        (
            {**base, "PayloadFormatVersion": "2.0", "RequestParameters": {"a": "b"}},
            "requestParameters is not supported",
        ),
        ({**base, "PayloadFormatVersion": "2.0", "IntegrationMethod": "GET"}, "POST"),
        (
            {"ApiId": api, "IntegrationType": "AWS_PROXY", "PayloadFormatVersion": "2.0"},
            "integrationUri is required",
        ),
    ]
    for kwargs, text in cases:
        with pytest.raises(ClientError) as info:
            gw.create_integration(**kwargs)
        code, status, message = error(info)
        assert (code, status) == ("BadRequestException", 400), kwargs
        assert text in message, (kwargs, message)
    # Out-of-range timeouts are caught by the model's own constraint, on our side too.
    raw = server.client("apigatewayv2", validate=False)
    with pytest.raises(ClientError) as info:
        raw.create_integration(**base, PayloadFormatVersion="2.0", TimeoutInMillis=40000)
    assert error(info)[:2] == ("BadRequestException", 400)
    assert "timeoutInMillis" in error(info)[2]
    assert gw.get_integrations(ApiId=api)["Items"] == []
    with pytest.raises(ClientError) as info:
        gw.create_integration(**{**base, "ApiId": "nosuchapi0", "PayloadFormatVersion": "2.0"})
    assert error(info)[:2] == ("NotFoundException", 404)


def test_integration_in_use_cannot_be_deleted(gw, api: str) -> None:
    iid = integration(gw, api)
    rid = gw.create_route(ApiId=api, RouteKey="GET /x", Target=f"integrations/{iid}")["RouteId"]
    with pytest.raises(ClientError) as info:
        gw.delete_integration(ApiId=api, IntegrationId=iid)
    code, status, message = error(info)
    assert (code, status) == ("ConflictException", 409)
    assert rid in message
    gw.delete_route(ApiId=api, RouteId=rid)
    gw.delete_integration(ApiId=api, IntegrationId=iid)


# -- routes ----------------------------------------------------------------------------


def test_route_lifecycle(gw, api: str) -> None:
    iid = integration(gw, api)
    created = gw.create_route(
        ApiId=api,
        RouteKey="GET /pets/{id}",
        Target=f"integrations/{iid}",
        ApiKeyRequired=True,
        AuthorizationType="AWS_IAM",
        OperationName="getPet",
    )
    rid = created["RouteId"]
    assert re.fullmatch(r"[a-z0-9]{7}", rid)
    assert created["ApiKeyRequired"] is True and created["AuthorizationType"] == "AWS_IAM"
    got = gw.get_route(ApiId=api, RouteId=rid)
    assert got["RouteKey"] == "GET /pets/{id}" and got["OperationName"] == "getPet"
    updated = gw.update_route(
        ApiId=api, RouteId=rid, RouteKey="ANY /pets/{id}", ApiKeyRequired=False
    )
    assert updated["RouteKey"] == "ANY /pets/{id}" and updated["ApiKeyRequired"] is False
    assert updated["AuthorizationType"] == "AWS_IAM" and updated["Target"] == f"integrations/{iid}"
    gw.create_route(ApiId=api, RouteKey="$default", Target=f"integrations/{iid}")
    gw.create_route(ApiId=api, RouteKey="POST /pets")  # no target yet
    keys = sorted(r["RouteKey"] for r in gw.get_routes(ApiId=api)["Items"])
    assert keys == ["$default", "ANY /pets/{id}", "POST /pets"]
    gw.delete_route(ApiId=api, RouteId=rid)
    with pytest.raises(ClientError) as info:
        gw.get_route(ApiId=api, RouteId=rid)
    assert error(info)[:2] == ("NotFoundException", 404)


def test_route_validation(gw, api: str) -> None:
    iid = integration(gw, api)
    gw.create_route(ApiId=api, RouteKey="GET /pets/{id}", Target=f"integrations/{iid}")
    cases = [
        ({"RouteKey": "GET pets"}, "BadRequestException", "must start with '/'"),
        ({"RouteKey": "FETCH /pets"}, "BadRequestException", "the method must be one of"),
        ({"RouteKey": "GET /{proxy+}/x"}, "BadRequestException", "last segment"),
        ({"RouteKey": "GET /x", "Target": "integrations/zzzzzzz"}, "NotFoundException", "zzzzzzz"),
        ({"RouteKey": "GET /x", "Target": "lambda"}, "BadRequestException", "integrations/"),
        ({"RouteKey": "GET /pets/{id}"}, "ConflictException", "already exists"),
        ({"RouteKey": "GET /pets/{name}"}, "ConflictException", "conflicts with"),
        ({"RouteKey": "GET /x", "AuthorizationType": "JWT"}, "BadRequestException", "JWT"),
        ({"RouteKey": "GET /x", "AuthorizerId": "abc"}, "BadRequestException", "authorizerId"),
    ]
    for kwargs, code, text in cases:
        with pytest.raises(ClientError) as info:
            gw.create_route(ApiId=api, **kwargs)
        assert error(info)[0] == code, kwargs
        assert text in error(info)[2], (kwargs, error(info))
    assert len(gw.get_routes(ApiId=api)["Items"]) == 1
    other = gw.create_route(ApiId=api, RouteKey="GET /other")["RouteId"]
    with pytest.raises(ClientError) as info:
        gw.update_route(ApiId=api, RouteId=other, RouteKey="GET /pets/{x}")
    assert error(info)[:2] == ("ConflictException", 409)
    with pytest.raises(ClientError) as info:
        gw.update_route(ApiId=api, RouteId=other, Target="integrations/nope123")
    assert error(info)[:2] == ("NotFoundException", 404)
    assert gw.get_route(ApiId=api, RouteId=other)["RouteKey"] == "GET /other"


def test_quick_created_route_key_is_fixed(gw) -> None:
    api_id = gw.create_api(Name="q", ProtocolType="HTTP", Target=ARN + "f")["ApiId"]
    (route,) = gw.get_routes(ApiId=api_id)["Items"]
    with pytest.raises(ClientError) as info:
        gw.update_route(ApiId=api_id, RouteId=route["RouteId"], RouteKey="GET /x")
    assert error(info)[:2] == ("BadRequestException", 400)
    updated = gw.update_route(ApiId=api_id, RouteId=route["RouteId"], ApiKeyRequired=True)
    assert updated["ApiKeyRequired"] is True


# -- stages ----------------------------------------------------------------------------


def test_stage_lifecycle(gw, api: str) -> None:
    created = gw.create_stage(
        ApiId=api,
        StageName="prod",
        AutoDeploy=True,
        Description="production",
        StageVariables={"table": "pets"},
        DefaultRouteSettings={"ThrottlingBurstLimit": 10, "ThrottlingRateLimit": 5.5},
        RouteSettings={"GET /pets": {"ThrottlingBurstLimit": 1}},
        Tags={"env": "prod"},
    )
    assert created["StageName"] == "prod" and created["AutoDeploy"] is True
    assert created["DefaultRouteSettings"] == {
        "ThrottlingBurstLimit": 10,
        "ThrottlingRateLimit": 5.5,
    }
    assert created["RouteSettings"] == {"GET /pets": {"ThrottlingBurstLimit": 1}}
    got = gw.get_stage(ApiId=api, StageName="prod")
    assert got["StageVariables"] == {"table": "pets"} and got["Tags"] == {"env": "prod"}
    updated = gw.update_stage(
        ApiId=api, StageName="prod", StageVariables={"table": "cats"}, AutoDeploy=False
    )
    assert updated["StageVariables"] == {"table": "cats"} and updated["AutoDeploy"] is False
    assert updated["Description"] == "production"
    gw.create_stage(ApiId=api, StageName="$default")
    assert gw.get_stage(ApiId=api, StageName="$default")["StageName"] == "$default"
    names = sorted(s["StageName"] for s in gw.get_stages(ApiId=api)["Items"])
    assert names == ["$default", "prod"]
    gw.delete_stage(ApiId=api, StageName="prod")
    with pytest.raises(ClientError) as info:
        gw.get_stage(ApiId=api, StageName="prod")
    assert error(info)[:2] == ("NotFoundException", 404)


def test_stage_validation(gw, api: str) -> None:
    gw.create_stage(ApiId=api, StageName="dev")
    cases = [
        ({"StageName": "dev"}, "ConflictException", "already exists"),
        ({"StageName": "no/slash"}, "BadRequestException", "Invalid stage name"),
        ({"StageName": "x", "DeploymentId": "abc"}, "BadRequestException", "deployments"),
        (
            {"StageName": "x", "StageVariables": {"bad-name": "v"}},
            "BadRequestException",
            "stage variable name",
        ),
        (
            {"StageName": "x", "RouteSettings": {"GET nope": {}}},
            "BadRequestException",
            "Invalid route key",
        ),
    ]
    for kwargs, code, text in cases:
        with pytest.raises(ClientError) as info:
            gw.create_stage(ApiId=api, **kwargs)
        assert error(info)[0] == code, kwargs
        assert text in error(info)[2], (kwargs, error(info))
    assert [s["StageName"] for s in gw.get_stages(ApiId=api)["Items"]] == ["dev"]


# -- cascades --------------------------------------------------------------------------


def test_delete_api_cascades(gw, server: NimbusProcess) -> None:
    api_id = gw.create_api(Name="gone", ProtocolType="HTTP", Target=ARN + "f")["ApiId"]
    iid = integration(gw, api_id)
    gw.create_route(ApiId=api_id, RouteKey="GET /a", Target=f"integrations/{iid}")
    gw.create_stage(ApiId=api_id, StageName="prod")
    for table in ("api_routes", "api_integrations", "api_stages"):
        assert rows(server, table, api_id) > 0
    gw.delete_api(ApiId=api_id)
    for table in ("apis", "api_routes", "api_integrations", "api_stages"):
        assert rows(server, table, api_id) == 0, table
    with pytest.raises(ClientError) as info:
        gw.get_routes(ApiId=api_id)
    assert error(info)[:2] == ("NotFoundException", 404)
    with pytest.raises(ClientError) as info:
        gw.delete_api(ApiId=api_id)
    assert error(info)[:2] == ("NotFoundException", 404)


# -- the store's view for the data plane, on every backend -----------------------------


@pytest.fixture
def store(database_url: str) -> Iterator[HttpApiStore]:
    db = Database(database_url)
    db.migrate()
    yield HttpApiStore(db, "000000000000")
    db.dispose()


def test_definition_and_change_hook(store: HttpApiStore) -> None:
    heard: list[str] = []
    store.on_change(heard.append)
    now = "2026-01-01T00:00:00Z"
    api = HttpApi(api_id="abcdefghij", name="t", created_date=now)
    store.create_api(api)
    assert store.definition("abcdefghij") is not None
    assert store.definition("nosuchapi0") is None
    store.create_integration(
        ApiIntegration(api.api_id, "int0001", ARN + "f:live", "f", "live", timeout_ms=900)
    )
    store.create_route(
        ApiRoute(api.api_id, "rou0001", "GET /items/{id}", "integrations/int0001", True)
    )
    store.create_stage(ApiStage(api.api_id, "prod", now, now))
    assert heard == [api.api_id] * 4 and store.generation == 4
    definition = store.definition(api.api_id)
    assert definition is not None
    table = RouteTable(definition)
    match = table.match("GET", "/prod/items/42")
    assert match is not None
    assert match.path_parameters == {"id": "42"} and match.stage.stage_name == "prod"
    assert match.integration is not None and match.integration.qualifier == "live"
    assert match.integration.timeout_ms == 900 and match.route.api_key_required
    assert table.match("GET", "/items/42") is None  # no $default stage
    with pytest.raises(Conflict):
        store.delete_integration(api.api_id, "int0001")
    with pytest.raises(Conflict):
        store.create_route(ApiRoute(api.api_id, "rou0002", "GET /items/{other}"))
    assert len(heard) == 4  # failed writes are not announced
    store.delete_api(api.api_id)
    assert store.definition(api.api_id) is None
    with pytest.raises(NotFound):
        store.get_route(api.api_id, "rou0001")
