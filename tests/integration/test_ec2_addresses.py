"""Subnets and their addresses: sizes, conflicts, exact AvailableIpAddressCount, ENIs, concurrency."""

from __future__ import annotations

import ipaddress
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.server import Server, TaskvpcServer, aws_error as error


def _vpc(ec2: Any, cidr: str = "10.0.0.0/16") -> str:
    return str(ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"])


def _available(ec2: Any, subnet_id: str) -> int:
    return int(ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]["AvailableIpAddressCount"])


def test_slash_28_has_eleven_addresses(ec2: Any) -> None:
    vpc_id = _vpc(ec2)
    subnet = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.1.0/28", AvailabilityZone="us-east-1b")["Subnet"]
    subnet_id = subnet["SubnetId"]
    assert subnet["AvailableIpAddressCount"] == 11
    assert subnet["AvailabilityZoneId"] == "use1-az2"
    enis = []
    for n in range(11):
        eni = ec2.create_network_interface(SubnetId=subnet_id)["NetworkInterface"]
        enis.append(eni)
        assert _available(ec2, subnet_id) == 10 - n
    addresses = [eni["PrivateIpAddress"] for eni in enis]
    reserved = {"10.0.1.0", "10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.15"}
    assert sorted(addresses, key=ipaddress.IPv4Address) == [f"10.0.1.{i}" for i in range(4, 15)]
    assert not reserved & set(addresses)
    assert len({eni["MacAddress"] for eni in enis}) == 11
    with pytest.raises(ClientError) as excinfo:
        ec2.create_network_interface(SubnetId=subnet_id)
    # CreateNetworkInterface's answer to a full subnet (see taskvpc.netmodel.ipam for the sources).
    assert error(excinfo) == (
        "InvalidParameterValue",
        "There aren't sufficient free Ipv4 addresses or prefixes",
        400,
    )
    assert _available(ec2, subnet_id) == 0
    ec2.delete_network_interface(NetworkInterfaceId=enis[3]["NetworkInterfaceId"])
    assert _available(ec2, subnet_id) == 1
    again = ec2.create_network_interface(SubnetId=subnet_id)["NetworkInterface"]
    assert again["PrivateIpAddress"] == enis[3]["PrivateIpAddress"]  # the freed one, the only one left
    assert _available(ec2, subnet_id) == 0


def test_subnet_cidr_errors(ec2: Any) -> None:
    vpc_id = _vpc(ec2)
    ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.0.0/24")
    cases = [
        (
            "10.0.0.128/25",
            ("InvalidSubnet.Conflict", "The CIDR '10.0.0.128/25' conflicts with another subnet", 400),
        ),
        (
            "10.0.0.0/16",
            ("InvalidSubnet.Conflict", "The CIDR '10.0.0.0/16' conflicts with another subnet", 400),
        ),
        ("10.1.0.0/24", ("InvalidSubnet.Range", "The CIDR '10.1.0.0/24' is invalid.", 400)),
        ("10.0.2.0/29", ("InvalidSubnet.Range", "The CIDR '10.0.2.0/29' is invalid.", 400)),
        (
            "10.0.2.7/24",
            (
                "InvalidParameterValue",
                "Value (10.0.2.7/24) for parameter cidrBlock is invalid. This is not a valid CIDR block.",
                400,
            ),
        ),
    ]
    for cidr, expected in cases:
        with pytest.raises(ClientError) as excinfo:
            ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr)
        assert error(excinfo) == expected, cidr
    with pytest.raises(ClientError) as excinfo:
        ec2.create_vpc(CidrBlock="10.0.0.0/8")
    assert error(excinfo) == ("InvalidVpc.Range", "The CIDR '10.0.0.0/8' is invalid.", 400)
    with pytest.raises(ClientError) as excinfo:
        ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.9.0/24", AvailabilityZone="us-west-2a")
    code, message, _ = error(excinfo)
    assert code == "InvalidParameterValue"
    assert message == (
        "Value (us-west-2a) for parameter availabilityZone is invalid. Subnets can currently only be created "
        "in the following availability zones: us-east-1a, us-east-1b, us-east-1c, us-east-1d, us-east-1e, us-east-1f."
    )
    by_zone_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.9.0/24", AvailabilityZoneId="use1-az3")[
        "Subnet"
    ]
    assert by_zone_id["AvailabilityZone"] == "us-east-1c"


