"""The awslogs driver end to end: `taskvpc up` as root (runc), a task definition with awslogs and an
execution role laid out as the AWS console writes it, its container's lines read back with the `aws` CLI
(get-log-events, filter-log-events), and a kill -9 of the agent mid-stream that loses nothing and
duplicates nothing. `taskvpc logs` keeps showing the same output.

The machine's `aws` is CLI v1, which has no `aws logs tail` (a v2 customisation); Debian's CLI v2 at
/usr/bin/aws shows the task's lines with it (tests/support/awscli_v2.py; --follow is tested in
tests/integration/test_logs_tail_v2.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from typing import Any

import pytest

from tests.integration.server import VENV_BIN
from tests.root.test_walkthrough import agent_pids, wait_for
from tests.root.upserver import RootServer
from tests.support import awscli_v2

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: real namespaces, links and processes"),
]

LINES = 600
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


def console_task_definition(role_arn: str) -> dict[str, Any]:
    """What the ECS console's "Create new task definition" (EC2, awsvpc, log collection on) produces."""
    return {
        "family": "console-logs",
        "containerDefinitions": [
            {
                "name": "web",
                "image": "public.ecr.aws/docker/library/busybox:stable",
                "cpu": 0,
                "portMappings": [
                    {
                        "name": "web-80-tcp",
                        "containerPort": 80,
                        "hostPort": 80,
                        "protocol": "tcp",
                        "appProtocol": "http",
                    }
                ],
                "essential": True,
                "entryPoint": ["sh", "-c"],
                "command": [
                    f'for i in $(seq 1 {LINES}); do echo "line $i"; usleep 5000; done; exec sleep 600'
                ],
                "environment": [],
                "environmentFiles": [],
                "mountPoints": [],
                "volumesFrom": [],
                "ulimits": [],
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": "/ecs/console-logs",
                        "mode": "non-blocking",
                        "awslogs-create-group": "true",
                        "max-buffer-size": "25m",
                        "awslogs-region": "us-east-1",
                        "awslogs-stream-prefix": "ecs",
                    },
                    "secretOptions": [],
                },
                "systemControls": [],
            }
        ],
        "executionRoleArn": role_arn,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["EC2"],
        "cpu": "256",
        "memory": "512",
        "runtimePlatform": {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
    }


def execution_role(server: RootServer) -> str:
    iam = server.client("iam")
    arn = str(
        iam.create_role(RoleName="ecsTaskExecutionRole", AssumeRolePolicyDocument=json.dumps(TRUST))["Role"][
            "Arn"
        ]
    )
    iam.attach_role_policy(
        RoleName="ecsTaskExecutionRole",
        PolicyArn="arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy",
    )
    # awslogs-create-group needs logs:CreateLogGroup, which the managed policy lacks (as on AWS)
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "logs:CreateLogGroup", "Resource": "*"}],
    }
    iam.put_role_policy(
        RoleName="ecsTaskExecutionRole", PolicyName="create-group", PolicyDocument=json.dumps(policy)
    )
    return arn


def cli_events(server: RootServer, stream: str) -> list[str]:
    out = server.aws(
        "logs",
        "get-log-events",
        "--log-group-name",
        "/ecs/console-logs",
        "--log-stream-name",
        stream,
        "--start-from-head",
        "--output",
        "json",
    ).stdout
    return [e["message"] for e in json.loads(out)["events"]]


