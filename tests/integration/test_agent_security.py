"""The agent API carries security groups: each task ENI's current groups and, per VPC, those groups' rules;
a rule change answers waiting long polls at once (the agents load it within milliseconds)."""

from __future__ import annotations

import threading
import time
from typing import Any

from tests.integration.ecs_support import awsvpc, default_subnets, register_web
from tests.integration.server import TaskvpcServer

PORT_80 = [{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]


def test_desired_state_carries_groups_and_rules(api: TaskvpcServer, agents: Any) -> None:
    agent = agents().start()
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    register_web(ecs)
    subnet = default_subnets(ec2)["us-east-1a"]
    vpc_id = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["VpcId"]
    web = ec2.create_security_group(GroupName="web", Description="web")["GroupId"]
    api_group = ec2.create_security_group(GroupName="api", Description="api")["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=PORT_80)
    ec2.authorize_security_group_ingress(
        GroupId=api_group,
        IpPermissions=[
            {"IpProtocol": "udp", "FromPort": 53, "ToPort": 54, "UserIdGroupPairs": [{"GroupId": web}]}
        ],
    )
    arn = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnet, groups=[web, api_group]))[
        "tasks"
    ][0]["taskArn"]
    answer = agent.poll()
    [task] = [t for t in answer["tasks"] if t["taskArn"] == arn]
    assert task["eni"]["securityGroupIds"] == [web, api_group]
    assert {g["vpcId"] for g in answer["securityGroups"]} == {vpc_id}
    groups = {g["groupId"]: g["rules"] for g in answer["securityGroups"]}
    assert set(groups) == {web, api_group}
    ingress_web = [r for r in groups[web] if r["direction"] == "ingress"]
    assert ingress_web == [
        {"direction": "ingress", "protocol": "tcp", "fromPort": 80, "toPort": 80, "cidrIpv4": "0.0.0.0/0"}
    ]
    egress_web = [r for r in groups[web] if r["direction"] == "egress"]
    assert egress_web == [
        {"direction": "egress", "protocol": "-1", "fromPort": None, "toPort": None, "cidrIpv4": "0.0.0.0/0"}
    ]
    [reference] = [r for r in groups[api_group] if r["direction"] == "ingress"]
    assert reference["groupId"] == web
    assert (reference["protocol"], reference["fromPort"], reference["toPort"]) == ("udp", 53, 54)
    assert agent.state is not None and agent.state.security_groups[vpc_id][web].ingress[0].from_port == 80


def test_rule_changes_answer_waiting_polls(api: TaskvpcServer, agents: Any) -> None:
    agent = agents().start()
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    register_web(ecs)
    subnet = default_subnets(ec2)["us-east-1a"]
    web = ec2.create_security_group(GroupName="web", Description="web")["GroupId"]
    ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnet, groups=[web]))
    agent.poll()
    for change in (
        lambda: ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=PORT_80),
        lambda: ec2.revoke_security_group_ingress(GroupId=web, IpPermissions=PORT_80),
    ):
        answers: list[tuple[float, dict[str, Any]]] = []
        poller = threading.Thread(
            target=lambda out=answers: out.append((time.monotonic(), agent.poll(wait=20)))
        )
        poller.start()
        time.sleep(0.3)  # the poll is waiting
        changed_at = time.monotonic()
        change()
        poller.join(timeout=10)
        answered_at, answer = answers[0]
        assert answer["changed"] is True
        assert answered_at - changed_at < 1.0
    rules = {g["groupId"]: g["rules"] for g in answer["securityGroups"]}[web]
    assert [r for r in rules if r["direction"] == "ingress"] == []  # revoked
