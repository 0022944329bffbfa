"""Function URL configs through boto3 against a live server: Create/Get/Update/Delete/
ListFunctionUrlConfig(s), Lambda's qualifier rules and errors."""

from __future__ import annotations

import re

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.api.conftest import error
from tests.conftest import HELLO, ROLE
from tests.nimbus_process import NimbusProcess

ARN = "arn:aws:lambda:us-east-1:000000000000:function:"
CORS = {
    "AllowOrigins": ["https://example.com"],
    "AllowMethods": ["GET", "POST"],
    "AllowHeaders": ["x-custom"],
    "ExposeHeaders": ["x-out"],
    "AllowCredentials": True,
    "MaxAge": 300,
}


def url_id(config: dict) -> str:
    match = re.fullmatch(
        r"http://127\.0\.0\.1:\d+/lambda-url/([a-z0-9]{32})/", config["FunctionUrl"]
    )
    assert match, config["FunctionUrl"]
    return match[1]


def test_create_get_update_delete(lam, server: NimbusProcess, fn: str) -> None:
    created = lam.create_function_url_config(FunctionName=fn, AuthType="NONE", Cors=CORS)
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["FunctionUrl"] == f"{server.endpoint}/lambda-url/{url_id(created)}/"
    assert created["FunctionArn"] == ARN + fn
    assert created["AuthType"] == "NONE"
    assert "InvokeMode" not in created  # as Lambda answers when it was not asked for
    assert created["Cors"] == CORS
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", created["CreationTime"])

    got = lam.get_function_url_config(FunctionName=fn)
    assert got["FunctionUrl"] == created["FunctionUrl"] and got["Cors"] == CORS
    assert got["CreationTime"] == created["CreationTime"]
    assert got["LastModifiedTime"] == created["CreationTime"]
    assert lam.get_function_url_config(FunctionName=ARN + fn)["FunctionUrl"] == got["FunctionUrl"]

    updated = lam.update_function_url_config(FunctionName=fn, AuthType="AWS_IAM")
    assert updated["AuthType"] == "AWS_IAM" and updated["Cors"] == CORS  # kept
    assert updated["FunctionUrl"] == created["FunctionUrl"]  # a URL never changes
    assert updated["LastModifiedTime"] >= created["CreationTime"]
    updated = lam.update_function_url_config(FunctionName=fn, Cors={"AllowOrigins": ["*"]})
    assert updated["Cors"] == {"AllowOrigins": ["*"]}  # Cors is replaced as a whole
    assert updated["AuthType"] == "AWS_IAM"
    assert lam.get_function_url_config(FunctionName=fn)["Cors"] == {"AllowOrigins": ["*"]}

    deleted = lam.delete_function_url_config(FunctionName=fn)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    for call, extra in (
        (lam.get_function_url_config, {}),
        (lam.delete_function_url_config, {}),
        (lam.update_function_url_config, {"AuthType": "NONE"}),
    ):
        with pytest.raises(ClientError) as exc:
            call(FunctionName=fn, **extra)
        assert error(exc) == (
            "ResourceNotFoundException", 404, "The resource you requested does not exist."
        )

    again = lam.create_function_url_config(FunctionName=fn, AuthType="NONE", InvokeMode="BUFFERED")
    assert url_id(again) != url_id(created)  # a new URL gets a new id
    assert "Cors" not in again and again["InvokeMode"] == "BUFFERED"  # asked for: shown
    assert lam.get_function_url_config(FunctionName=fn)["InvokeMode"] == "BUFFERED"


def test_aliases_get_their_own_urls(lam, fn: str) -> None:
    plain = lam.create_function_url_config(FunctionName=fn, AuthType="NONE")
    live = lam.create_function_url_config(FunctionName=fn, Qualifier="live", AuthType="AWS_IAM")
    assert live["FunctionArn"] == f"{ARN}{fn}:live"
    assert url_id(live) != url_id(plain)
    by_name = lam.get_function_url_config(FunctionName=f"{fn}:live")
    assert by_name["FunctionUrl"] == live["FunctionUrl"] and by_name["AuthType"] == "AWS_IAM"
    assert lam.get_function_url_config(FunctionName=fn)["AuthType"] == "NONE"

    # Deleting the alias deletes its URL, not the function's.
    lam.delete_alias(FunctionName=fn, Name="live")
    lam.create_alias(FunctionName=fn, Name="live", FunctionVersion="1")
    with pytest.raises(ClientError) as exc:
        lam.get_function_url_config(FunctionName=fn, Qualifier="live")
    assert error(exc)[0] == "ResourceNotFoundException"
    assert lam.get_function_url_config(FunctionName=fn)["FunctionUrl"] == plain["FunctionUrl"]


