"""function URL configs

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "function_urls",
        sa.Column("function_name", sa.String(140), primary_key=True),
        sa.Column("qualifier", sa.String(128), primary_key=True),
        sa.Column("url_id", sa.String(32), nullable=False),
        sa.Column("auth_type", sa.String(8), nullable=False),
        sa.Column("cors", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("invoke_mode", sa.String(16), nullable=False),
        sa.Column("creation_time", sa.String(40), nullable=False),
        sa.Column("last_modified", sa.String(40), nullable=False),
        sa.ForeignKeyConstraint(["function_name"], ["functions.name"], ondelete="CASCADE"),
    )
    op.create_index("ux_function_urls_url_id", "function_urls", ["url_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_function_urls_url_id", table_name="function_urls")
    op.drop_table("function_urls")
