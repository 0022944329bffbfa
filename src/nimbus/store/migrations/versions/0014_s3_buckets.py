"""s3_buckets

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # S3-compatible buckets come with the next change; the number is theirs.


def downgrade() -> None:
    pass