def test_ids_malformed_and_not_found(ec2: Any) -> None:
    cases = [
        (
            lambda: ec2.create_subnet(VpcId="vpc-nope", CidrBlock="10.0.0.0/24"),
            ("InvalidVpcID.Malformed", 'Invalid id: "vpc-nope" (expecting "vpc-...")'),
        ),
        (
            lambda: ec2.create_subnet(VpcId="vpc-0123456789abcdef0", CidrBlock="10.0.0.0/24"),
            ("InvalidVpcID.NotFound", "The vpc ID 'vpc-0123456789abcdef0' does not exist"),
        ),
        (
            lambda: ec2.describe_subnets(SubnetIds=["subnet-0123456789abcdef0"]),
            ("InvalidSubnetID.NotFound", "The subnet ID 'subnet-0123456789abcdef0' does not exist"),
        ),
        (
            lambda: ec2.describe_network_interfaces(NetworkInterfaceIds=["eni-12345678"]),
            ("InvalidNetworkInterfaceID.NotFound", "The networkInterface ID 'eni-12345678' does not exist"),
        ),
        (
            lambda: ec2.describe_network_interfaces(NetworkInterfaceIds=["eni-x"]),
            ("InvalidNetworkInterfaceId.Malformed", 'Invalid id: "eni-x" (expecting "eni-...")'),
        ),
        (
            lambda: ec2.describe_security_groups(GroupIds=["i-0d9566a2e1c8fe35d"]),
            ("InvalidGroupId.Malformed", 'Invalid id: "i-0d9566a2e1c8fe35d" (expecting "sg-...")'),
        ),
        (
            lambda: ec2.delete_security_group(GroupId="sg-0123456789abcdef0"),
            ("InvalidGroup.NotFound", "The security group 'sg-0123456789abcdef0' does not exist"),
        ),
        (
            lambda: ec2.describe_vpcs(VpcIds=["vpc-0123456789abcdef0", "vpc-0123456789abcdef1"]),
            (
                "InvalidVpcID.NotFound",
                "The vpc IDs 'vpc-0123456789abcdef0, vpc-0123456789abcdef1' do not exist",
            ),
        ),
    ]
    for call, expected in cases:
        with pytest.raises(ClientError) as excinfo:
            call()
        assert error(excinfo)[:2] == expected


