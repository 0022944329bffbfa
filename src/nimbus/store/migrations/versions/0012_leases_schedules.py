"""ownership leases and EventBridge Scheduler schedules

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("expires_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "schedule_groups",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("modified_ms", sa.BigInteger, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
    )
    op.create_table(
        "schedules",
        sa.Column("group_name", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("expression", sa.String(256), nullable=False),
        sa.Column("timezone", sa.String(50), nullable=False),
        sa.Column("start_ms", sa.BigInteger, nullable=True),
        sa.Column("end_ms", sa.BigInteger, nullable=True),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("flexible_window_minutes", sa.Integer, nullable=True),
        sa.Column("action_after_completion", sa.String(10), nullable=False),
        sa.Column("kms_key_arn", sa.Text, nullable=True),
        sa.Column("target", sa.JSON, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("modified_ms", sa.BigInteger, nullable=False),
        sa.Column("anchor_ms", sa.BigInteger, nullable=False),
        sa.Column("last_tick_ms", sa.BigInteger, nullable=False),
        sa.Column("pending_tick_ms", sa.BigInteger, nullable=True),
    )
    op.create_index("schedules_by_state", "schedules", ["state"])


def downgrade() -> None:
    op.drop_index("schedules_by_state", table_name="schedules")
    op.drop_table("schedules")
    op.drop_table("schedule_groups")
    op.drop_table("leases")