def test_list_paginates(lam, fn: str) -> None:
    assert lam.list_function_url_configs(FunctionName=fn)["FunctionUrlConfigs"] == []
    made = {lam.create_function_url_config(FunctionName=fn, AuthType="NONE")["FunctionUrl"]}
    for i in range(4):
        lam.create_alias(FunctionName=fn, Name=f"a{i}", FunctionVersion="1")
        made.add(
            lam.create_function_url_config(FunctionName=fn, Qualifier=f"a{i}", AuthType="NONE")[
                "FunctionUrl"
            ]
        )
    first = lam.list_function_url_configs(FunctionName=fn, MaxItems=2)
    assert len(first["FunctionUrlConfigs"]) == 2 and first["NextMarker"]
    item = first["FunctionUrlConfigs"][0]
    assert item["FunctionArn"] == ARN + fn  # $LATEST sorts first
    assert {"FunctionUrl", "CreationTime", "LastModifiedTime", "AuthType", "InvokeMode"} <= set(
        item
    )
    pages = list(
        lam.get_paginator("list_function_url_configs").paginate(
            FunctionName=fn, PaginationConfig={"PageSize": 2}
        )
    )
    assert [len(p["FunctionUrlConfigs"]) for p in pages] == [2, 2, 1]
    assert {c["FunctionUrl"] for p in pages for c in p["FunctionUrlConfigs"]} == made

    with pytest.raises(ClientError) as exc:
        lam.list_function_url_configs(FunctionName=fn, Marker="!!garbage")
    assert error(exc)[0] == "InvalidParameterValueException"
    with pytest.raises(ClientError) as exc:
        lam.list_function_url_configs(FunctionName="no-such-function")
    assert error(exc)[:2] == ("ResourceNotFoundException", 404)


def test_create_twice_conflicts(lam, fn: str) -> None:
    first = lam.create_function_url_config(FunctionName=fn, AuthType="NONE")
    with pytest.raises(ClientError) as exc:
        lam.create_function_url_config(FunctionName=fn, AuthType="AWS_IAM")
    assert error(exc) == (  # Lambda's words, two spaces included
        "ResourceConflictException",
        409,
        f"Failed to create function url config for [functionArn = {ARN}{fn}]. Error message:  "
        "FunctionUrlConfig exists for this Lambda function",
    )
    got = lam.get_function_url_config(FunctionName=fn)
    assert got["AuthType"] == "NONE" and got["FunctionUrl"] == first["FunctionUrl"]


def test_missing_function_or_alias(lam, fn: str) -> None:
    """Lambda's words, which depend on the operation (recorded: test_url_config_exceptions,
    test_url_config_list_paging): Create, Update and List say "Function does not exist",
    Get and Delete "The resource you requested does not exist."."""
    no_function = "Function does not exist"
    no_resource = "The resource you requested does not exist."
    for where in ({"FunctionName": "no-such-function"}, {"FunctionName": fn, "Qualifier": "nope"}):
        for call, extra, said in (
            (lam.create_function_url_config, {"AuthType": "NONE"}, no_function),
            (lam.update_function_url_config, {"AuthType": "NONE"}, no_function),
            (lam.get_function_url_config, {}, no_resource),
            (lam.delete_function_url_config, {}, no_resource),
        ):
            with pytest.raises(ClientError) as exc:
                call(**where, **extra)
            assert error(exc) == ("ResourceNotFoundException", 404, said)
    with pytest.raises(ClientError) as exc:
        lam.list_function_url_configs(FunctionName="no-such-function")
    assert error(exc) == ("ResourceNotFoundException", 404, no_function)
    assert lam.list_function_url_configs(FunctionName=fn)["FunctionUrlConfigs"] == []


@pytest.mark.parametrize(
    "where",
    [{"Qualifier": "1"}, {"Qualifier": "$LATEST"}, {"suffix": ":1"}, {"suffix": ":$LATEST"}],
)
def test_versions_are_refused(lam, fn: str, where: dict[str, str]) -> None:
    name = fn + where.get("suffix", "")
    kw = {"Qualifier": where["Qualifier"]} if "Qualifier" in where else {}
    for call, extra in (
        (lam.create_function_url_config, {"AuthType": "NONE"}),
        (lam.get_function_url_config, {}),
        (lam.update_function_url_config, {"AuthType": "NONE"}),
        (lam.delete_function_url_config, {}),
    ):
        with pytest.raises(ClientError) as exc:
            call(FunctionName=name, **kw, **extra)
        member, value = ("qualifier", kw["Qualifier"]) if kw else ("functionName", name)
        code, status, message = error(exc)
        assert (code, status) == ("ValidationException", 400)
        assert message.startswith(  # Lambda's message, nothing added
            f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: "
        ), message
        if kw:
            assert message.endswith(r"pattern: ((?!^\d+$)^[0-9a-zA-Z-_]+$)")
    assert lam.list_function_url_configs(FunctionName=fn)["FunctionUrlConfigs"] == []


