"""S3-compatible buckets across the servers of one installation, through boto3 as a user
would: an object put through one server reads whole (and by range) through the other,
copies, overwrites, multipart uploads with parts sent to both and deletes are seen by
both, and a function created through one server from a zip another server received as
an object runs."""

from __future__ import annotations

import io
import json
import os
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.servers import front_end, serving, shared_installation
from tests.conftest import ROLE
from tests.nimbus_process import NimbusProcess
from tests.s3.conftest import s3_client

pytestmark = [pytest.mark.sandbox, pytest.mark.postgres, pytest.mark.broker("nats")]

MIB = 1 << 20


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[NimbusProcess]]:
    root = tmp_path_factory.mktemp("s3-cluster")
    with shared_installation(root) as env:
        servers = [front_end(root, name, env) for name in ("a", "b")]
        with serving(servers):
            yield servers


@pytest.fixture
def bucket(two: list[NimbusProcess]) -> str:
    name = f"b-{uuid.uuid4().hex[:12]}"
    s3_client(two[0]).create_bucket(Bucket=name)
    return name


def body(client: object, bucket: str, key: str, **kw: object) -> bytes:
    return client.get_object(Bucket=bucket, Key=key, **kw)["Body"].read()  # type: ignore[attr-defined]


def test_objects_put_through_one_server_read_through_the_other(
    two: list[NimbusProcess], bucket: str
) -> None:
    a, b = (s3_client(s) for s in two)
    data = os.urandom(5 * MIB + 123)  # more than one of the database's 4 MiB chunks
    etag = a.put_object(Bucket=bucket, Key="k", Body=data)["ETag"]
    assert b.head_object(Bucket=bucket, Key="k")["ETag"] == etag
    assert body(b, bucket, "k") == data
    assert body(b, bucket, "k", Range="bytes=4194300-4194310") == data[4194300:4194311]
    a.put_object(Bucket=bucket, Key="k", Body=b"replaced")
    assert body(b, bucket, "k") == b"replaced"  # not b's copy of the first bytes
    b.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "k"})
    assert body(a, bucket, "copy") == b"replaced"
    a.delete_object(Bucket=bucket, Key="k")
    with pytest.raises(b.exceptions.NoSuchKey):
        b.get_object(Bucket=bucket, Key="k")
    assert body(b, bucket, "copy") == b"replaced"


def test_a_multipart_upload_with_parts_sent_to_both_servers(
    two: list[NimbusProcess], bucket: str
) -> None:
    a, b = (s3_client(s) for s in two)
    upload = a.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
    parts = [os.urandom(5 * MIB), os.urandom(5 * MIB), b"tail"]
    done = []
    for number, (client, data) in enumerate(zip([a, b, a], parts, strict=True), start=1):
        etag = client.upload_part(Bucket=bucket, Key="big", UploadId=upload,
                                  PartNumber=number, Body=data)["ETag"]  # fmt: skip
        done.append({"PartNumber": number, "ETag": etag})
    b.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=upload,
                                MultipartUpload={"Parts": done})  # fmt: skip
    assert body(a, bucket, "big") == b"".join(parts)
    assert body(b, bucket, "big") == b"".join(parts)


def test_a_function_from_an_object_another_server_received(
    two: list[NimbusProcess], bucket: str, tmp_path: Path
) -> None:
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as zf:
        zf.writestr("app.py", "def handler(e, c):\n    return {'got': e}\n")
    s3_client(two[0]).put_object(Bucket=bucket, Key="fn.zip", Body=code.getvalue())
    lam = two[1].client()
    lam.create_function(FunctionName="from-s3", Runtime="python3.12", Role=ROLE,
                        Handler="app.handler",
                        Code={"S3Bucket": bucket, "S3Key": "fn.zip"})  # fmt: skip
    lam.get_waiter("function_active_v2").wait(FunctionName="from-s3")
    out = lam.invoke(FunctionName="from-s3", Payload=b'{"x": 1}')
    assert json.loads(out["Payload"].read()) == {"got": {"x": 1}}
