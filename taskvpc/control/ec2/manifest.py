"""Amazon EC2's VPC part as taskvpc serves it (EC2 query protocol)."""

from __future__ import annotations

from taskvpc.control.ec2 import eni_attributes, enis, regions, security_groups, sg_rules, subnets, tags, vpcs
from taskvpc.control.manifest import ServiceManifest

MANIFEST = ServiceManifest(
    model="ec2",
    signing_name="ec2",
    protocol="ec2",
    regional=True,
    handlers={
        "DescribeAvailabilityZones": regions.describe_availability_zones,
        "DescribeRegions": regions.describe_regions,
        "DescribeAccountAttributes": regions.describe_account_attributes,
        "CreateVpc": vpcs.create_vpc,
        "DescribeVpcs": vpcs.describe_vpcs,
        "DeleteVpc": vpcs.delete_vpc,
        "ModifyVpcAttribute": vpcs.modify_vpc_attribute,
        "DescribeVpcAttribute": vpcs.describe_vpc_attribute,
        "CreateSubnet": subnets.create_subnet,
        "DescribeSubnets": subnets.describe_subnets,
        "DeleteSubnet": subnets.delete_subnet,
        "ModifySubnetAttribute": subnets.modify_subnet_attribute,
        "CreateSecurityGroup": security_groups.create_security_group,
        "DescribeSecurityGroups": security_groups.describe_security_groups,
        "DeleteSecurityGroup": security_groups.delete_security_group,
        "AuthorizeSecurityGroupIngress": sg_rules.authorize_security_group_ingress,
        "AuthorizeSecurityGroupEgress": sg_rules.authorize_security_group_egress,
        "RevokeSecurityGroupIngress": sg_rules.revoke_security_group_ingress,
        "RevokeSecurityGroupEgress": sg_rules.revoke_security_group_egress,
        "DescribeSecurityGroupRules": sg_rules.describe_security_group_rules,
        "ModifySecurityGroupRules": sg_rules.modify_security_group_rules,
        "CreateNetworkInterface": enis.create_network_interface,
        "DescribeNetworkInterfaces": enis.describe_network_interfaces,
        "DeleteNetworkInterface": enis.delete_network_interface,
        "DescribeNetworkInterfaceAttribute": eni_attributes.describe_network_interface_attribute,
        "ModifyNetworkInterfaceAttribute": eni_attributes.modify_network_interface_attribute,
        "CreateTags": tags.create_tags,
        "DeleteTags": tags.delete_tags,
        "DescribeTags": tags.describe_tags,
    },
    tables=(
        "ec2_regions",
        "vpcs",
        "subnets",
        "security_groups",
        "security_group_rules",
        "network_interfaces",
        "network_interface_groups",
        "ip_addresses",
        "ec2_tags",
    ),
    migrations=("0002",),
)
