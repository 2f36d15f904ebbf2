"""Indexes for listings paged in SQL: security groups by name and VPC, rules by group, tasks by family,
each ending in the listing's order so a page is an index range.

Revision ID: 0050
Revises: 0090 (main's head when this was rebased)
"""

from alembic import op

revision = "0050"
down_revision = "0090"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_security_groups_name", "security_groups", ["region", "name", "id"]),
    ("ix_security_groups_vpc", "security_groups", ["region", "vpc_id", "id"]),
    ("ix_security_group_rules_region_group", "security_group_rules", ["region", "group_id", "id"]),
    ("ix_tasks_family", "tasks", ["region", "cluster", "desired_status", "family", "arn"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _columns in INDEXES:
        op.drop_index(name, table_name=table)
