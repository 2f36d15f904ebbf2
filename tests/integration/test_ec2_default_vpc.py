"""The default VPC each region gets, seen through boto3 and the real aws CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.server import ACCOUNT_ID, Server

US_EAST_1_ZONES = [f"us-east-1{letter}" for letter in "abcdef"]
EU_WEST_1_ZONES = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]


def _check_default_vpc(ec2: Any, region: str, zones: list[str]) -> str:
    vpcs = ec2.describe_vpcs()["Vpcs"]
    assert len(vpcs) == 1
    vpc = vpcs[0]
    assert vpc["CidrBlock"] == "172.31.0.0/16"
    assert vpc["IsDefault"] is True
    assert vpc["State"] == "available"
    assert vpc["OwnerId"] == ACCOUNT_ID
    assert vpc["VpcId"].startswith("vpc-") and len(vpc["VpcId"]) == 21
    assert [c["CidrBlock"] for c in vpc["CidrBlockAssociationSet"]] == ["172.31.0.0/16"]

    subnets = sorted(ec2.describe_subnets()["Subnets"], key=lambda s: s["AvailabilityZone"])
    assert [s["AvailabilityZone"] for s in subnets] == zones
    assert [s["CidrBlock"] for s in subnets] == [f"172.31.{16 * i}.0/20" for i in range(len(zones))]
    for subnet in subnets:
        assert subnet["VpcId"] == vpc["VpcId"]
        assert subnet["DefaultForAz"] is True
        assert subnet["MapPublicIpOnLaunch"] is True
        assert subnet["AvailableIpAddressCount"] == 4096 - 5
        assert subnet["State"] == "available"
        assert subnet["SubnetArn"] == f"arn:aws:ec2:{region}:{ACCOUNT_ID}:subnet/{subnet['SubnetId']}"
    zone_ids = {z["ZoneName"]: z["ZoneId"] for z in ec2.describe_availability_zones()["AvailabilityZones"]}
    assert {s["AvailabilityZone"]: s["AvailabilityZoneId"] for s in subnets} == zone_ids

    groups = ec2.describe_security_groups()["SecurityGroups"]
    assert len(groups) == 1
    group = groups[0]
    assert group["GroupName"] == "default"
    assert group["Description"] == "default VPC security group"
    assert group["VpcId"] == vpc["VpcId"]
    assert group["IpPermissions"] == [
        {
            "IpProtocol": "-1",
            "UserIdGroupPairs": [{"UserId": ACCOUNT_ID, "GroupId": group["GroupId"]}],
            "IpRanges": [],
            "Ipv6Ranges": [],
            "PrefixListIds": [],
        }
    ]
    assert group["IpPermissionsEgress"] == [
        {
            "IpProtocol": "-1",
            "UserIdGroupPairs": [],
            "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            "Ipv6Ranges": [],
            "PrefixListIds": [],
        }
    ]
    return str(vpc["VpcId"])


def test_default_vpc_in_two_regions(api: Server) -> None:
    east = api.client("ec2", region="us-east-1")
    west = api.client("ec2", region="eu-west-1")
    east_vpc = _check_default_vpc(east, "us-east-1", US_EAST_1_ZONES)
    west_vpc = _check_default_vpc(west, "eu-west-1", EU_WEST_1_ZONES)
    assert east_vpc != west_vpc
    # State is per region: the other region's VPC is unknown here.
    with pytest.raises(ClientError) as excinfo:
        east.describe_vpcs(VpcIds=[west_vpc])
    assert excinfo.value.response["Error"] == {
        "Code": "InvalidVpcID.NotFound",
        "Message": f"The vpc ID '{west_vpc}' does not exist",
    }
    attributes = east.describe_account_attributes(AttributeNames=["default-vpc"])["AccountAttributes"]
    assert attributes == [{"AttributeName": "default-vpc", "AttributeValues": [{"AttributeValue": east_vpc}]}]


def test_default_vpc_is_made_once_and_stays_deleted(api: Server) -> None:
    ec2 = api.client("ec2")
    vpc_id = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    assert ec2.describe_vpcs()["Vpcs"][0]["VpcId"] == vpc_id  # not re-created by the next request
    with pytest.raises(ClientError) as excinfo:
        ec2.delete_vpc(VpcId=vpc_id)
    assert excinfo.value.response["Error"]["Code"] == "DependencyViolation"
    for subnet in ec2.describe_subnets()["Subnets"]:
        ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    ec2.delete_vpc(VpcId=vpc_id)  # the default group goes with it
    assert ec2.describe_vpcs()["Vpcs"] == []
    assert ec2.describe_security_groups()["SecurityGroups"] == []
    # As on AWS, deleting the default VPC is for good; ECS requests do not bring it back either.
    api.client("ecs").list_clusters()
    assert ec2.describe_vpcs()["Vpcs"] == []
    with pytest.raises(ClientError) as excinfo:
        ec2.create_security_group(GroupName="web", Description="web")
    assert excinfo.value.response["Error"] == {
        "Code": "VPCIdNotSpecified",
        "Message": "No default VPC for this user",
    }


def test_ecs_request_creates_the_default_vpc(api: Server) -> None:
    api.client("ecs", region="ap-southeast-2").list_clusters()
    # Visible without any EC2 call having been made in that region before.
    ec2 = api.client("ec2", region="ap-southeast-2")
    assert [v["IsDefault"] for v in ec2.describe_vpcs()["Vpcs"]] == [True]


def test_aws_cli_sees_the_default_vpc(api: Server) -> None:
    out = json.loads(api.aws("ec2", "describe-vpcs", "--filters", "Name=isDefault,Values=true").stdout)
    assert [(v["CidrBlock"], v["IsDefault"]) for v in out["Vpcs"]] == [("172.31.0.0/16", True)]
    subnets = json.loads(
        api.aws(
            "ec2",
            "describe-subnets",
            "--filters",
            f"Name=vpc-id,Values={out['Vpcs'][0]['VpcId']}",
            "Name=default-for-az,Values=true",
            region="us-west-2",
        ).stdout
    )["Subnets"]
    assert subnets == []  # the us-east-1 VPC is not in us-west-2
    subnets = json.loads(
        api.aws(
            "ec2", "describe-subnets", "--filters", "Name=default-for-az,Values=true", region="us-west-2"
        ).stdout
    )["Subnets"]
    assert sorted((s["AvailabilityZone"], s["CidrBlock"]) for s in subnets) == [
        ("us-west-2a", "172.31.0.0/20"),
        ("us-west-2b", "172.31.16.0/20"),
        ("us-west-2c", "172.31.32.0/20"),
        ("us-west-2d", "172.31.48.0/20"),
    ]
    groups = json.loads(api.aws("ec2", "describe-security-groups", "--group-names", "default").stdout)
    assert [g["GroupName"] for g in groups["SecurityGroups"]] == ["default"]
    zones = json.loads(api.aws("ec2", "describe-availability-zones").stdout)["AvailabilityZones"]
    assert [z["ZoneName"] for z in zones] == US_EAST_1_ZONES
    regions = json.loads(api.aws("ec2", "describe-regions").stdout)["Regions"]
    assert {
        "RegionName": "us-east-1",
        "Endpoint": "ec2.us-east-1.amazonaws.com",
        "OptInStatus": "opt-in-not-required",
    } in regions
