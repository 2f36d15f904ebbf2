"""The control plane's reconcile loops in a real ``taskvpc up`` with the real clock and short windows, on
SQLite and on PostgreSQL: stopped tasks disappear after their retention, a silent agent's instance shows
``agentConnected`` false, a task ENI no agent attached fails its task."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import BACKENDS
from tests.integration.ecs_support import awsvpc, default_subnets, describe, instance, register_web
from tests.integration.fake_agent import FakeAgent
from tests.integration.server import TaskvpcServer
from tests.support.pgserver import ThrowawayPostgres

RETENTION = 3.0
AGENT_TIMEOUT = 2.0
ATTACHMENT_TIMEOUT = 2.0
POLL_WAIT = 0.2  # the fake agents' long-poll wait: well inside AGENT_TIMEOUT
TIMEOUT_REASON = "Timeout waiting for network interface provisioning to complete."


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres: ThrowawayPostgres | None,
) -> Iterator[TaskvpcServer]:
    """A server whose reconcile windows are seconds, not the defaults' minutes and hours."""
    database_url = None
    if request.param == "postgres":
        if postgres is None:
            pytest.skip("TASKVPC_TEST_POSTGRES=0")
        database_url = postgres.create_database("t_test_reconcile")
    state_dir: Path = tmp_path_factory.mktemp(f"taskvpc-reconcile-{request.param}")
    flags = (
        "--stopped-task-retention", str(RETENTION),
        "--agent-timeout", str(AGENT_TIMEOUT),
        "--attachment-timeout", str(ATTACHMENT_TIMEOUT),
    )  # fmt: skip
    instance = TaskvpcServer(state_dir, database_url, extra_args=flags).start()
    try:
        yield instance
    finally:
        instance.stop()


def _until(check: Callable[[], Any], timeout: float = 20.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout} s: {check}")
        time.sleep(every)


def _run_one(api: TaskvpcServer) -> str:
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    register_web(ecs)
    subnet = default_subnets(ec2)["us-east-1a"]
    answer = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnet))
    assert answer["failures"] == [], answer
    arn: str = answer["tasks"][0]["taskArn"]
    return arn


def test_a_stopped_task_disappears_after_its_retention(
    api: TaskvpcServer, agents: Callable[..., FakeAgent]
) -> None:
    ecs = api.client("ecs")
    agents().start(auto=True, wait=POLL_WAIT)
    arn = _run_one(api)
    _until(lambda: describe(ecs, arn)["lastStatus"] == "RUNNING")
    ecs.stop_task(task=arn)
    stopped = _until(lambda: (t := describe(ecs, arn))["lastStatus"] == "STOPPED" and t)
    stopped_at = stopped["stoppedAt"].timestamp()
    assert ecs.list_tasks(desiredStatus="STOPPED")["taskArns"] == [arn]

    _until(lambda: ecs.describe_tasks(tasks=[arn])["failures"], timeout=RETENTION + 15)
    gone_at = time.time()
    assert gone_at - stopped_at >= RETENTION  # kept for its whole retention
    assert ecs.describe_tasks(tasks=[arn]) | {"ResponseMetadata": None} == {
        "tasks": [],
        "failures": [{"arn": arn, "reason": "MISSING"}],
        "ResponseMetadata": None,
    }
    assert ecs.list_tasks(desiredStatus="STOPPED")["taskArns"] == []


def test_agent_connected_follows_the_agents_polls(
    api: TaskvpcServer, agents: Callable[..., FakeAgent]
) -> None:
    ecs = api.client("ecs")
    agent = agents().start(wait=POLL_WAIT)
    shown = instance(ecs, agent.arn)
    assert shown["agentConnected"] is True
    agent.stop(timeout=POLL_WAIT + 5)
    silent_since = time.time()
    silent = _until(lambda: (i := instance(ecs, agent.arn))["agentConnected"] is False and i)
    assert time.time() - silent_since >= AGENT_TIMEOUT - POLL_WAIT - 0.2  # not before the timeout
    assert silent["version"] == shown["version"] + 1
    assert ecs.list_container_instances(filter="agentConnected == true")["containerInstanceArns"] == []

    agent.poll()  # it polls again: connected at once
    back = instance(ecs, agent.arn)
    assert back["agentConnected"] is True and back["version"] == shown["version"] + 2


def test_an_eni_no_agent_attaches_fails_its_task(
    api: TaskvpcServer, agents: Callable[..., FakeAgent]
) -> None:
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    agent = agents().start(wait=POLL_WAIT)  # polls, but never attaches anything
    subnet = default_subnets(ec2)["us-east-1a"]

    def free() -> int:
        count: int = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["AvailableIpAddressCount"]
        return count

    free_before = free()
    arn = _run_one(api)
    task = describe(ecs, arn)
    assert task["lastStatus"] == "PROVISIONING" and task["attachments"][0]["status"] == "PRECREATED"
    attachment_id = task["attachments"][0]["id"]
    enis = [
        e
        for e in ec2.describe_network_interfaces()["NetworkInterfaces"]
        if e["Description"].endswith(f"attachment/{attachment_id}")
    ]
    assert len(enis) == 1 and free() == free_before - 1
    agent.wait_for_task(arn)

    stopped = _until(lambda: (t := describe(ecs, arn))["lastStatus"] == "STOPPED" and t)
    assert (stopped["stoppedAt"] - stopped["createdAt"]).total_seconds() >= ATTACHMENT_TIMEOUT
    assert (stopped["desiredStatus"], stopped["stopCode"]) == ("STOPPED", "TaskFailedToStart")
    assert stopped["stoppedReason"] == TIMEOUT_REASON
    assert stopped["attachments"][0]["status"] == "DELETED"
    assert free() == free_before  # the address is free again
    ids = [e["NetworkInterfaceId"] for e in ec2.describe_network_interfaces()["NetworkInterfaces"]]
    assert enis[0]["NetworkInterfaceId"] not in ids
    # the agent's desired state drops the task
    agent.wait_for(lambda d: all(t["taskArn"] != arn for t in d.get("tasks", [])))
