"""s3_buckets: S3-compatible buckets, their objects, multipart uploads and the outbox of
their notifications (nimbus.s3)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def _key() -> sa.types.TypeEngine:
    # S3 lists keys in UTF-8 byte order: SQLite's BINARY collation compares that way,
    # PostgreSQL only under the "C" collation.
    return sa.String(1024).with_variant(sa.String(1024, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "s3_buckets",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("notification", sa.JSON, nullable=True),
    )
    op.create_table(
        "s3_objects",
        sa.Column("bucket", sa.String(63), primary_key=True),
        sa.Column("key", _key(), primary_key=True),
        sa.Column("blob", sa.String(32), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("etag", sa.String(48), nullable=False),
        sa.Column("last_modified_ms", sa.BigInteger, nullable=False),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("checksum", sa.JSON, nullable=True),
        sa.Column("parts", sa.JSON, nullable=True),
        sa.ForeignKeyConstraint(["bucket"], ["s3_buckets.name"]),
    )
    op.create_table(
        "s3_uploads",
        sa.Column("upload_id", sa.String(64), primary_key=True),
        sa.Column("bucket", sa.String(63), nullable=False),
        sa.Column("key", _key(), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("checksum_algorithm", sa.String(16), nullable=True),
        sa.ForeignKeyConstraint(["bucket"], ["s3_buckets.name"], ondelete="CASCADE"),
    )
    op.create_index("ix_s3_uploads_by_key", "s3_uploads", ["bucket", "key", "created_ms"])
    # The outbox of bucket notifications: written in the transaction of the change that
    # raised them, deleted once queued (async invoke, SQS message): none is lost.
    op.create_table(
        "s3_notifications",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("bucket", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.String(1024), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("not_before_ms", sa.BigInteger, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_table(
        "s3_parts",
        sa.Column("upload_id", sa.String(64), primary_key=True),
        sa.Column("part_number", sa.Integer, primary_key=True),
        sa.Column("blob", sa.String(32), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("etag", sa.String(48), nullable=False),
        sa.Column("last_modified_ms", sa.BigInteger, nullable=False),
        sa.Column("checksum", sa.JSON, nullable=True),
        sa.ForeignKeyConstraint(["upload_id"], ["s3_uploads.upload_id"], ondelete="CASCADE"),
    )


def downgrade() -> None:
    op.drop_table("s3_notifications")
    op.drop_table("s3_parts")
    op.drop_table("s3_uploads")
    op.drop_table("s3_objects")
    op.drop_table("s3_buckets")
