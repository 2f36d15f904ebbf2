"""The awslogs driver's delivery cursors (one row per task container).

Revision ID: 0090
Revises: 0040
"""

import sqlalchemy as sa
from alembic import op

revision = "0090"
down_revision = "0040"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "awslogs_cursors",
        sa.Column("task_arn", sa.String(512), primary_key=True),
        sa.Column("container", sa.String(255), primary_key=True),
        sa.Column("next_seq", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("awslogs_cursors")
