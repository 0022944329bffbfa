"""Buckets and objects through boto3 against a live nimbus, path style: what S3 answers,
errors in S3's shape included."""

from __future__ import annotations

import datetime
import hashlib
import uuid
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.nimbus_process import NimbusProcess


def error_of(call: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return {
        **info.value.response["Error"],
        "Status": info.value.response["ResponseMetadata"]["HTTPStatusCode"],
    }


def test_buckets(s3: Any) -> None:
    name = f"bk-{uuid.uuid4().hex[:8]}"
    assert s3.create_bucket(Bucket=name)["Location"] == f"/{name}"
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    head = s3.head_bucket(Bucket=name)
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] is None
    assert error_of(s3.create_bucket, Bucket=name) == {
        "Code": "BucketAlreadyOwnedByYou",
        "Message": "Your previous request to create the named bucket succeeded and you already "
        "own it.",
        "BucketName": name,
        "Status": 409,
    }
    s3.put_object(Bucket=name, Key="k", Body=b"x")
    assert error_of(s3.delete_bucket, Bucket=name)["Code"] == "BucketNotEmpty"
    s3.delete_object(Bucket=name, Key="k")
    assert s3.delete_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 204
    missing = error_of(s3.list_objects_v2, Bucket=name)
    assert missing["Code"] == "NoSuchBucket" and missing["Status"] == 404
    assert missing["BucketName"] == name
    assert error_of(s3.head_bucket, Bucket=name)["Code"] == "404"  # HEAD: no body
    bad = error_of(s3.create_bucket, Bucket="Not_Valid")
    assert bad["Code"] == "InvalidBucketName" and bad["Status"] == 400
    wrong_region = error_of(
        s3.create_bucket,
        Bucket=f"x-{name}",
        CreateBucketConfiguration={"LocationConstraint": "eu-west-1"},
    )
    assert wrong_region["Code"] == "InvalidLocationConstraint"


def test_put_get_head_with_metadata(s3: Any, bucket: str) -> None:
    put = s3.put_object(
        Bucket=bucket,
        Key="dir/file name+ü.txt",
        Body=b"hello world",
        ContentType="text/plain",
        Metadata={"Owner": "me"},
        CacheControl="max-age=60",
        ContentDisposition="attachment",
        ContentLanguage="en",
    )
    etag = f'"{hashlib.md5(b"hello world").hexdigest()}"'
    assert put["ETag"] == etag
    got = s3.get_object(Bucket=bucket, Key="dir/file name+ü.txt")
    assert got["Body"].read() == b"hello world"
    assert got["ContentType"] == "text/plain" and got["Metadata"] == {"owner": "me"}
    assert got["ETag"] == etag and got["ContentLength"] == 11
    assert got["CacheControl"] == "max-age=60" and got["ContentDisposition"] == "attachment"
    assert got["ContentLanguage"] == "en" and got["AcceptRanges"] == "bytes"
    head = s3.head_object(Bucket=bucket, Key="dir/file name+ü.txt")
    assert head["ContentLength"] == 11 and head["ETag"] == etag
    assert head["LastModified"] == got["LastModified"]
    default = s3.put_object(Bucket=bucket, Key="plain", Body=b"")
    assert default["ETag"] == f'"{hashlib.md5(b"").hexdigest()}"'
    assert s3.head_object(Bucket=bucket, Key="plain")["ContentType"] == "binary/octet-stream"
    overridden = s3.get_object(
        Bucket=bucket,
        Key="plain",
        ResponseContentType="image/png",
        ResponseContentDisposition="inline",
    )
    assert overridden["ContentType"] == "image/png" and overridden["ContentDisposition"] == "inline"


def test_checksums_are_checked_and_returned(s3: Any, server: NimbusProcess, bucket: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"checked", ChecksumAlgorithm="SHA256")
    assert put["ChecksumSHA256"] and put["ChecksumType"] == "FULL_OBJECT"
    got = s3.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert got["ChecksumSHA256"] == put["ChecksumSHA256"]
    assert got["Body"].read() == b"checked"  # botocore checks the checksum as it reads
    # A body that does not match what its checksum header says is refused, not stored.
    answer = httpx.put(
        f"{server.endpoint}/{bucket}/bad",
        content=b"payload",
        headers={"x-amz-checksum-crc32": "AAAAAA==", "host": "s3.localhost"},
    )
    assert answer.status_code == 400 and "<Code>BadDigest</Code>" in answer.text
    answer = httpx.put(
        f"{server.endpoint}/{bucket}/bad",
        content=b"payload",
        headers={"content-md5": "1B2M2Y8AsgTpgAmY7PhCfg==", "host": "s3.localhost"},
    )
    assert answer.status_code == 400 and "<Code>BadDigest</Code>" in answer.text
    assert error_of(s3.head_object, Bucket=bucket, Key="bad")["Code"] == "404"
    unsupported = httpx.put(
        f"{server.endpoint}/{bucket}/c",
        content=b"x",
        headers={"x-amz-checksum-crc32c": "AAAAAA==", "host": "s3.localhost"},
    )
    assert unsupported.status_code == 400 and "CRC32C" in unsupported.text


