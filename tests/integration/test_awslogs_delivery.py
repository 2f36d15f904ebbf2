"""The awslogs driver's report/ack path (docs/logs.md, "awslogs"): ``logEvents`` in an agent's report land
in the container's stream exactly once, acknowledged by the container's cursor, on SQLite and PostgreSQL;
the group and stream rules of Docker's driver and the execution role's permissions decide as ECS would."""

from __future__ import annotations

import json
from typing import Any

import pytest

from taskvpc.agentapi.logdriver import LogDelivery
from tests.integration.ecs_support import WEB_CONTAINER, awsvpc, default_subnets, register_web
from tests.integration.fake_agent import AgentError, FakeAgent
from tests.integration.server import Server

TRUST_ECS_TASKS = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}
EXECUTION_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"


def awslogs(**options: str) -> dict[str, Any]:
    base = {"awslogs-group": "/ecs/web", "awslogs-region": "us-east-1", "awslogs-stream-prefix": "ecs"}
    return {"logDriver": "awslogs", "options": {**base, **options}}


def run_logging_task(api: Server, agent: FakeAgent, log: dict[str, Any], **extra: Any) -> str:
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    register_web(ecs, containers=[{**WEB_CONTAINER, "logConfiguration": log}], **extra)
    subnet = default_subnets(ec2)[agent.zone]
    run = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnet))
    assert run["failures"] == []
    arn = run["tasks"][0]["taskArn"]
    agent.poll()
    return str(arn)


def send(agent: FakeAgent, *deliveries: LogDelivery) -> list[dict[str, Any]]:
    answer = agent.request(
        "POST", f"/instances/{agent.id}/report", {"tasks": [], "logEvents": [d.to_wire() for d in deliveries]}
    )
    assert isinstance(answer["generation"], int)
    acks: list[dict[str, Any]] = answer["logAcks"]
    return acks


def events(api: Server, stream: str, group: str = "/ecs/web") -> list[str]:
    logs = api.client("logs")
    found = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)["events"]
    return [e["message"] for e in found]


@pytest.fixture()
def agent(api: Server, agents: Any) -> FakeAgent:
    made: FakeAgent = agents()
    made.zone = made.register()["availabilityZone"]  # type: ignore[attr-defined]
    made.poll()  # connected: placement takes it
    return made


def test_events_are_stored_once_and_acknowledged_by_the_cursor(api: Server, agent: FakeAgent) -> None:
    api.client("logs").create_log_group(logGroupName="/ecs/web")
    arn = run_logging_task(api, agent, awslogs())
    task_id = arn.rsplit("/", 1)[-1]
    stream = f"ecs/web/{task_id}"
    [opened] = send(agent, LogDelivery(arn, "web", stream))
    assert opened == {"taskArn": arn, "container": "web", "next": 0}
    streams = api.client("logs").describe_log_streams(logGroupName="/ecs/web")["logStreams"]
    assert [s["logStreamName"] for s in streams] == [stream]

    batch = tuple((1_700_000_000_000 + i, f"line {i}") for i in range(5))
    assert send(agent, LogDelivery(arn, "web", stream, 0, batch[:3]))[0]["next"] == 3
    # the agent restarted before it saved the ack: it sends from 0 again, with more
    assert send(agent, LogDelivery(arn, "web", stream, 0, batch))[0]["next"] == 5
    assert send(agent, LogDelivery(arn, "web", stream, 2, batch[2:]))[0]["next"] == 5
    assert events(api, stream) == [f"line {i}" for i in range(5)]
    # a gap (lines the agent dropped in non-blocking mode) is no reason to refuse what comes after
    assert send(agent, LogDelivery(arn, "web", stream, 9, ((1_700_000_000_100, "late"),)))[0]["next"] == 10
    assert events(api, stream)[-1] == "late"


def test_create_group_creates_it_and_a_missing_group_is_refused(api: Server, agent: FakeAgent) -> None:
    arn = run_logging_task(api, agent, awslogs())
    stream = f"ecs/web/{arn.rsplit('/', 1)[-1]}"
    [ack] = send(agent, LogDelivery(arn, "web", stream))
    assert ack["error"] == {
        "code": "ResourceNotFoundException",
        "message": "The specified log group does not exist.",
    }
    assert api.client("logs").describe_log_groups()["logGroups"] == []

    arn = run_logging_task(api, agent, awslogs(**{"awslogs-create-group": "true"}))
    stream = f"ecs/web/{arn.rsplit('/', 1)[-1]}"
    assert "error" not in send(agent, LogDelivery(arn, "web", stream, 0, ((1, "hello"),)))[0]
    assert [g["logGroupName"] for g in api.client("logs").describe_log_groups()["logGroups"]] == ["/ecs/web"]
    assert events(api, stream) == ["hello"]


