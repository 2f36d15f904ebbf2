"""EC2 VPC model: regions' default VPCs, VPCs, subnets, security groups and their rules, network
interfaces, their group memberships and addresses, EC2 tags.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ec2_regions",
        sa.Column("region", sa.String(32), primary_key=True),
        sa.Column("default_vpc_id", sa.String(32), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "vpcs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("cidr_block", sa.String(18), nullable=False),
        sa.Column("is_default", sa.Boolean, nullable=False),
        sa.Column("enable_dns_support", sa.Boolean, nullable=False),
        sa.Column("enable_dns_hostnames", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("ix_vpcs_region", "vpcs", ["region", "id"])
    op.create_table(
        "subnets",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("vpc_id", sa.String(32), sa.ForeignKey("vpcs.id"), nullable=False),
        sa.Column("cidr_block", sa.String(18), nullable=False),
        sa.Column("availability_zone", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("ix_subnets_region", "subnets", ["region", "id"])
    op.create_index("ix_subnets_vpc", "subnets", ["vpc_id"])
    op.create_table(
        "security_groups",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("vpc_id", sa.String(32), sa.ForeignKey("vpcs.id"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("is_default", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.UniqueConstraint("vpc_id", "name", name="uq_security_groups_vpc_name"),
    )
    op.create_index("ix_security_groups_region", "security_groups", ["region", "id"])
    op.create_table(
        "security_group_rules",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("group_id", sa.String(32), sa.ForeignKey("security_groups.id"), nullable=False),
        sa.Column("is_egress", sa.Boolean, nullable=False),
        sa.Column("rule_key", sa.String(255), nullable=False),
        sa.Column("referenced_group_id", sa.String(32), sa.ForeignKey("security_groups.id"), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.UniqueConstraint("group_id", "is_egress", "rule_key", name="uq_security_group_rules_key"),
    )
    op.create_index("ix_security_group_rules_group", "security_group_rules", ["group_id", "is_egress", "seq"])
    op.create_index("ix_security_group_rules_referenced", "security_group_rules", ["referenced_group_id"])
    op.create_index("ix_security_group_rules_region", "security_group_rules", ["region", "id"])
    op.create_table(
        "network_interfaces",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("vpc_id", sa.String(32), sa.ForeignKey("vpcs.id"), nullable=False),
        sa.Column("subnet_id", sa.String(32), sa.ForeignKey("subnets.id"), nullable=False),
        sa.Column("private_ip", sa.String(45), nullable=False),
        sa.Column("mac_address", sa.String(17), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requester_managed", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.UniqueConstraint("mac_address", name="uq_network_interfaces_mac"),
    )
    op.create_index("ix_network_interfaces_region", "network_interfaces", ["region", "id"])
    op.create_index("ix_network_interfaces_subnet", "network_interfaces", ["subnet_id"])
    op.create_index("ix_network_interfaces_vpc", "network_interfaces", ["vpc_id"])
    op.create_table(
        "network_interface_groups",
        sa.Column("eni_id", sa.String(32), sa.ForeignKey("network_interfaces.id"), primary_key=True),
        sa.Column("group_id", sa.String(32), sa.ForeignKey("security_groups.id"), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
    )
    op.create_index("ix_network_interface_groups_group", "network_interface_groups", ["group_id"])
    op.create_table(
        "ip_addresses",
        sa.Column("subnet_id", sa.String(32), sa.ForeignKey("subnets.id"), primary_key=True),
        sa.Column("ip", sa.String(45), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("eni_id", sa.String(32), nullable=False),
    )
    op.create_index("ix_ip_addresses_eni", "ip_addresses", ["eni_id"])
    op.create_table(
        "ec2_tags",
        sa.Column("resource_id", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("region", sa.String(32), nullable=False),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
    )
    op.create_index("ix_ec2_tags_region", "ec2_tags", ["region", "resource_id"])


def downgrade() -> None:
    for table in (
        "ec2_tags",
        "ip_addresses",
        "network_interface_groups",
        "network_interfaces",
        "security_group_rules",
        "security_groups",
        "subnets",
        "vpcs",
        "ec2_regions",
    ):
        op.drop_table(table)
