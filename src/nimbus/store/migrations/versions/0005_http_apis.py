"""HTTP APIs: apis, routes, integrations, stages

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "apis",
        sa.Column("api_id", sa.String(10), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("protocol_type", sa.String(16), nullable=False),
        sa.Column("description", sa.String(1024), nullable=True),
        sa.Column("route_selection_expression", sa.String(256), nullable=False),
        sa.Column("api_key_selection_expression", sa.String(256), nullable=False),
        sa.Column("cors", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("disable_execute_api_endpoint", sa.Boolean, nullable=False),
        sa.Column("ip_address_type", sa.String(16), nullable=False),
        sa.Column("version", sa.String(64), nullable=True),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("created_date", sa.String(40), nullable=False),
    )
    op.create_table(
        "api_integrations",
        sa.Column("api_id", sa.String(10), primary_key=True),
        sa.Column("integration_id", sa.String(16), primary_key=True),
        sa.Column("integration_type", sa.String(16), nullable=False),
        sa.Column("integration_uri", sa.String(2048), nullable=False),
        sa.Column("function_name", sa.String(140), nullable=False),
        sa.Column("qualifier", sa.String(128), nullable=True),
        sa.Column("payload_format_version", sa.String(8), nullable=False),
        sa.Column("timeout_ms", sa.Integer, nullable=False),
        sa.Column("description", sa.String(1024), nullable=True),
        sa.Column("integration_method", sa.String(16), nullable=False),
        sa.Column("connection_type", sa.String(16), nullable=False),
        sa.Column("api_gateway_managed", sa.Boolean, nullable=False),
        sa.ForeignKeyConstraint(["api_id"], ["apis.api_id"], ondelete="CASCADE"),
    )
    op.create_table(
        "api_routes",
        sa.Column("api_id", sa.String(10), primary_key=True),
        sa.Column("route_id", sa.String(16), primary_key=True),
        sa.Column("route_key", sa.String(1024), nullable=False),
        sa.Column("route_shape", sa.String(1024), nullable=False),
        sa.Column("integration_id", sa.String(16), nullable=True),
        sa.Column("api_key_required", sa.Boolean, nullable=False),
        sa.Column("authorization_type", sa.String(16), nullable=False),
        sa.Column("operation_name", sa.String(64), nullable=True),
        sa.Column("api_gateway_managed", sa.Boolean, nullable=False),
        sa.ForeignKeyConstraint(["api_id"], ["apis.api_id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["api_id", "integration_id"],
            ["api_integrations.api_id", "api_integrations.integration_id"],
        ),
    )
    op.create_index("ux_api_routes_shape", "api_routes", ["api_id", "route_shape"], unique=True)
    op.create_table(
        "api_stages",
        sa.Column("api_id", sa.String(10), primary_key=True),
        sa.Column("stage_name", sa.String(128), primary_key=True),
        sa.Column("description", sa.String(1024), nullable=True),
        sa.Column("auto_deploy", sa.Boolean, nullable=False),
        sa.Column("stage_variables", sa.JSON, nullable=False),
        sa.Column("default_route_settings", sa.JSON, nullable=False),
        sa.Column("route_settings", sa.JSON, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("api_gateway_managed", sa.Boolean, nullable=False),
        sa.Column("created_date", sa.String(40), nullable=False),
        sa.Column("last_updated_date", sa.String(40), nullable=False),
        sa.ForeignKeyConstraint(["api_id"], ["apis.api_id"], ondelete="CASCADE"),
    )


def downgrade() -> None:
    op.drop_table("api_stages")
    op.drop_index("ux_api_routes_shape", table_name="api_routes")
    op.drop_table("api_routes")
    op.drop_table("api_integrations")
    op.drop_table("apis")
