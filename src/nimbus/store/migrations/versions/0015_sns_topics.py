"""SNS-compatible topics, their subscriptions, and the deliveries they owe

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sns_topics",
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("attributes", sa.JSON, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "sns_subscriptions",
        sa.Column("arn", sa.String(400), primary_key=True),
        sa.Column("topic", sa.String(256), nullable=False),
        sa.Column("protocol", sa.String(16), nullable=False),
        sa.Column("endpoint", sa.Text, nullable=False),
        sa.Column("attributes", sa.JSON, nullable=False),
        sa.Column("pending", sa.Boolean, nullable=False),
        sa.Column("token", sa.String(256), nullable=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.ForeignKeyConstraint(["topic"], ["sns_topics.name"], ondelete="CASCADE"),
    )
    op.create_index("ix_sns_subscriptions_topic", "sns_subscriptions", ["topic", "arn"])
    op.create_table(
        "sns_deliveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("message_id", sa.String(36), nullable=False),
        sa.Column("topic_arn", sa.String(400), nullable=False),
        sa.Column("subscription_arn", sa.String(400), nullable=False),
        sa.Column("protocol", sa.String(16), nullable=False),
        sa.Column("endpoint", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("extra", sa.JSON, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("due_ms", sa.BigInteger, nullable=True),
        sa.Column("lease", sa.String(32), nullable=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_index("ix_sns_deliveries_due", "sns_deliveries", ["due_ms"])


def downgrade() -> None:
    op.drop_index("ix_sns_deliveries_due", "sns_deliveries")
    op.drop_table("sns_deliveries")
    op.drop_index("ix_sns_subscriptions_topic", "sns_subscriptions")
    op.drop_table("sns_subscriptions")
    op.drop_table("sns_topics")
