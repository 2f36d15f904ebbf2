"""Covering indexes for what every RunTask and report recomputes from the tasks: an instance's usage, the
cluster's counters and the placement's group counts read index entries, not every task row (whose JSON
documents make each row several pages).

Revision ID: 0140
Revises: 0130
"""

from alembic import op

revision = "0140"
down_revision = "0130"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_tasks_instance_usage",
        "tasks",
        ["container_instance_id", "last_status", "cpu", "memory", "eni_id"],
    )
    op.create_index("ix_tasks_cluster_status", "tasks", ["region", "cluster", "last_status"])
    op.create_index(
        "ix_tasks_group_counts",
        "tasks",
        ["region", "cluster", "desired_status", "container_instance_id", "task_group", "last_status"],
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_group_counts", table_name="tasks")
    op.drop_index("ix_tasks_cluster_status", table_name="tasks")
    op.drop_index("ix_tasks_instance_usage", table_name="tasks")
