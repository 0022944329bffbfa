"""API keys, usage plans, plan keys and usage through boto3's API Gateway (v1) client."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from nimbus.config import Config
from nimbus.gateway.limits import UsageGate
from nimbus.store.api_keys import ApiKeyStore
from nimbus.store.database import Database
from tests.conftest import store_url
from tests.nimbus_process import NimbusProcess

SERVER_PER_TEST = True  # apigw talks to the test's own nimbus: the tests reuse names
VALUE = "abcdefghij0123456789XYZ"


@pytest.fixture
def stage(nimbus: NimbusProcess) -> tuple[str, str]:
    """An HTTP API with stages prod and dev: (api id, "prod")."""
    v2 = nimbus.client("apigatewayv2")
    api_id = v2.create_api(Name="shop", ProtocolType="HTTP")["ApiId"]
    v2.create_stage(ApiId=api_id, StageName="prod")
    v2.create_stage(ApiId=api_id, StageName="dev")
    return api_id, "prod"


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    error = exc.value.response["Error"]
    return error["Code"], error["Message"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_api_key_lifecycle(apigw) -> None:
    made = apigw.create_api_key(name="alice")
    assert made["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert made["enabled"] is False  # API Gateway's default
    assert len(made["value"]) == 40 and made["value"].isalnum()
    assert made["name"] == "alice" and made["stageKeys"] == []
    assert isinstance(made["createdDate"], datetime)

    bob = apigw.create_api_key(
        name="bob", description="partner", enabled=True, value=VALUE, tags={"team": "x"}
    )
    assert (bob["value"], bob["enabled"], bob["tags"]) == (VALUE, True, {"team": "x"})

    got = apigw.get_api_key(apiKey=bob["id"])
    assert "value" not in got
    assert (got["name"], got["description"], got["enabled"]) == ("bob", "partner", True)
    assert apigw.get_api_key(apiKey=bob["id"], includeValue=True)["value"] == VALUE

    listed = apigw.get_api_keys()["items"]
    assert {k["id"] for k in listed} == {made["id"], bob["id"]}
    assert all("value" not in k for k in listed)
    with_values = apigw.get_api_keys(includeValues=True)["items"]
    assert {k["value"] for k in with_values} == {made["value"], VALUE}
    assert [k["id"] for k in apigw.get_api_keys(nameQuery="bo")["items"]] == [bob["id"]]
    first = apigw.get_api_keys(limit=1)
    assert len(first["items"]) == 1 and first["position"]
    second = apigw.get_api_keys(limit=1, position=first["position"])
    assert len(second["items"]) == 1 and "position" not in second
    assert first["items"][0]["id"] != second["items"][0]["id"]
    pages = apigw.get_paginator("get_api_keys").paginate(PaginationConfig={"PageSize": 1})
    assert len([k for page in pages for k in page["items"]]) == 2

    updated = apigw.update_api_key(
        apiKey=made["id"],
        patchOperations=[
            {"op": "replace", "path": "/enabled", "value": "true"},
            {"op": "replace", "path": "/name", "value": "alice2"},
            {"op": "replace", "path": "/description", "value": "renamed"},
        ],
    )
    assert (updated["enabled"], updated["name"], updated["description"]) == (
        True,
        "alice2",
        "renamed",
    )
    assert "value" not in updated
    assert updated["lastUpdatedDate"] >= updated["createdDate"]

    deleted = apigw.delete_api_key(apiKey=made["id"])
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 202
    with pytest.raises(ClientError) as missing:
        apigw.get_api_key(apiKey=made["id"])
    code, message, status = error_of(missing)
    assert (code, status) == ("NotFoundException", 404) and made["id"] in message
    with pytest.raises(apigw.exceptions.NotFoundException):
        apigw.delete_api_key(apiKey=made["id"])


def test_api_key_validation_stores_nothing(apigw) -> None:
    apigw.create_api_key(name="first", value=VALUE)
    for kwargs, fragment in (
        ({"value": "short"}, "at least 20 characters"),
        ({"value": "has spaces in it, twenty+"}, "printable ASCII"),
        ({"stageKeys": [{"restApiId": "a", "stageName": "b"}]}, "stageKeys"),
        ({"tags": {"aws:x": "y"}}, "aws:"),
    ):
        with pytest.raises(ClientError) as bad:
            apigw.create_api_key(name="bad", **kwargs)
        code, message, status = error_of(bad)
        assert (code, status) == ("BadRequestException", 400) and fragment in message
    with pytest.raises(ClientError) as dup:
        apigw.create_api_key(name="dup", value=VALUE)
    assert error_of(dup)[:1] == ("ConflictException",) and error_of(dup)[2] == 409
    assert [k["name"] for k in apigw.get_api_keys()["items"]] == ["first"]

    key_id = apigw.get_api_keys()["items"][0]["id"]
    for operations, fragment in (
        ([{"op": "replace", "path": "/value", "value": VALUE + "x"}], "Invalid patch path"),
        ([{"op": "remove", "path": "/name"}], "Invalid patch path"),
        ([{"op": "replace", "path": "/enabled", "value": "yes"}], "true or false"),
        (
            [
                {"op": "replace", "path": "/name", "value": "changed"},
                {"op": "replace", "path": "/enabled", "value": "maybe"},
            ],
            "true or false",
        ),
    ):
        with pytest.raises(ClientError) as bad:
            apigw.update_api_key(apiKey=key_id, patchOperations=operations)
        code, message, _ = error_of(bad)
        assert code == "BadRequestException" and fragment in message
    assert apigw.get_api_key(apiKey=key_id)["name"] == "first"  # nothing half-applied
    with pytest.raises(ClientError) as bad_limit:
        apigw.get_api_keys(limit=501)
    assert error_of(bad_limit)[0] == "BadRequestException"


def test_usage_plan_lifecycle(apigw, stage) -> None:
    api_id, stage_name = stage
    plan = apigw.create_usage_plan(
        name="gold",
        description="200 rps",
        apiStages=[{"apiId": api_id, "stage": stage_name}],
        throttle={"rateLimit": 200.0, "burstLimit": 400},
        quota={"limit": 10000, "period": "MONTH", "offset": 0},
        tags={"tier": "gold"},
    )
    assert plan["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert plan["apiStages"] == [{"apiId": api_id, "stage": "prod"}]
    assert plan["throttle"] == {"rateLimit": 200.0, "burstLimit": 400}
    assert plan["quota"] == {"limit": 10000, "offset": 0, "period": "MONTH"}
    assert (plan["name"], plan["description"], plan["tags"]) == (
        "gold",
        "200 rps",
        {"tier": "gold"},
    )
    plain = apigw.create_usage_plan(name="plain")
    assert "throttle" not in plain and "quota" not in plain and plain["apiStages"] == []

    got = apigw.get_usage_plan(usagePlanId=plan["id"])
    assert got["throttle"] == plan["throttle"] and got["quota"] == plan["quota"]
    assert {p["id"] for p in apigw.get_usage_plans()["items"]} == {plan["id"], plain["id"]}

    updated = apigw.update_usage_plan(
        usagePlanId=plan["id"],
        patchOperations=[
            {"op": "replace", "path": "/throttle/rateLimit", "value": "50.5"},
            {"op": "replace", "path": "/throttle/burstLimit", "value": "100"},
            {"op": "replace", "path": "/quota/limit", "value": "500"},
            {"op": "replace", "path": "/quota/period", "value": "WEEK"},
            {"op": "replace", "path": "/quota/offset", "value": "1"},
            {"op": "replace", "path": "/name", "value": "silver"},
            {"op": "add", "path": "/apiStages", "value": f"{api_id}:dev"},
            {"op": "remove", "path": "/apiStages", "value": f"{api_id}:prod"},
        ],
    )
    assert updated["throttle"] == {"rateLimit": 50.5, "burstLimit": 100}
    assert updated["quota"] == {"limit": 500, "offset": 1, "period": "WEEK"}
    assert updated["name"] == "silver"
    assert updated["apiStages"] == [{"apiId": api_id, "stage": "dev"}]
    assert apigw.get_usage_plan(usagePlanId=plan["id"])["quota"]["period"] == "WEEK"

    cleared = apigw.update_usage_plan(
        usagePlanId=plan["id"],
        patchOperations=[{"op": "remove", "path": "/throttle"}, {"op": "remove", "path": "/quota"}],
    )
    assert "throttle" not in cleared and "quota" not in cleared

    assert (
        apigw.delete_usage_plan(usagePlanId=plan["id"])["ResponseMetadata"]["HTTPStatusCode"] == 202
    )
    with pytest.raises(apigw.exceptions.NotFoundException):
        apigw.get_usage_plan(usagePlanId=plan["id"])
    assert [p["id"] for p in apigw.get_usage_plans()["items"]] == [plain["id"]]


def test_usage_plan_validation_stores_nothing(nimbus, apigw, stage) -> None:
    api_id, stage_name = stage
    for kwargs, code, fragment in (
        ({"apiStages": [{"apiId": "nope123456", "stage": "prod"}]}, "NotFoundException", "nope"),
        ({"apiStages": [{"apiId": api_id, "stage": "qa"}]}, "NotFoundException", "qa"),
        ({"quota": {"limit": 10, "period": "YEAR"}}, "BadRequestException", "YEAR"),
        ({"quota": {"limit": 10}}, "BadRequestException", "period"),
        ({"quota": {"limit": 10, "period": "WEEK", "offset": 7}}, "BadRequestException", "0 to 6"),
        ({"quota": {"limit": 10, "period": "DAY", "offset": 1}}, "BadRequestException", "0 to 0"),
        ({"throttle": {"rateLimit": -1.0}}, "BadRequestException", "rateLimit"),
        (
            {"apiStages": [{"apiId": api_id, "stage": stage_name, "throttle": {"/a/GET": {}}}]},
            "BadRequestException",
            "per-method",
        ),
    ):
        with pytest.raises(ClientError) as bad:
            apigw.create_usage_plan(name="bad", **kwargs)
        got_code, message, _ = error_of(bad)
        assert got_code == code and fragment in message, message
    raw = nimbus.client("apigateway", validate=False)
    with pytest.raises(ClientError) as unnamed:
        raw.create_usage_plan(description="no name")
    assert error_of(unnamed)[0] == "BadRequestException"
    assert apigw.get_usage_plans()["items"] == []

    plan = apigw.create_usage_plan(
        name="p",
        apiStages=[{"apiId": api_id, "stage": stage_name}],
        quota={"limit": 5, "period": "DAY"},
    )
    for operations, code in (
        ([{"op": "replace", "path": "/quota/period", "value": "YEAR"}], "BadRequestException"),
        (
            [{"op": "replace", "path": "/throttle/rateLimit", "value": "fast"}],
            "BadRequestException",
        ),
        ([{"op": "add", "path": "/apiStages", "value": f"{api_id}:qa"}], "NotFoundException"),
        ([{"op": "add", "path": "/apiStages", "value": f"{api_id}:prod"}], "ConflictException"),
        ([{"op": "remove", "path": "/apiStages", "value": f"{api_id}:dev"}], "BadRequestException"),
        ([{"op": "replace", "path": "/productCode", "value": "x"}], "BadRequestException"),
        (
            [
                {"op": "replace", "path": "/name", "value": "renamed"},
                {"op": "replace", "path": "/quota/limit", "value": "-1"},
            ],
            "BadRequestException",
        ),
    ):
        with pytest.raises(ClientError) as bad:
            apigw.update_usage_plan(usagePlanId=plan["id"], patchOperations=operations)
        assert error_of(bad)[0] == code, operations
    unchanged = apigw.get_usage_plan(usagePlanId=plan["id"])
    assert unchanged["name"] == "p" and unchanged["quota"]["limit"] == 5
    assert unchanged["apiStages"] == [{"apiId": api_id, "stage": "prod"}]


def test_usage_plan_keys(apigw, stage) -> None:
    api_id, stage_name = stage
    key = apigw.create_api_key(name="k", value=VALUE, enabled=True)
    other = apigw.create_api_key(name="other")
    gold = apigw.create_usage_plan(name="gold", apiStages=[{"apiId": api_id, "stage": stage_name}])
    also_prod = apigw.create_usage_plan(
        name="also-prod", apiStages=[{"apiId": api_id, "stage": stage_name}]
    )
    dev = apigw.create_usage_plan(name="dev", apiStages=[{"apiId": api_id, "stage": "dev"}])

    added = apigw.create_usage_plan_key(usagePlanId=gold["id"], keyId=key["id"], keyType="API_KEY")
    assert added["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert (added["id"], added["type"], added["value"], added["name"]) == (
        key["id"],
        "API_KEY",
        VALUE,
        "k",
    )
    apigw.create_usage_plan_key(usagePlanId=gold["id"], keyId=other["id"], keyType="API_KEY")
    apigw.create_usage_plan_key(usagePlanId=dev["id"], keyId=key["id"], keyType="API_KEY")

    listed = apigw.get_usage_plan_keys(usagePlanId=gold["id"])["items"]
    assert {k["id"] for k in listed} == {key["id"], other["id"]}
    assert [
        k["id"] for k in apigw.get_usage_plan_keys(usagePlanId=gold["id"], nameQuery="oth")["items"]
    ] == [other["id"]]
    assert apigw.get_usage_plan_key(usagePlanId=gold["id"], keyId=key["id"])["value"] == VALUE
    in_plans = apigw.get_usage_plans(keyId=key["id"])["items"]
    assert {p["id"] for p in in_plans} == {gold["id"], dev["id"]}

    with pytest.raises(ClientError) as again:
        apigw.create_usage_plan_key(usagePlanId=gold["id"], keyId=key["id"], keyType="API_KEY")
    assert error_of(again)[0] == "ConflictException"
    with pytest.raises(ClientError) as same_stage:  # one plan per key and stage
        apigw.create_usage_plan_key(usagePlanId=also_prod["id"], keyId=key["id"], keyType="API_KEY")
    code, message, status = error_of(same_stage)
    assert (code, status) == ("ConflictException", 409) and f"{api_id}:prod" in message
    with pytest.raises(ClientError) as patch_conflict:  # nor by adding the stage later
        apigw.update_usage_plan(
            usagePlanId=dev["id"],
            patchOperations=[{"op": "add", "path": "/apiStages", "value": f"{api_id}:prod"}],
        )
    assert error_of(patch_conflict)[0] == "ConflictException"
    with pytest.raises(ClientError) as bad_type:
        apigw.create_usage_plan_key(usagePlanId=gold["id"], keyId=key["id"], keyType="OAUTH")
    assert error_of(bad_type)[0] == "BadRequestException"
    with pytest.raises(apigw.exceptions.NotFoundException):
        apigw.create_usage_plan_key(usagePlanId=gold["id"], keyId="nokey12345", keyType="API_KEY")
    with pytest.raises(apigw.exceptions.NotFoundException):
        apigw.create_usage_plan_key(usagePlanId="noplan", keyId=key["id"], keyType="API_KEY")
    with pytest.raises(apigw.exceptions.NotFoundException):
        apigw.get_usage_plan_key(usagePlanId=also_prod["id"], keyId=key["id"])

    removed = apigw.delete_usage_plan_key(usagePlanId=gold["id"], keyId=key["id"])
    assert removed["ResponseMetadata"]["HTTPStatusCode"] == 202
    with pytest.raises(apigw.exceptions.NotFoundException):
        apigw.delete_usage_plan_key(usagePlanId=gold["id"], keyId=key["id"])
    apigw.create_usage_plan_key(usagePlanId=also_prod["id"], keyId=key["id"], keyType="API_KEY")
    apigw.delete_api_key(apiKey=other["id"])  # leaves the plans it was in
    assert apigw.get_usage_plan_keys(usagePlanId=gold["id"])["items"] == []


def test_get_usage_reports_recorded_usage(nimbus, apigw, stage) -> None:
    api_id, stage_name = stage
    key = apigw.create_api_key(name="k", value=VALUE, enabled=True)
    idle = apigw.create_api_key(name="idle")
    plan = apigw.create_usage_plan(
        name="metered",
        apiStages=[{"apiId": api_id, "stage": stage_name}],
        quota={"limit": 5, "period": "WEEK", "offset": 0},  # weeks start on Sunday
    )
    for key_id in (key["id"], idle["id"]):
        apigw.create_usage_plan_key(usagePlanId=plan["id"], keyId=key_id, keyType="API_KEY")

    # Requests admitted by a usage gate on the server's own database, on chosen days:
    # 2 on Saturday 2026-01-03, 1 on Sunday 2026-01-04 (a new week), 2 on Tuesday.
    db = Database(store_url(nimbus))
    try:
        wall = [0.0]
        gate = UsageGate(ApiKeyStore(db), Config(), wall_clock=lambda: wall[0])
        gate.load()
        for day, count in (("2026-01-03", 2), ("2026-01-04", 1), ("2026-01-06", 2)):
            wall[0] = datetime.fromisoformat(day).replace(hour=12, tzinfo=UTC).timestamp()
            for _ in range(count):
                gate.admit(api_id=api_id, stage=stage_name, api_key=VALUE, key_required=True)
        assert gate.flush_blocking() == 3
    finally:
        db.dispose()

    usage = apigw.get_usage(usagePlanId=plan["id"], startDate="2026-01-03", endDate="2026-01-07")
    assert (usage["usagePlanId"], usage["startDate"], usage["endDate"]) == (
        plan["id"],
        "2026-01-03",
        "2026-01-07",
    )
    assert usage["items"][key["id"]] == [[2, 3], [1, 4], [0, 4], [2, 2], [0, 2]]
    assert usage["items"][idle["id"]] == [[0, 5], [0, 5], [0, 5], [0, 5], [0, 5]]
    # The week's earlier days count toward what remains even when not asked for.
    later = apigw.get_usage(usagePlanId=plan["id"], startDate="2026-01-07", endDate="2026-01-07")
    assert later["items"] == {key["id"]: [[0, 2]], idle["id"]: [[0, 5]]}
    one = apigw.get_usage(
        usagePlanId=plan["id"], keyId=key["id"], startDate="2026-01-06", endDate="2026-01-06"
    )
    assert one["items"] == {key["id"]: [[2, 2]]}
    paged = apigw.get_usage(
        usagePlanId=plan["id"], startDate="2026-01-06", endDate="2026-01-06", limit=1
    )
    assert len(paged["items"]) == 1 and paged["position"]

    for start, end, fragment in (
        ("2026-01-07", "2026-01-03", "before"),
        ("2026/01/03", "2026-01-07", "startDate"),
        ("2026-02-30", "2026-03-01", "calendar"),
        ("2024-01-01", "2026-01-01", "at most"),
    ):
        with pytest.raises(ClientError) as bad:
            apigw.get_usage(usagePlanId=plan["id"], startDate=start, endDate=end)
        code, message, _ = error_of(bad)
        assert code == "BadRequestException" and fragment in message
    with pytest.raises(apigw.exceptions.NotFoundException):
        apigw.get_usage(usagePlanId="noplan", startDate="2026-01-01", endDate="2026-01-02")
    with pytest.raises(ParamValidationError):
        apigw.get_usage(usagePlanId=plan["id"], startDate="2026-01-01")
    with pytest.raises(ClientError) as unsupported:
        apigw.update_usage(
            usagePlanId=plan["id"],
            keyId=key["id"],
            patchOperations=[{"op": "replace", "path": "/remaining", "value": "10"}],
        )
    assert error_of(unsupported)[0] == "BadRequestException"

    apigw.delete_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"])
    after = apigw.get_usage(usagePlanId=plan["id"], startDate="2026-01-03", endDate="2026-01-03")
    assert after["items"] == {idle["id"]: [[0, 5]]}
