"""provisioned_concurrency.failure, failed_ms: the last failure to start a provisioned
environment, recorded by whichever node of a cluster met it, so that any server reports
the config FAILED with its reason (nimbus.invocation.cluster_provisioner)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("provisioned_concurrency") as batch:
        batch.add_column(sa.Column("failure", sa.Text, nullable=True))
        batch.add_column(sa.Column("failed_ms", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("provisioned_concurrency") as batch:
        batch.drop_column("failed_ms")
        batch.drop_column("failure")
