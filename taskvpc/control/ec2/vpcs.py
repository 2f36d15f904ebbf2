"""VPC use cases: CreateVpc, DescribeVpcs, DeleteVpc, ModifyVpcAttribute, DescribeVpcAttribute."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import describe, errors, ids, security_groups, tags
from taskvpc.domain.errors import ClientError
from taskvpc.netmodel import ipam
from taskvpc.store import ec2_repo

Doc = dict[str, Any]
_DNS_ATTRIBUTES = ("EnableDnsSupport", "EnableDnsHostnames")


def new_vpc(
    conn: Connection, ctx: RequestContext, cidr: str, *, is_default: bool, tenancy: str = "default"
) -> Doc:
    """Write a VPC and its ``default`` security group; the VPC's wire document."""
    vpc_id = ids.new_id(ctx, "vpc")
    vpc: Doc = {
        "VpcId": vpc_id,
        "OwnerId": ctx.account_id,
        "InstanceTenancy": tenancy,
        "CidrBlockAssociationSet": [
            {
                "AssociationId": ids.new_id(ctx, "vpc-cidr-assoc"),
                "CidrBlock": cidr,
                "CidrBlockState": {"State": "associated"},
            }
        ],
        "IsDefault": is_default,
        "State": "available",
        "CidrBlock": cidr,
        # DhcpOptionsId is left out: taskvpc has no DHCP option sets to point at.
    }
    # A default VPC resolves DNS hostnames; a new one does not until asked (VPC User Guide, "DNS attributes").
    ec2_repo.insert_vpc(conn, ctx.region, vpc, ctx.now, dns_hostnames=is_default)
    security_groups.new_default_group(conn, ctx, vpc_id)
    return vpc


def view(conn: Connection, docs: list[Doc]) -> list[Doc]:
    by_id = ec2_repo.tags_of(conn, [doc["VpcId"] for doc in docs])
    views = []
    for doc in docs:
        shown = {key: value for key, value in doc.items() if not key.startswith("_")}
        if by_id[doc["VpcId"]]:
            shown["Tags"] = by_id[doc["VpcId"]]
        views.append(shown)
    return views


def require(conn: Connection, ctx: RequestContext, vpc_id: str) -> Doc:
    ids.check("vpc", [vpc_id])
    vpc = ec2_repo.get_vpc(conn, ctx.region, vpc_id)
    if vpc is None:
        raise errors.not_found("vpc", [vpc_id])
    return vpc


def _unsupported(member: str) -> ClientError:
    return ClientError("UnsupportedOperation", f"taskvpc does not support {member} yet.")


