"""Object records (blocking; the API calls them off the event loop): look up, open,
put, copy, delete and list objects.

A put or copy commits the object's blob first (``blobs.py``), then its row in one write
transaction, where write conditions are checked and listeners are told
(``events.py``); the blob it replaced is unlinked after the commit. A failed
transaction removes the new blob, so nothing is half-stored.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, BinaryIO

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from nimbus.clock import Clock, now_ms
from nimbus.s3.blobs import BlobStore
from nimbus.s3.buckets import require_bucket
from nimbus.s3.conditions import WriteConditions
from nimbus.s3.errors import no_such_key
from nimbus.s3.events import REQUEST, ObjectEvents
from nimbus.s3.listing import info_of, list_keys
from nimbus.s3.records import ListPage, NewObject, ObjectEvent, ObjectInfo
from nimbus.s3.tables import s3_objects
from nimbus.store.database import Database

OBJ = s3_objects.c
_ATTEMPTS = 5  # a concurrent first put of the same key: retried as an overwrite


@dataclass
class OpenObject:
    """An object and its bytes, open for reading: the file stays readable however the
    object changes meanwhile. Close it (or use it as a context manager)."""

    info: ObjectInfo
    file: BinaryIO

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> OpenObject:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class ObjectStore:
    """The objects of every bucket (see the module docstring)."""

    def __init__(
        self, db: Database, blobs: BlobStore, events: ObjectEvents, clock: Clock = now_ms
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.events = events
        self.clock = clock

    # -- reading -----------------------------------------------------------------------

    def get(self, bucket: str, key: str) -> ObjectInfo:
        with self.db.read() as conn:
            return self.get_in(conn, bucket, key)

    def get_in(self, conn: Connection, bucket: str, key: str) -> ObjectInfo:
        row = conn.execute(select(s3_objects).where(OBJ.bucket == bucket, OBJ.key == key)).first()
        if row is None:
            require_bucket(conn, bucket)
            raise no_such_key(key)
        return info_of(bucket, row)

    def open(self, bucket: str, key: str) -> OpenObject:
        """The object's metadata and its file, opened together (a blob replaced between
        the two is looked up again)."""
        for _ in range(_ATTEMPTS):
            info = self.get(bucket, key)
            try:
                return OpenObject(info, self.blobs.open(info.blob))
            except FileNotFoundError:
                continue  # overwritten or deleted just now: read the new row
        info = self.get(bucket, key)
        return OpenObject(info, self.blobs.open(info.blob))

    def list_page(self, bucket: str, **options: Any) -> ListPage:
        with self.db.read() as conn:
            require_bucket(conn, bucket)
            return list_keys(conn, bucket, **options)

    def referenced(self) -> set[str]:
        with self.db.read() as conn:
            return set(conn.execute(select(OBJ.blob)).scalars())

    # -- writing -----------------------------------------------------------------------

    def put(
        self,
        info: ObjectInfo,
        *,
        event: str,
        conditions: WriteConditions | None = None,
        staged: Any = None,
    ) -> ObjectInfo:
        """Store ``info`` (its blob already committed) as the object at its key, replacing
        any; ``event`` names the change for listeners (``ObjectCreated:Put``...).
        ``staged(conn)`` runs in the same transaction (multipart: drop the upload).
        On any failure the new blob is removed."""
        info = replace(info, last_modified_ms=self.clock())
        try:
            replaced, change = self._put(info, event, conditions, staged)
        except BaseException:
            self.blobs.remove(info.blob)
            raise
        if replaced is not None:
            self.blobs.remove(replaced)
        self.events.committed([change])
        return info

    def _put(
        self, info: ObjectInfo, event: str, conditions: WriteConditions | None, staged: Any
    ) -> tuple[str | None, ObjectEvent]:
        values = {
            "blob": info.blob,
            "size": info.size,
            "etag": info.etag,
            "last_modified_ms": info.last_modified_ms,
            "headers": info.headers,
            "metadata": info.metadata,
            "checksum": info.checksum,
            "parts": info.parts,
        }
        for attempt in range(_ATTEMPTS):
            try:
                with self.db.write() as conn:
                    require_bucket(conn, info.bucket)
                    old = conn.execute(
                        select(OBJ.blob, OBJ.etag)
                        .where(OBJ.bucket == info.bucket, OBJ.key == info.key)
                        .with_for_update()
                    ).first()
                    if conditions:
                        conditions.check(info.key, old.etag if old is not None else None)
                    if old is None:
                        conn.execute(
                            insert(s3_objects).values(bucket=info.bucket, key=info.key, **values)
                        )
                    else:
                        conn.execute(
                            update(s3_objects)
                            .where(OBJ.bucket == info.bucket, OBJ.key == info.key)
                            .values(**values)
                        )
                    if staged is not None:
                        staged(conn)
                    change = self._event(event, info)
                    self.events.staged(conn, change)
                return (old.blob if old is not None else None), change
            except IntegrityError:
                if attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def copy(
        self,
        source_bucket: str,
        source_key: str,
        bucket: str,
        key: str,
        *,
        new: NewObject | None = None,
        check_source: Any = None,
        conditions: WriteConditions | None = None,
    ) -> ObjectInfo:
        """CopyObject: the source's bytes (linked, never copied) at ``bucket``/``key``,
        with ``new``'s headers and metadata (None: the source's). ``check_source(info)``
        may refuse the source (copy-source conditions)."""
        source = self.get(source_bucket, source_key)
        if check_source is not None:
            check_source(source)
        copied = replace(
            source,
            bucket=bucket,
            key=key,
            blob=self.blobs.link(source.blob),
            headers=new.headers if new is not None else source.headers,
            metadata=new.metadata if new is not None else source.metadata,
        )
        return self.put(copied, event="ObjectCreated:Copy", conditions=conditions)

    def delete(self, bucket: str, key: str) -> bool:
        """DeleteObject: True when there was an object (S3 answers 204 either way)."""
        return bool(self.delete_many(bucket, [key]))

    def delete_many(self, bucket: str, keys: list[str]) -> list[str]:
        """The keys that were there (and are now gone)."""
        removed: list[tuple[str, str]] = []
        changes: list[ObjectEvent] = []
        with self.db.write() as conn:
            require_bucket(conn, bucket)
            for key in keys:
                row = conn.execute(
                    delete(s3_objects)
                    .where(OBJ.bucket == bucket, OBJ.key == key)
                    .returning(OBJ.blob)
                ).first()
                if row is None:
                    continue
                removed.append((key, row.blob))
                change = ObjectEvent(
                    name="ObjectRemoved:Delete",
                    bucket=bucket,
                    key=key,
                    size=None,
                    etag=None,
                    version_id=None,
                    sequencer=self.events.sequencer(),
                    time_ms=self.clock(),
                    request=REQUEST.get(),
                )
                changes.append(change)
                self.events.staged(conn, change)
        for _, blob in removed:
            self.blobs.remove(blob)
        self.events.committed(changes)
        return [key for key, _ in removed]

    def _event(self, name: str, info: ObjectInfo) -> ObjectEvent:
        return ObjectEvent(
            name=name,
            bucket=info.bucket,
            key=info.key,
            size=info.size,
            etag=info.etag,
            version_id=None,
            sequencer=self.events.sequencer(),
            time_ms=info.last_modified_ms,
            request=REQUEST.get(),
        )
