"""layers and their versions (PublishLayerVersion)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "layers",
        sa.Column("name", sa.String(140), primary_key=True),
        sa.Column("last_version", sa.Integer, nullable=False),
    )
    op.create_table(
        "layer_versions",
        sa.Column("layer_name", sa.String(140), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("code_sha256", sa.String(64), nullable=False),
        sa.Column("code_size", sa.BigInteger, nullable=False),
        sa.Column("unzipped_size", sa.BigInteger, nullable=False),
        sa.Column("created_date", sa.String(40), nullable=False),
        sa.Column("description", sa.String(256), nullable=False),
        sa.Column("compatible_runtimes", sa.JSON, nullable=False),
        sa.Column("compatible_architectures", sa.JSON, nullable=False),
        sa.Column("license_info", sa.String(512), nullable=True),
        sa.Column("statements", sa.JSON, nullable=False),
        sa.Column("policy_revision", sa.String(36), nullable=True),
        sa.ForeignKeyConstraint(["layer_name"], ["layers.name"], ondelete="CASCADE"),
    )
    op.create_index("ix_layer_versions_code_sha256", "layer_versions", ["code_sha256"])


def downgrade() -> None:
    op.drop_table("layer_versions")
    op.drop_table("layers")
