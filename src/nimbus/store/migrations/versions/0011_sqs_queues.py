"""SQS-compatible queues and their messages

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sqs_queues",
        sa.Column("name", sa.String(80), primary_key=True),
        sa.Column("fifo", sa.Boolean, nullable=False),
        sa.Column("attributes", sa.JSON, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("modified_ms", sa.BigInteger, nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("purged_ms", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "sqs_messages",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("queue", sa.String(80), nullable=False),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("md5_body", sa.String(32), nullable=False),
        sa.Column("message_attributes", sa.JSON, nullable=True),
        sa.Column("md5_attributes", sa.String(32), nullable=True),
        sa.Column("system_attributes", sa.JSON, nullable=True),
        sa.Column("sent_ms", sa.BigInteger, nullable=False),
        sa.Column("visible_ms", sa.BigInteger, nullable=False),
        sa.Column("receive_count", sa.Integer, nullable=False),
        sa.Column("first_receive_ms", sa.BigInteger, nullable=True),
        sa.Column("receipt", sa.String(32), nullable=True),
        sa.Column("group_id", sa.String(128), nullable=True),
        sa.Column("dedup_id", sa.String(128), nullable=True),
        sa.Column("sequence_number", sa.String(20), nullable=True),
        sa.ForeignKeyConstraint(["queue"], ["sqs_queues.name"], ondelete="CASCADE"),
    )
    op.create_index("ix_sqs_messages_visible", "sqs_messages", ["queue", "visible_ms"])
    op.create_table(
        "sqs_dedup",
        sa.Column("queue", sa.String(80), primary_key=True),
        sa.Column("scope", sa.String(128), primary_key=True),
        sa.Column("dedup_id", sa.String(128), primary_key=True),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("sequence_number", sa.String(20), nullable=False),
        sa.Column("expires_ms", sa.BigInteger, nullable=False),
        sa.ForeignKeyConstraint(["queue"], ["sqs_queues.name"], ondelete="CASCADE"),
    )


def downgrade() -> None:
    op.drop_table("sqs_dedup")
    op.drop_index("ix_sqs_messages_visible", "sqs_messages")
    op.drop_table("sqs_messages")
    op.drop_table("sqs_queues")
