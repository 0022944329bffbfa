"""invocation logs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invocation_logs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("function_name", sa.String(140), nullable=False),
        sa.Column("version", sa.String(16), nullable=False),
        sa.Column("log_stream", sa.String(256), nullable=False),
        sa.Column("timestamp_ms", sa.BigInteger, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("billed_ms", sa.Integer, nullable=False),
        sa.Column("memory_size", sa.Integer, nullable=False),
        sa.Column("max_memory_used", sa.Integer, nullable=False),
        sa.Column("init_ms", sa.Float, nullable=True),
        sa.Column("error_type", sa.String(128), nullable=True),
    )
    op.create_index("ix_invocation_logs_request_id", "invocation_logs", ["request_id"])
    op.create_index(
        "ix_invocation_logs_function_time", "invocation_logs", ["function_name", "timestamp_ms"]
    )


def downgrade() -> None:
    op.drop_table("invocation_logs")
