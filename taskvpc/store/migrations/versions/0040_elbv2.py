"""ELBv2: load balancers, target groups, listeners, rules, registered targets and their health, tags.

Revision ID: 0040
Revises: 0030
"""

import sqlalchemy as sa
from alembic import op

revision = "0040"
down_revision = "0020"
branch_labels = None
depends_on = None


def _document_table(name: str, *columns: sa.Column[object], unique: tuple[str, ...]) -> None:
    op.create_table(
        name,
        sa.Column("arn", sa.String(512), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        *columns,
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.UniqueConstraint(*unique, name=f"uq_{name}_{unique[-1]}"),
    )


def upgrade() -> None:
    _document_table(
        "elb_load_balancers", sa.Column("name", sa.String(64), nullable=False), unique=("region", "name")
    )
    _document_table(
        "elb_target_groups", sa.Column("name", sa.String(64), nullable=False), unique=("region", "name")
    )
    _document_table(
        "elb_listeners",
        sa.Column("load_balancer_arn", sa.String(512), nullable=False),
        sa.Column("port", sa.Integer, nullable=False),
        unique=("load_balancer_arn", "port"),
    )
    _document_table(
        "elb_rules",
        sa.Column("listener_arn", sa.String(512), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        unique=("listener_arn", "priority"),
    )
    op.create_table(
        "elb_targets",
        sa.Column("target_group_arn", sa.String(512), primary_key=True),
        sa.Column("target_id", sa.String(64), primary_key=True),
        sa.Column("port", sa.Integer, primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("availability_zone", sa.String(32), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("description", sa.String(256), nullable=True),
        sa.Column("registered_at", sa.Float, nullable=False),
        sa.Column("drain_until", sa.Float, nullable=True),
    )
    op.create_table(
        "elb_tags",
        sa.Column("resource_arn", sa.String(512), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
    )


def downgrade() -> None:
    for name in (
        "elb_tags",
        "elb_targets",
        "elb_rules",
        "elb_listeners",
        "elb_target_groups",
        "elb_load_balancers",
    ):
        op.drop_table(name)
