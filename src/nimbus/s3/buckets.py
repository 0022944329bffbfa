"""Bucket records (blocking; the API calls them off the event loop): create, look up,
list and delete buckets, and keep each bucket's notification configuration."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, exists, insert, select, update
from sqlalchemy.exc import IntegrityError

from nimbus.clock import Clock, now_ms
from nimbus.s3.blobs import BlobStore
from nimbus.s3.errors import bucket_exists, bucket_not_empty, no_such_bucket
from nimbus.s3.names import check_bucket_name
from nimbus.s3.records import BucketInfo
from nimbus.s3.tables import s3_buckets, s3_objects, s3_parts, s3_uploads
from nimbus.store.database import Database

B = s3_buckets.c


def _info(row: Any) -> BucketInfo:
    return BucketInfo(name=row.name, region=row.region, created_ms=row.created_ms)


def require_bucket(conn: Connection, name: str, *, lock: bool = False) -> BucketInfo:
    """The bucket, within a transaction; ``NoSuchBucket`` when there is none."""
    query = select(B.name, B.region, B.created_ms).where(B.name == name)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise no_such_bucket(name)
    return _info(row)


class BucketStore:
    """The buckets of this nimbus."""

    def __init__(self, db: Database, blobs: BlobStore, clock: Clock = now_ms) -> None:
        self.db = db
        self.blobs = blobs
        self.clock = clock

    def create(self, name: str, region: str) -> BucketInfo:
        """CreateBucket: ``BucketAlreadyOwnedByYou`` when it exists (nimbus has one
        owner, so never ``BucketAlreadyExists``)."""
        check_bucket_name(name)
        info = BucketInfo(name=name, region=region, created_ms=self.clock())
        try:
            with self.db.write() as conn:
                if conn.execute(select(B.name).where(B.name == name)).first() is not None:
                    raise bucket_exists(name)
                conn.execute(
                    insert(s3_buckets).values(
                        name=name, region=region, created_ms=info.created_ms, notification=None
                    )
                )
        except IntegrityError:  # created at the same moment by another request
            raise bucket_exists(name) from None
        return info

    def get(self, name: str) -> BucketInfo:
        with self.db.read() as conn:
            return require_bucket(conn, name)

    def list(self, prefix: str = "") -> list[BucketInfo]:
        query = select(B.name, B.region, B.created_ms).order_by(B.name)
        if prefix:
            query = query.where(B.name.startswith(prefix, autoescape=True))
        with self.db.read() as conn:
            return [_info(row) for row in conn.execute(query)]

    def delete(self, name: str) -> None:
        """DeleteBucket: only an empty one (multipart uploads in progress go with it)."""
        with self.db.write() as conn:
            require_bucket(conn, name, lock=True)
            OBJ = s3_objects.c
            if conn.execute(select(exists().where(OBJ.bucket == name))).scalar():
                raise bucket_not_empty(name)
            U, P = s3_uploads.c, s3_parts.c
            uploads = select(U.upload_id).where(U.bucket == name)
            blobs = list(conn.execute(select(P.blob).where(P.upload_id.in_(uploads))).scalars())
            conn.execute(delete(s3_parts).where(P.upload_id.in_(uploads)))
            conn.execute(delete(s3_uploads).where(U.bucket == name))
            conn.execute(delete(s3_buckets).where(B.name == name))
        for blob in blobs:
            self.blobs.remove(blob)

    def notification(self, name: str) -> dict[str, Any]:
        """The bucket's NotificationConfiguration as last put ({}: none)."""
        with self.db.read() as conn:
            require_bucket(conn, name)
            found = conn.execute(select(B.notification).where(B.name == name)).scalar()
        return dict(found or {})

    def set_notification(self, name: str, configuration: dict[str, Any]) -> None:
        with self.db.write() as conn:
            require_bucket(conn, name, lock=True)
            conn.execute(
                update(s3_buckets).where(B.name == name).values(notification=configuration or None)
            )
