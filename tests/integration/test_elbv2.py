"""ELBv2 through botocore: load balancers and their ENIs, target groups, targets and their health,
listeners, rules, tags - every operation and the errors ELB answers (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.server import InProcessServer, aws_error as error


@pytest.fixture()
def elbv2(api: InProcessServer) -> Any:
    return api.client("elbv2")


def _network(ec2: Any) -> dict[str, Any]:
    vpc_id = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    a = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.20.1.0/24", AvailabilityZone="us-east-1a")["Subnet"][
        "SubnetId"
    ]
    b = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.20.2.0/24", AvailabilityZone="us-east-1b")["Subnet"][
        "SubnetId"
    ]
    c = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.20.3.0/24", AvailabilityZone="us-east-1a")["Subnet"][
        "SubnetId"
    ]
    sg = ec2.create_security_group(VpcId=vpc_id, GroupName="lb", Description="lb")["GroupId"]
    return {"vpc": vpc_id, "a": a, "b": b, "a2": c, "sg": sg}


def _alb(elbv2: Any, net: dict[str, Any], name: str = "web", **extra: Any) -> dict[str, Any]:
    return elbv2.create_load_balancer(
        Name=name, Subnets=[net["a"], net["b"]], SecurityGroups=[net["sg"]], **extra
    )["LoadBalancers"][0]


def _tg(
    elbv2: Any, net: dict[str, Any], name: str = "web-tg", protocol: str = "HTTP", **extra: Any
) -> dict[str, Any]:
    return elbv2.create_target_group(
        Name=name, Protocol=protocol, Port=8080, VpcId=net["vpc"], TargetType="ip", **extra
    )["TargetGroups"][0]


def test_alb_gets_enis_dns_and_is_released(elbv2: Any, ec2: Any) -> None:
    net = _network(ec2)
    lb = _alb(elbv2, net, Scheme="internal")
    arn = lb["LoadBalancerArn"]
    suffix = arn.rsplit("/", 1)[1]
    assert arn.startswith("arn:aws:elasticloadbalancing:us-east-1:") and ":loadbalancer/app/web/" in arn
    assert len(suffix) == 16
    assert lb["DNSName"] == f"internal-web-{int(suffix[:8], 16)}.us-east-1.elb.amazonaws.com"
    assert lb["State"] == {"Code": "active"} and lb["Type"] == "application" and lb["Scheme"] == "internal"
    assert lb["SecurityGroups"] == [net["sg"]] and lb["VpcId"] == net["vpc"]
    assert sorted(z["ZoneName"] for z in lb["AvailabilityZones"]) == ["us-east-1a", "us-east-1b"]
    enis = ec2.describe_network_interfaces(
        Filters=[{"Name": "description", "Values": [f"ELB app/web/{suffix}"]}]
    )["NetworkInterfaces"]
    assert sorted(e["SubnetId"] for e in enis) == sorted([net["a"], net["b"]])
    for eni in enis:
        assert eni["RequesterManaged"] is True and eni["RequesterId"] == "amazon-elb"
        assert eni["InterfaceType"] == "interface" and eni["Status"] == "in-use"
        assert [g["GroupId"] for g in eni["Groups"]] == [net["sg"]]
        with pytest.raises(ClientError) as excinfo:
            ec2.delete_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"])
        assert error(excinfo) == (
            "InvalidParameterValue",
            f"Network interface '{eni['NetworkInterfaceId']}' is currently in use.",
            400,
        )
    described = elbv2.describe_load_balancers(Names=["web"])["LoadBalancers"]
    assert [d["LoadBalancerArn"] for d in described] == [arn]
    elbv2.delete_load_balancer(LoadBalancerArn=arn)
    left = ec2.describe_network_interfaces(
        Filters=[{"Name": "description", "Values": [f"ELB app/web/{suffix}"]}]
    )
    assert left["NetworkInterfaces"] == []
    with pytest.raises(ClientError) as excinfo:
        elbv2.describe_load_balancers(Names=["web"])
    assert error(excinfo) == ("LoadBalancerNotFound", "Load balancers '[web]' not found", 400)
    elbv2.delete_load_balancer(LoadBalancerArn=arn)  # gone already: still succeeds


def test_nlb_has_static_addresses_and_network_enis(elbv2: Any, ec2: Any) -> None:
    net = _network(ec2)
    lb = elbv2.create_load_balancer(Name="tcp", Type="network", Subnets=[net["a"]])["LoadBalancers"][0]
    suffix = lb["LoadBalancerArn"].rsplit("/", 1)[1]
    assert lb["DNSName"] == f"tcp-{suffix}.elb.us-east-1.amazonaws.com"
    assert "SecurityGroups" not in lb
    address = lb["AvailabilityZones"][0]["LoadBalancerAddresses"][0]["PrivateIPv4Address"]
    eni = ec2.describe_network_interfaces(Filters=[{"Name": "private-ip-address", "Values": [address]}])[
        "NetworkInterfaces"
    ][0]
    assert eni["InterfaceType"] == "network_load_balancer" and eni["Description"] == f"ELB net/tcp/{suffix}"


def test_create_load_balancer_errors(elbv2: Any, ec2: Any) -> None:
    net = _network(ec2)
    cases = [
        (
            {"Name": "one", "Subnets": [net["a"]]},
            (
                "ValidationError",
                "At least two subnets in two different Availability Zones must be specified",
                400,
            ),
        ),
        (
            {"Name": "same", "Subnets": [net["a"], net["a2"]]},
            (
                "InvalidConfigurationRequest",
                "A load balancer cannot be attached to multiple subnets in the same Availability Zone",
                400,
            ),
        ),
        (
            {"Name": "nosub", "Subnets": ["subnet-0123456789abcdef0", net["b"]]},
            ("SubnetNotFound", "The subnet ID 'subnet-0123456789abcdef0' is not valid", 400),
        ),
        (
            {"Name": "bad_name", "Subnets": [net["a"], net["b"]]},
            (
                "ValidationError",
                "LoadBalancer name cannot contain characters that are not letters, or digits or the dash.",
                400,
            ),
        ),
        (
            {"Name": "x" * 33, "Subnets": [net["a"], net["b"]]},
            ("ValidationError", "LoadBalancer name cannot be longer than '32' characters", 400),
        ),
    ]
    for params, expected in cases:
        with pytest.raises(ClientError) as excinfo:
            elbv2.create_load_balancer(**params)
        assert error(excinfo) == expected, params
    assert elbv2.describe_load_balancers()["LoadBalancers"] == []
    assert not [
        e
        for e in ec2.describe_network_interfaces()["NetworkInterfaces"]
        if e["Description"].startswith("ELB")
    ]
    first = _alb(elbv2, net)
    assert _alb(elbv2, net)["LoadBalancerArn"] == first["LoadBalancerArn"]  # same settings: the same LB
    with pytest.raises(ClientError) as excinfo:
        elbv2.create_load_balancer(Name="web", Subnets=[net["a2"], net["b"]])
    assert error(excinfo) == (
        "DuplicateLoadBalancerName",
        "A load balancer with the same name 'web' exists, but with different settings",
        400,
    )


def test_load_balancer_attributes_and_deletion_protection(elbv2: Any, ec2: Any) -> None:
    arn = _alb(elbv2, _network(ec2))["LoadBalancerArn"]
    attributes = {
        a["Key"]: a["Value"]
        for a in elbv2.describe_load_balancer_attributes(LoadBalancerArn=arn)["Attributes"]
    }
    assert (
        attributes["idle_timeout.timeout_seconds"] == "60"
        and attributes["deletion_protection.enabled"] == "false"
    )
    elbv2.modify_load_balancer_attributes(
        LoadBalancerArn=arn, Attributes=[{"Key": "deletion_protection.enabled", "Value": "true"}]
    )
    with pytest.raises(ClientError) as excinfo:
        elbv2.delete_load_balancer(LoadBalancerArn=arn)
    assert error(excinfo) == (
        "OperationNotPermitted",
        f"Load balancer '{arn}' cannot be deleted because deletion protection is enabled",
        400,
    )
    with pytest.raises(ClientError) as excinfo:
        elbv2.modify_load_balancer_attributes(LoadBalancerArn=arn, Attributes=[{"Key": "nope", "Value": "1"}])
    assert error(excinfo) == ("ValidationError", "Load balancer attribute key 'nope' is not recognized", 400)


def test_pagination_of_load_balancers(elbv2: Any, ec2: Any) -> None:
    net = _network(ec2)
    made = [_alb(elbv2, net, name=f"lb{n}")["LoadBalancerArn"] for n in range(3)]
    first = elbv2.describe_load_balancers(PageSize=2)
    assert len(first["LoadBalancers"]) == 2 and "NextMarker" in first
    second = elbv2.describe_load_balancers(PageSize=2, Marker=first["NextMarker"])
    assert "NextMarker" not in second
    assert [lb["LoadBalancerArn"] for lb in first["LoadBalancers"] + second["LoadBalancers"]] == made