def test_console_task_definition_ships_its_lines_through_an_agent_restart(root_server: RootServer) -> None:
    server = root_server
    ecs, ec2 = server.client("ecs"), server.client("ec2")
    execution_role_arn = execution_role(server)
    ecs.register_task_definition(**console_task_definition(execution_role_arn))
    [instance] = ecs.describe_container_instances(
        cluster="default",
        containerInstances=ecs.list_container_instances(cluster="default")["containerInstanceArns"],
    )["containerInstances"]
    attributes = {a["name"]: a.get("value") for a in instance["attributes"]}
    assert "com.amazonaws.ecs.capability.logging-driver.awslogs" in attributes
    assert "ecs.capability.execution-role-awslogs" in attributes
    [subnet] = ec2.describe_subnets(
        Filters=[
            {"Name": "default-for-az", "Values": ["true"]},
            {"Name": "availability-zone", "Values": [attributes["ecs.availability-zone"]]},
        ]
    )["Subnets"]
    run = ecs.run_task(
        cluster="default",
        taskDefinition="console-logs",
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet["SubnetId"]]}},
    )
    assert run["failures"] == []
    arn = run["tasks"][0]["taskArn"]
    ecs.get_waiter("tasks_running").wait(cluster="default", tasks=[arn], WaiterConfig={"Delay": 1})
    expected = [f"line {i}" for i in range(1, LINES + 1)]
    try:
        task_id = arn.rsplit("/", 1)[-1]
        stream = f"ecs/web/{task_id}"

        # some lines are in CloudWatch Logs while the container is still writing: kill -9 the agent
        wait_for(lambda: len(cli_events(server, stream)) >= 50, timeout=30)
        [old_agent] = agent_pids(server)
        os.kill(old_agent, signal.SIGKILL)
        seen_at_kill = len(cli_events(server, stream))
        assert seen_at_kill < LINES, "the container finished before the agent was killed: nothing was tested"
        wait_for(lambda: agent_pids(server) not in ([], [old_agent]))

        wait_for(lambda: len(cli_events(server, stream)) >= LINES, timeout=60)
        assert cli_events(server, stream) == expected  # every line once, in order, across the restart

        filtered = server.aws(
            "logs", "filter-log-events", "--log-group-name", "/ecs/console-logs", "--output", "json"
        ).stdout
        events = json.loads(filtered)["events"]
        assert [e["message"] for e in events] == expected
        assert {e["logStreamName"] for e in events} == {stream}
        assert len({e["eventId"] for e in events}) == LINES
        if awscli_v2.available():  # `aws logs tail` (CLI v2) shows the same lines, each once
            tail = awscli_v2.run(
                server, "logs", "tail", "/ecs/console-logs", "--since", "1h", "--format", "short"
            )
            assert [line.split(" ", 1)[1] for line in tail.stdout.splitlines()] == expected

        # the output is still on the host for `taskvpc logs`, as for every driver
        printed = subprocess.run(
            [str(VENV_BIN / "taskvpc"), "logs", task_id, "web", "--state-dir", str(server.state_dir)],
            capture_output=True,
            text=True,
            check=True,
            env=server.env(),
        ).stdout
        assert printed.splitlines() == expected
    finally:
        ecs.stop_task(cluster="default", task=arn)
        ecs.get_waiter("tasks_stopped").wait(cluster="default", tasks=[arn], WaiterConfig={"Delay": 1})
    assert cli_events(server, stream) == expected  # stopping adds nothing twice

    # a group that does not exist, without awslogs-create-group: the task fails as Docker's driver fails it
    missing = console_task_definition(execution_role_arn)
    missing["family"] = "no-group"
    options = missing["containerDefinitions"][0]["logConfiguration"]["options"]
    options["awslogs-group"] = "/ecs/absent"
    del options["awslogs-create-group"]
    ecs.register_task_definition(**missing)
    arn = ecs.run_task(
        cluster="default",
        taskDefinition="no-group",
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet["SubnetId"]]}},
    )["tasks"][0]["taskArn"]
    ecs.get_waiter("tasks_stopped").wait(cluster="default", tasks=[arn], WaiterConfig={"Delay": 1})
    task = ecs.describe_tasks(cluster="default", tasks=[arn])["tasks"][0]
    assert task["stopCode"] == "TaskFailedToStart"
    assert task["stoppedReason"] == (
        "CannotStartContainerError: failed to initialize logging driver: failed to create Cloudwatch log "
        "stream: ResourceNotFoundException: The specified log group does not exist."
    )
