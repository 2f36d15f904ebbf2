"""Subnet use cases: CreateSubnet, DescribeSubnets, DeleteSubnet, ModifySubnetAttribute.

``AvailableIpAddressCount`` is never stored: it is the subnet's usable size (five addresses reserved)
minus its rows in ``ip_addresses``, counted when the subnet is shown, so it is always exact.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import describe, errors, ids, tags, vpcs
from taskvpc.domain.arns import ec2_arn
from taskvpc.domain.errors import ClientError
from taskvpc.netmodel import ipam
from taskvpc.store import ec2_repo

Doc = dict[str, Any]


def new_subnet(
    conn: Connection,
    ctx: RequestContext,
    vpc_id: str,
    cidr: str,
    zone: ipam.AvailabilityZone,
    *,
    default_for_az: bool = False,
) -> Doc:
    subnet_id = ids.new_id(ctx, "subnet")
    subnet: Doc = {
        "AvailabilityZoneId": zone.zone_id,
        "MapCustomerOwnedIpOnLaunch": False,
        "OwnerId": ctx.account_id,
        "AssignIpv6AddressOnCreation": False,
        "Ipv6CidrBlockAssociationSet": [],
        "SubnetArn": ec2_arn(ctx.region, ctx.account_id, f"subnet/{subnet_id}"),
        "EnableDns64": False,
        "Ipv6Native": False,
        "PrivateDnsNameOptionsOnLaunch": {
            "HostnameType": "ip-name",
            "EnableResourceNameDnsARecord": False,
            "EnableResourceNameDnsAAAARecord": False,
        },
        "SubnetId": subnet_id,
        "State": "available",
        "VpcId": vpc_id,
        "CidrBlock": cidr,
        "AvailabilityZone": zone.name,
        # Default subnets give instances public addresses; others do not (VPC User Guide, default subnets).
        "DefaultForAz": default_for_az,
        "MapPublicIpOnLaunch": default_for_az,
    }
    ec2_repo.insert_subnet(conn, ctx.region, subnet, ctx.now)
    return subnet


def available(subnet: Doc, used: int) -> int:
    return ipam.usable_count(subnet["CidrBlock"]) - used


def view(conn: Connection, docs: list[Doc]) -> list[Doc]:
    subnet_ids = [doc["SubnetId"] for doc in docs]
    used = ec2_repo.used_counts(conn, subnet_ids)
    by_tags = ec2_repo.tags_of(conn, subnet_ids)
    views = []
    for doc in docs:
        shown = {**doc, "AvailableIpAddressCount": available(doc, used.get(doc["SubnetId"], 0))}
        if by_tags[doc["SubnetId"]]:
            shown["Tags"] = by_tags[doc["SubnetId"]]
        views.append(shown)
    return views


def require(conn: Connection, ctx: RequestContext, subnet_id: str) -> Doc:
    ids.check("subnet", [subnet_id])
    subnet = ec2_repo.get_subnet(conn, ctx.region, subnet_id)
    if subnet is None:
        raise errors.not_found("subnet", [subnet_id])
    return subnet


def _zone(
    ctx: RequestContext, conn: Connection, vpc_id: str, params: dict[str, Any]
) -> ipam.AvailabilityZone:
    zones = ipam.availability_zones(ctx.region)
    if params.get("AvailabilityZone") and params.get("AvailabilityZoneId"):
        # EC2 API reference: "Either AvailabilityZone or AvailabilityZoneId can be specified, but not both."
        raise ClientError(
            "InvalidParameterCombination",
            "Only one of availabilityZone or availabilityZoneId can be specified.",  # unconfirmed wording
        )
    if params.get("AvailabilityZone"):
        for zone in zones:
            if zone.name == params["AvailabilityZone"]:
                return zone
        raise errors.invalid_availability_zone(params["AvailabilityZone"], [z.name for z in zones])
    if params.get("AvailabilityZoneId"):
        for zone in zones:
            if zone.zone_id == params["AvailabilityZoneId"]:
                return zone
        raise errors.invalid_availability_zone_id(params["AvailabilityZoneId"])
    # No zone given: EC2 picks one; we take the zone with the fewest subnets of this VPC, then the first.
    taken = [s["AvailabilityZone"] for s in ec2_repo.list_subnets(conn, ctx.region, vpc_id=vpc_id)]
    return min(zones, key=lambda zone: taken.count(zone.name))


def create_subnet(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    for member in ("Ipv6CidrBlock", "OutpostArn", "Ipv4IpamPoolId", "Ipv6IpamPoolId", "Ipv6NetmaskLength"):
        if member in params:
            raise ClientError("UnsupportedOperation", f"taskvpc does not support {member} yet.")
    if params.get("Ipv6Native"):
        raise ClientError("UnsupportedOperation", "taskvpc does not support Ipv6Native yet.")
    cidr = params.get("CidrBlock")
    if cidr is None:
        raise errors.missing_parameter("cidrBlock")  # unconfirmed (IPAM pools are the alternative)
    new_tags = tags.from_specs(params, "subnet")
    with ctx.db.transaction() as conn:
        vpc = vpcs.require(conn, ctx, params["VpcId"])
        existing = [s["CidrBlock"] for s in ec2_repo.list_subnets(conn, ctx.region, vpc_id=vpc["VpcId"])]
        vpc_cidrs = [c["CidrBlock"] for c in vpc["CidrBlockAssociationSet"]]
        ipam.validate_subnet_cidr(vpc_cidrs, existing, cidr)
        zone = _zone(ctx, conn, vpc["VpcId"], params)
        describe.dry_run(params)
        subnet = new_subnet(conn, ctx, vpc["VpcId"], cidr, zone)
        tags.attach(conn, ctx, subnet["SubnetId"], new_tags)
        return {"Subnet": view(conn, [subnet])[0]}


def _filter_values(doc: Doc) -> dict[str, Any]:
    return {
        "availability-zone": doc["AvailabilityZone"],
        "availability-zone-id": doc["AvailabilityZoneId"],
        # The documented aliases (EC2 API reference, DescribeSubnets Filter.N)
        "availabilityZone": doc["AvailabilityZone"],
        "availabilityZoneId": doc["AvailabilityZoneId"],
        "available-ip-address-count": doc["AvailableIpAddressCount"],
        "cidr-block": doc["CidrBlock"],
        "cidr": doc["CidrBlock"],
        "cidrBlock": doc["CidrBlock"],
        "default-for-az": doc["DefaultForAz"],
        "defaultForAz": doc["DefaultForAz"],
        "map-public-ip-on-launch": doc["MapPublicIpOnLaunch"],
        "owner-id": doc["OwnerId"],
        "state": doc["State"],
        "subnet-arn": doc["SubnetArn"],
        "subnet-id": doc["SubnetId"],
        "vpc-id": doc["VpcId"],
        "ipv6-native": doc["Ipv6Native"],
        "enable-dns64": doc["EnableDns64"],
    }


LISTING = describe.Listing(
    prefix="subnet",
    id_member="SubnetId",
    supported_filters=(
        "availability-zone",
        "availability-zone-id",
        "availabilityZone",
        "availabilityZoneId",
        "available-ip-address-count",
        "cidr-block",
        "cidr",
        "cidrBlock",
        "default-for-az",
        "defaultForAz",
        "map-public-ip-on-launch",
        "owner-id",
        "state",
        "subnet-arn",
        "subnet-id",
        "vpc-id",
        "ipv6-native",
        "enable-dns64",
        "ipv6-cidr-block-association.ipv6-cidr-block",
        "ipv6-cidr-block-association.association-id",
        "ipv6-cidr-block-association.state",
        "outpost-arn",
    ),
    filter_values=_filter_values,
    table="subnets",
    columns={"subnet-id": "id", "vpc-id": "vpc_id"},
)


def describe_subnets(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    requested = describe.check_request(LISTING, params, "SubnetIds")
    return describe.run(ctx, LISTING, params, requested, "Subnets", view)


def delete_subnet(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    subnet_id = params["SubnetId"]
    with ctx.db.transaction() as conn:
        require(conn, ctx, subnet_id)
        describe.dry_run(params)
        if ec2_repo.count_enis(conn, subnet_id=subnet_id):
            raise errors.subnet_has_dependencies(subnet_id)
        ec2_repo.remove_tags(conn, subnet_id, None)
        if not ec2_repo.delete_subnet(conn, subnet_id):  # an ENI added meanwhile (another process)
            raise errors.subnet_has_dependencies(subnet_id)
    return {}


_BOOLEAN_ATTRIBUTES = {
    "MapPublicIpOnLaunch": ("MapPublicIpOnLaunch",),
    "EnableDns64": ("EnableDns64",),
    "EnableResourceNameDnsARecordOnLaunch": ("PrivateDnsNameOptionsOnLaunch", "EnableResourceNameDnsARecord"),
    "EnableResourceNameDnsAAAARecordOnLaunch": (
        "PrivateDnsNameOptionsOnLaunch",
        "EnableResourceNameDnsAAAARecord",
    ),
}
_UNSUPPORTED = (
    "MapCustomerOwnedIpOnLaunch",
    "CustomerOwnedIpv4Pool",
    "EnableLniAtDeviceIndex",
    "DisableLniAtDeviceIndex",
)


def modify_subnet_attribute(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    for member in _UNSUPPORTED:
        if member in params:
            raise ClientError("UnsupportedOperation", f"taskvpc does not support {member} yet.")
    with ctx.db.transaction() as conn:
        subnet = require(conn, ctx, params["SubnetId"])
        changed = False
        for member, path in _BOOLEAN_ATTRIBUTES.items():
            if member not in params:
                continue
            value = (params[member] or {}).get("Value")
            if not isinstance(value, bool):
                raise errors.missing_parameter(member[0].lower() + member[1:])  # unconfirmed
            target = subnet
            for step in path[:-1]:
                target = target[step]
            target[path[-1]] = value
            changed = True
        if "AssignIpv6AddressOnCreation" in params:
            if (params["AssignIpv6AddressOnCreation"] or {}).get("Value"):
                # A subnet without an IPv6 CIDR cannot assign IPv6 addresses # unconfirmed wording
                raise errors.invalid_parameter_value(
                    f"Invalid value 'true' for assignIpv6AddressOnCreation. Cannot set assignIpv6AddressOnCreation "
                    f"to true unless the subnet ({subnet['SubnetId']}) has an IPv6 CIDR block associated with it."
                )
            changed = True
        if "PrivateDnsHostnameTypeOnLaunch" in params:
            subnet["PrivateDnsNameOptionsOnLaunch"]["HostnameType"] = params["PrivateDnsHostnameTypeOnLaunch"]
            changed = True
        if not changed:
            raise errors.missing_parameter("attribute")  # unconfirmed
        ec2_repo.update_subnet(conn, subnet)
    return {}
