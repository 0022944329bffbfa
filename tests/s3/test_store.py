"""The S3 store over each database backend: listing order and pagination, overwrites and
blob files, multipart completion, write conditions, the event hook, crash leftovers, and
``open_object`` (what S3 code locations read)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from nimbus.protocol.errors import AwsError
from nimbus.s3.conditions import WriteConditions
from nimbus.s3.listing import successor
from nimbus.s3.multipart import MIN_PART, CompletedPart
from nimbus.s3.records import NewObject, ObjectEvent, ObjectInfo
from nimbus.s3.store import S3Store
from nimbus.s3.tables import metadata
from nimbus.store.database import Database


def put(store: S3Store, bucket: str, key: str, data: bytes, **kw: object) -> ObjectInfo:
    writer = store.blobs.writer()
    writer.write(data)
    blob = writer.commit()
    info = ObjectInfo(bucket, key, blob, writer.size, writer.etag, 0)
    return store.objects.put(info, event="ObjectCreated:Put", **kw)  # type: ignore[arg-type]


def blob_files(store: S3Store) -> set[str]:
    return set(store.blobs.ids())


def test_migration_matches_tables(database_url: str) -> None:
    db = Database(database_url)
    db.migrate()
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert [d for d in diff if "s3_" in repr(d)] == []
    db.dispose()


def test_successor() -> None:
    assert successor("a/") == "a0"
    assert successor("") is None
    assert successor("a\U0010ffff") == "b"
    assert successor("\ud7ff") == "\ue000"


def test_listing_in_byte_order_with_prefixes_and_pages(store: S3Store) -> None:
    store.buckets.create("bkt", "us-east-1")
    keys = ["a/1", "a/2", "a/b/3", "b", "c/x", "c/y", "d", "é", "z/", "z/q"]
    for key in reversed(keys):
        put(store, "bkt", key, key.encode())
    page = store.objects.list_page("bkt")
    assert [o.key for o in page.contents] == sorted(keys, key=lambda k: k.encode())
    page = store.objects.list_page("bkt", delimiter="/")
    assert [o.key for o in page.contents] == ["b", "d", "é"]
    assert page.prefixes == ["a/", "c/", "z/"] and not page.truncated
    # Two at a time, each page starting after the last key or prefix of the one before.
    seen: list[str] = []
    after = None
    while True:
        page = store.objects.list_page("bkt", delimiter="/", after=after, max_keys=2)
        items = sorted([o.key for o in page.contents] + page.prefixes, key=lambda k: k.encode())
        seen += items
        assert page.count <= 2
        if not page.truncated:
            break
        after = page.last
    assert seen == ["a/", "b", "c/", "d", "z/", "é"]
    page = store.objects.list_page("bkt", prefix="a/", delimiter="/")
    assert [o.key for o in page.contents] == ["a/1", "a/2"] and page.prefixes == ["a/b/"]
    page = store.objects.list_page("bkt", prefix="z/", delimiter="/")
    assert [o.key for o in page.contents] == ["z/", "z/q"]
    assert store.objects.list_page("bkt", after="c/x").contents[0].key == "c/y"


def test_overwrite_and_delete_remove_old_blobs(store: S3Store) -> None:
    store.buckets.create("bkt", "us-east-1")
    first = put(store, "bkt", "k", b"one")
    second = put(store, "bkt", "k", b"two")
    assert blob_files(store) == {second.blob} and first.blob != second.blob
    with store.open_object("bkt", "k") as opened:
        assert opened.file.read() == b"two"
        assert opened.info.etag == hashlib.md5(b"two").hexdigest()
    assert store.objects.delete("bkt", "k") is True
    assert store.objects.delete("bkt", "k") is False
    assert blob_files(store) == set()


def test_reader_keeps_reading_an_object_replaced_meanwhile(store: S3Store) -> None:
    store.buckets.create("bkt", "us-east-1")
    put(store, "bkt", "k", b"old bytes")
    opened = store.open_object("bkt", "k")
    put(store, "bkt", "k", b"new")
    assert opened.file.read() == b"old bytes"
    opened.close()


def test_open_object_errors(store: S3Store) -> None:
    with pytest.raises(AwsError) as info:
        store.open_object("nobucket", "k")
    assert info.value.type_name == "NoSuchBucket"
    store.buckets.create("bkt", "us-east-1")
    with pytest.raises(AwsError) as info:
        store.open_object("bkt", "k")
    assert info.value.type_name == "NoSuchKey"
    put(store, "bkt", "k", b"x")
    store.open_object("bkt", "k", "null").close()
    with pytest.raises(AwsError) as info:
        store.open_object("bkt", "k", "3HL4kqtJlcpXroDTDmJ")
    assert info.value.type_name == "InvalidArgument"


def test_write_conditions(store: S3Store) -> None:
    store.buckets.create("bkt", "us-east-1")
    only_new = WriteConditions.of(None, "*")
    first = put(store, "bkt", "k", b"1", conditions=only_new)
    with pytest.raises(AwsError) as info:
        put(store, "bkt", "k", b"2", conditions=only_new)
    assert info.value.status == 412
    with pytest.raises(AwsError) as info:
        put(store, "bkt", "k", b"2", conditions=WriteConditions.of('"nope"', None))
    assert info.value.status == 412
    put(store, "bkt", "k", b"3", conditions=WriteConditions.of(f'"{first.etag}"', None))
    with pytest.raises(AwsError) as info:
        put(store, "bkt", "absent", b"2", conditions=WriteConditions.of(f'"{first.etag}"', None))
    assert info.value.type_name == "NoSuchKey"
    # Nothing refused left a blob behind: only the object's own.
    assert blob_files(store) == {store.objects.get("bkt", "k").blob}


def test_multipart_complete(store: S3Store) -> None:
    store.buckets.create("bkt", "us-east-1")
    upload = store.uploads.create("bkt", "big", NewObject({"Content-Type": "a/b"}, {}), None)
    parts = [b"a" * MIN_PART, b"b" * MIN_PART, b"tail"]
    etags = []
    for number, data in enumerate(parts, start=1):
        writer = store.blobs.writer()
        writer.write(data)
        blob = writer.commit()
        etags.append(writer.etag)
        store.uploads.put_part(upload, number, blob, writer.size, writer.etag, None)
    with pytest.raises(AwsError) as info:
        store.uploads.complete(
            "bkt", "big", upload.upload_id, [CompletedPart(2, etags[1]), CompletedPart(1, etags[0])]
        )
    assert info.value.type_name == "InvalidPartOrder"
    with pytest.raises(AwsError) as info:
        store.uploads.complete("bkt", "big", upload.upload_id, [CompletedPart(1, '"bad"')])
    assert info.value.type_name == "InvalidPart"
    with pytest.raises(AwsError) as info:
        store.uploads.complete(
            "bkt", "big", upload.upload_id, [CompletedPart(3, etags[2]), CompletedPart(4, "x")]
        )
    assert info.value.type_name == "InvalidPart"
    done = store.uploads.complete(
        "bkt",
        "big",
        upload.upload_id,
        [CompletedPart(n + 1, f'"{e}"') for n, e in enumerate(etags)],
    )
    expected = hashlib.md5(b"".join(bytes.fromhex(e) for e in etags)).hexdigest() + "-3"
    assert done.etag == expected and done.size == sum(map(len, parts))
    assert done.parts == [len(p) for p in parts] and done.content_type == "a/b"
    with store.open_object("bkt", "big") as opened:
        assert opened.file.read() == b"".join(parts)
    # The parts' blobs are gone with the upload: only the object's remains.
    assert blob_files(store) == {done.blob}
    with pytest.raises(AwsError) as info:
        store.uploads.get("bkt", "big", upload.upload_id)
    assert info.value.type_name == "NoSuchUpload"


def test_small_parts_are_refused_except_the_last(store: S3Store) -> None:
    store.buckets.create("bkt", "us-east-1")
    upload = store.uploads.create("bkt", "k", NewObject(), None)
    etags = []
    for number in (1, 2):
        writer = store.blobs.writer()
        writer.write(b"small")
        store.uploads.put_part(upload, number, writer.commit(), writer.size, writer.etag, None)
        etags.append(writer.etag)
    with pytest.raises(AwsError) as info:
        store.uploads.complete(
            "bkt", "k", upload.upload_id, [CompletedPart(1, etags[0]), CompletedPart(2, etags[1])]
        )
    assert info.value.type_name == "EntityTooSmall"
    assert info.value.extra["PartNumber"] == "1"
    store.uploads.abort("bkt", "k", upload.upload_id)
    assert blob_files(store) == set()


class Recorder:
    """A listener that notes what it hears, and whether a transaction was open."""

    def __init__(self) -> None:
        self.staged_events: list[tuple[str, bool]] = []
        self.committed_events: list[ObjectEvent] = []

    def staged(self, conn: sa.Connection, event: ObjectEvent) -> None:
        self.staged_events.append((event.name, conn.in_transaction()))

    def committed(self, event: ObjectEvent) -> None:
        self.committed_events.append(event)


def test_listeners_hear_changes_in_and_after_the_transaction(store: S3Store) -> None:
    recorder = Recorder()
    store.events.subscribe(recorder)
    store.buckets.create("bkt", "us-east-1")
    put(store, "bkt", "k", b"data")
    with pytest.raises(AwsError):
        put(store, "bkt", "k", b"again", conditions=WriteConditions.of(None, "*"))
    store.objects.copy("bkt", "k", "bkt", "k2")
    store.objects.delete_many("bkt", ["k", "k2", "absent"])
    names = [e.name for e in recorder.committed_events]
    assert names == [
        "ObjectCreated:Put",
        "ObjectCreated:Copy",
        "ObjectRemoved:Delete",
        "ObjectRemoved:Delete",
    ]
    assert recorder.staged_events == [(n, True) for n in names]
    put_event = recorder.committed_events[0]
    assert put_event.size == 4 and put_event.etag == hashlib.md5(b"data").hexdigest()
    sequencers = [e.sequencer for e in recorder.committed_events]
    assert sequencers == sorted(sequencers) and len(set(sequencers)) == 4


def test_leftovers_of_a_crash_are_removed_at_open(database_url: str, tmp_path: Path) -> None:
    db = Database(database_url)
    db.migrate()
    store = S3Store.open(db, tmp_path, "us-east-1")
    store.buckets.create("bkt", "us-east-1")
    kept = put(store, "bkt", "k", b"kept")
    orphan = store.blobs.writer()
    orphan.write(b"never committed")
    orphan_id = orphan.commit()  # in place, but no row names it: the crash came here
    half = store.blobs.writer()
    half.write(b"half written")  # still in tmp
    assert blob_files(store) == {kept.blob, orphan_id}
    reopened = S3Store.open(db, tmp_path, "us-east-1")
    assert blob_files(reopened) == {kept.blob}
    assert list((tmp_path / "s3" / "tmp").iterdir()) == []
    db.dispose()


def test_bucket_rules(store: S3Store) -> None:
    for bad in ("ab", "Upper", "a..b", "192.168.0.1", "-start", "xn--pun", "a" * 64):
        with pytest.raises(AwsError) as info:
            store.buckets.create(bad, "us-east-1")
        assert info.value.type_name == "InvalidBucketName", bad
    store.buckets.create("my.bucket-1", "us-east-1")
    with pytest.raises(AwsError) as info:
        store.buckets.create("my.bucket-1", "us-east-1")
    assert info.value.type_name == "BucketAlreadyOwnedByYou"
    put(store, "my.bucket-1", "k", b"x")
    upload = store.uploads.create("my.bucket-1", "u", NewObject(), None)
    with pytest.raises(AwsError) as info:
        store.buckets.delete("my.bucket-1")
    assert info.value.type_name == "BucketNotEmpty"
    store.objects.delete("my.bucket-1", "k")
    store.buckets.delete("my.bucket-1")  # uploads in progress go with it
    with pytest.raises(AwsError):
        store.uploads.get("my.bucket-1", "u", upload.upload_id)
    assert store.buckets.list() == []
