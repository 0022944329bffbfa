"""Unit tests of the handler: images in, thumbnails out, with S3 stood in for by a dict.
Run from the blueprint's folder: ``python -m pytest tests`` (needs Pillow and boto3)."""

import io
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import app
from PIL import Image


class Body:
    def __init__(self, data):
        self.data = data

    def read(self):
        return self.data


class FakeS3:
    """get_object / put_object over a dict of (bucket, key) -> bytes."""

    def __init__(self, objects):
        self.objects = dict(objects)
        self.types = {}

    def get_object(self, Bucket, Key):
        return {"Body": Body(self.objects[(Bucket, Key)])}

    def put_object(self, Bucket, Key, Body, ContentType):
        self.objects[(Bucket, Key)] = Body
        self.types[(Bucket, Key)] = ContentType


def image(kind, size=(640, 480), mode="RGB"):
    out = io.BytesIO()
    Image.new(mode, size, "red" if mode == "RGB" else 128).save(out, kind)
    return out.getvalue()


def s3_event(bucket, *keys):
    """An S3 event as Lambda delivers it (the fields the handler reads; keys URL-encoded)."""
    return {"Records": [
        {"eventSource": "aws:s3", "s3": {"bucket": {"name": bucket}, "object": {"key": k}}}
        for k in keys
    ]}


@pytest.fixture(autouse=True)
def settings(monkeypatch):
    monkeypatch.setenv("THUMBNAIL_BUCKET", "thumbs")
    monkeypatch.setenv("THUMBNAIL_SIZE", "100")


def test_a_thumbnail_keeps_the_aspect_ratio_and_format():
    data, content_type = app.thumbnail(image("JPEG"), 100)
    with Image.open(io.BytesIO(data)) as thumb:
        assert (thumb.format, thumb.size) == ("JPEG", (100, 75))
    assert content_type == "image/jpeg"


def test_uncommon_formats_become_png():
    data, content_type = app.thumbnail(image("BMP", (50, 200)), 100)
    with Image.open(io.BytesIO(data)) as thumb:
        assert (thumb.format, thumb.size) == ("PNG", (25, 100))
    assert content_type == "image/png"


def test_each_image_of_the_event_gets_its_thumbnail_under_its_key():
    s3 = FakeS3({("photos", "a b.png"): image("PNG"), ("photos", "c.jpg"): image("JPEG")})
    result = app.handler(s3_event("photos", "a+b.png", "c.jpg"), None, s3=s3)
    assert result == {"thumbnails": ["a b.png", "c.jpg"]}
    with Image.open(io.BytesIO(s3.objects[("thumbs", "a b.png")])) as thumb:
        assert thumb.size == (100, 75)
    assert s3.types[("thumbs", "c.jpg")] == "image/jpeg"


def test_what_is_no_image_is_skipped_and_thumbnails_are_never_thumbnailed(capsys):
    s3 = FakeS3({("photos", "notes.txt"): b"hello", ("thumbs", "x.png"): image("PNG")})
    event = s3_event("photos", "notes.txt")
    event["Records"] += s3_event("thumbs", "x.png")["Records"]
    assert app.handler(event, None, s3=s3) == {"thumbnails": []}
    assert set(s3.objects) == {("photos", "notes.txt"), ("thumbs", "x.png")}
    log = capsys.readouterr().out
    assert "skipping photos/notes.txt" in log and "ignoring x.png" in log
