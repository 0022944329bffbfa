"""Multipart uploads through boto3 and the AWS CLI against a live nimbus: the calls and
their errors, ``aws s3 cp/ls/sync``, and a 200 MB round trip whose bytes never sit in
the server's memory."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import aws_cli
from tests.nimbus_process import NimbusProcess

MIB = 1024 * 1024


def error_code(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return str(info.value.response["Error"]["Code"])


def test_multipart_upload_with_boto3(s3: Any, bucket: str) -> None:
    upload = s3.create_multipart_upload(
        Bucket=bucket, Key="big", ContentType="application/x-big", Metadata={"m": "1"}
    )["UploadId"]
    parts = [os.urandom(5 * MIB), os.urandom(5 * MIB), b"tail"]
    etags = []
    for number, data in enumerate(parts, start=1):
        etags.append(
            s3.upload_part(Bucket=bucket, Key="big", UploadId=upload, PartNumber=number, Body=data)[
                "ETag"
            ]
        )
    listed = s3.list_parts(Bucket=bucket, Key="big", UploadId=upload, MaxParts=2)
    assert [p["PartNumber"] for p in listed["Parts"]] == [1, 2] and listed["IsTruncated"]
    assert listed["NextPartNumberMarker"] == 2 and listed["Parts"][0]["Size"] == 5 * MIB
    uploads = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("big", upload)]
    assert (
        error_code(
            s3.complete_multipart_upload,
            Bucket=bucket,
            Key="big",
            UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"0000"'}]},
        )
        == "InvalidPart"
    )
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="big",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]},
    )
    digest = hashlib.md5(b"".join(bytes.fromhex(e.strip('"')) for e in etags)).hexdigest()
    assert done["ETag"] == f'"{digest}-3"' and done["Key"] == "big"
    got = s3.get_object(Bucket=bucket, Key="big")
    assert got["ContentLength"] == 10 * MIB + 4 and got["ContentType"] == "application/x-big"
    assert got["Metadata"] == {"m": "1"} and got["ETag"] == done["ETag"]
    assert hashlib.md5(got["Body"].read()).digest() == hashlib.md5(b"".join(parts)).digest()
    second = s3.get_object(Bucket=bucket, Key="big", PartNumber=2)
    assert second["ContentLength"] == 5 * MIB and second["PartsCount"] == 3
    assert second["Body"].read() == parts[1]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert error_code(s3.list_parts, Bucket=bucket, Key="big", UploadId=upload) == "NoSuchUpload"


def test_abort_and_errors(s3: Any, bucket: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="k", UploadId=upload, PartNumber=1, Body=b"small")[
        "ETag"
    ]
    s3.upload_part(Bucket=bucket, Key="k", UploadId=upload, PartNumber=2, Body=b"small")
    assert (
        error_code(
            s3.complete_multipart_upload,
            Bucket=bucket,
            Key="k",
            UploadId=upload,
            MultipartUpload={
                "Parts": [{"PartNumber": 1, "ETag": etag}, {"PartNumber": 2, "ETag": etag}]
            },
        )
        == "EntityTooSmall"
    )
    assert (
        error_code(
            s3.complete_multipart_upload,
            Bucket=bucket,
            Key="k",
            UploadId=upload,
            MultipartUpload={
                "Parts": [{"PartNumber": 2, "ETag": etag}, {"PartNumber": 1, "ETag": etag}]
            },
        )
        == "InvalidPartOrder"
    )
    assert (
        error_code(
            s3.upload_part, Bucket=bucket, Key="k", UploadId=upload, PartNumber=10001, Body=b"x"
        )
        == "InvalidArgument"
    )
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload)
    assert (
        error_code(s3.upload_part, Bucket=bucket, Key="k", UploadId=upload, PartNumber=1, Body=b"x")
        == "NoSuchUpload"
    )
    assert (
        error_code(s3.abort_multipart_upload, Bucket=bucket, Key="k", UploadId=upload)
        == "NoSuchUpload"
    )
    assert error_code(s3.head_object, Bucket=bucket, Key="k") == "404"


def test_upload_part_copy(s3: Any, bucket: str) -> None:
    source = os.urandom(6 * MIB)
    s3.put_object(Bucket=bucket, Key="src", Body=source)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    first = s3.upload_part_copy(
        Bucket=bucket,
        Key="dst",
        UploadId=upload,
        PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "src"},
        CopySourceRange=f"bytes=0-{5 * MIB - 1}",
    )["CopyPartResult"]["ETag"]
    second = s3.upload_part(Bucket=bucket, Key="dst", UploadId=upload, PartNumber=2, Body=b"end")[
        "ETag"
    ]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="dst",
        UploadId=upload,
        MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": first}, {"PartNumber": 2, "ETag": second}]
        },
    )
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == source[: 5 * MIB] + b"end"


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def test_aws_cli_200mb_round_trip_in_bounded_memory(
    server: NimbusProcess, s3: Any, bucket: str, tmp_path: Path
) -> None:
    source = tmp_path / "big.bin"
    digest = hashlib.md5()
    with source.open("wb") as f:
        for _ in range(200):
            chunk = os.urandom(MIB)
            digest.update(chunk)
            f.write(chunk)
    assert server.proc is not None
    pid = server.proc.pid
    before = _status(pid, "VmRSS")
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS: measure from here
    aws_cli(server.endpoint, "s3", "cp", "--only-show-errors", str(source), f"s3://{bucket}/big")
    back = tmp_path / "back.bin"
    aws_cli(server.endpoint, "s3", "cp", "--only-show-errors", f"s3://{bucket}/big", str(back))
    peak = _status(pid, "VmHWM")
    check = hashlib.md5()
    with back.open("rb") as f:
        while chunk := f.read(MIB):
            check.update(chunk)
    assert check.hexdigest() == digest.hexdigest()
    head = s3.head_object(Bucket=bucket, Key="big")
    assert head["ContentLength"] == 200 * MIB and head["ETag"].endswith('-25"')  # 8 MiB parts
    rise = peak - before
    assert rise < 64 * MIB, f"server RSS rose by {rise / MIB:.1f} MiB for a 200 MiB object"


def test_aws_cli_sync_and_ls(server: NimbusProcess, bucket: str, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    files = {"a.txt": b"a", "sub/b.txt": b"bb", "sub/deeper/c.bin": os.urandom(1000)}
    for name, data in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    aws_cli(server.endpoint, "s3", "sync", "--only-show-errors", str(tree), f"s3://{bucket}/t")
    listing = aws_cli(server.endpoint, "s3", "ls", "--recursive", f"s3://{bucket}/").stdout
    assert sorted(line.split()[-1] for line in listing.splitlines()) == sorted(
        f"t/{name}" for name in files
    )
    top = aws_cli(server.endpoint, "s3", "ls", f"s3://{bucket}/t/").stdout
    assert "PRE sub/" in top and "a.txt" in top
    buckets = aws_cli(server.endpoint, "s3", "ls").stdout
    assert bucket in buckets
    copy = tmp_path / "copy"
    aws_cli(server.endpoint, "s3", "sync", "--only-show-errors", f"s3://{bucket}/t", str(copy))
    for name, data in files.items():
        assert (copy / name).read_bytes() == data
    # A second sync finds nothing to do; a deleted file goes with --delete.
    (tree / "a.txt").unlink()
    out = aws_cli(server.endpoint, "s3", "sync", "--delete", str(tree), f"s3://{bucket}/t").stdout
    assert "delete: s3://" in out and "upload:" not in out
    failed = aws_cli(server.endpoint, "s3", "ls", "s3://no-such-bucket-x", ok=False)
    assert "NoSuchBucket" in failed.stderr