def test_ranges(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="r", Body=b"0123456789")

    def read(spec: str) -> tuple[bytes, str | None, int]:
        got = s3.get_object(Bucket=bucket, Key="r", Range=spec)
        return (
            got["Body"].read(),
            got.get("ContentRange"),
            got["ResponseMetadata"]["HTTPStatusCode"],
        )

    assert read("bytes=0-3") == (b"0123", "bytes 0-3/10", 206)
    assert read("bytes=7-") == (b"789", "bytes 7-9/10", 206)
    assert read("bytes=-2") == (b"89", "bytes 8-9/10", 206)
    assert read("bytes=5-100") == (b"56789", "bytes 5-9/10", 206)
    assert read("bytes=3-1") == (b"0123456789", None, 200)  # ignored, as S3 does
    assert read("bytes=0-1,4-5") == (b"0123456789", None, 200)
    unsatisfiable = error_of(s3.get_object, Bucket=bucket, Key="r", Range="bytes=10-20")
    assert unsatisfiable == {
        "Code": "InvalidRange",
        "Message": "The requested range is not satisfiable",
        "ActualObjectSize": "10",
        "RangeRequested": "bytes=10-20",
        "Status": 416,
    }


def test_conditional_reads(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="c", Body=b"data")["ETag"]
    modified = s3.head_object(Bucket=bucket, Key="c")["LastModified"]
    yesterday = modified - datetime.timedelta(days=1)
    for method in (s3.get_object, s3.head_object):
        failed = error_of(method, Bucket=bucket, Key="c", IfMatch='"other"')
        assert failed["Status"] == 412
        assert error_of(method, Bucket=bucket, Key="c", IfNoneMatch=etag)["Status"] == 304
        assert error_of(method, Bucket=bucket, Key="c", IfModifiedSince=modified)["Status"] == 304
        unmodified = error_of(method, Bucket=bucket, Key="c", IfUnmodifiedSince=yesterday)
        assert unmodified["Status"] == 412
        ok = method(
            Bucket=bucket,
            Key="c",
            IfMatch=etag.strip('"'),
            IfNoneMatch='"x"',
            IfModifiedSince=yesterday,
            IfUnmodifiedSince=modified,
        )
        assert ok["ResponseMetadata"]["HTTPStatusCode"] == 200
    body = error_of(s3.get_object, Bucket=bucket, Key="c", IfMatch='"other"')
    assert body["Code"] == "PreconditionFailed" and body["Condition"] == "If-Match"


def test_conditional_writes(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="w", Body=b"1", IfNoneMatch="*")["ETag"]
    refused = error_of(s3.put_object, Bucket=bucket, Key="w", Body=b"2", IfNoneMatch="*")
    assert refused["Code"] == "PreconditionFailed" and refused["Status"] == 412
    assert (
        error_of(s3.put_object, Bucket=bucket, Key="w", Body=b"2", IfMatch='"x"')["Status"] == 412
    )
    s3.put_object(Bucket=bucket, Key="w", Body=b"3", IfMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="w")["Body"].read() == b"3"


def test_missing_keys(s3: Any, bucket: str) -> None:
    assert error_of(s3.get_object, Bucket=bucket, Key="nope") == {
        "Code": "NoSuchKey",
        "Message": "The specified key does not exist.",
        "Key": "nope",
        "Status": 404,
    }
    assert error_of(s3.head_object, Bucket=bucket, Key="nope")["Status"] == 404
    assert s3.delete_object(Bucket=bucket, Key="nope")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert error_of(s3.get_object, Bucket="no-such-bucket-here", Key="k")["Code"] == "NoSuchBucket"
    versioned = error_of(s3.get_object, Bucket=bucket, Key="nope", VersionId="abc")
    assert versioned["Code"] == "InvalidArgument"


def test_unsupported_features_are_refused(s3: Any, bucket: str) -> None:
    refused = error_of(s3.put_object, Bucket=bucket, Key="k", Body=b"x", StorageClass="GLACIER")
    assert refused["Code"] == "NotImplemented" and refused["Status"] == 501
    assert (
        error_of(s3.put_object, Bucket=bucket, Key="k", Body=b"x", Tagging="a=b")["Code"]
        == "NotImplemented"
    )
    assert (
        error_of(
            s3.put_bucket_versioning, Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
        )["Code"]
        == "NotImplemented"
    )
    assert error_of(s3.head_object, Bucket=bucket, Key="k")["Status"] == 404


