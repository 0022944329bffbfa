"""S3 on the wire, auth off: virtual-host addressing (boto3 through a proxy, raw Host
headers), aws-chunked bodies with trailing checksums, presigned URLs that expire, and
bucket notification configurations checked against the functions and queues that exist."""

from __future__ import annotations

import base64
import time
import uuid
import zlib
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.conftest import HELLO, ROLE
from tests.nimbus_process import NimbusProcess
from tests.s3.conftest import s3_client


def virtual_client(server: NimbusProcess) -> Any:
    """boto3 addressing buckets as ``<bucket>.s3.localhost``; the names do not resolve
    here, so the client reaches nimbus as its HTTP proxy (Host stays as addressed)."""
    return s3_client(
        server,
        endpoint=f"http://s3.localhost:{server.port}",
        s3={"addressing_style": "virtual"},
        proxies={"http": server.endpoint},
    )


def test_virtual_host_style(server: NimbusProcess, s3: Any, bucket: str) -> None:
    virtual = virtual_client(server)
    sent: list[str] = []
    virtual.meta.events.register("before-send", lambda request, **_: sent.append(request.url))
    virtual.put_object(Bucket=bucket, Key="v/a b.txt", Body=b"virtual")
    assert sent == [f"http://{bucket}.s3.localhost:{server.port}/v/a%20b.txt"]
    assert virtual.get_object(Bucket=bucket, Key="v/a b.txt")["Body"].read() == b"virtual"
    assert s3.get_object(Bucket=bucket, Key="v/a b.txt")["Body"].read() == b"virtual"
    listed = virtual.list_objects_v2(Bucket=bucket, Prefix="v/")
    assert [o["Key"] for o in listed["Contents"]] == ["v/a b.txt"]
    upload = virtual.create_multipart_upload(Bucket=bucket, Key="v/mp")["UploadId"]
    etag = virtual.upload_part(
        Bucket=bucket, Key="v/mp", UploadId=upload, PartNumber=1, Body=b"part"
    )["ETag"]
    done = virtual.complete_multipart_upload(
        Bucket=bucket,
        Key="v/mp",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    assert done["Location"] == f"http://{bucket}.s3.localhost:{server.port}/v/mp"
    # Unsigned requests name S3 by their host alone.
    raw = httpx.get(
        f"{server.endpoint}/v/a%20b.txt", headers={"host": f"{bucket}.s3.localhost:{server.port}"}
    )
    assert raw.status_code == 200 and raw.content == b"virtual"
    listing = httpx.get(
        f"{server.endpoint}/?list-type=2", headers={"host": f"{bucket}.s3.localhost"}
    )
    assert "<Key>v/a b.txt</Key>" in listing.text
    missing = httpx.get(f"{server.endpoint}/k", headers={"host": "no-such-bkt.s3.localhost"})
    assert missing.status_code == 404 and "<Code>NoSuchBucket</Code>" in missing.text


def _chunked(pieces: list[bytes], trailer: str) -> bytes:
    body = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces)
    return body + b"0\r\n" + trailer.encode() + b"\r\n\r\n"


def test_unsigned_payload_with_checksum_trailer(
    server: NimbusProcess, s3: Any, bucket: str
) -> None:
    pieces = [b"x" * 70000, b"y" * 123]
    data = b"".join(pieces)
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    headers = {
        "host": "s3.localhost",
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        "x-amz-trailer": "x-amz-checksum-crc32",
        "content-type": "text/plain",
    }
    answer = httpx.put(
        f"{server.endpoint}/{bucket}/trailer",
        content=_chunked(pieces, f"x-amz-checksum-crc32:{crc}"),
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-amz-checksum-crc32"] == crc
    got = s3.get_object(Bucket=bucket, Key="trailer", ChecksumMode="ENABLED")
    assert got["Body"].read() == data and got["ChecksumCRC32"] == crc
    assert got["ContentType"] == "text/plain" and "ContentEncoding" not in got
    wrong = httpx.put(
        f"{server.endpoint}/{bucket}/wrong",
        content=_chunked(pieces, "x-amz-checksum-crc32:AAAAAA=="),
        headers=headers,
    )
    assert wrong.status_code == 400 and "<Code>BadDigest</Code>" in wrong.text
    short = httpx.put(
        f"{server.endpoint}/{bucket}/short",
        content=_chunked(pieces[:1], f"x-amz-checksum-crc32:{crc}"),
        headers=headers,
    )
    assert short.status_code == 400 and "<Code>IncompleteBody</Code>" in short.text
    garbled = httpx.put(
        f"{server.endpoint}/{bucket}/garbled", content=b"zz\r\nabc", headers=headers
    )
    assert garbled.status_code == 400 and "<Code>IncompleteBody</Code>" in garbled.text
    for key in ("wrong", "short", "garbled"):
        with pytest.raises(ClientError):
            s3.head_object(Bucket=bucket, Key=key)


def test_presigned_urls_expire_even_with_auth_off(server: NimbusProcess, bucket: str) -> None:
    client = s3_client(server, signature_version="s3v4")
    client.put_object(Bucket=bucket, Key="p", Body=b"presigned")
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "p"}, ExpiresIn=1
    )
    deadline = time.time() + 10
    answer = httpx.get(url)
    assert answer.status_code == 200 and answer.content == b"presigned"
    while answer.status_code == 200 and time.time() < deadline:
        time.sleep(0.2)
        answer = httpx.get(url)
    assert answer.status_code == 403 and "Request has expired" in answer.text
    put = client.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "q"}, ExpiresIn=60
    )
    assert httpx.put(put, content=b"up").status_code == 200
    assert client.get_object(Bucket=bucket, Key="q")["Body"].read() == b"up"


