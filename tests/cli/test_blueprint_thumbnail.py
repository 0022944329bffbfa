"""The thumbnail blueprint as a user runs it: ``nimbus init thumbnail``, ``nimbus deploy``
(Pillow built into a layer from its requirements.txt, the function's S3 event wired to the
images bucket), an image put with boto3, its thumbnail awaited in the thumbnails bucket,
``nimbus rm --stack``. Each CLI step is a subprocess against a live server of the test's
own; pip reaches PyPI for Pillow and boto3 (skipped when it cannot)."""

from __future__ import annotations

import io
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from PIL import Image

from tests.cli.conftest import nimbus_cli
from tests.nimbus_process import NimbusProcess

DEADLINE_S = 120


def image(kind: str, size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, "blue").save(out, kind)
    return out.getvalue()


def output(deployed: subprocess.CompletedProcess[str], name: str) -> str:
    found = re.search(rf"^\s*{name} = (\S+)\s*$", deployed.stderr, re.MULTILINE)
    assert found, deployed.stderr
    return found[1]


def await_object(s3: Any, bucket: str, key: str) -> bytes:
    """The object once it exists (polled with a deadline: it is made asynchronously)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("404", "NoSuchKey"):
                raise
            if time.monotonic() > deadline:
                raise AssertionError(f"{bucket}/{key} did not appear in {DEADLINE_S} s") from exc
            time.sleep(0.2)
            continue
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def empty(s3: Any, bucket: str) -> None:
    for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=item["Key"])


@pytest.mark.sandbox
def test_thumbnail_of_an_uploaded_image_appears_in_the_thumbnails_bucket(
    nimbus: NimbusProcess, tmp_path: Path
) -> None:
    folder = tmp_path / "thumbs"
    made = nimbus_cli(nimbus, "init", "thumbnail", str(folder))
    assert made.returncode == 0, made.stderr
    deployed = nimbus_cli(nimbus, "deploy", str(folder / "template.yaml"),
                          "--param", f"S3EndpointUrl={nimbus.endpoint}",
                          "--param", "ThumbnailSize=64")  # fmt: skip
    if deployed.returncode != 0 and "pip install" in deployed.stderr:
        pytest.skip(f"pip could not install the blueprint's requirements: {deployed.stderr}")
    assert deployed.returncode == 0, deployed.stderr
    images, thumbs = output(deployed, "ImagesBucket"), output(deployed, "ThumbnailsBucket")
    assert (images, thumbs) == ("thumbs-images", "thumbs-thumbnails")
    layer = nimbus.client().list_layers()["Layers"]
    assert len(layer) == 1  # Pillow, in its layer

    s3 = nimbus.client("s3")
    s3.put_object(Bucket=images, Key="holiday/beach 1.jpg", Body=image("JPEG", (800, 600)))
    s3.put_object(Bucket=images, Key="notes.txt", Body=b"not an image")
    s3.put_object(Bucket=images, Key="logo.png", Body=image("PNG", (100, 400)))
    for key, size, kind in (("holiday/beach 1.jpg", (64, 48), "JPEG"),
                            ("logo.png", (16, 64), "PNG")):  # fmt: skip
        with Image.open(io.BytesIO(await_object(s3, thumbs, key))) as thumb:
            assert (thumb.size, thumb.format) == (size, kind)
    assert s3.head_object(Bucket=thumbs, Key="logo.png")["ContentType"] == "image/png"
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=thumbs)["Contents"]]
    assert "notes.txt" not in listed

    empty(s3, images)
    empty(s3, thumbs)
    gone = nimbus_cli(nimbus, "rm", "--stack", folder.name, "--dir", str(folder))
    assert gone.returncode == 0, gone.stderr
    assert nimbus.client().list_functions()["Functions"] == []
    assert s3.list_buckets()["Buckets"] == []
