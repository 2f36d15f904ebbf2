"""ECS services, their deployments and events, capacity providers; tasks found by deployment.

Revision ID: 0010
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "services",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("cluster", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("arn", sa.String(512), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("ix_services_cluster", "services", ["region", "cluster", "status", "arn"])
    op.create_index("ix_services_name", "services", ["region", "cluster", "name"])
    op.create_table(
        "service_deployments",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("service_id", sa.String(32), sa.ForeignKey("services.id"), nullable=False),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("ix_service_deployments_service", "service_deployments", ["service_id", "status"])
    op.create_table(
        "service_events",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("service_id", sa.String(32), sa.ForeignKey("services.id"), nullable=False),
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_service_events_service", "service_events", ["service_id", "seq"])
    op.create_table(
        "capacity_providers",
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("arn", sa.String(512), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("ix_tasks_started_by", "tasks", ["region", "cluster", "started_by", "last_status"])
    op.create_index("ix_tasks_service", "tasks", ["region", "cluster", "service_name", "desired_status"])


def downgrade() -> None:
    op.drop_index("ix_tasks_service", "tasks")
    op.drop_index("ix_tasks_started_by", "tasks")
    for table in ("capacity_providers", "service_events", "service_deployments", "services"):
        op.drop_table(table)
