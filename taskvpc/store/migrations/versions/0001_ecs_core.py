"""ECS core: clusters, task definitions, tags, account settings, idempotency tokens.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "clusters",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("arn", sa.String(512), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.UniqueConstraint("region", "name", name="uq_clusters_region_name"),
    )
    op.create_table(
        "task_definitions",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("family", sa.String(255), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("arn", sa.String(512), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("registered_at", sa.Float, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.UniqueConstraint("region", "family", "revision", name="uq_task_definitions_family_revision"),
    )
    op.create_index("ix_task_definitions_arn", "task_definitions", ["arn"])
    op.create_index(
        "ix_task_definitions_region_status", "task_definitions", ["region", "status", "family", "revision"]
    )
    op.create_table(
        "tags",
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("resource_arn", sa.String(1024), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.String(256), nullable=False),
    )
    op.create_table(
        "account_settings",
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("principal_arn", sa.String(512), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("value", sa.String(256), nullable=False),
    )
    op.create_table(
        "idempotency",
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("operation", sa.String(64), primary_key=True),
        sa.Column("token", sa.String(128), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("response", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("idempotency", "account_settings", "tags", "task_definitions", "clusters"):
        op.drop_table(table)
