"""``S3Store``: the S3-compatible buckets of one nimbus, built once per process
(``Services.s3``): bucket, object and multipart records over the metadata database,
blob files under ``<data dir>/s3`` (on a database several servers share, a copy of each
in the database as well: ``shared_blobs.py``), and the listeners of object changes.

Other parts of nimbus read objects through ``open_object`` (S3 code locations) and
follow changes through ``events.subscribe`` (bucket notifications).
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import select

from nimbus.clock import Clock, now_ms
from nimbus.s3.blobs import BlobStore
from nimbus.s3.buckets import BucketStore
from nimbus.s3.errors import invalid_version
from nimbus.s3.events import ObjectEvents
from nimbus.s3.multipart import UploadStore
from nimbus.s3.objects import ObjectStore, OpenObject
from nimbus.s3.shared_blobs import SharedBlobStore
from nimbus.s3.tables import s3_parts
from nimbus.store.database import Database

log = logging.getLogger("nimbus.s3")
DIRECTORY = "s3"  # under the data dir


class S3Store:
    """See the module docstring."""

    def __init__(self, db: Database, root: Path, region: str, clock: Clock = now_ms) -> None:
        self.db = db
        self.region = region
        self.blobs = BlobStore(root) if db.is_sqlite else SharedBlobStore(root, db)
        self.events = ObjectEvents()
        self.buckets = BucketStore(db, self.blobs, clock)
        self.objects = ObjectStore(db, self.blobs, self.events, clock)
        self.uploads = UploadStore(db, self.blobs, self.objects, clock)

    @classmethod
    def open(cls, db: Database, data_dir: Path, region: str) -> S3Store:
        """The store under ``data_dir``, with what a crash left behind removed (blocking)."""
        store = cls(db, data_dir / DIRECTORY, region)
        removed = store.collect_garbage()
        if removed:
            log.info("removed %d S3 blob(s) no object or part names", removed)
        return store

    def collect_garbage(self) -> int:
        """Remove blobs no row names: written, then never committed."""
        referenced = self.objects.referenced()
        with self.db.read() as conn:
            referenced.update(conn.execute(select(s3_parts.c.blob)).scalars())
        return self.blobs.collect(referenced)

    def open_object(self, bucket: str, key: str, version_id: str | None = None) -> OpenObject:
        """The object at ``bucket``/``key`` and its bytes, open for reading (blocking;
        the caller closes it). Buckets are not versioned: ``version_id`` may only be
        None or ``"null"``. Raises ``NoSuchBucket``, ``NoSuchKey``, ``InvalidArgument``."""
        if version_id is not None and version_id != "null":
            raise invalid_version(version_id)
        return self.objects.open(bucket, key)
