"""rate_buckets, quota_reservations, shared_versions: usage plans' rate limits and quotas
counted across the servers of a cluster (nimbus.store.shared_limits)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_buckets",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("stamp", sa.Float, nullable=False),
        sa.Column("granted", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "quota_reservations",
        sa.Column("key_id", sa.String(16), primary_key=True),
        sa.Column("plan_id", sa.String(16), primary_key=True),
        sa.Column("period", sa.String(8), primary_key=True),
        sa.Column("start_day", sa.String(10), primary_key=True),
        sa.Column("reserved", sa.BigInteger, nullable=False),
        sa.Column("granted", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "shared_versions",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("shared_versions")
    op.drop_table("quota_reservations")
    op.drop_table("rate_buckets")
