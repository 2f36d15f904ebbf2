"""ECS services against the real server (SQLite and PostgreSQL) with fake agents: create, steady state,
replacement of a stopped task, rolling deployments within the percentages, the circuit breaker, delete,
and the botocore waiters against DescribeServices."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.ecs_support import WEB_CONTAINER, awsvpc, default_subnets, error_of, register_web
from tests.integration.fake_agent import FakeAgent
from tests.integration.server import TaskvpcServer

WAIT = {"Delay": 1, "MaxAttempts": 60}


class CrashingAgent(FakeAgent):
    """An automatic agent whose tasks of the ``crash`` families exit at once (essential container)."""

    crash: frozenset[str] = frozenset()

    def _react(self, answer: dict[str, Any]) -> None:
        for entry in answer.get("tasks", []):
            arn = entry["taskArn"]
            if (
                entry["desiredStatus"] == "RUNNING"
                and entry["family"] in self.crash
                and arn not in self._handled
            ):
                self._handled[arn] = "STOPPED"
                self.stopped(arn, exit_code=1)
        super()._react(answer)


class SickAgent(FakeAgent):
    """An automatic agent whose containers report UNHEALTHY once running (for the ``sick`` family)."""

    def _react(self, answer: dict[str, Any]) -> None:
        for entry in answer.get("tasks", []):
            arn = entry["taskArn"]
            if entry["desiredStatus"] == "RUNNING" and entry["family"] == "sick" and arn not in self._handled:
                self._handled[arn] = "RUNNING"
                self.running(arn, health="UNHEALTHY")
        super()._react(answer)


def _service(ecs: Any, name: str = "web") -> dict[str, Any]:
    found: dict[str, Any] = ecs.describe_services(services=[name])["services"][0]
    return found


def _until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition never held")
        time.sleep(0.1)


def _create(ecs: Any, ec2: Any, count: int = 3, **extra: Any) -> dict[str, Any]:
    subnets = list(default_subnets(ec2).values())
    service: dict[str, Any] = ecs.create_service(
        serviceName="web",
        taskDefinition="web",
        desiredCount=count,
        networkConfiguration=awsvpc(*subnets),
        **extra,
    )["service"]
    return service


def test_a_service_reaches_steady_state_and_replaces_a_stopped_task(api: TaskvpcServer, agents: Any) -> None:
    agent = agents(max_task_enis=10).start(auto=True)
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    register_web(ecs)
    created = _create(
        ecs, ec2, enableECSManagedTags=True, propagateTags="SERVICE", tags=[{"key": "team", "value": "a"}]
    )
    assert created["status"] == "ACTIVE" and created["desiredCount"] == 3 and created["launchType"] == "EC2"
    assert created["deployments"][0]["status"] == "PRIMARY"
    assert created["deployments"][0]["id"].startswith("ecs-svc/")
    ecs.get_waiter("services_stable").wait(services=["web"], WaiterConfig=WAIT)
    service = _service(ecs)
    assert service["runningCount"] == 3 and service["pendingCount"] == 0
    assert service["deployments"][0]["rolloutState"] == "COMPLETED"
    messages = [e["message"] for e in service["events"]]
    assert messages[0] == "(service web) has reached a steady state."
    assert any(m.startswith("(service web) has started 3 tasks: (task ") for m in messages)
    assert f"(service web) (deployment {created['deployments'][0]['id']}) deployment completed." in messages
    arns = ecs.list_tasks(serviceName="web")["taskArns"]
    assert len(arns) == 3
    task = ecs.describe_tasks(tasks=[arns[0]], include=["TAGS"])["tasks"][0]
    assert task["group"] == "service:web"
    assert task["startedBy"] == created["deployments"][0]["id"]
    assert {t["key"]: t["value"] for t in task["tags"]} == {
        "team": "a",
        "aws:ecs:clusterName": "default",
        "aws:ecs:serviceName": "web",
    }
    # A task whose container exits is replaced.
    agent.stopped(arns[0], exit_code=1)
    _until(lambda: len(set(ecs.list_tasks(serviceName="web")["taskArns"]) - set(arns)) == 1)
    ecs.get_waiter("services_stable").wait(services=["web"], WaiterConfig=WAIT)
    assert _service(ecs)["runningCount"] == 3
    assert agent.errors == []


def _watch_running(ecs: Any, stop: threading.Event, seen: list[int]) -> None:
    while not stop.is_set():
        arns = ecs.list_tasks(serviceName="web")["taskArns"]
        tasks = ecs.describe_tasks(tasks=arns)["tasks"] if arns else []
        seen.append(sum(1 for t in tasks if t["lastStatus"] == "RUNNING"))
        up = sum(1 for t in tasks if t["lastStatus"] != "STOPPED")
        seen.append(-up)  # negative: tasks up, kept beside the running count
        time.sleep(0.05)


def test_update_service_rolls_within_the_percentages(api: TaskvpcServer, agents: Any) -> None:
    agents(max_task_enis=10).start(auto=True)
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    register_web(ecs)
    _create(ecs, ec2, count=4, deploymentConfiguration={"minimumHealthyPercent": 50, "maximumPercent": 150})
    ecs.get_waiter("services_stable").wait(services=["web"], WaiterConfig=WAIT)
    second = register_web(ecs)
    stop, seen = threading.Event(), []
    watcher = threading.Thread(target=_watch_running, args=(ecs, stop, seen), daemon=True)
    watcher.start()
    try:
        updated = ecs.update_service(service="web", taskDefinition=second["taskDefinitionArn"])["service"]
        assert [d["status"] for d in updated["deployments"]] == ["PRIMARY", "ACTIVE"]
        _until(lambda: _service(ecs)["deployments"][0]["rolloutState"] == "COMPLETED", timeout=60)
        ecs.get_waiter("services_stable").wait(services=["web"], WaiterConfig=WAIT)
    finally:
        stop.set()
        watcher.join(timeout=5)
    running = [n for n in seen if n >= 0]
    up = [-n for n in seen if n < 0]
    assert min(running) >= 2, running  # 50 % of 4
    assert max(up) <= 6, up  # 150 % of 4
    service = _service(ecs)
    assert service["taskDefinition"] == second["taskDefinitionArn"]
    assert len(service["deployments"]) == 1
    tasks = ecs.describe_tasks(tasks=ecs.list_tasks(serviceName="web")["taskArns"])["tasks"]
    assert {t["taskDefinitionArn"] for t in tasks} == {second["taskDefinitionArn"]}


def test_circuit_breaker_rolls_back_a_revision_that_exits_at_once(api: TaskvpcServer, agents: Any) -> None:
    agent = agents(max_task_enis=10)
    agent.__class__ = CrashingAgent
    agent.crash = frozenset({"crashing"})
    agent.start(auto=True)
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    first = register_web(ecs)
    _create(
        ecs,
        ec2,
        deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": True}},
    )
    ecs.get_waiter("services_stable").wait(services=["web"], WaiterConfig=WAIT)
    stable_id = _service(ecs)["deployments"][0]["id"]
    bad = register_web(ecs, family="crashing")
    failing = ecs.update_service(service="web", taskDefinition=bad["taskDefinitionArn"])["service"]
    failing_id = failing["deployments"][0]["id"]
    _until(
        lambda: any(
            d["id"] == failing_id and d["rolloutState"] == "FAILED" for d in _service(ecs)["deployments"]
        ),
        60,
    )
    ecs.get_waiter("services_stable").wait(services=["web"], WaiterConfig=WAIT)
    service = _service(ecs)
    assert service["taskDefinition"] == first["taskDefinitionArn"]
    messages = [e["message"] for e in service["events"]]
    assert f"(service web) (deployment {failing_id}) deployment failed: tasks failed to start." in messages
    assert f"(service web) rolling back to deployment {stable_id}." in messages
    assert service["runningCount"] == 3


def test_service_errors_and_delete(api: TaskvpcServer, agents: Any) -> None:
    agents(max_task_enis=10).start(auto=True)
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    register_web(ecs)
    with pytest.raises(ClientError) as excinfo:
        ecs.create_service(serviceName="web", taskDefinition="web", desiredCount=1)
    assert error_of(excinfo) == (
        "InvalidParameterException",
        "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
    )
    with pytest.raises(ClientError) as excinfo:
        ecs.create_service(serviceName="web", taskDefinition="web", launchType="EC2", desiredCount=1,
                           capacityProviderStrategy=[{"capacityProvider": "FARGATE"}])  # fmt: skip
    assert error_of(excinfo)[1].startswith("Specifying both a launch type and capacity provider strategy")
    _create(ecs, ec2, count=1)
    with pytest.raises(ClientError) as excinfo:
        _create(ecs, ec2, count=1)
    assert error_of(excinfo) == ("InvalidParameterException", "Creation of service was not idempotent.")
    with pytest.raises(ClientError) as excinfo:
        ecs.update_service(service="nope", desiredCount=1)
    assert error_of(excinfo) == ("ServiceNotFoundException", "Service not found.")
    with pytest.raises(ClientError) as excinfo:
        ecs.delete_service(service="web")
    assert error_of(excinfo) == (
        "InvalidParameterException",
        "The service cannot be stopped while it is scaled above 0.",
    )
    described = ecs.describe_services(services=["web", "ghost"])
    assert described["failures"] == [
        {"arn": "arn:aws:ecs:us-east-1:123456789012:service/default/ghost", "reason": "MISSING"}
    ]
    assert ecs.list_services()["serviceArns"] == ["arn:aws:ecs:us-east-1:123456789012:service/default/web"]
    ecs.get_waiter("services_stable").wait(services=["web"], WaiterConfig=WAIT)
    deleted = ecs.delete_service(service="web", force=True)["service"]
    assert deleted["status"] == "DRAINING"
    ecs.get_waiter("services_inactive").wait(services=["web"], WaiterConfig=WAIT)
    assert ecs.list_tasks(serviceName="web")["taskArns"] == []
    assert ecs.list_services()["serviceArns"] == []


def test_a_daemon_service_runs_one_task_per_instance(api: TaskvpcServer, agents: Any) -> None:
    first = agents(max_task_enis=10).start(auto=True)
    ecs = api.client("ecs")
    register_web(ecs, family="daemon", network_mode="bridge")
    ecs.create_service(serviceName="web", taskDefinition="daemon", schedulingStrategy="DAEMON")
    _until(lambda: _service(ecs)["runningCount"] == 1)  # desiredCount follows the instances
    assert _service(ecs)["desiredCount"] == 1
    second = agents(max_task_enis=10).start(auto=True)
    _until(lambda: _service(ecs)["runningCount"] == 2)
    ecs.get_waiter("services_stable").wait(services=["web"], WaiterConfig=WAIT)
    tasks = ecs.describe_tasks(tasks=ecs.list_tasks(serviceName="web")["taskArns"])["tasks"]
    assert sorted(t["containerInstanceArn"] for t in tasks) == sorted([first.arn, second.arn])
    with pytest.raises(ClientError) as excinfo:
        ecs.update_service(service="web", desiredCount=3)
    assert error_of(excinfo)[0] == "InvalidParameterException"


def test_an_unhealthy_task_is_replaced_and_tags_are_described(api: TaskvpcServer, agents: Any) -> None:
    agent = agents(max_task_enis=10)
    agent.__class__ = SickAgent
    agent.start(auto=True)
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    check = {"command": ["CMD-SHELL", "true"], "interval": 5, "timeout": 2, "retries": 1}
    register_web(ecs, family="sick", containers=[{**WEB_CONTAINER, "healthCheck": check}])
    subnets = list(default_subnets(ec2).values())
    ecs.create_service(serviceName="web", taskDefinition="sick", desiredCount=1,
                       networkConfiguration=awsvpc(*subnets), tags=[{"key": "k", "value": "v"}])  # fmt: skip
    _until(lambda: len(ecs.list_tasks(serviceName="web", desiredStatus="STOPPED")["taskArns"]) >= 1)
    stopped = ecs.describe_tasks(tasks=ecs.list_tasks(serviceName="web", desiredStatus="STOPPED")["taskArns"])
    task = stopped["tasks"][0]
    assert task["stopCode"] == "ServiceSchedulerInitiated"
    assert task["stoppedReason"] == "Task failed container health checks"
    described = ecs.describe_services(services=["web"], include=["TAGS"])["services"][0]
    assert described["tags"] == [{"key": "k", "value": "v"}]
    assert "tags" not in ecs.describe_services(services=["web"])["services"][0]
    assert ecs.list_tags_for_resource(resourceArn=described["serviceArn"])["tags"] == [
        {"key": "k", "value": "v"}
    ]
