"""What the control-plane reconcilers read: when a task stopped, whether an instance's agent is connected.

``tasks.stopped_at`` (with an index on status and that time) lets the purge of stopped tasks find what is
past its retention without reading documents; ``container_instances.agent_connected`` is ``agentConnected``
as last decided (a poll sets it, the agent reconciler clears it after a silence).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("stopped_at", sa.Float, nullable=True))
        batch.create_index("ix_tasks_status_stopped", ["last_status", "stopped_at"])
    with op.batch_alter_table("container_instances") as batch:
        batch.add_column(sa.Column("agent_connected", sa.Boolean, nullable=False, server_default=sa.false()))
    # Rows from before: a stopped task stopped when it was last written; an instance whose agent has
    # polled counts as connected until the reconciler's first pass says otherwise.
    op.execute("UPDATE tasks SET stopped_at = updated_at WHERE last_status = 'STOPPED'")
    op.execute(
        "UPDATE container_instances SET agent_connected = "
        "(agent_heartbeat IS NOT NULL AND status != 'INACTIVE')"
    )


def downgrade() -> None:
    with op.batch_alter_table("container_instances") as batch:
        batch.drop_column("agent_connected")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_index("ix_tasks_status_stopped")
        batch.drop_column("stopped_at")
