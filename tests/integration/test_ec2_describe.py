"""Describe* filters (wildcards, tag:Key), pagination, DryRun, tags and attributes, on both backends."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.server import Server, aws_error as error


def _tagged_vpcs(ec2: Any) -> dict[str, str]:
    made = {}
    for n, name in enumerate(["web-prod", "web-dev", "db-prod"]):
        vpc = ec2.create_vpc(
            CidrBlock=f"10.{n}.0.0/16",
            TagSpecifications=[
                {
                    "ResourceType": "vpc",
                    "Tags": [{"Key": "Name", "Value": name}, {"Key": "env", "Value": name.split("-")[1]}],
                }
            ],
        )["Vpc"]
        made[name] = vpc["VpcId"]
    return made


def test_filters_with_wildcards_and_tags(ec2: Any) -> None:
    made = _tagged_vpcs(ec2)

    def names(filters: list[dict[str, Any]]) -> list[str]:
        vpcs = ec2.describe_vpcs(Filters=filters)["Vpcs"]
        return sorted(
            next(t["Value"] for t in v.get("Tags", []) if t["Key"] == "Name") for v in vpcs if v.get("Tags")
        )

    assert names([{"Name": "tag:Name", "Values": ["web-*"]}]) == ["web-dev", "web-prod"]
    assert names([{"Name": "tag:Name", "Values": ["*-prod"]}, {"Name": "cidr", "Values": ["10.2.*"]}]) == [
        "db-prod"
    ]
    assert names([{"Name": "tag:env", "Values": ["dev", "prod"]}]) == ["db-prod", "web-dev", "web-prod"]
    assert names([{"Name": "tag:Name", "Values": ["web-?ev"]}]) == ["web-dev"]
    assert names([{"Name": "tag-key", "Values": ["env"]}]) == ["db-prod", "web-dev", "web-prod"]
    assert names([{"Name": "tag:Name", "Values": ["WEB-*"]}]) == []  # case-sensitive
    assert names([{"Name": "vpc-id", "Values": [made["db-prod"]]}]) == ["db-prod"]
    default = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    assert [v["CidrBlock"] for v in default] == ["172.31.0.0/16"]
    with pytest.raises(ClientError) as excinfo:
        ec2.describe_vpcs(Filters=[{"Name": "colour", "Values": ["blue"]}])
    assert error(excinfo) == ("InvalidParameterValue", "The filter 'colour' is invalid", 400)
    subnets = ec2.describe_subnets(
        Filters=[{"Name": "availability-zone", "Values": ["us-east-1[ab]", "*-1f"]}]
    )["Subnets"]
    assert [s["AvailabilityZone"] for s in subnets] == [
        "us-east-1f"
    ]  # '[' is literal: only '*' and '?' are wildcards


def test_pagination(api: Server, ec2: Any) -> None:
    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet_ids = {
        ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"10.0.{i}.0/24")["Subnet"]["SubnetId"] for i in range(12)
    }
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        kwargs: dict[str, Any] = {"Filters": [{"Name": "vpc-id", "Values": [vpc_id]}], "MaxResults": 5}
        if token:
            kwargs["NextToken"] = token
        page = ec2.describe_subnets(**kwargs)
        pages += 1
        assert len(page["Subnets"]) <= 5
        seen += [s["SubnetId"] for s in page["Subnets"]]
        token = page.get("NextToken")
        if not token:
            break
    assert pages == 3
    assert seen == sorted(subnet_ids)
    paginator = ec2.get_paginator("describe_subnets")
    all_ids = [
        s["SubnetId"] for p in paginator.paginate(PaginationConfig={"PageSize": 5}) for s in p["Subnets"]
    ]
    assert len(all_ids) == 12 + 6 and len(set(all_ids)) == 18  # and the six default subnets
    with pytest.raises(ClientError) as excinfo:  # below the model's minimum of 5; botocore would refuse it
        api.client("ec2", parameter_validation=False).describe_subnets(MaxResults=4)
    assert error(excinfo)[0] == "InvalidParameterValue"
    with pytest.raises(ClientError) as excinfo:
        ec2.describe_subnets(NextToken="not-a-token")
    assert error(excinfo)[0] == "InvalidNextToken"


def test_dry_run(ec2: Any) -> None:
    dry = ("DryRunOperation", "Request would have succeeded, but DryRun flag is set.", 412)
    calls = [
        lambda: ec2.create_vpc(CidrBlock="10.0.0.0/16", DryRun=True),
        lambda: ec2.describe_vpcs(DryRun=True),
        lambda: ec2.create_security_group(GroupName="x", Description="x", DryRun=True),
        lambda: ec2.describe_availability_zones(DryRun=True),
    ]
    for call in calls:
        with pytest.raises(ClientError) as excinfo:
            call()
        assert error(excinfo) == dry
    assert len(ec2.describe_vpcs()["Vpcs"]) == 1  # nothing was created
    assert [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]] == ["default"]
    subnet_id = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    with pytest.raises(ClientError) as excinfo:
        ec2.create_network_interface(SubnetId=subnet_id, DryRun=True)
    assert error(excinfo) == dry
    assert ec2.describe_network_interfaces()["NetworkInterfaces"] == []
    # A request that would fail answers its error, not DryRunOperation.
    with pytest.raises(ClientError) as excinfo:
        ec2.create_vpc(CidrBlock="10.0.0.0/8", DryRun=True)
    assert error(excinfo)[0] == "InvalidVpc.Range"
    vpc_id = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    with pytest.raises(ClientError) as excinfo:
        ec2.delete_vpc(VpcId=vpc_id, DryRun=True)
    assert error(excinfo) == dry


def test_tags(ec2: Any) -> None:
    made = _tagged_vpcs(ec2)
    subnet_id = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    ec2.create_tags(Resources=[subnet_id, made["web-dev"]], Tags=[{"Key": "owner", "Value": "me"}])
    described = ec2.describe_tags(Filters=[{"Name": "key", "Values": ["owner"]}])["Tags"]
    assert sorted((t["ResourceId"], t["ResourceType"]) for t in described) == sorted(
        [(subnet_id, "subnet"), (made["web-dev"], "vpc")]
    )
    by_type = ec2.describe_tags(
        Filters=[{"Name": "resource-type", "Values": ["vpc"]}, {"Name": "value", "Values": ["*prod"]}]
    )
    assert sorted(t["Value"] for t in by_type["Tags"]) == ["db-prod", "prod", "prod", "web-prod"]
    first = ec2.describe_tags(MaxResults=5)
    rest = ec2.describe_tags(MaxResults=5, NextToken=first["NextToken"])
    assert len(first["Tags"]) == 5 and len(rest["Tags"]) == 3 and "NextToken" not in rest
    ec2.delete_tags(
        Resources=[made["web-dev"]], Tags=[{"Key": "owner", "Value": "not-me"}]
    )  # value differs: kept
    assert {t["Key"] for t in ec2.describe_vpcs(VpcIds=[made["web-dev"]])["Vpcs"][0]["Tags"]} == {
        "Name",
        "env",
        "owner",
    }
    ec2.delete_tags(Resources=[made["web-dev"]], Tags=[{"Key": "owner"}])
    assert {t["Key"] for t in ec2.describe_vpcs(VpcIds=[made["web-dev"]])["Vpcs"][0]["Tags"]} == {
        "Name",
        "env",
    }
    ec2.delete_tags(Resources=[made["web-dev"]])
    assert "Tags" not in ec2.describe_vpcs(VpcIds=[made["web-dev"]])["Vpcs"][0]
    with pytest.raises(ClientError) as excinfo:
        ec2.create_tags(Resources=["vpc-0123456789abcdef0"], Tags=[{"Key": "a", "Value": "b"}])
    assert error(excinfo)[0] == "InvalidVpcID.NotFound"
    with pytest.raises(ClientError) as excinfo:
        ec2.create_tags(Resources=[subnet_id], Tags=[{"Key": "aws:x", "Value": "b"}])
    assert error(excinfo)[0] == "InvalidParameterValue"


def test_vpc_and_subnet_attributes(ec2: Any) -> None:
    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    hostnames = ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute="enableDnsHostnames")
    assert hostnames["EnableDnsHostnames"] == {"Value": False}
    assert ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute="enableDnsSupport")["EnableDnsSupport"] == {
        "Value": True
    }
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
    assert ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute="enableDnsHostnames")["EnableDnsHostnames"] == {
        "Value": True
    }
    default_vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    assert ec2.describe_vpc_attribute(VpcId=default_vpc, Attribute="enableDnsHostnames")[
        "EnableDnsHostnames"
    ] == {"Value": True}
    subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    ec2.modify_subnet_attribute(SubnetId=subnet_id, MapPublicIpOnLaunch={"Value": True})
    assert ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]["MapPublicIpOnLaunch"] is True
    listed = ec2.describe_subnets(
        Filters=[
            {"Name": "map-public-ip-on-launch", "Values": ["true"]},
            {"Name": "vpc-id", "Values": [vpc_id]},
        ]
    )
    assert [s["SubnetId"] for s in listed["Subnets"]] == [subnet_id]
