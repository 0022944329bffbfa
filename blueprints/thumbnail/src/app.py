"""thumbnail: for each image an S3 event names, a thumbnail of it in the thumbnails bucket,
under the same key (Pillow comes from the function's layer).

Objects that are not images Pillow can read are skipped, and said so in the log; an event
from the thumbnails bucket itself is ignored, so a misconfigured trigger cannot loop."""

import io
import os
import urllib.parse

import boto3
from PIL import Image, UnidentifiedImageError

KEPT_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")  # saved as they came; anything else as PNG


def thumbnail(data, size):
    """(thumbnail bytes, content type) of the image ``data``, at most ``size`` pixels on
    its longest side, in the image's own format where it is a common web format."""
    with Image.open(io.BytesIO(data)) as image:
        kind = image.format if image.format in KEPT_FORMATS else "PNG"
        image.thumbnail((size, size))
        if kind == "JPEG" and image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        out = io.BytesIO()
        image.save(out, kind)
    return out.getvalue(), Image.MIME[kind]


def s3_client():
    """An S3 client of S3_ENDPOINT_URL (your nimbus) or of AWS. On AWS the function's role
    gives the credentials; nimbus hands functions none, so the request is signed with
    S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY when set (nimbus with API auth on), else with
    a placeholder key, which nimbus accepts with auth off (its default on loopback)."""
    session = boto3.session.Session()
    keys = {}
    if session.get_credentials() is None:
        keys = {
            "aws_access_key_id": os.environ.get("S3_ACCESS_KEY_ID", "nimbus"),
            "aws_secret_access_key": os.environ.get("S3_SECRET_ACCESS_KEY", "nimbus"),
        }
    return session.client("s3", endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None, **keys)


def handler(event, context, s3=None):
    s3 = s3 or s3_client()
    target = os.environ["THUMBNAIL_BUCKET"]
    size = int(os.environ.get("THUMBNAIL_SIZE", "128"))
    made = []
    for record in event.get("Records", []):
        bucket = record["s3"]["bucket"]["name"]
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])  # S3 events encode keys
        if bucket == target:
            print(f"ignoring {key}: it is in the thumbnails bucket")
            continue
        original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        try:
            data, content_type = thumbnail(original, size)
        except UnidentifiedImageError:
            print(f"skipping {bucket}/{key}: not an image Pillow can read")
            continue
        s3.put_object(Bucket=target, Key=key, Body=data, ContentType=content_type)
        print(f"{bucket}/{key}: {len(original)} bytes -> {target}/{key}: {len(data)} bytes")
        made.append(key)
    return {"thumbnails": made}
