"""Replayed recordings: code and layer content from S3 (``Code.S3Bucket/S3Key``,
``Content.S3Bucket/S3Key``), read from nimbus' own buckets."""

from __future__ import annotations

import base64
import hashlib
import urllib.request
import uuid
from typing import Any

import pytest

from tests.api.test_recordings import ECHO, VERSION, Replay, Scenarios
from tests.api.test_recordings_layers import DUMMY
from tests.nimbus_process import NimbusProcess

SCENARIOS = Scenarios()
KEY = "code/code-function.zip"


def bucket(r: Replay) -> tuple[Any, str]:
    s3 = r.server.client("s3")
    name = f"code-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    return s3, name


def create_from_s3(r: Replay, name: str, code: dict[str, str]) -> Any:
    return r.lam.create_function(
        FunctionName=name,
        Handler="index.handler",
        Code=code,
        PackageType="Zip",
        Role=r.role,
        Runtime=r.runtime("python3.12"),
    )


def served(r: Replay, name: str, package: bytes, key: str) -> None:
    """GetFunction as recorded, and its Code.Location serving ``package``."""
    got = r.match(key, r.lam.get_function(FunctionName=name))
    with urllib.request.urlopen(got["Code"]["Location"]) as answer:
        assert answer.read() == package
    digest = base64.b64encode(hashlib.sha256(package).digest()).decode()
    assert got["Configuration"]["CodeSha256"] == digest
    assert got["Configuration"]["CodeSize"] == len(package)


@SCENARIOS.add("TestLambdaFunction::test_lambda_code_location_s3")
def code_location_s3(r: Replay) -> None:
    s3, name_of_bucket = bucket(r)
    name = f"code-function-{uuid.uuid4().hex[:8]}"
    s3.put_object(Bucket=name_of_bucket, Key=KEY, Body=ECHO)
    r.match(
        "create_response_s3", create_from_s3(r, name, {"S3Bucket": name_of_bucket, "S3Key": KEY})
    )
    served(r, name, ECHO, "get-function-response")
    s3.put_object(Bucket=name_of_bucket, Key=KEY, Body=VERSION)
    r.match(
        "update-function-response",
        r.lam.update_function_code(FunctionName=name, S3Bucket=name_of_bucket, S3Key=KEY),
    )
    served(r, name, VERSION, "get-function-response-updated")


@SCENARIOS.add("TestLambdaFunction::test_lambda_code_location_s3_errors")
def code_location_s3_errors(r: Replay) -> None:
    s3, name_of_bucket = bucket(r)
    name = f"code-function-{uuid.uuid4().hex[:8]}"
    s3.put_object(Bucket=name_of_bucket, Key=KEY, Body=ECHO)
    missing = f"some-random-non-existent-bucket-{uuid.uuid4().hex[:8]}"
    r.error(
        "create-error-wrong-bucket", create_from_s3, r, name, {"S3Bucket": missing, "S3Key": KEY}
    )
    r.error("create-error-wrong-key", create_from_s3, r, name,
            {"S3Bucket": name_of_bucket, "S3Key": "non/existent.zip"})  # fmt: skip
    create_from_s3(r, name, {"S3Bucket": name_of_bucket, "S3Key": KEY})
    update = r.lam.update_function_code
    r.error("update-error-wrong-bucket", update, FunctionName=name, S3Bucket=missing, S3Key=KEY)
    r.error("update-error-wrong-key", update, FunctionName=name, S3Bucket=name_of_bucket,
            S3Key="non/existent.zip")  # fmt: skip


@SCENARIOS.add("TestLambdaLayer::test_layer_s3_content")
def layer_s3_content(r: Replay) -> None:
    s3, name_of_bucket = bucket(r)
    s3.put_object(Bucket=name_of_bucket, Key="/layercontent.zip", Body=DUMMY)
    published = r.lam.publish_layer_version(
        LayerName=f"bucket-layer-{uuid.uuid4().hex[:8]}",
        Content={"S3Bucket": name_of_bucket, "S3Key": "/layercontent.zip"},
    )
    r.differ("publish_layer_result", "layer-lists-always")
    r.match("publish_layer_result", published)


@pytest.mark.parametrize("name", SCENARIOS.names())
def test_replay(name: str, server: NimbusProcess) -> None:
    SCENARIOS.replay(name, server)