def test_copy(s3: Any, bucket: str) -> None:
    s3.put_object(
        Bucket=bucket, Key="src", Body=b"copy me", ContentType="text/x", Metadata={"a": "1"}
    )
    copied = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert copied["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(b"copy me").hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == b"copy me"
    assert got["ContentType"] == "text/x" and got["Metadata"] == {"a": "1"}
    s3.copy_object(
        Bucket=bucket,
        Key="dst2",
        CopySource=f"{bucket}/src",
        MetadataDirective="REPLACE",
        ContentType="text/y",
        Metadata={"b": "2"},
    )
    replaced = s3.head_object(Bucket=bucket, Key="dst2")
    assert replaced["ContentType"] == "text/y" and replaced["Metadata"] == {"b": "2"}
    self_copy = error_of(
        s3.copy_object, Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src"}
    )
    assert self_copy["Code"] == "InvalidRequest"
    missing = error_of(
        s3.copy_object, Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "absent"}
    )
    assert missing["Code"] == "NoSuchKey"
    condition = error_of(
        s3.copy_object,
        Bucket=bucket,
        Key="x",
        CopySourceIfMatch='"nope"',
        CopySource={"Bucket": bucket, "Key": "src"},
    )
    assert condition["Condition"] == "x-amz-copy-source-If-Match" and condition["Status"] == 412
    # The source may change or go: the copy keeps its bytes.
    s3.delete_object(Bucket=bucket, Key="src")
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"copy me"


def test_list_v2_pagination_and_prefixes(s3: Any, bucket: str) -> None:
    keys = [f"logs/2024/{i:02d}.txt" for i in range(7)] + ["logs/readme", "top", "a b+c"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    paginator = s3.get_paginator("list_objects_v2")
    listed = [
        o["Key"]
        for page in paginator.paginate(Bucket=bucket, PaginationConfig={"PageSize": 3})
        for o in page.get("Contents", [])
    ]
    assert listed == sorted(keys)
    page = s3.list_objects_v2(Bucket=bucket, Prefix="logs/", Delimiter="/")
    assert [o["Key"] for o in page["Contents"]] == ["logs/readme"]
    assert page["CommonPrefixes"] == [{"Prefix": "logs/2024/"}]
    assert page["KeyCount"] == 2 and page["IsTruncated"] is False
    page = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [o["Key"] for o in page["Contents"]] == ["a b+c", "top"]
    after = s3.list_objects_v2(Bucket=bucket, StartAfter="logs/2024/05.txt", MaxKeys=2)
    assert [o["Key"] for o in after["Contents"]] == ["logs/2024/06.txt", "logs/readme"]
    assert after["IsTruncated"] is True
    bad = error_of(s3.list_objects_v2, Bucket=bucket, ContinuationToken="!!!")
    assert bad["Code"] == "InvalidArgument"
    first = s3.list_objects_v2(Bucket=bucket, MaxKeys=1)["Contents"][0]
    assert first["Size"] == len(b"a b+c") and first["StorageClass"] == "STANDARD"


def test_list_v1(s3: Any, bucket: str) -> None:
    for key in ("a/1", "a/2", "b/1", "c"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    page = s3.list_objects(Bucket=bucket, Delimiter="/", MaxKeys=2)
    assert page["CommonPrefixes"] == [{"Prefix": "a/"}, {"Prefix": "b/"}]
    assert page["IsTruncated"] is True and page["NextMarker"] == "b/"
    rest = s3.list_objects(Bucket=bucket, Delimiter="/", Marker=page["NextMarker"])
    assert [o["Key"] for o in rest["Contents"]] == ["c"] and rest["IsTruncated"] is False
    everything = [
        o["Key"]
        for p in s3.get_paginator("list_objects").paginate(
            Bucket=bucket, PaginationConfig={"PageSize": 1}
        )
        for o in p["Contents"]
    ]
    assert everything == ["a/1", "a/2", "b/1", "c"]
    assert "ID" in s3.list_objects(Bucket=bucket)["Contents"][0]["Owner"]


def test_delete_objects(s3: Any, bucket: str) -> None:
    for key in ("x", "y"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"1")
    answer = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "x"}, {"Key": "y"}, {"Key": "never"}]}
    )
    assert sorted(d["Key"] for d in answer["Deleted"]) == ["never", "x", "y"]
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "z"}], "Quiet": True})
    assert "Deleted" not in quiet


def test_non_s3_requests_still_reach_lambda(server: NimbusProcess) -> None:
    answer = httpx.get(f"{server.endpoint}/2015-03-31/functions/")
    assert answer.status_code == 200 and "Functions" in answer.json()
