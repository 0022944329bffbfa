"""Code from nimbus' own buckets: ``Code.S3Bucket/S3Key`` in CreateFunction and
UpdateFunctionCode, ``Content.S3Bucket/S3Key`` in PublishLayerVersion, validated as an
inline ZipFile is, with Lambda's errors (recorded: test_lambda_code_location_s3_errors)."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.api.conftest import error
from tests.conftest import ROLE, make_zip, python_runtime
from tests.nimbus_process import NimbusProcess

V1 = make_zip({"index.py": "def handler(event, context):\n    return {'v': 1, 'e': event}\n"})
V2 = make_zip({"index.py": "def handler(event, context):\n    return {'v': 2}\n"})
LAYER = make_zip({"python/greeting.py": "WORD = 'from-s3-layer'\n"})
USES_LAYER = make_zip(
    {"index.py": "import greeting\ndef handler(event, context):\n    return greeting.WORD\n"}
)


@pytest.fixture
def bucket(server: NimbusProcess) -> str:
    name = f"code-{uuid.uuid4().hex[:8]}"
    server.client("s3").create_bucket(Bucket=name)
    return name


def put(server: NimbusProcess, bucket: str, key: str, body: bytes) -> None:
    server.client("s3").put_object(Bucket=bucket, Key=key, Body=body)


def invoke(lam: Any, name: str, payload: Any = None) -> Any:
    answer = lam.invoke(FunctionName=name, Payload=json.dumps(payload))
    assert "FunctionError" not in answer, answer["Payload"].read()
    return json.loads(answer["Payload"].read())


def create(lam: Any, code: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return lam.create_function(
        FunctionName=f"s3code-{uuid.uuid4().hex[:8]}",
        Runtime=python_runtime(),
        Role=ROLE,
        Handler="index.handler",
        Code=code,
        **extra,
    )


def sha(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_a_function_from_s3_runs_and_updates_from_s3(server: NimbusProcess, bucket: str) -> None:
    lam = server.client()
    put(server, bucket, "builds/v1.zip", V1)
    created = create(lam, {"S3Bucket": bucket, "S3Key": "builds/v1.zip"})
    name = created["FunctionName"]
    assert (created["CodeSha256"], created["CodeSize"]) == (sha(V1), len(V1))
    assert invoke(lam, name, {"x": 1}) == {"v": 1, "e": {"x": 1}}
    got = lam.get_function(FunctionName=name)
    assert got["Code"]["RepositoryType"] == "S3"
    assert httpx.get(got["Code"]["Location"]).content == V1  # the package, as uploaded

    put(server, bucket, "builds/v2.zip", V2)
    updated = lam.update_function_code(
        FunctionName=name, S3Bucket=bucket, S3Key="builds/v2.zip", S3ObjectVersion="null",
        Publish=True,
    )  # fmt: skip
    assert (updated["CodeSha256"], updated["Version"]) == (sha(V2), "1")
    assert invoke(lam, name) == {"v": 2}


def test_a_layer_from_s3_is_importable(server: NimbusProcess, bucket: str) -> None:
    lam = server.client()
    put(server, bucket, "layer.zip", LAYER)
    layer = lam.publish_layer_version(
        LayerName=f"s3layer-{uuid.uuid4().hex[:6]}",
        Content={"S3Bucket": bucket, "S3Key": "layer.zip"},
    )
    assert (layer["Content"]["CodeSha256"], layer["Content"]["CodeSize"]) == (
        sha(LAYER),
        len(LAYER),
    )
    put(server, bucket, "app.zip", USES_LAYER)
    name = create(lam, {"S3Bucket": bucket, "S3Key": "app.zip"}, Layers=[layer["LayerVersionArn"]])[
        "FunctionName"
    ]
    assert invoke(lam, name) == "from-s3-layer"


def refused(call: Any, **kwargs: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as exc:
        call(**kwargs)
    return error(exc)


NO_BUCKET = (
    "InvalidParameterValueException",
    400,
    "Error occurred while GetObject. S3 Error Code: NoSuchBucket. S3 Error Message: The "
    "specified bucket does not exist",
)
NO_KEY = (
    "InvalidParameterValueException",
    400,
    "Error occurred while GetObject. S3 Error Code: NoSuchKey. S3 Error Message: The "
    "specified key does not exist.",
)


def test_a_missing_bucket_or_key_gets_lambda_s_errors(server: NimbusProcess, bucket: str) -> None:
    lam = server.client()
    before = len(lam.list_functions()["Functions"])
    missing = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    assert refused(create, lam=lam, code={"S3Bucket": missing, "S3Key": "a.zip"}) == NO_BUCKET
    assert refused(create, lam=lam, code={"S3Bucket": bucket, "S3Key": "non/existent.zip"}) == (
        NO_KEY
    )
    assert len(lam.list_functions()["Functions"]) == before  # nothing stored
    put(server, bucket, "v1.zip", V1)
    name = create(lam, {"S3Bucket": bucket, "S3Key": "v1.zip"})["FunctionName"]
    update = lam.update_function_code
    assert refused(update, FunctionName=name, S3Bucket=missing, S3Key="a.zip") == NO_BUCKET
    assert refused(update, FunctionName=name, S3Bucket=bucket, S3Key="nope.zip") == NO_KEY
    publish = lam.publish_layer_version
    assert refused(publish, LayerName="l", Content={"S3Bucket": bucket, "S3Key": "x"}) == NO_KEY
    assert lam.get_function(FunctionName=name)["Configuration"]["CodeSha256"] == sha(V1)


def test_an_object_that_is_no_package_is_refused_as_zipfile_is(
    server: NimbusProcess, bucket: str
) -> None:
    lam = server.client()
    put(server, bucket, "notes.txt", b"not a zip at all")
    code, status, message = refused(
        create, lam=lam, code={"S3Bucket": bucket, "S3Key": "notes.txt"}
    )
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert message.startswith("Could not unzip uploaded file.")
    escaping = make_zip({"../outside.py": "X = 1\n"})
    put(server, bucket, "escape.zip", escaping)
    code, status, _ = refused(create, lam=lam, code={"S3Bucket": bucket, "S3Key": "escape.zip"})
    assert (code, status) == ("InvalidParameterValueException", 400)


def test_incomplete_or_mixed_locations_are_refused(server: NimbusProcess, bucket: str) -> None:
    lam = server.client()
    code, _, message = refused(create, lam=lam, code={"S3Bucket": bucket})
    assert code == "InvalidParameterValueException" and "S3Key" in message
    code, _, message = refused(
        create, lam=lam, code={"S3Bucket": bucket, "S3Key": "k", "ZipFile": V1}
    )
    assert code == "InvalidParameterValueException" and "not both" in message
    put(server, bucket, "v1.zip", V1)
    code, _, message = refused(
        create, lam=lam, code={"S3Bucket": bucket, "S3Key": "v1.zip", "S3ObjectVersion": "3"}
    )
    assert code == "InvalidParameterValueException" and "GetObject" in message
