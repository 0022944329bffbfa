"""The S3 tables (migration 0014), in SQLAlchemy Core, on the store's shared metadata.

An object's bytes are a file under the data dir named by ``blob`` (``blobs.py``); the row
holds everything else. ``headers`` are the stored HTTP headers (Content-Type,
Content-Encoding, Cache-Control, ...), ``metadata`` the user's ``x-amz-meta-*`` pairs,
``checksum`` the ``{"algorithm", "value"}`` a client had verified, ``parts`` the part
sizes of a multipart object (None: a single PUT).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeEngine

from nimbus.store.schema import metadata


def _key() -> TypeEngine[str]:
    # S3 lists keys in UTF-8 byte order: SQLite's BINARY collation compares that way,
    # PostgreSQL only under the "C" collation.
    return String(1024).with_variant(String(1024, collation="C"), "postgresql")


s3_buckets = Table(
    "s3_buckets",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("region", String(32), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("notification", JSON, nullable=True),  # NotificationConfiguration as stored
)

s3_objects = Table(
    "s3_objects",
    metadata,
    Column("bucket", String(63), primary_key=True),
    Column("key", _key(), primary_key=True),
    Column("blob", String(32), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("etag", String(48), nullable=False),  # without quotes
    Column("last_modified_ms", BigInteger, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("checksum", JSON, nullable=True),
    Column("parts", JSON, nullable=True),
    ForeignKeyConstraint(["bucket"], ["s3_buckets.name"]),
)

s3_uploads = Table(
    "s3_uploads",
    metadata,
    Column("upload_id", String(64), primary_key=True),
    Column("bucket", String(63), nullable=False),
    Column("key", _key(), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("checksum_algorithm", String(16), nullable=True),
    ForeignKeyConstraint(["bucket"], ["s3_buckets.name"], ondelete="CASCADE"),
    Index("ix_s3_uploads_by_key", "bucket", "key", "created_ms"),
)

s3_parts = Table(
    "s3_parts",
    metadata,
    Column("upload_id", String(64), primary_key=True),
    Column("part_number", Integer, primary_key=True),
    Column("blob", String(32), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("etag", String(48), nullable=False),
    Column("last_modified_ms", BigInteger, nullable=False),
    Column("checksum", JSON, nullable=True),
    ForeignKeyConstraint(["upload_id"], ["s3_uploads.upload_id"], ondelete="CASCADE"),
)

# Object and part bytes in a shared database (cluster mode, ``shared_blobs.py``): each
# blob in chunks, written before the row naming it commits, read by any node lacking it.
s3_blob_chunks = Table(
    "s3_blob_chunks",
    metadata,
    Column("blob", String(32), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
)

# Bucket notifications not yet handed on (events/sources/buckets.py): one row per event
# and configuration it matched, written in the transaction of the object's change, so a
# change is never committed without its notifications; deleted once queued. ``kind`` is
# "lambda" or "queue", ``target`` the function or queue ARN, ``payload`` the JSON sent.
s3_notifications = Table(
    "s3_notifications",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("bucket", String(63), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("target", String(1024), nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("not_before_ms", BigInteger, nullable=False),
    Column("last_error", Text, nullable=True),
)
