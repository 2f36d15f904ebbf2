"""ECS refuses to launch a task whose task or execution role it could not assume (a missing role, or one
whose trust policy does not admit ecs-tasks.amazonaws.com): RunTask and StartTask answer
InvalidParameterException and change nothing; a service is created (or updated) as on ECS, and each launch
fails with the service event "failed to launch a task with (error ECS was unable to assume the role ...)"."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.ecs_support import awsvpc, default_subnets, register_web
from tests.integration.server import ACCOUNT_ID, REGION, InProcessServer, aws_error

TRUST_ECS_TASKS = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": ACCOUNT_ID},
                "ArnLike": {"aws:SourceArn": f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:*"},
            },
        }
    ],
}
TRUST_EC2 = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}
TRUST_OTHER_ACCOUNT = {  # ecs-tasks admitted, but only for another account's tasks
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": "210987654321"}},
        }
    ],
}


def _role(api: InProcessServer, name: str, trust: dict[str, Any]) -> str:
    made = api.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    return str(made["Role"]["Arn"])


def _missing(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT_ID}:role/{name}"


def _unable(role_arn: str) -> tuple[str, str, int]:
    return (
        "InvalidParameterException",
        f"ECS was unable to assume the role '{role_arn}' that was provided for this task. Please verify "
        "that the role being passed has the proper trust relationship and permissions and that your IAM "
        "user has permissions to pass this role.",
        400,
    )


def _enis(api: InProcessServer) -> int:
    return len(api.client("ec2").describe_network_interfaces()["NetworkInterfaces"])


def test_run_task_refuses_a_role_ecs_could_not_assume_and_changes_nothing(
    api: InProcessServer, agents: Any
) -> None:
    agents().start(auto=True)
    ecs = api.client("ecs")
    subnet = default_subnets(api.client("ec2"))["us-east-1a"]
    good = _role(api, "app", TRUST_ECS_TASKS)
    ec2_only = _role(api, "ec2-only", TRUST_EC2)
    elsewhere = _role(api, "elsewhere", TRUST_OTHER_ACCOUNT)
    enis_before = _enis(api)
    cases = [
        ("missing-task", {"taskRoleArn": _missing("nope")}, _missing("nope")),
        ("missing-exec", {"executionRoleArn": _missing("exec")}, _missing("exec")),
        ("ec2-trust", {"taskRoleArn": ec2_only}, ec2_only),
        ("other-account", {"taskRoleArn": good, "executionRoleArn": elsewhere}, elsewhere),
    ]
    for family, roles, refused in cases:
        register_web(ecs, family, **roles)
        with pytest.raises(ClientError) as raised:
            ecs.run_task(taskDefinition=family, networkConfiguration=awsvpc(subnet))
        assert aws_error(raised) == _unable(refused), family
    assert ecs.list_tasks()["taskArns"] == [] and _enis(api) == enis_before

    # overrides.taskRoleArn is what the task would get: a bad override is refused over a good role,
    # a good override is accepted over a bad one
    register_web(ecs, "good", taskRoleArn=good)
    with pytest.raises(ClientError) as raised:
        ecs.run_task(
            taskDefinition="good", networkConfiguration=awsvpc(subnet), overrides={"taskRoleArn": ec2_only}
        )
    assert aws_error(raised) == _unable(ec2_only)
    assert ecs.list_tasks()["taskArns"] == [] and _enis(api) == enis_before
    run = ecs.run_task(
        taskDefinition="missing-task", networkConfiguration=awsvpc(subnet), overrides={"taskRoleArn": good}
    )
    assert run["failures"] == [] and run["tasks"][0]["overrides"]["taskRoleArn"] == good
    assert ecs.run_task(taskDefinition="good", networkConfiguration=awsvpc(subnet))["failures"] == []
    assert len(ecs.list_tasks()["taskArns"]) == 2


def test_start_task_refuses_a_role_ecs_could_not_assume(api: InProcessServer, agents: Any) -> None:
    agent = agents().start(auto=True)
    ecs = api.client("ecs")
    subnet = default_subnets(api.client("ec2"))["us-east-1a"]
    ec2_only = _role(api, "ec2-only", TRUST_EC2)
    register_web(ecs, taskRoleArn=ec2_only)
    with pytest.raises(ClientError) as raised:
        ecs.start_task(
            taskDefinition="web", containerInstances=[agent.arn], networkConfiguration=awsvpc(subnet)
        )
    assert aws_error(raised) == _unable(ec2_only)
    assert ecs.list_tasks()["taskArns"] == []
    good = _role(api, "app", TRUST_ECS_TASKS)
    started = ecs.start_task(
        taskDefinition="web",
        containerInstances=[agent.arn],
        networkConfiguration=awsvpc(subnet),
        overrides={"taskRoleArn": good},
    )
    assert started["failures"] == [] and len(started["tasks"]) == 1


def _events(ecs: Any, name: str) -> list[str]:
    [service] = ecs.describe_services(services=[name])["services"]
    return [e["message"] for e in service["events"]]


def _until(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition never held")
        time.sleep(0.1)


def test_a_service_whose_role_ecs_could_not_assume_fails_each_launch_with_an_event(
    api: InProcessServer,
) -> None:
    ecs = api.client("ecs")
    ecs.create_cluster(clusterName="default")
    subnet = default_subnets(api.client("ec2"))["us-east-1a"]
    register_web(ecs, "bad", executionRoleArn=_missing("exec"))
    network = awsvpc(subnet)
    created = ecs.create_service(
        serviceName="s", taskDefinition="bad", desiredCount=1, networkConfiguration=network
    )["service"]
    assert created["status"] == "ACTIVE"  # CreateService itself is not refused (boto/boto3#1878)
    expected = f"(service s) failed to launch a task with (error {_unable(_missing('exec'))[1]})."
    _until(lambda: expected in _events(ecs, "s"))
    assert ecs.list_tasks(serviceName="s")["taskArns"] == []

    good = _role(api, "app", TRUST_ECS_TASKS)
    register_web(ecs, "web", taskRoleArn=good)
    ecs.update_service(service="s", taskDefinition="web", desiredCount=0)
    [kept] = ecs.describe_services(services=["s"])["services"]
    assert kept["taskDefinition"].endswith(":task-definition/web:1")