def test_the_execution_role_decides_as_ecs_agent_s_credentials_would(api: Server, agent: FakeAgent) -> None:
    iam = api.client("iam")
    role = iam.create_role(
        RoleName="ecsTaskExecutionRole", AssumeRolePolicyDocument=json.dumps(TRUST_ECS_TASKS)
    )
    iam.attach_role_policy(RoleName="ecsTaskExecutionRole", PolicyArn=EXECUTION_POLICY)
    role_arn = role["Role"]["Arn"]
    account = role_arn.split(":")[4]
    options = awslogs(**{"awslogs-create-group": "true"})
    arn = run_logging_task(api, agent, options, executionRoleArn=role_arn)
    task_id = arn.rsplit("/", 1)[-1]
    stream = f"ecs/web/{task_id}"
    # the managed policy has no logs:CreateLogGroup (a known ECS pitfall with awslogs-create-group)
    [ack] = send(agent, LogDelivery(arn, "web", stream))
    assert ack["error"]["code"] == "AccessDeniedException"
    assert ack["error"]["message"] == (
        f"User: arn:aws:sts::{account}:assumed-role/ecsTaskExecutionRole/{task_id} is not authorized to "
        f"perform: logs:CreateLogGroup on resource: arn:aws:logs:us-east-1:{account}:log-group:/ecs/web "
        "because no identity-based policy allows the logs:CreateLogGroup action"
    )
    iam.put_role_policy(
        RoleName="ecsTaskExecutionRole",
        PolicyName="groups",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "logs:CreateLogGroup", "Resource": "*"}],
            }
        ),
    )
    assert send(agent, LogDelivery(arn, "web", stream, 0, ((1, "permitted"),)))[0]["next"] == 1
    assert events(api, stream) == ["permitted"]

    iam.update_assume_role_policy(
        RoleName="ecsTaskExecutionRole",
        PolicyDocument=json.dumps(
            {**TRUST_ECS_TASKS, "Statement": [{**TRUST_ECS_TASKS["Statement"][0], "Effect": "Deny"}]}
        ),  # type: ignore[dict-item]
    )
    [ack] = send(agent, LogDelivery(arn, "web", stream, 1, ((2, "refused"),)))
    assert ack["error"]["code"] == "AccessDeniedException"
    assert "ECS was unable to assume the role" in ack["error"]["message"]
    assert events(api, stream) == ["permitted"]


def test_an_agent_writes_only_its_own_tasks_streams(api: Server, agent: FakeAgent, agents: Any) -> None:
    api.client("logs").create_log_group(logGroupName="/ecs/web")
    arn = run_logging_task(api, agent, awslogs())
    stream = f"ecs/web/{arn.rsplit('/', 1)[-1]}"
    other = agents()
    other.register()
    [ack] = send(other, LogDelivery(arn, "web", stream, 0, ((1, "x"),)))
    assert ack["error"]["code"] == "ResourceNotFoundException"
    [ack] = send(agent, LogDelivery(arn, "web", "elsewhere", 0, ((1, "x"),)))
    assert ack["error"] == {
        "code": "InvalidParameterException",
        "message": f"The log stream of container web is {stream}.",
    }
    [ack] = send(agent, LogDelivery(arn, "nope", stream, 0, ((1, "x"),)))
    assert ack["error"]["code"] == "InvalidParameterException"
    assert api.client("logs").describe_log_streams(logGroupName="/ecs/web")["logStreams"] == []


def test_options_docker_refuses_are_refused_and_a_malformed_entry_is_a_bad_request(
    api: Server, agent: FakeAgent
) -> None:
    log = awslogs(**{"awslogs-datetime-format": "%Y", "awslogs-multiline-pattern": "^x"})
    arn = run_logging_task(api, agent, log)
    [ack] = send(agent, LogDelivery(arn, "web", f"ecs/web/{arn.rsplit('/', 1)[-1]}"))
    assert ack["error"]["code"] == "InvalidParameterException"
    assert "at the same time" in ack["error"]["message"]
    with pytest.raises(AgentError) as info:
        agent.request("POST", f"/instances/{agent.id}/report", {"tasks": [], "logEvents": [{"taskArn": arn}]})
    assert info.value.status == 400 and info.value.payload["code"] == "BadRequest"


def test_the_desired_state_carries_log_configuration(api: Server, agent: FakeAgent) -> None:
    arn = run_logging_task(api, agent, awslogs(mode="non-blocking", **{"max-buffer-size": "25m"}))
    assert agent.state is not None
    [task] = [t for t in agent.state.tasks if t.arn == arn]
    config = task.containers[0].log_configuration
    assert config is not None and config.driver == "awslogs"
    assert config.option("max-buffer-size") == "25m" and config.option("awslogs-stream-prefix") == "ecs"
