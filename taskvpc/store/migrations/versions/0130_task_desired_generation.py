"""Per-task desired generation: the agent API answers a poll with what changed since its generation.

Revision ID: 0130
Revises: 0120
"""

import sqlalchemy as sa
from alembic import op

revision = "0130"
down_revision = "0120"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing rows stay NULL ("changed"): an agent's first delta after the upgrade carries them, and the
    # instance's next generation bump stamps them.
    op.add_column("tasks", sa.Column("desired_generation", sa.BigInteger, nullable=True))
    op.create_index("ix_tasks_desired_generation", "tasks", ["container_instance_id", "desired_generation"])


def downgrade() -> None:
    op.drop_index("ix_tasks_desired_generation", table_name="tasks")
    op.drop_column("tasks", "desired_generation")