def test_bad_input_is_refused_and_nothing_stored(lam, server: NimbusProcess, fn: str) -> None:
    def refused(expected: str, **kw: object) -> str:
        with pytest.raises(ClientError) as exc:
            lam.create_function_url_config(FunctionName=fn, **kw)
        code, status, message = error(exc)
        assert (code, status) == (expected, 400), message
        return message

    message = refused(
        "InvalidParameterValueException", AuthType="NONE", InvokeMode="RESPONSE_STREAM"
    )
    assert "RESPONSE_STREAM is not supported" in message
    message = refused("ValidationException", AuthType="OPEN")
    assert "Value 'OPEN' at 'authType'" in message and "NONE, AWS_IAM" in message
    refused("ValidationException", AuthType="NONE", InvokeMode="FAST")
    refused("ValidationException", AuthType="NONE", Cors={"MaxAge": 86401})
    refused("ValidationException", AuthType="NONE", Cors={"AllowMethods": ["GET"] * 7})
    refused("InvalidParameterValueException", AuthType="NONE", Cors={"AllowMethods": ["FETCH"]})

    raw = server.client(validate=False)
    with pytest.raises(ClientError) as exc:
        raw.create_function_url_config(FunctionName=fn)
    code, _, message = error(exc)
    assert code == "ValidationException" and "at 'authType'" in message and "null" in message
    with pytest.raises(ClientError) as exc:
        raw.create_function_url_config(FunctionName=fn, AuthType="NONE", Cors={"MaxAge": "x"})
    assert error(exc)[0] == "ValidationException"
    with pytest.raises(ClientError) as exc:  # botocore checks this one itself
        raw.create_function_url_config(
            FunctionName=fn, AuthType="NONE", Cors={"AllowOrigins": [""]}
        )
    assert error(exc)[0] == "ValidationException"
    assert lam.list_function_url_configs(FunctionName=fn)["FunctionUrlConfigs"] == []

    created = lam.create_function_url_config(FunctionName=fn, AuthType="NONE")
    with pytest.raises(ClientError) as exc:
        lam.update_function_url_config(
            FunctionName=fn, AuthType="AWS_IAM", InvokeMode="RESPONSE_STREAM"
        )
    assert error(exc)[0] == "InvalidParameterValueException"
    with pytest.raises(ClientError) as exc:
        raw.update_function_url_config(FunctionName=fn, AuthType="AWS_IAM", Cors={"MaxAge": -1})
    assert error(exc)[0] == "ValidationException"
    got = lam.get_function_url_config(FunctionName=fn)
    assert got["AuthType"] == "NONE" and got["LastModifiedTime"] == created["CreationTime"]


def test_function_url_follows_the_host_the_client_used(server: NimbusProcess, fn: str) -> None:
    base = f"{server.endpoint}/2021-10-31/functions/{fn}/url"
    created = httpx.post(base, json={"AuthType": "NONE"}, headers={"Host": "gw.example:8443"})
    assert created.status_code == 201, created.text
    assert re.fullmatch(
        r"http://gw\.example:8443/lambda-url/[a-z0-9]{32}/", created.json()["FunctionUrl"]
    )
    got = httpx.get(base)
    assert got.json()["FunctionUrl"].startswith(f"{server.endpoint}/lambda-url/")


def test_deleting_the_function_deletes_its_urls(lam, fn: str) -> None:
    lam.create_function_url_config(FunctionName=fn, AuthType="NONE")
    lam.create_function_url_config(FunctionName=fn, Qualifier="live", AuthType="NONE")
    lam.delete_function(FunctionName=fn)
    lam.create_function(
        FunctionName=fn,
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": HELLO},
    )
    assert lam.list_function_url_configs(FunctionName=fn)["FunctionUrlConfigs"] == []
    with pytest.raises(ClientError) as exc:
        lam.get_function_url_config(FunctionName=fn)
    assert error(exc)[0] == "ResourceNotFoundException"
