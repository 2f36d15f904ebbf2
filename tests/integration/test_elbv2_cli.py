"""An ALB built with the aws CLI: target group, ip targets, a listener and prioritised rules."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.server import InProcessServer


def _json(api: InProcessServer, *args: str) -> Any:
    return json.loads(api.aws(*args).stdout)


def test_alb_with_the_aws_cli(api: InProcessServer) -> None:
    vpc = _json(api, "ec2", "create-vpc", "--cidr-block", "10.30.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        _json(
            api,
            "ec2",
            "create-subnet",
            "--vpc-id",
            vpc,
            "--cidr-block",
            f"10.30.{n}.0/24",
            "--availability-zone",
            zone,
        )["Subnet"]["SubnetId"]
        for n, zone in ((1, "us-east-1a"), (2, "us-east-1b"))
    ]
    lb = _json(api, "elbv2", "create-load-balancer", "--name", "cli-alb", "--subnets", *subnets)[
        "LoadBalancers"
    ][0]
    assert lb["DNSName"].startswith("cli-alb-") and lb["DNSName"].endswith(".us-east-1.elb.amazonaws.com")
    tg = _json(
        api,
        "elbv2",
        "create-target-group",
        "--name",
        "cli-tg",
        "--protocol",
        "HTTP",
        "--port",
        "80",
        "--vpc-id",
        vpc,
        "--target-type",
        "ip",
        "--health-check-path",
        "/healthz",
    )["TargetGroups"][0]
    api.aws(
        "elbv2",
        "register-targets",
        "--target-group-arn",
        tg["TargetGroupArn"],
        "--targets",
        "Id=10.30.1.20",
        "Id=10.30.2.20,Port=8080",
    )
    listener = _json(
        api,
        "elbv2",
        "create-listener",
        "--load-balancer-arn",
        lb["LoadBalancerArn"],
        "--protocol",
        "HTTP",
        "--port",
        "80",
        "--default-actions",
        f"Type=forward,TargetGroupArn={tg['TargetGroupArn']}",
    )["Listeners"][0]
    api.aws(
        "elbv2",
        "create-rule",
        "--listener-arn",
        listener["ListenerArn"],
        "--priority",
        "10",
        "--conditions",
        "Field=path-pattern,Values=/static/*",
        "--actions",
        "Type=fixed-response,FixedResponseConfig={StatusCode=404,ContentType=text/plain,MessageBody=gone}",
    )
    api.aws(
        "elbv2",
        "create-rule",
        "--listener-arn",
        listener["ListenerArn"],
        "--priority",
        "5",
        "--conditions",
        "Field=host-header,Values=old.example.com",
        "--actions",
        "Type=redirect,RedirectConfig={StatusCode=HTTP_302,Host=new.example.com}",
    )
    rules = _json(api, "elbv2", "describe-rules", "--listener-arn", listener["ListenerArn"])["Rules"]
    assert [(r["Priority"], r["Actions"][0]["Type"]) for r in rules] == [
        ("5", "redirect"),
        ("10", "fixed-response"),
        ("default", "forward"),
    ]
    health = _json(api, "elbv2", "describe-target-health", "--target-group-arn", tg["TargetGroupArn"])[
        "TargetHealthDescriptions"
    ]
    assert [(d["Target"]["Id"], d["Target"]["Port"], d["TargetHealth"]["State"]) for d in health] == [
        ("10.30.1.20", 80, "initial"),
        ("10.30.2.20", 8080, "initial"),
    ]
    failed = api.aws("elbv2", "delete-target-group", "--target-group-arn", tg["TargetGroupArn"], check=False)
    assert failed.returncode != 0 and "ResourceInUse" in failed.stderr
    api.aws("elbv2", "delete-load-balancer", "--load-balancer-arn", lb["LoadBalancerArn"])
    api.aws(
        "elbv2", "delete-target-group", "--target-group-arn", tg["TargetGroupArn"]
    )  # free once the LB is gone
    assert _json(api, "elbv2", "describe-target-groups")["TargetGroups"] == []
