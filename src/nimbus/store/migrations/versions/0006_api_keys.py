"""API keys, usage plans and their usage

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("value", sa.String(128), nullable=False),
        sa.Column("name", sa.String(1024), nullable=True),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("customer_id", sa.String(256), nullable=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_date", sa.Float, nullable=False),
        sa.Column("last_updated_date", sa.Float, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
    )
    op.create_index("ux_api_keys_value", "api_keys", ["value"], unique=True)
    op.create_table(
        "usage_plans",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(1024), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("rate_limit", sa.Float, nullable=True),
        sa.Column("burst_limit", sa.Integer, nullable=True),
        sa.Column("quota_limit", sa.Integer, nullable=True),
        sa.Column("quota_period", sa.String(8), nullable=True),
        sa.Column("quota_offset", sa.Integer, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
    )
    op.create_table(
        "usage_plan_stages",
        sa.Column("plan_id", sa.String(16), primary_key=True),
        sa.Column("api_id", sa.String(16), primary_key=True),
        sa.Column("stage", sa.String(128), primary_key=True),
        sa.ForeignKeyConstraint(["plan_id"], ["usage_plans.id"], ondelete="CASCADE"),
    )
    op.create_table(
        "usage_plan_keys",
        sa.Column("plan_id", sa.String(16), primary_key=True),
        sa.Column("key_id", sa.String(16), primary_key=True),
        sa.ForeignKeyConstraint(["plan_id"], ["usage_plans.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"], ondelete="CASCADE"),
    )
    op.create_index("ix_usage_plan_keys_key", "usage_plan_keys", ["key_id"])
    op.create_table(
        "api_key_usage",
        sa.Column("key_id", sa.String(16), primary_key=True),
        sa.Column("plan_id", sa.String(16), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("used", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_api_key_usage_plan", "api_key_usage", ["plan_id", "day"])


def downgrade() -> None:
    op.drop_table("api_key_usage")
    op.drop_table("usage_plan_keys")
    op.drop_table("usage_plan_stages")
    op.drop_table("usage_plans")
    op.drop_table("api_keys")