def create_vpc(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    for member in ("Ipv4IpamPoolId", "Ipv6Pool", "Ipv6CidrBlock", "Ipv6IpamPoolId", "VpcEncryptionControl"):
        if member in params:
            raise _unsupported(member)
    if params.get("AmazonProvidedIpv6CidrBlock"):
        raise _unsupported("AmazonProvidedIpv6CidrBlock")
    cidr = params.get("CidrBlock")
    if cidr is None:
        # "MissingParameter: Either 'cidrBlock' or 'ipv4IpamPoolId' should be provided." # unconfirmed
        raise ClientError("MissingParameter", "Either 'cidrBlock' or 'ipv4IpamPoolId' should be provided.")
    ipam.validate_vpc_cidr(cidr)
    new_tags = tags.from_specs(params, "vpc")
    describe.dry_run(params)
    with ctx.db.transaction() as conn:
        vpc = new_vpc(conn, ctx, cidr, is_default=False, tenancy=params.get("InstanceTenancy", "default"))
        tags.attach(conn, ctx, vpc["VpcId"], new_tags)
        return {"Vpc": view(conn, [vpc])[0]}


def _filter_values(doc: Doc) -> dict[str, Any]:
    cidrs = doc.get("CidrBlockAssociationSet") or []
    return {
        "cidr": doc["CidrBlock"],
        "cidr-block-association.cidr-block": [c["CidrBlock"] for c in cidrs],
        "cidr-block-association.association-id": [c["AssociationId"] for c in cidrs],
        "cidr-block-association.state": [c["CidrBlockState"]["State"] for c in cidrs],
        "is-default": doc["IsDefault"],
        "isDefault": doc["IsDefault"],  # the spelling scripts use (`--filters Name=isDefault,Values=true`)
        "owner-id": doc["OwnerId"],
        "state": doc["State"],
        "vpc-id": doc["VpcId"],
        "instance-tenancy": doc.get("InstanceTenancy"),
    }


LISTING = describe.Listing(
    prefix="vpc",
    id_member="VpcId",
    supported_filters=(
        "cidr",
        "cidr-block-association.cidr-block",
        "cidr-block-association.association-id",
        "cidr-block-association.state",
        "dhcp-options-id",
        "ipv6-cidr-block-association.ipv6-cidr-block",
        "ipv6-cidr-block-association.ipv6-pool",
        "ipv6-cidr-block-association.association-id",
        "ipv6-cidr-block-association.state",
        "is-default",
        "isDefault",
        "owner-id",
        "state",
        "vpc-id",
        "instance-tenancy",
    ),
    filter_values=_filter_values,
    table="vpcs",
    columns={"vpc-id": "id"},
)


def describe_vpcs(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    requested = describe.check_request(LISTING, params, "VpcIds")
    return describe.run(ctx, LISTING, params, requested, "Vpcs", view)


def delete_vpc(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    vpc_id = params["VpcId"]
    with ctx.db.transaction() as conn:
        require(conn, ctx, vpc_id)
        describe.dry_run(params)
        groups = ec2_repo.list_groups(conn, ctx.region, vpc_id=vpc_id)
        others = [g for g in groups if g["GroupName"] != security_groups.DEFAULT_NAME]
        if (
            ec2_repo.list_subnets(conn, ctx.region, vpc_id=vpc_id)
            or ec2_repo.count_enis(conn, vpc_id=vpc_id)
            or others
        ):
            raise errors.vpc_has_dependencies(vpc_id)
        for group in groups:  # the default group goes with its VPC, as on EC2
            if not security_groups.remove_group(conn, group["GroupId"]):
                raise errors.vpc_has_dependencies(vpc_id)
        ec2_repo.remove_tags(conn, vpc_id, None)
        if not ec2_repo.delete_vpc(conn, vpc_id):  # a subnet or group added meanwhile (another process)
            raise errors.vpc_has_dependencies(vpc_id)
    return {}


def _bool_attribute(value: Any, name: str) -> bool:
    if not isinstance(value, dict) or not isinstance(value.get("Value"), bool):
        raise errors.missing_parameter(name[0].lower() + name[1:])  # unconfirmed
    return bool(value["Value"])


def modify_vpc_attribute(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    given = [name for name in (*_DNS_ATTRIBUTES, "EnableNetworkAddressUsageMetrics") if name in params]
    if len(given) != 1:
        # EC2 API reference: "You can only modify one attribute at a time." Code and text # unconfirmed
        raise ClientError("InvalidParameterCombination", "Only one attribute can be modified at a time")
    name = given[0]
    if name == "EnableNetworkAddressUsageMetrics":
        raise _unsupported(name)
    value = _bool_attribute(params[name], name)
    with ctx.db.transaction() as conn:
        vpc = require(conn, ctx, params["VpcId"])
        describe.dry_run(params)
        wire = name[0].lower() + name[1:]
        if wire == "enableDnsHostnames" and value and not vpc["_attributes"]["enableDnsSupport"]:
            # EC2 refuses DNS hostnames without DNS support (VPC User Guide) # unconfirmed wording
            raise errors.invalid_parameter_value(
                "Cannot enable DNS hostnames when DNS support is disabled for the VPC."
            )
        ec2_repo.set_vpc_attribute(conn, params["VpcId"], wire, value)
    return {}


def describe_vpc_attribute(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    attribute = params["Attribute"]
    with ctx.db.read() as conn:
        vpc = require(conn, ctx, params["VpcId"])
    describe.dry_run(params)
    if attribute == "enableNetworkAddressUsageMetrics":
        return {"VpcId": vpc["VpcId"], "EnableNetworkAddressUsageMetrics": {"Value": False}}
    member = attribute[0].upper() + attribute[1:]
    return {"VpcId": vpc["VpcId"], member: {"Value": vpc["_attributes"][attribute]}}
