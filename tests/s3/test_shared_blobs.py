"""Object bytes across the servers of a cluster: two S3 stores over one PostgreSQL
database, each with a data dir of its own (two servers), see each other's objects whole:
put on one and read, copied, overwritten, assembled from parts or deleted on the other."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from nimbus.protocol.errors import AwsError
from nimbus.s3 import shared_blobs
from nimbus.s3.multipart import MIN_PART, CompletedPart
from nimbus.s3.records import NewObject
from nimbus.s3.shared_blobs import SharedBlobStore
from nimbus.s3.store import S3Store
from nimbus.s3.tables import s3_blob_chunks
from nimbus.store.database import Database
from tests.conftest import migrated_postgres
from tests.s3.test_store import blob_files, put

pytestmark = pytest.mark.postgres


@pytest.fixture
def db(postgres_admin: sa.Engine) -> Iterator[Database]:
    yield from migrated_postgres(postgres_admin)


@pytest.fixture
def two(db: Database, tmp_path: Path) -> tuple[S3Store, S3Store]:
    a = S3Store.open(db, tmp_path / "a", "us-east-1")
    b = S3Store.open(db, tmp_path / "b", "us-east-1")
    a.buckets.create("bkt", "us-east-1")
    return a, b


def read(store: S3Store, key: str) -> bytes:
    with store.open_object("bkt", key) as obj:
        return obj.file.read()


def chunk_rows(db: Database, blob: str) -> int:
    with db.read() as conn:
        return conn.execute(
            sa.select(sa.func.count()).where(s3_blob_chunks.c.blob == blob)
        ).scalar_one()


def test_a_shared_database_gets_the_shared_store(two: tuple[S3Store, S3Store]) -> None:
    assert all(isinstance(s.blobs, SharedBlobStore) for s in two)


def test_an_object_put_on_one_server_reads_whole_on_the_other(
    two: tuple[S3Store, S3Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shared_blobs, "CHUNK", 1000)  # several rows per blob
    a, b = two
    data = os.urandom(4321)
    info = put(a, "bkt", "k", data)
    assert chunk_rows(a.db, info.blob) == 5
    assert info.blob not in blob_files(b)
    assert read(b, "k") == data
    assert info.blob in blob_files(b)  # fetched once, then read from b's own disk
    put(a, "bkt", "empty", b"")
    assert read(b, "empty") == b""
    exact = os.urandom(2000)  # a whole number of chunks
    put(b, "bkt", "exact", exact)
    assert read(a, "exact") == exact


def test_overwrite_copy_and_delete_across_servers(two: tuple[S3Store, S3Store]) -> None:
    a, b = two
    first = put(a, "bkt", "k", b"first")
    assert read(b, "k") == b"first"  # b caches the first blob
    second = put(a, "bkt", "k", b"second")
    assert read(b, "k") == b"second"  # a new blob: b's cached copy is never served
    assert chunk_rows(a.db, first.blob) == 0
    b.objects.copy("bkt", "k", "bkt", "copy")  # b has the file: a link there
    assert read(a, "copy") == b"second"
    a.objects.copy("bkt", "copy", "bkt", "copy2")
    assert read(b, "copy2") == b"second"
    assert a.objects.delete("bkt", "k")
    assert chunk_rows(a.db, second.blob) == 0
    with pytest.raises(AwsError) as caught:
        read(b, "k")
    assert caught.value.type_name == "NoSuchKey"
    assert read(b, "copy") == b"second"


def test_parts_from_both_servers_complete_on_either(two: tuple[S3Store, S3Store]) -> None:
    a, b = two
    upload = a.uploads.create("bkt", "big", NewObject(), None)
    parts = [os.urandom(MIN_PART), os.urandom(MIN_PART), b"tail"]
    etags = []
    for number, (store, data) in enumerate(zip([a, b, a], parts, strict=True), start=1):
        writer = store.blobs.writer()
        writer.write(data)
        blob = writer.commit()
        etags.append(writer.etag)
        store.uploads.put_part(upload, number, blob, writer.size, writer.etag, None)
    b.uploads.complete("bkt", "big", upload.upload_id,
                       [CompletedPart(n, f'"{e}"') for n, e in enumerate(etags, start=1)])
    assert read(a, "big") == b"".join(parts)
    assert read(b, "big") == b"".join(parts)


def test_a_restart_drops_cached_copies_and_old_unnamed_rows(
    db: Database, tmp_path: Path, two: tuple[S3Store, S3Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = two
    info = put(a, "bkt", "k", b"bytes")
    read(b, "k")
    assert a.objects.delete("bkt", "k")
    assert info.blob in blob_files(b)  # b's cached copy of a removed blob
    orphan = a.blobs.writer()
    orphan.write(b"never named")
    orphan_blob = orphan.commit()  # a crash before its row committed
    fresh = a.blobs.writer()
    fresh.write(b"being written on another server")
    fresh_blob = fresh.commit()
    with db.write() as conn:  # the orphan is older than the grace period
        conn.execute(sa.update(s3_blob_chunks).where(s3_blob_chunks.c.blob == orphan_blob)
                     .values(created_ms=0))
    restarted = S3Store.open(db, tmp_path / "b", "us-east-1")
    assert info.blob not in blob_files(restarted)
    assert chunk_rows(db, orphan_blob) == 0
    assert chunk_rows(db, fresh_blob) == 1  # within the grace: another server's write


def test_a_blob_gone_everywhere_is_not_found(two: tuple[S3Store, S3Store]) -> None:
    _, b = two
    with pytest.raises(FileNotFoundError):
        b.blobs.open("0" * 32)
    with pytest.raises(FileNotFoundError):
        b.blobs.link("0" * 32)
    assert not list(b.blobs.tmp.iterdir())  # no temporary file left behind



def test_objects_stored_before_the_shared_copies_are_copied_in_at_start(
    db: Database, tmp_path: Path, two: tuple[S3Store, S3Store]
) -> None:
    a, b = two
    info = put(a, "bkt", "old", b"from before the upgrade")
    with db.write() as conn:  # as an installation before migration 0018 left it
        conn.execute(sa.delete(s3_blob_chunks))
    copied = a.objects.copy("bkt", "old", "bkt", "copy")  # from a's own file
    assert read(b, "copy") == b"from before the upgrade"
    restarted = S3Store.open(db, tmp_path / "a", "us-east-1")  # a's next start
    assert chunk_rows(db, info.blob) == 1
    assert read(b, "old") == b"from before the upgrade"
    assert restarted.objects.get("bkt", "copy").blob == copied.blob


def test_a_database_error_removing_a_copy_does_not_fail_the_change(
    two: tuple[S3Store, S3Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    # remove() runs once the change that dropped the blob committed (an overwrite, a
    # delete): a database error then is logged, and the rows left to collection.
    a, _ = two
    first = put(a, "bkt", "k", b"first")

    def unreachable():  # type: ignore[no-untyped-def]
        raise sa.exc.OperationalError("DELETE", {}, OSError("connection reset"))

    monkeypatch.setattr(a.db, "write", unreachable)
    a.blobs.remove(first.blob)
    monkeypatch.undo()
    assert first.blob not in blob_files(a)
    assert chunk_rows(a.db, first.blob) == 1
