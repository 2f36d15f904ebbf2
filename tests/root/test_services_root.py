"""Services for real: `taskvpc up` as root with its local agent (runc where installed), the plain `aws`
CLI: a 3-task awsvpc service reaches a steady state and serves the page from each task's own IP, a
killed container is replaced, an UpdateService rolls to a new revision, a Fargate service runs on the
machine's Fargate capacity, and deleting the services leaves a clean host."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import pytest

from tests.root.upserver import REPO, RootServer, container_processes, fetch, web_group

pytestmark = [
    pytest.mark.root,
]


def _json(server: RootServer, *args: str) -> Any:
    return json.loads(server.aws(*args).stdout)


def _addresses(server: RootServer, service: str) -> dict[str, str]:
    """Task ARN -> private IP of the service's running tasks."""
    arns = _json(server, "ecs", "list-tasks", "--service-name", service)["taskArns"]
    if not arns:
        return {}
    tasks = _json(server, "ecs", "describe-tasks", "--tasks", *arns)["tasks"]
    found = {}
    for task in tasks:
        if task["lastStatus"] == "RUNNING":
            details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
            found[task["taskArn"]] = details["privateIPv4Address"]
    return found


def _wait(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.2)


def test_services_on_the_local_agent_and_on_fargate(root_server: RootServer) -> None:
    aws = root_server.aws
    aws(
        "ecs",
        "register-task-definition",
        "--cli-input-json",
        f"file://{REPO / 'examples' / 'linux-simple-web.json'}",
    )
    subnets = _json(root_server, "ec2", "describe-subnets", "--filters", "Name=default-for-az,Values=true")
    subnet = sorted(subnets["Subnets"], key=lambda s: s["AvailabilityZone"])[0]["SubnetId"]
    network = f"awsvpcConfiguration={{subnets=[{subnet}],securityGroups=[{web_group(root_server)}]}}"
    aws("ecs", "create-service", "--service-name", "web", "--task-definition", "linux-simple-web",
        "--desired-count", "3", "--network-configuration", network,
        "--deployment-configuration", "minimumHealthyPercent=50,maximumPercent=150")  # fmt: skip
    aws("ecs", "wait", "services-stable", "--services", "web")
    first = _addresses(root_server, "web")
    assert len(first) == 3 and len(set(first.values())) == 3
    for address in first.values():
        assert "Amazon ECS Sample App" in fetch(f"http://{address}/")
    events = [e["message"] for e in _json(root_server, "ecs", "describe-services", "--services", "web")[
        "services"][0]["events"]]  # fmt: skip
    assert events[0] == "(service web) has reached a steady state."

    # A container killed under the service: its task stops (essential exit) and is replaced.
    _shim, victim = container_processes(root_server.state_dir)[0]
    os.kill(victim, signal.SIGKILL)
    _wait(lambda: len(set(_addresses(root_server, "web")) - set(first)) >= 1)
    aws("ecs", "wait", "services-stable", "--services", "web")
    assert len(_addresses(root_server, "web")) == 3

    # A new revision rolls out and every task then runs it.
    revision = _json(root_server, "ecs", "register-task-definition", "--cli-input-json",
                     f"file://{REPO / 'examples' / 'linux-simple-web.json'}")["taskDefinition"]  # fmt: skip
    aws("ecs", "update-service", "--service", "web", "--task-definition", revision["taskDefinitionArn"])
    _wait(lambda: _json(root_server, "ecs", "describe-services", "--services", "web")["services"][0][
        "deployments"][0]["rolloutState"] == "COMPLETED", timeout=120)  # fmt: skip
    aws("ecs", "wait", "services-stable", "--services", "web")
    rolled = _addresses(root_server, "web")
    tasks = _json(root_server, "ecs", "describe-tasks", "--tasks", *rolled)["tasks"]
    assert {t["taskDefinitionArn"] for t in tasks} == {revision["taskDefinitionArn"]}
    for address in rolled.values():
        assert "Amazon ECS Sample App" in fetch(f"http://{address}/")

    # The same task on Fargate: the local agent is the machine's Fargate capacity.
    aws("ecs", "create-service", "--service-name", "edge", "--task-definition", "linux-simple-web",
        "--desired-count", "2", "--launch-type", "FARGATE", "--network-configuration", network)  # fmt: skip
    aws("ecs", "wait", "services-stable", "--services", "edge")
    edge = _addresses(root_server, "edge")
    described = _json(root_server, "ecs", "describe-tasks", "--tasks", *edge)["tasks"]
    assert all("containerInstanceArn" not in t and t["launchType"] == "FARGATE" for t in described)
    assert {t["platformVersion"] for t in described} == {"1.4.0"}
    for address in edge.values():
        assert "Amazon ECS Sample App" in fetch(f"http://{address}/")

    for name in ("web", "edge"):
        aws("ecs", "delete-service", "--service", name, "--force")
    aws("ecs", "wait", "services-inactive", "--services", "web", "edge")
    _wait(lambda: not container_processes(root_server.state_dir) or all(
        not os.path.exists(f"/proc/{pid}") for _shim, pid in container_processes(root_server.state_dir)))  # fmt: skip
