"""event source mappings

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_source_mappings",
        sa.Column("uuid", sa.String(36), primary_key=True),
        sa.Column("function_name", sa.String(140), nullable=False),
        sa.Column("qualifier", sa.String(128), nullable=True),
        sa.Column("event_source_arn", sa.String(1024), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_reason", sa.String(64), nullable=False),
        sa.Column("last_processing_result", sa.String(256), nullable=True),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("last_modified", sa.Float, nullable=False),
    )
    op.create_index(
        "event_source_mappings_by_function", "event_source_mappings", ["function_name"]
    )
    op.create_index(
        "event_source_mappings_by_source", "event_source_mappings", ["event_source_arn"]
    )


def downgrade() -> None:
    op.drop_table("event_source_mappings")
