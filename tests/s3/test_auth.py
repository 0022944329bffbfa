"""S3 on a nimbus that requires SigV4: boto3 and the AWS CLI sign and get in; wrong keys,
wrong secrets and unsigned requests get S3's 403s; presigned GET/PUT URLs (SigV4 and
boto3's default SigV2) work until they expire or are tampered with; aws-chunked bodies
signed chunk by chunk are checked chunk by chunk."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.conftest import aws_cli
from tests.nimbus_process import NimbusProcess
from tests.s3.conftest import s3_client

SERVER_ENV = {"NIMBUS_API_AUTH": "sigv4"}


def keys(server: NimbusProcess) -> tuple[str, str]:
    stored = json.loads((server.data_dir / "credentials.json").read_text())
    return stored["AccessKeyId"], stored["SecretAccessKey"]


@pytest.fixture
def signed(server: NimbusProcess) -> Any:
    return s3_client(server, keys=keys(server))


@pytest.fixture
def own_bucket(signed: Any) -> str:
    name = f"b-{uuid.uuid4().hex[:12]}"
    signed.create_bucket(Bucket=name)
    signed.put_object(Bucket=name, Key="dir/a file", Body=b"secret")
    return name


def code_of(call: Any, **kwargs: Any) -> tuple[str, int]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    response = info.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_signed_requests_get_in_and_others_do_not(
    server: NimbusProcess, signed: Any, own_bucket: str
) -> None:
    assert signed.get_object(Bucket=own_bucket, Key="dir/a file")["Body"].read() == b"secret"
    key, _ = keys(server)
    wrong_secret = s3_client(server, keys=(key, "not-the-secret"))
    assert code_of(wrong_secret.get_object, Bucket=own_bucket, Key="dir/a file") == (
        "SignatureDoesNotMatch",
        403,
    )
    # Refused before the body is stored.
    assert code_of(wrong_secret.put_object, Bucket=own_bucket, Key="x", Body=b"1")[1] == 403
    unknown = s3_client(server, keys=("AKIAUNKNOWN000000000", "x"))
    assert code_of(unknown.list_buckets) == ("InvalidAccessKeyId", 403)
    anonymous = httpx.get(
        f"{server.endpoint}/{own_bucket}/dir/a%20file", headers={"host": "s3.localhost"}
    )
    assert anonymous.status_code == 403 and "<Code>AccessDenied</Code>" in anonymous.text
    assert code_of(signed.head_object, Bucket=own_bucket, Key="x") == ("404", 404)


def test_presigned_v4_get_and_put(server: NimbusProcess, own_bucket: str) -> None:
    client = s3_client(server, keys=keys(server), signature_version="s3v4")
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": own_bucket, "Key": "dir/a file"}, ExpiresIn=300
    )
    assert "X-Amz-Signature=" in url
    assert httpx.get(url).content == b"secret"
    tampered = httpx.get(url.replace("X-Amz-Signature=", "X-Amz-Signature=0"))
    assert tampered.status_code == 403 and "SignatureDoesNotMatch" in tampered.text
    other_key = url.replace("dir/a%20file", "dir/other")
    assert httpx.get(other_key).status_code == 403
    put = client.generate_presigned_url(
        "put_object",
        Params={"Bucket": own_bucket, "Key": "up", "ContentType": "text/plain"},
        ExpiresIn=300,
    )
    answer = httpx.put(put, content=b"via presigned", headers={"content-type": "text/plain"})
    assert answer.status_code == 200
    assert answer.headers["etag"] == f'"{hashlib.md5(b"via presigned").hexdigest()}"'
    got = client.get_object(Bucket=own_bucket, Key="up")
    assert got["Body"].read() == b"via presigned" and got["ContentType"] == "text/plain"
    short = client.generate_presigned_url(
        "get_object", Params={"Bucket": own_bucket, "Key": "dir/a file"}, ExpiresIn=1
    )
    deadline = time.time() + 10
    while time.time() < deadline:  # wait out the second it is valid for
        answer = httpx.get(short)
        if answer.status_code != 200:
            break
        time.sleep(0.2)
    assert answer.status_code == 403 and "Request has expired" in answer.text


def test_presigned_v2_urls(server: NimbusProcess, own_bucket: str) -> None:
    client = s3_client(server, keys=keys(server))  # boto3's default presigns with SigV2
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": own_bucket, "Key": "dir/a file"}, ExpiresIn=300
    )
    assert "AWSAccessKeyId=" in url
    assert httpx.get(url).content == b"secret"
    assert httpx.get(url.replace("Signature=", "Signature=A")).status_code == 403
    put = client.generate_presigned_url(
        "put_object", Params={"Bucket": own_bucket, "Key": "v2"}, ExpiresIn=300
    )
    assert httpx.put(put, content=b"v2 body").status_code == 200
    assert client.get_object(Bucket=own_bucket, Key="v2")["Body"].read() == b"v2 body"


class StreamingAuth(S3SigV4Auth):
    """botocore's S3 signer, declaring a payload signed chunk by chunk."""

    def payload(self, request: AWSRequest) -> str:
        return "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"


