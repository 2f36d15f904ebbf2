"""DescribeAvailabilityZones, DescribeRegions, DescribeAccountAttributes.

Every region works in taskvpc (the region is the request's SigV4 scope), so DescribeRegions lists the
regions of the caller's partition enabled by default in a new AWS account, plus the caller's own region
(opted in); with AllRegions, or by name, the opt-in ones too (``not-opted-in``).
"""

from __future__ import annotations

from typing import Any

from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import describe, errors
from taskvpc.domain.arns import partition_of
from taskvpc.domain.regions import REGIONS_BY_PARTITION
from taskvpc.netmodel import filters, ipam
from taskvpc.store import ec2_repo

Doc = dict[str, Any]

# Regions enabled by default in an AWS account (AWS General Reference, "Regions and Zones").
DEFAULT_REGIONS = (
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ca-central-1",
    "eu-central-1",
    "eu-north-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
)
_ZONE_FILTERS = (
    "group-name",
    "message",
    "opt-in-status",
    "region-name",
    "state",
    "zone-id",
    "zone-name",
    "zone-type",
    "network-border-group",
    "group-long-name",
)


def zones(region: str) -> list[Doc]:
    return [
        {
            "OptInStatus": "opt-in-not-required",
            "Messages": [],
            "RegionName": region,
            "ZoneName": zone.name,
            "ZoneId": zone.zone_id,
            "GroupName": region,
            "NetworkBorderGroup": region,
            "ZoneType": "availability-zone",
            "State": "available",
        }
        for zone in ipam.availability_zones(region)
    ]


def describe_availability_zones(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    wanted = params.get("Filters")
    filters.check_filter_names(wanted, _ZONE_FILTERS, tags=False)
    describe.dry_run(params)
    found = zones(ctx.region)
    for member, key in (("ZoneNames", "ZoneName"), ("ZoneIds", "ZoneId")):
        asked = params.get(member)
        if asked:
            known = {zone[key] for zone in found}
            unknown = [name for name in asked if name not in known]
            if unknown:
                noun = "zone" if key == "ZoneName" else "zone ID"
                # "The zone 'us-east-1z' does not exist." # unconfirmed wording
                raise errors.invalid_parameter_value(f"The {noun} '{unknown[0]}' does not exist.")
            found = [zone for zone in found if zone[key] in asked]
    selected = [
        zone
        for zone in found
        if filters.matches(
            wanted,
            {
                "group-name": zone["GroupName"],
                "opt-in-status": zone["OptInStatus"],
                "region-name": zone["RegionName"],
                "state": zone["State"],
                "zone-id": zone["ZoneId"],
                "zone-name": zone["ZoneName"],
                "zone-type": zone["ZoneType"],
                "network-border-group": zone["NetworkBorderGroup"],
            },
            {},
        )
    ]
    return {"AvailabilityZones": selected}


# DescribeRegions accepts any region of the caller's partition by name, enabled or not (EC2 API
# reference, RegionNames), and lists them all with AllRegions (the list is the one SigV4 scopes are held
# to: domain/regions.py); the commercial ones beyond DEFAULT_REGIONS are opt-in regions.
# The DNS suffix of each partition's endpoints (botocore's endpoints.json ``dnsSuffix``).
_DNS_SUFFIX = {
    "aws": "amazonaws.com",
    "aws-cn": "amazonaws.com.cn",
    "aws-us-gov": "amazonaws.com",
    "aws-iso": "c2s.ic.gov",
    "aws-iso-b": "sc2s.sgov.gov",
    "aws-iso-e": "cloud.adc-e.uk",
    "aws-iso-f": "csp.hci.ic.gov",
    "aws-eusc": "amazonaws.eu",
}


def _region(name: str, caller: str, partition: str) -> Doc:
    if partition != "aws" or name in DEFAULT_REGIONS:
        status = "opt-in-not-required"
    else:
        status = "opted-in" if name == caller else "not-opted-in"  # the caller uses its own region
    return {"OptInStatus": status, "RegionName": name, "Endpoint": f"ec2.{name}.{_DNS_SUFFIX[partition]}"}


def describe_regions(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    wanted = params.get("Filters")
    filters.check_filter_names(wanted, ("endpoint", "opt-in-status", "region-name"), tags=False)
    describe.dry_run(params)
    partition = partition_of(ctx.region)
    known = sorted({*REGIONS_BY_PARTITION[partition], ctx.region})
    regions = [_region(name, ctx.region, partition) for name in known]
    asked = params.get("RegionNames")
    if asked:
        unknown = [name for name in asked if name not in known]
        if unknown:
            # "InvalidParameterValue: Invalid region names: [xx-1]" # unconfirmed wording
            raise errors.invalid_parameter_value(f"Invalid region names: [{', '.join(unknown)}]")
        regions = [region for region in regions if region["RegionName"] in asked]
    elif not params.get("AllRegions"):
        regions = [region for region in regions if region["OptInStatus"] != "not-opted-in"]
    selected = [
        region
        for region in regions
        if filters.matches(
            wanted,
            {
                "endpoint": region["Endpoint"],
                "opt-in-status": region["OptInStatus"],
                "region-name": region["RegionName"],
            },
            {},
        )
    ]
    return {"Regions": selected}


def describe_account_attributes(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    describe.dry_run(params)
    with ctx.db.read() as conn:
        vpc = ec2_repo.default_vpc(conn, ctx.region)
    # The attributes and values a new EC2-VPC-only account shows (EC2 API reference example response).
    values = {
        "supported-platforms": ["VPC"],
        "vpc-max-security-groups-per-interface": ["5"],
        "max-elastic-ips": ["5"],
        "max-instances": ["20"],
        "vpc-max-elastic-ips": ["5"],
        "default-vpc": [vpc["VpcId"] if vpc else "none"],
    }
    asked = params.get("AttributeNames") or list(values)
    return {
        "AccountAttributes": [
            {"AttributeName": name, "AttributeValues": [{"AttributeValue": v} for v in values[name]]}
            for name in asked
            if name in values
        ]
    }