def test_notification_configuration(server: NimbusProcess, s3: Any, bucket: str) -> None:
    sqs = server.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    function_arn = server.client().create_function(
        FunctionName=f"f-{uuid.uuid4().hex[:8]}",
        Runtime="python3.12",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": HELLO},
    )["FunctionArn"]
    assert "QueueConfigurations" not in s3.get_bucket_notification_configuration(Bucket=bucket)
    configuration = {
        "QueueConfigurations": [
            {
                "QueueArn": queue_arn,
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {
                    "Key": {
                        "FilterRules": [
                            {"Name": "prefix", "Value": "in/"},
                            {"Name": "SUFFIX", "Value": ".jpg"},
                        ]
                    }
                },
            }
        ],
        "LambdaFunctionConfigurations": [
            {
                "Id": "thumbs",
                "LambdaFunctionArn": function_arn,
                "Events": ["s3:ObjectRemoved:Delete"],
            }
        ],
    }
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=configuration)
    stored = s3.get_bucket_notification_configuration(Bucket=bucket)
    (queue,) = stored["QueueConfigurations"]
    assert queue["QueueArn"] == queue_arn and queue["Id"]
    assert queue["Filter"]["Key"]["FilterRules"] == [
        {"Name": "Prefix", "Value": "in/"},
        {"Name": "Suffix", "Value": ".jpg"},
    ]
    assert stored["LambdaFunctionConfigurations"] == [
        {"Id": "thumbs", "LambdaFunctionArn": function_arn, "Events": ["s3:ObjectRemoved:Delete"]}
    ]

    def refused(config: dict[str, Any], **kw: Any) -> dict[str, Any]:
        with pytest.raises(ClientError) as info:
            s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration=config, **kw
            )
        return info.value.response["Error"]

    assert refused(
        {"QueueConfigurations": [{"QueueArn": "nope", "Events": ["s3:ObjectCreated:*"]}]}
    ) == {
        "Code": "InvalidArgument",
        "Message": "The ARN could not be parsed",
        "ArgumentName": "Queue",
        "ArgumentValue": "nope",
    }
    gone = refused(
        {
            "QueueConfigurations": [
                {"QueueArn": queue_arn + "-gone", "Events": ["s3:ObjectCreated:*"]}
            ]
        }
    )
    assert gone["Message"] == "Unable to validate the following destination configurations"
    assert gone["ArgumentName1"] == queue_arn + "-gone"
    assert gone["ArgumentValue1"] == "The destination queue does not exist"
    missing_fn = refused(
        {
            "LambdaFunctionConfigurations": [
                {"LambdaFunctionArn": function_arn + "x", "Events": ["s3:ObjectCreated:*"]}
            ]
        }
    )
    assert missing_fn["ArgumentName1"] == f"{function_arn}x, null"
    assert refused(
        {
            "QueueConfigurations": [
                {"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]},
                {"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:Put"]},
            ]
        }
    )["Message"].startswith("Configurations overlap")
    assert (
        refused({"QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:Object:Nope"]}]})[
            "ArgumentName"
        ]
        == "Event"
    )
    # Nothing refused replaced what was stored.
    assert s3.get_bucket_notification_configuration(Bucket=bucket)["LambdaFunctionConfigurations"]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        SkipDestinationValidation=True,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": queue_arn + "-later", "Events": ["s3:ObjectCreated:*"]}
            ]
        },
    )
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    assert "QueueConfigurations" not in s3.get_bucket_notification_configuration(Bucket=bucket)
