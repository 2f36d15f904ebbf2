"""NLB listener and target-group protocols through botocore: UDP/TCP_UDP/TLS pairings, the health-check
protocols ELB allows (a UDP group is checked over TCP or HTTP), TLS certificates (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.server import InProcessServer, aws_error as error

CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/12345678-1234-1234-1234-123456789012"


@pytest.fixture()
def elbv2(api: InProcessServer) -> Any:
    return api.client("elbv2")


def _setup(ec2: Any, elbv2: Any) -> tuple[str, str]:
    vpc_id = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.30.1.0/24", AvailabilityZone="us-east-1a")[
        "Subnet"
    ]["SubnetId"]
    lb = elbv2.create_load_balancer(Name="net", Type="network", Subnets=[subnet])["LoadBalancers"][0]
    return vpc_id, lb["LoadBalancerArn"]


def _tg(elbv2: Any, vpc_id: str, name: str, protocol: str, **extra: Any) -> dict[str, Any]:
    return elbv2.create_target_group(
        Name=name, Protocol=protocol, Port=5000, VpcId=vpc_id, TargetType="ip", **extra
    )["TargetGroups"][0]


def test_udp_groups_are_checked_over_tcp_or_http(elbv2: Any, ec2: Any) -> None:
    vpc_id, _ = _setup(ec2, elbv2)
    udp = _tg(elbv2, vpc_id, "udp", "UDP")
    assert udp["HealthCheckProtocol"] == "TCP" and udp["HealthCheckPort"] == "traffic-port"
    http = _tg(elbv2, vpc_id, "udp-http", "UDP", HealthCheckProtocol="HTTP", HealthCheckPort="80")
    assert http["HealthCheckProtocol"] == "HTTP" and http["HealthCheckPath"] == "/"
    for protocol in ("UDP", "TCP_UDP", "TLS"):
        with pytest.raises(ClientError) as excinfo:
            _tg(
                elbv2,
                vpc_id,
                f"bad-{protocol.lower().replace('_', '-')}",
                "UDP",
                HealthCheckProtocol=protocol,
            )
        assert error(excinfo) == (
            "ValidationError",
            f"Health check protocol '{protocol}' is not supported",
            400,
        )
    with pytest.raises(ClientError) as excinfo:
        elbv2.modify_target_group(TargetGroupArn=udp["TargetGroupArn"], HealthCheckProtocol="UDP")
    assert error(excinfo)[0] == "ValidationError"
    [shown] = elbv2.describe_target_groups(TargetGroupArns=[udp["TargetGroupArn"]])["TargetGroups"]
    assert shown["HealthCheckProtocol"] == "TCP"  # the refused change changed nothing
    with pytest.raises(ClientError) as excinfo:
        _tg(elbv2, vpc_id, "alb-tcp-check", "HTTP", HealthCheckProtocol="TCP")
    assert error(excinfo) == (
        "ValidationError",
        "Health check protocol 'TCP' is not supported for target groups with the protocol 'HTTP'",
        400,
    )
    assert {g["TargetGroupName"] for g in elbv2.describe_target_groups()["TargetGroups"]} == {
        "udp",
        "udp-http",
    }


def test_nlb_listener_protocols_pair_with_their_target_groups(elbv2: Any, ec2: Any) -> None:
    vpc_id, lb_arn = _setup(ec2, elbv2)
    groups = {
        p: _tg(elbv2, vpc_id, p.lower().replace("_", "-"), p)["TargetGroupArn"]
        for p in ("TCP", "UDP", "TCP_UDP", "TLS")
    }

    def listener(protocol: str, port: int, tg: str, **extra: Any) -> dict[str, Any]:
        return elbv2.create_listener(
            LoadBalancerArn=lb_arn,
            Protocol=protocol,
            Port=port,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": groups[tg]}],
            **extra,
        )["Listeners"][0]

    for protocol, tg in (("UDP", "TCP"), ("TCP", "UDP"), ("TCP_UDP", "TCP"), ("TLS", "UDP")):
        extra = {"Certificates": [{"CertificateArn": CERTIFICATE}]} if protocol == "TLS" else {}
        with pytest.raises(ClientError) as excinfo:
            listener(protocol, 6000, tg, **extra)
        assert error(excinfo) == (
            "InvalidConfigurationRequest",
            f"Listener protocol '{protocol}' is not supported with a target group with the protocol '{tg}'",
            400,
        )
    assert elbv2.describe_listeners(LoadBalancerArn=lb_arn)["Listeners"] == []

    with pytest.raises(ClientError) as excinfo:
        listener("TLS", 443, "TCP")
    assert error(excinfo) == ("ValidationError", "A certificate must be specified for TLS listeners", 400)
    with pytest.raises(ClientError) as excinfo:
        listener("TLS", 443, "TCP", Certificates=[{"CertificateArn": "arn:aws:acm:nope"}])
    assert error(excinfo) == ("CertificateNotFound", "Certificate 'arn:aws:acm:nope' not found", 400)

    made = [
        listener("UDP", 5000, "UDP"),
        listener("TCP", 5001, "TCP_UDP"),
        listener("TCP_UDP", 5002, "TCP_UDP"),
        listener("TLS", 443, "TCP", Certificates=[{"CertificateArn": CERTIFICATE}]),
        listener("TLS", 8443, "TLS", Certificates=[{"CertificateArn": CERTIFICATE}]),
    ]
    tls = made[3]
    assert tls["Certificates"] == [{"CertificateArn": CERTIFICATE}]
    assert tls["SslPolicy"] == "ELBSecurityPolicy-2016-08"
    assert "Certificates" not in made[0] and "SslPolicy" not in made[0]
    shown = elbv2.describe_listeners(LoadBalancerArn=lb_arn)["Listeners"]
    assert [(li["Protocol"], li["Port"]) for li in shown] == [
        ("TLS", 443),
        ("UDP", 5000),
        ("TCP", 5001),
        ("TCP_UDP", 5002),
        ("TLS", 8443),
    ]
