"""EC2 instances (RunInstances): one row per instance, its wire document in ``body``.

Revision ID: 0120
Revises: 0090
"""

import sqlalchemy as sa
from alembic import op

revision = "0120"
down_revision = "0050"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ec2_instances",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        # RunInstances' idempotency token: one token, one reservation (several rows share it).
        sa.Column("client_token", sa.String(64), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("ix_ec2_instances_region", "ec2_instances", ["region", "id"])
    op.create_index("ix_ec2_instances_token", "ec2_instances", ["region", "client_token"])


def downgrade() -> None:
    op.drop_table("ec2_instances")