def _signed_chunks(
    server: NimbusProcess, path: str, pieces: list[bytes], corrupt: int | None = None
) -> httpx.Response:
    """PUT ``pieces`` as an aws-chunked body signed chunk by chunk (as the Java and Go
    SDKs send it), signing independently of nimbus: botocore signs the headers, the
    chunk chain is computed here."""
    key, secret = keys(server)
    data = b"".join(pieces)
    url = f"{server.endpoint}{path}"
    encoded_length = sum(
        len(f"{len(p):x};chunk-signature={'0' * 64}\r\n") + len(p) + 2 for p in [*pieces, b""]
    )
    request = AWSRequest(
        "PUT",
        url,
        headers={
            "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            "content-encoding": "aws-chunked",
            "x-amz-decoded-content-length": str(len(data)),
            "content-length": str(encoded_length),
        },
    )
    StreamingAuth(Credentials(key, secret), "s3", "us-east-1").add_auth(request)
    authorization = request.headers["Authorization"]
    previous = authorization.rsplit("Signature=", 1)[1]
    stamp = request.headers["X-Amz-Date"]
    scope = f"{stamp[:8]}/us-east-1/s3/aws4_request"
    signing_key = f"AWS4{secret}".encode()
    for part in (stamp[:8], "us-east-1", "s3", "aws4_request"):
        signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
    body = b""
    empty = hashlib.sha256(b"").hexdigest()
    for index, piece in enumerate([*pieces, b""]):
        to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                stamp,
                scope,
                previous,
                empty,
                hashlib.sha256(piece).hexdigest(),
            ]
        )
        signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
        previous = signature
        if index == corrupt:
            signature = "f" * 64
        body += f"{len(piece):x};chunk-signature={signature}\r\n".encode() + piece + b"\r\n"
    assert len(body) == encoded_length
    headers = {k: str(v) for k, v in request.headers.items()}
    return httpx.put(url, content=body, headers=headers)


def test_signed_aws_chunked_bodies(server: NimbusProcess, signed: Any, own_bucket: str) -> None:
    pieces = [b"a" * 65536, b"b" * 1000]
    answer = _signed_chunks(server, f"/{own_bucket}/chunked", pieces)
    assert answer.status_code == 200, answer.text
    got = signed.get_object(Bucket=own_bucket, Key="chunked")
    assert got["Body"].read() == b"".join(pieces)
    assert "ContentEncoding" not in got  # aws-chunked is how it came, not what it is
    refused = _signed_chunks(server, f"/{own_bucket}/forged", pieces, corrupt=1)
    assert refused.status_code == 403 and "SignatureDoesNotMatch" in refused.text
    assert code_of(signed.head_object, Bucket=own_bucket, Key="forged")[1] == 404


def test_aws_cli_signs_and_gets_in(server: NimbusProcess, own_bucket: str, tmp_path: Path) -> None:
    key, secret = keys(server)
    source = tmp_path / "f.txt"
    source.write_text("from the cli")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
    }
    aws = os.path.join(os.path.dirname(sys.executable), "aws")
    out = subprocess.run(
        [
            aws,
            "--endpoint-url",
            server.endpoint,
            "s3",
            "cp",
            str(source),
            f"s3://{own_bucket}/cli.txt",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    signed = s3_client(server, keys=(key, secret))
    assert signed.get_object(Bucket=own_bucket, Key="cli.txt")["Body"].read() == b"from the cli"
    denied = aws_cli(server.endpoint, "s3", "ls", f"s3://{own_bucket}", ok=False)  # key "x"
    assert "InvalidAccessKeyId" in denied.stderr


def test_keys_are_signed_as_sent(signed: Any, own_bucket: str) -> None:
    """S3 signs the path as sent: dot segments, double slashes and escapes included."""
    keys_ = ["dir//x/./y", "x/../y", "a b/c~d+e", "ü/ø"]
    for key in keys_:
        signed.put_object(Bucket=own_bucket, Key=key, Body=key.encode())
        assert signed.get_object(Bucket=own_bucket, Key=key)["Body"].read() == key.encode()
    listed = [o["Key"] for o in signed.list_objects_v2(Bucket=own_bucket)["Contents"]]
    assert set(keys_) <= set(listed)


def test_header_auth_without_the_payload_hash_is_refused_before_the_body(
    server: NimbusProcess, signed: Any, own_bucket: str
) -> None:
    from botocore.auth import SigV4Auth

    # SigV4Auth (not S3's) signs without x-amz-content-sha256: S3 wants it with header
    # auth, and without it nothing but the whole stored body could prove the signature.
    url = f"{server.endpoint}/{own_bucket}/unhashed"
    request = AWSRequest(method="PUT", url=url, data=b"x" * 1024)
    SigV4Auth(Credentials(*keys(server)), "s3", "us-east-1").add_auth(request)
    response = httpx.put(url, content=b"x" * 1024, headers=dict(request.headers.items()))
    assert response.status_code in (400, 403), response.text
    assert "x-amz-content-sha256" in response.text
    assert code_of(signed.head_object, Bucket=own_bucket, Key="unhashed")[1] == 404
