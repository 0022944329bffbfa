"""invocation logs: an index on time alone, for the retention's delete

Deleting the records past ``log_retention_days`` filters on ``timestamp_ms`` only; the
(function_name, timestamp_ms) index cannot serve that, so each hourly delete scanned
the whole table. Timestamps only grow, so the new index costs an insert little.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_invocation_logs_time", "invocation_logs", ["timestamp_ms"])


def downgrade() -> None:
    op.drop_index("ix_invocation_logs_time", table_name="invocation_logs")
