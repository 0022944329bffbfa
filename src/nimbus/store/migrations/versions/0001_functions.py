"""functions, versions, aliases

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "functions",
        sa.Column("name", sa.String(140), primary_key=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("last_published", sa.Integer, nullable=False),
        sa.Column("reserved_concurrency", sa.Integer, nullable=True),
        sa.Column("tags", sa.JSON, nullable=False),
    )
    op.create_table(
        "function_versions",
        sa.Column("function_name", sa.String(140), primary_key=True),
        sa.Column("version", sa.String(16), primary_key=True),
        sa.Column("version_number", sa.Integer, nullable=False),
        sa.Column("runtime", sa.String(40), nullable=True),
        sa.Column("handler", sa.String(128), nullable=True),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("description", sa.String(256), nullable=False),
        sa.Column("timeout", sa.Integer, nullable=False),
        sa.Column("memory_size", sa.Integer, nullable=False),
        sa.Column("ephemeral_storage", sa.Integer, nullable=False),
        sa.Column("package_type", sa.String(8), nullable=False),
        sa.Column("architectures", sa.JSON, nullable=False),
        sa.Column("environment", sa.JSON, nullable=False),
        sa.Column("layers", sa.JSON, nullable=False),
        sa.Column("code_sha256", sa.String(64), nullable=False),
        sa.Column("code_size", sa.BigInteger, nullable=False),
        sa.Column("last_modified", sa.String(40), nullable=False),
        sa.Column("revision_id", sa.String(36), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("extra", sa.JSON, nullable=False),
        sa.ForeignKeyConstraint(["function_name"], ["functions.name"], ondelete="CASCADE"),
    )
    op.create_index("ix_function_versions_code_sha256", "function_versions", ["code_sha256"])
    op.create_table(
        "aliases",
        sa.Column("function_name", sa.String(140), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("function_version", sa.String(16), nullable=False),
        sa.Column("description", sa.String(256), nullable=False),
        sa.Column("routing", sa.JSON, nullable=False),
        sa.Column("revision_id", sa.String(36), nullable=False),
        sa.ForeignKeyConstraint(["function_name"], ["functions.name"], ondelete="CASCADE"),
    )


def downgrade() -> None:
    op.drop_table("aliases")
    op.drop_index("ix_function_versions_code_sha256", "function_versions")
    op.drop_table("function_versions")
    op.drop_table("functions")
