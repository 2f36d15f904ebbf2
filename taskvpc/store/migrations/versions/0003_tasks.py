"""ECS container instances (with their attributes) and tasks.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "container_instances",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("cluster", sa.String(255), nullable=False),
        sa.Column("arn", sa.String(512), nullable=False),
        sa.Column("ec2_instance_id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("agent_heartbeat", sa.Float, nullable=True),
        sa.Column("registered_at", sa.Float, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sa.Column("availability_zone", sa.String(32), nullable=False),
        sa.Column("subnet_id", sa.String(32), nullable=False),
        sa.Column("vpc_id", sa.String(32), nullable=False),
        sa.Column("cpu_registered", sa.Integer, nullable=False),
        sa.Column("memory_registered", sa.Integer, nullable=False),
        sa.Column("eni_capacity", sa.Integer, nullable=False),
        sa.Column("cpu_used", sa.Integer, nullable=False),
        sa.Column("memory_used", sa.Integer, nullable=False),
        sa.Column("eni_used", sa.Integer, nullable=False),
        sa.Column("running_count", sa.Integer, nullable=False),
        sa.Column("pending_count", sa.Integer, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("ix_container_instances_cluster", "container_instances", ["region", "cluster", "status"])
    op.create_index(
        "ix_container_instances_ec2", "container_instances", ["region", "cluster", "ec2_instance_id"]
    )
    op.create_table(
        "container_instance_attributes",
        sa.Column("instance_id", sa.String(32), sa.ForeignKey("container_instances.id"), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("cluster", sa.String(255), nullable=False),
        sa.Column("value", sa.String(128), nullable=True),
        sa.Column("custom", sa.Boolean, nullable=False),
    )
    op.create_index(
        "ix_container_instance_attributes_cluster",
        "container_instance_attributes",
        ["region", "cluster", "name"],
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("cluster", sa.String(255), nullable=False),
        sa.Column("arn", sa.String(512), nullable=False),
        sa.Column("container_instance_id", sa.String(32), nullable=True),
        sa.Column("family", sa.String(255), nullable=False),
        sa.Column("task_group", sa.String(255), nullable=False),
        sa.Column("started_by", sa.String(128), nullable=True),
        sa.Column("service_name", sa.String(255), nullable=True),
        sa.Column("launch_type", sa.String(16), nullable=False),
        sa.Column("desired_status", sa.String(16), nullable=False),
        sa.Column("last_status", sa.String(16), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("cpu", sa.Integer, nullable=False),
        sa.Column("memory", sa.Integer, nullable=False),
        sa.Column("eni_id", sa.String(32), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.UniqueConstraint("arn", name="uq_tasks_arn"),
    )
    op.create_index("ix_tasks_cluster", "tasks", ["region", "cluster", "desired_status", "arn"])
    op.create_index("ix_tasks_instance", "tasks", ["container_instance_id", "last_status"])


def downgrade() -> None:
    for table in ("tasks", "container_instance_attributes", "container_instances"):
        op.drop_table(table)
