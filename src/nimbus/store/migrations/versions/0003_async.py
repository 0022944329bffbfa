"""event invoke configs, provisioned concurrency, dead letters

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_invoke_configs",
        sa.Column("function_name", sa.String(140), primary_key=True),
        sa.Column("qualifier", sa.String(128), primary_key=True),
        sa.Column("maximum_retry_attempts", sa.Integer, nullable=True),
        sa.Column("maximum_event_age", sa.Integer, nullable=True),
        sa.Column("on_success", sa.Text, nullable=True),
        sa.Column("on_failure", sa.Text, nullable=True),
        sa.Column("last_modified", sa.Float, nullable=False),
        sa.ForeignKeyConstraint(["function_name"], ["functions.name"], ondelete="CASCADE"),
    )
    op.create_table(
        "provisioned_concurrency",
        sa.Column("function_name", sa.String(140), primary_key=True),
        sa.Column("qualifier", sa.String(128), primary_key=True),
        sa.Column("requested", sa.Integer, nullable=False),
        sa.Column("last_modified", sa.String(40), nullable=False),
        sa.ForeignKeyConstraint(["function_name"], ["functions.name"], ondelete="CASCADE"),
    )
    op.create_table(
        "dead_letters",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("queue", sa.String(256), nullable=False),
        sa.Column("function_name", sa.String(140), nullable=False),
        sa.Column("qualifier", sa.String(128), nullable=True),
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("condition", sa.String(64), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("enqueued_ms", sa.BigInteger, nullable=False),
        sa.Column("failed_ms", sa.BigInteger, nullable=False),
        sa.Column("redriven_ms", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_dead_letters_function", "dead_letters", ["function_name", "id"])


def downgrade() -> None:
    op.drop_table("dead_letters")
    op.drop_table("provisioned_concurrency")
    op.drop_table("event_invoke_configs")
