"""resource-based policies of functions, versions and aliases

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "function_policies",
        sa.Column("function_name", sa.String(140), primary_key=True),
        sa.Column("qualifier", sa.String(128), primary_key=True),
        sa.Column("statements", sa.JSON, nullable=False),
        sa.Column("revision_id", sa.String(36), nullable=False),
        sa.ForeignKeyConstraint(["function_name"], ["functions.name"], ondelete="CASCADE"),
    )


def downgrade() -> None:
    op.drop_table("function_policies")
