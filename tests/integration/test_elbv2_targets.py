"""ELBv2 target groups, targets and their health, listeners, rules and tags through botocore."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from taskvpc.control.elbv2 import targets as targets_module
from tests.integration.server import InProcessServer, aws_error as error
from tests.integration.test_elbv2 import _alb, _network, _tg


@pytest.fixture()
def elbv2(api: InProcessServer) -> Any:
    return api.client("elbv2")


def _health(elbv2: Any, tg_arn: str, **extra: Any) -> list[tuple[str, int, str, str | None]]:
    found = elbv2.describe_target_health(TargetGroupArn=tg_arn, **extra)["TargetHealthDescriptions"]
    return [
        (d["Target"]["Id"], d["Target"]["Port"], d["TargetHealth"]["State"], d["TargetHealth"].get("Reason"))
        for d in found
    ]


def test_target_group_defaults_per_type(elbv2: Any, ec2: Any) -> None:
    net = _network(ec2)
    alb_tg = _tg(elbv2, net)
    assert alb_tg["HealthCheckProtocol"] == "HTTP" and alb_tg["HealthCheckPath"] == "/"
    assert alb_tg["HealthCheckTimeoutSeconds"] == 5 and alb_tg["HealthCheckIntervalSeconds"] == 30
    assert (alb_tg["HealthyThresholdCount"], alb_tg["UnhealthyThresholdCount"]) == (5, 2)
    assert alb_tg["Matcher"] == {"HttpCode": "200"} and alb_tg["HealthCheckPort"] == "traffic-port"
    assert alb_tg["LoadBalancerArns"] == [] and alb_tg["ProtocolVersion"] == "HTTP1"
    nlb_tg = _tg(elbv2, net, name="tcp-tg", protocol="TCP")
    assert nlb_tg["HealthCheckProtocol"] == "TCP" and nlb_tg["HealthCheckTimeoutSeconds"] == 10
    assert "Matcher" not in nlb_tg and "HealthCheckPath" not in nlb_tg
    http_checked = _tg(elbv2, net, name="tcp-http", protocol="TCP", HealthCheckProtocol="HTTP")
    assert http_checked["HealthCheckTimeoutSeconds"] == 6 and http_checked["Matcher"] == {
        "HttpCode": "200-399"
    }

    def attributes(arn: str) -> dict[str, str]:
        found = elbv2.describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]
        return {a["Key"]: a["Value"] for a in found}

    assert attributes(nlb_tg["TargetGroupArn"])["preserve_client_ip.enabled"] == "false"  # ip + TCP
    udp = _tg(elbv2, net, name="udp-tg", protocol="UDP")
    assert attributes(udp["TargetGroupArn"])["preserve_client_ip.enabled"] == "true"
    alb_attributes = attributes(alb_tg["TargetGroupArn"])
    assert alb_attributes["deregistration_delay.timeout_seconds"] == "300"
    assert (
        alb_attributes["stickiness.type"] == "lb_cookie"
        and alb_attributes["slow_start.duration_seconds"] == "0"
    )
    assert "preserve_client_ip.enabled" not in alb_attributes
    elbv2.modify_target_group_attributes(
        TargetGroupArn=alb_tg["TargetGroupArn"],
        Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": "5"},
            {"Key": "stickiness.enabled", "Value": "true"},
        ],
    )
    assert attributes(alb_tg["TargetGroupArn"])["deregistration_delay.timeout_seconds"] == "5"
    with pytest.raises(ClientError) as excinfo:
        elbv2.modify_target_group_attributes(
            TargetGroupArn=alb_tg["TargetGroupArn"],
            Attributes=[{"Key": "preserve_client_ip.enabled", "Value": "true"}],
        )
    assert error(excinfo) == (
        "ValidationError",
        "Target group attribute key 'preserve_client_ip.enabled' is not recognized",
        400,
    )
    assert attributes(alb_tg["TargetGroupArn"])["deregistration_delay.timeout_seconds"] == "5"  # unchanged


def test_target_group_errors(elbv2: Any, ec2: Any) -> None:
    net = _network(ec2)
    tg = _tg(elbv2, net)
    assert _tg(elbv2, net)["TargetGroupArn"] == tg["TargetGroupArn"]
    cases = [
        (
            {"Name": "web-tg", "Protocol": "HTTP", "Port": 81, "VpcId": net["vpc"]},
            (
                "DuplicateTargetGroupName",
                "A target group with the same name 'web-tg' exists, but with different settings",
                400,
            ),
        ),
        (
            {"Name": "novpc", "Protocol": "HTTP", "Port": 80, "VpcId": "vpc-0123456789abcdef0"},
            ("ValidationError", "The VPC ID 'vpc-0123456789abcdef0' is not found", 400),
        ),
        (
            {"Name": "noport", "Protocol": "HTTP", "VpcId": net["vpc"]},
            ("ValidationError", "A port must be specified", 400),
        ),
        (
            {
                "Name": "hc",
                "Protocol": "HTTP",
                "Port": 80,
                "VpcId": net["vpc"],
                "HealthCheckIntervalSeconds": 5,
                "HealthCheckTimeoutSeconds": 5,
            },
            ("ValidationError", "Health check interval must be greater than the timeout.", 400),
        ),
    ]
    for params, expected in cases:
        with pytest.raises(ClientError) as excinfo:
            elbv2.create_target_group(**params)
        assert error(excinfo) == expected, params
    with pytest.raises(ClientError) as excinfo:
        elbv2.describe_target_groups(Names=["web-tg", "missing"])
    assert error(excinfo) == ("TargetGroupNotFound", "Target groups '[missing]' not found", 400)
    modified = elbv2.modify_target_group(
        TargetGroupArn=tg["TargetGroupArn"], HealthCheckPath="/health", Matcher={"HttpCode": "200-299"}
    )
    assert modified["TargetGroups"][0]["HealthCheckPath"] == "/health"
    assert modified["TargetGroups"][0]["Matcher"] == {"HttpCode": "200-299"}


def test_ip_targets_are_checked_like_elb(elbv2: Any, ec2: Any) -> None:
    net = _network(ec2)
    arn = _tg(elbv2, net)["TargetGroupArn"]
    cases = [
        (
            [{"Id": "10.20.1.9", "AvailabilityZone": "all"}],
            (
                "ValidationError",
                "The IP address '10.20.1.9' is within the VPC, and cannot have its Availability Zone overridden to 'all' from 'us-east-1a'",
                400,
            ),
        ),
        (
            [{"Id": "192.168.4.4"}],
            (
                "ValidationError",
                "The Availability Zone is required for IP address '192.168.4.4' because it is not in the VPC",
                400,
            ),
        ),
        (
            [{"Id": "192.168.4.4", "AvailabilityZone": "us-east-1a"}],
            (
                "ValidationError",
                "You must specify a valid Availability Zone or select 'all' for all enabled Availability zones, since the IP address '192.168.4.4' is outside the VPC",
                400,
            ),
        ),
        (
            [{"Id": "8.8.8.8", "AvailabilityZone": "all"}],
            (
                "InvalidTarget",
                "The specified target does not exist, is not in the same VPC as the target group, or has an unsupported instance type.",
                400,
            ),
        ),
    ]
    for targets, expected in cases:
        with pytest.raises(ClientError) as excinfo:
            elbv2.register_targets(TargetGroupArn=arn, Targets=targets)
        assert error(excinfo) == expected, targets
    assert _health(elbv2, arn) == []
    elbv2.register_targets(
        TargetGroupArn=arn,
        Targets=[{"Id": "10.20.2.7"}, {"Id": "172.16.0.5", "Port": 9000, "AvailabilityZone": "all"}],
    )
    found = elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
    assert [d["Target"] for d in found] == [
        {"Id": "10.20.2.7", "Port": 8080, "AvailabilityZone": "us-east-1b"},
        {"Id": "172.16.0.5", "Port": 9000, "AvailabilityZone": "all"},
    ]
    # No load balancer uses the group yet: ELB answers unused / Target.NotInUse.
    assert found[0]["TargetHealth"] == {
        "State": "unused",
        "Reason": "Target.NotInUse",
        "Description": "Target group is not configured to receive traffic from the load balancer",
    }
    assert found[0]["HealthCheckPort"] == "8080"


def _served(elbv2: Any, ec2: Any, delay: str = "30") -> tuple[dict[str, Any], str, str]:
    net = _network(ec2)
    lb = _alb(elbv2, net)
    tg_arn = _tg(elbv2, net)["TargetGroupArn"]
    elbv2.modify_target_group_attributes(
        TargetGroupArn=tg_arn, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": delay}]
    )
    listener = elbv2.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg_arn}],
    )["Listeners"][0]
    return lb, tg_arn, listener["ListenerArn"]


def test_health_states_registration_reports_and_draining(api: InProcessServer, elbv2: Any, ec2: Any) -> None:
    lb, tg_arn, _ = _served(elbv2, ec2, delay="2")
    assert elbv2.describe_target_groups(TargetGroupArns=[tg_arn])["TargetGroups"][0]["LoadBalancerArns"] == [
        lb["LoadBalancerArn"]
    ]
    elbv2.register_targets(TargetGroupArn=tg_arn, Targets=[{"Id": "10.20.1.10"}, {"Id": "10.20.2.10"}])
    described = elbv2.describe_target_health(TargetGroupArn=tg_arn)["TargetHealthDescriptions"]
    assert described[0]["TargetHealth"] == {
        "State": "initial",
        "Reason": "Elb.InitialHealthChecking",
        "Description": "Initial health checks in progress",
    }
    plane = getattr(api, "control_plane", None)
    if plane is None:
        pytest.skip("the data plane's health reports are an in-process call")
    ctx = plane.context("us-east-1", time.time())
    assert targets_module.report_target_health(ctx, tg_arn, ("10.20.1.10", 8080), "healthy", None)
    assert targets_module.report_target_health(
        ctx, tg_arn, ("10.20.2.10", 8080), "unhealthy", "Target.ResponseCodeMismatch", "503"
    )
    assert not targets_module.report_target_health(ctx, tg_arn, ("10.20.9.9", 8080), "healthy", None)
    found = elbv2.describe_target_health(TargetGroupArn=tg_arn)["TargetHealthDescriptions"]
    assert found[0]["TargetHealth"] == {"State": "healthy"}
    assert found[1]["TargetHealth"] == {
        "State": "unhealthy",
        "Reason": "Target.ResponseCodeMismatch",
        "Description": "Health checks failed with these codes: [503]",
    }
    elbv2.deregister_targets(TargetGroupArn=tg_arn, Targets=[{"Id": "10.20.1.10"}])
    assert _health(elbv2, tg_arn, Targets=[{"Id": "10.20.1.10"}]) == [
        ("10.20.1.10", 8080, "draining", "Target.DeregistrationInProgress")
    ]
    with pytest.raises(ClientError) as excinfo:
        elbv2.deregister_targets(TargetGroupArn=tg_arn, Targets=[{"Id": "10.20.1.99"}])
    assert error(excinfo)[0] == "InvalidTarget"
    waiter = elbv2.get_waiter("target_deregistered")
    waiter.wait(
        TargetGroupArn=tg_arn,
        Targets=[{"Id": "10.20.1.10", "Port": 8080}],
        WaiterConfig={"Delay": 1, "MaxAttempts": 10},
    )
    assert _health(elbv2, tg_arn, Targets=[{"Id": "10.20.1.10"}]) == [
        ("10.20.1.10", 8080, "unused", "Target.NotRegistered")
    ]
    assert [t[0] for t in _health(elbv2, tg_arn)] == ["10.20.2.10"]


def test_delete_target_group_in_use(elbv2: Any, ec2: Any) -> None:
    _, tg_arn, listener_arn = _served(elbv2, ec2)
    with pytest.raises(ClientError) as excinfo:
        elbv2.delete_target_group(TargetGroupArn=tg_arn)
    assert error(excinfo) == (
        "ResourceInUse",
        f"Target group '{tg_arn}' is currently in use by a listener or a rule",
        400,
    )
    elbv2.delete_listener(ListenerArn=listener_arn)
    elbv2.delete_target_group(TargetGroupArn=tg_arn)
    with pytest.raises(ClientError) as excinfo:
        elbv2.describe_target_groups(TargetGroupArns=[tg_arn])
    assert error(excinfo)[0] == "TargetGroupNotFound"


def test_listeners_and_their_errors(elbv2: Any, ec2: Any) -> None:
    lb, tg_arn, listener_arn = _served(elbv2, ec2)
    listener = elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"][0]
    assert (
        listener["ListenerArn"] == listener_arn and listener["Port"] == 80 and listener["Protocol"] == "HTTP"
    )
    assert listener_arn.startswith(lb["LoadBalancerArn"].replace(":loadbalancer/", ":listener/"))
    assert listener["DefaultActions"] == [
        {
            "Type": "forward",
            "TargetGroupArn": tg_arn,
            "Order": 1,
            "ForwardConfig": {
                "TargetGroups": [{"TargetGroupArn": tg_arn, "Weight": 1}],
                "TargetGroupStickinessConfig": {"Enabled": False},
            },
        }
    ]
    forward = [{"Type": "forward", "TargetGroupArn": tg_arn}]
    with pytest.raises(ClientError) as excinfo:
        elbv2.create_listener(
            LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80, DefaultActions=forward
        )
    assert error(excinfo) == (
        "DuplicateListener",
        f"A listener already exists on this port for this load balancer '{lb['LoadBalancerArn']}'",
        400,
    )
    with pytest.raises(ClientError) as excinfo:
        elbv2.create_listener(
            LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTPS", Port=443, DefaultActions=forward
        )
    assert error(excinfo) == ("ValidationError", "A certificate must be specified for HTTPS listeners", 400)
    certificate = "arn:aws:acm:us-east-1:123456789012:certificate/12345678-1234-1234-1234-123456789012"
    https = elbv2.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="HTTPS",
        Port=443,
        Certificates=[{"CertificateArn": certificate}],
        DefaultActions=forward,
    )["Listeners"][0]
    assert (
        https["Certificates"] == [{"CertificateArn": certificate}]
        and https["SslPolicy"] == "ELBSecurityPolicy-2016-08"
    )
    tcp_tg = _tg(elbv2, {"vpc": lb["VpcId"]}, name="tcp-tg", protocol="TCP")["TargetGroupArn"]
    with pytest.raises(ClientError) as excinfo:
        elbv2.create_listener(
            LoadBalancerArn=lb["LoadBalancerArn"],
            Protocol="HTTP",
            Port=81,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": tcp_tg}],
        )
    assert error(excinfo) == (
        "InvalidConfigurationRequest",
        "Listener protocol 'HTTP' is not supported with a target group with the protocol 'TCP'",
        400,
    )
    modified = elbv2.modify_listener(ListenerArn=https["ListenerArn"], Port=8443)["Listeners"][0]
    assert modified["Port"] == 8443
    assert [
        li["Port"] for li in elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    ] == [80, 8443]


def test_rules_priorities_and_actions(elbv2: Any, ec2: Any) -> None:
    lb, tg_arn, listener_arn = _served(elbv2, ec2)
    other_tg = _tg(elbv2, {"vpc": lb["VpcId"]}, name="api-tg")["TargetGroupArn"]
    api_rule = elbv2.create_rule(
        ListenerArn=listener_arn,
        Priority=10,
        Conditions=[{"Field": "path-pattern", "Values": ["/api/*"]}],
        Actions=[
            {
                "Type": "forward",
                "ForwardConfig": {
                    "TargetGroups": [
                        {"TargetGroupArn": tg_arn, "Weight": 80},
                        {"TargetGroupArn": other_tg, "Weight": 20},
                    ]
                },
            }
        ],
    )["Rules"][0]
    assert api_rule["Priority"] == "10" and api_rule["IsDefault"] is False
    assert api_rule["Conditions"] == [
        {"Field": "path-pattern", "Values": ["/api/*"], "PathPatternConfig": {"Values": ["/api/*"]}}
    ]
    fixed = elbv2.create_rule(
        ListenerArn=listener_arn,
        Priority=20,
        Conditions=[{"Field": "http-request-method", "HttpRequestMethodConfig": {"Values": ["DELETE"]}}],
        Actions=[
            {
                "Type": "fixed-response",
                "FixedResponseConfig": {
                    "StatusCode": "403",
                    "ContentType": "text/plain",
                    "MessageBody": "no",
                },
            }
        ],
    )["Rules"][0]
    with pytest.raises(ClientError) as excinfo:
        elbv2.create_rule(
            ListenerArn=listener_arn,
            Priority=10,
            Conditions=[{"Field": "host-header", "Values": ["a.example.com"]}],
            Actions=[{"Type": "forward", "TargetGroupArn": tg_arn}],
        )
    assert error(excinfo) == ("PriorityInUse", "Priority '10' is currently in use", 400)
    with pytest.raises(ClientError) as excinfo:
        elbv2.create_rule(
            ListenerArn=listener_arn,
            Priority=30,
            Conditions=[{"Field": "host-header", "Values": ["a.example.com"]}],
            Actions=[{"Type": "redirect", "RedirectConfig": {"StatusCode": "HTTP_301"}}],
        )
    assert error(excinfo)[0] == "InvalidLoadBalancerAction"
    redirect = elbv2.create_rule(
        ListenerArn=listener_arn,
        Priority=30,
        Conditions=[{"Field": "host-header", "Values": ["old.example.com"]}],
        Actions=[
            {"Type": "redirect", "RedirectConfig": {"StatusCode": "HTTP_301", "Host": "new.example.com"}}
        ],
    )["Rules"][0]
    assert redirect["Actions"][0]["RedirectConfig"] == {
        "StatusCode": "HTTP_301",
        "Host": "new.example.com",
        "Protocol": "#{protocol}",
        "Port": "#{port}",
        "Path": "/#{path}",
        "Query": "#{query}",
    }
    rules = elbv2.describe_rules(ListenerArn=listener_arn)["Rules"]
    assert [r["Priority"] for r in rules] == ["10", "20", "30", "default"]
    assert rules[-1]["IsDefault"] is True and rules[-1]["Conditions"] == []
    swapped = elbv2.set_rule_priorities(
        RulePriorities=[
            {"RuleArn": api_rule["RuleArn"], "Priority": 20},
            {"RuleArn": fixed["RuleArn"], "Priority": 10},
        ]
    )["Rules"]
    assert {r["RuleArn"]: r["Priority"] for r in swapped} == {
        api_rule["RuleArn"]: "20",
        fixed["RuleArn"]: "10",
    }
    with pytest.raises(ClientError) as excinfo:
        elbv2.set_rule_priorities(RulePriorities=[{"RuleArn": api_rule["RuleArn"], "Priority": 30}])
    assert error(excinfo) == ("PriorityInUse", "Priority '30' is currently in use", 400)
    assert [r["RuleArn"] for r in elbv2.describe_rules(ListenerArn=listener_arn)["Rules"][:2]] == [
        fixed["RuleArn"],
        api_rule["RuleArn"],
    ]
    elbv2.modify_rule(
        RuleArn=fixed["RuleArn"],
        Conditions=[{"Field": "source-ip", "SourceIpConfig": {"Values": ["10.0.0.0/8"]}}],
    )
    assert (
        elbv2.describe_rules(RuleArns=[fixed["RuleArn"]])["Rules"][0]["Conditions"][0]["Field"] == "source-ip"
    )
    with pytest.raises(ClientError) as excinfo:
        elbv2.delete_rule(RuleArn=rules[-1]["RuleArn"])
    assert error(excinfo)[0] == "OperationNotPermitted"
    elbv2.delete_rule(RuleArn=redirect["RuleArn"])
    with pytest.raises(ClientError) as excinfo:
        elbv2.describe_rules(RuleArns=[redirect["RuleArn"]])
    assert error(excinfo)[0] == "RuleNotFound"
    assert sorted(
        elbv2.describe_target_groups(TargetGroupArns=[other_tg])["TargetGroups"][0]["LoadBalancerArns"]
    ) == [lb["LoadBalancerArn"]]


def test_tags_on_every_resource(elbv2: Any, ec2: Any) -> None:
    lb, tg_arn, listener_arn = _served(elbv2, ec2)
    arns = [lb["LoadBalancerArn"], tg_arn, listener_arn]
    elbv2.add_tags(ResourceArns=arns, Tags=[{"Key": "team", "Value": "web"}, {"Key": "env", "Value": "dev"}])
    elbv2.remove_tags(ResourceArns=[tg_arn], TagKeys=["env"])
    described = {
        d["ResourceArn"]: d["Tags"] for d in elbv2.describe_tags(ResourceArns=arns)["TagDescriptions"]
    }
    assert described[lb["LoadBalancerArn"]] == [
        {"Key": "env", "Value": "dev"},
        {"Key": "team", "Value": "web"},
    ]
    assert described[tg_arn] == [{"Key": "team", "Value": "web"}]
    with pytest.raises(ClientError) as excinfo:
        elbv2.add_tags(ResourceArns=[lb["LoadBalancerArn"]], Tags=[{"Key": "aws:x", "Value": "y"}])
    assert error(excinfo)[0] == "ValidationError"
    gone = lb["LoadBalancerArn"].replace(lb["LoadBalancerArn"].rsplit("/", 1)[1], "0" * 16)
    with pytest.raises(ClientError) as excinfo:
        elbv2.describe_tags(ResourceArns=[gone])
    assert error(excinfo) == ("LoadBalancerNotFound", f"Load balancers '[{gone}]' not found", 400)
    limits = {limit["Name"]: limit["Max"] for limit in elbv2.describe_account_limits()["Limits"]}
    assert limits["condition-values-per-alb-rule"] == "5"