def test_eni_with_requested_address_and_dependencies(ec2: Any) -> None:
    vpc_id = _vpc(ec2)
    subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.3.0/24")["Subnet"]["SubnetId"]
    group_id = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc_id)["GroupId"]
    eni = ec2.create_network_interface(
        SubnetId=subnet_id,
        PrivateIpAddress="10.0.3.50",
        Groups=[group_id],
        Description="mine",
        TagSpecifications=[{"ResourceType": "network-interface", "Tags": [{"Key": "team", "Value": "net"}]}],
    )["NetworkInterface"]
    assert eni["PrivateIpAddress"] == "10.0.3.50"
    assert eni["PrivateDnsName"] == "ip-10-0-3-50.ec2.internal"
    assert eni["Groups"] == [{"GroupId": group_id, "GroupName": "web"}]
    assert eni["Status"] == "available"
    assert eni["InterfaceType"] == "interface"
    assert eni["RequesterManaged"] is False
    assert eni["SourceDestCheck"] is True
    assert eni["TagSet"] == [{"Key": "team", "Value": "net"}]
    mac_first = int(eni["MacAddress"][:2], 16)
    assert mac_first & 0x02 and not mac_first & 0x01  # locally administered unicast
    for address, expected in [
        ("10.0.3.50", ("InvalidIPAddress.InUse", "The specified address is already in use.")),
        ("10.0.3.1", ("InvalidParameterValue", "Address 10.0.3.1 is in subnet's reserved address range")),
        (
            "10.0.4.9",
            ("InvalidParameterValue", "Address 10.0.4.9 does not fall within the subnet's address range"),
        ),
    ]:
        with pytest.raises(ClientError) as excinfo:
            ec2.create_network_interface(SubnetId=subnet_id, PrivateIpAddress=address)
        assert error(excinfo)[:2] == expected
    default_vpc_group = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
    with pytest.raises(ClientError) as excinfo:
        ec2.create_network_interface(SubnetId=subnet_id, Groups=[default_vpc_group])
    assert error(excinfo)[:2] == (
        "InvalidParameter",
        f"Security group {default_vpc_group} and subnet {subnet_id} belong to different networks.",
    )
    with pytest.raises(ClientError) as excinfo:
        ec2.delete_subnet(SubnetId=subnet_id)
    assert error(excinfo)[:2] == (
        "DependencyViolation",
        f"The subnet '{subnet_id}' has dependencies and cannot be deleted.",
    )
    with pytest.raises(ClientError) as excinfo:
        ec2.delete_vpc(VpcId=vpc_id)
    assert error(excinfo)[:2] == (
        "DependencyViolation",
        f"The vpc '{vpc_id}' has dependencies and cannot be deleted.",
    )
    ec2.delete_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"])
    ec2.delete_subnet(SubnetId=subnet_id)
    with pytest.raises(ClientError) as excinfo:
        ec2.delete_vpc(VpcId=vpc_id)  # the 'web' group still lives there
    assert error(excinfo)[0] == "DependencyViolation"
    ec2.delete_security_group(GroupId=group_id)
    ec2.delete_vpc(VpcId=vpc_id)
    assert [v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"] if v["VpcId"] == vpc_id] == []


def test_eni_attributes(ec2: Any) -> None:
    vpc_id = _vpc(ec2)
    subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.5.0/24")["Subnet"]["SubnetId"]
    groups = [
        ec2.create_security_group(GroupName=f"g{i}", Description="g", VpcId=vpc_id)["GroupId"]
        for i in range(6)
    ]
    eni_id = ec2.create_network_interface(SubnetId=subnet_id)["NetworkInterface"]["NetworkInterfaceId"]
    ec2.modify_network_interface_attribute(NetworkInterfaceId=eni_id, Groups=groups[:5])
    got = ec2.describe_network_interface_attribute(NetworkInterfaceId=eni_id, Attribute="groupSet")
    assert [g["GroupId"] for g in got["Groups"]] == groups[:5]
    with pytest.raises(ClientError) as excinfo:
        ec2.modify_network_interface_attribute(NetworkInterfaceId=eni_id, Groups=groups)
    assert error(excinfo)[:2] == (
        "SecurityGroupsPerInterfaceLimitExceeded",
        "The maximum number of security groups per interface has been reached.",
    )
    with pytest.raises(ClientError) as excinfo:
        ec2.create_network_interface(SubnetId=subnet_id, Groups=groups)
    assert error(excinfo)[0] == "InvalidParameterValue"
    ec2.modify_network_interface_attribute(NetworkInterfaceId=eni_id, SourceDestCheck={"Value": False})
    ec2.modify_network_interface_attribute(NetworkInterfaceId=eni_id, Description={"Value": "renamed"})
    got = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
    assert (got["SourceDestCheck"], got["Description"]) == (False, "renamed")
    assert ec2.describe_network_interface_attribute(NetworkInterfaceId=eni_id, Attribute="sourceDestCheck")[
        "SourceDestCheck"
    ] == {"Value": False}
    # A group an ENI carries cannot be deleted.
    with pytest.raises(ClientError) as excinfo:
        ec2.delete_security_group(GroupId=groups[0])
    assert error(excinfo)[:2] == ("DependencyViolation", f"resource {groups[0]} has a dependent object")


def _second_server(api: Server, tmp_path: Path) -> TaskvpcServer:
    """Another ``taskvpc up`` process on the same database (the multi-host set-up)."""
    url = api.database_url or f"sqlite:///{api.state_dir / 'taskvpc.db'}"
    return TaskvpcServer(tmp_path / "second", url).start()


def test_concurrent_enis_never_share_an_address(api: Server, tmp_path: Path) -> None:
    ec2 = api.client("ec2")
    vpc_id = _vpc(ec2)
    subnet_id = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.8.0/27")["Subnet"]["SubnetId"]  # 27 usable
    second = _second_server(api, tmp_path)
    try:
        clients = [(api if n % 2 else second).client("ec2") for n in range(30)]

        def create(client: Any) -> str:
            try:
                return str(
                    client.create_network_interface(SubnetId=subnet_id)["NetworkInterface"][
                        "PrivateIpAddress"
                    ]
                )
            except ClientError as exc:
                return "error:" + exc.response["Error"]["Code"]

        with ThreadPoolExecutor(max_workers=30) as pool:
            results = list(pool.map(create, clients))
    finally:
        second.stop()
    addresses = [r for r in results if not r.startswith("error:")]
    failures = [r for r in results if r.startswith("error:")]
    assert len(addresses) == 27
    assert len(set(addresses)) == 27
    assert failures == ["error:InvalidParameterValue"] * 3
    assert all(ipaddress.IPv4Address(a) in ipaddress.IPv4Network("10.0.8.0/27") for a in addresses)
    assert _available(ec2, subnet_id) == 0
    listed = ec2.describe_network_interfaces(Filters=[{"Name": "subnet-id", "Values": [subnet_id]}])
    assert sorted(e["PrivateIpAddress"] for e in listed["NetworkInterfaces"]) == sorted(addresses)
