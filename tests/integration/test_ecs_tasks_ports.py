"""Host ports of bridge and host tasks through RunTask/StartTask/DescribeTasks: RESOURCE:PORTS for a
static hostPort an instance already holds, dynamic ports from ECS's range in networkBindings."""

from __future__ import annotations

from typing import Any

from tests.integration.server import TaskvpcServer


def _register(ecs: Any, family: str, mode: str, *mappings: dict[str, Any]) -> None:
    ecs.register_task_definition(
        family=family,
        networkMode=mode,
        containerDefinitions=[
            {"name": "web", "image": "busybox", "memory": 64, "cpu": 64, "portMappings": list(mappings)}
        ],
    )


def _bindings(ecs: Any, arn: str) -> list[dict[str, Any]]:
    [task] = ecs.describe_tasks(tasks=[arn])["tasks"]
    return list(task["containers"][0].get("networkBindings", []))


def test_static_host_port_conflicts_and_frees(api: TaskvpcServer, agents: Any) -> None:
    agent = agents().start()
    ecs = api.client("ecs")
    _register(ecs, "static", "bridge", {"containerPort": 80, "hostPort": 8080})
    first = ecs.run_task(taskDefinition="static")
    assert first["failures"] == []
    arn = first["tasks"][0]["taskArn"]
    assert _bindings(ecs, arn) == [
        {"bindIP": "0.0.0.0", "containerPort": 80, "hostPort": 8080, "protocol": "tcp"}
    ]
    second = ecs.run_task(taskDefinition="static")
    assert second["tasks"] == []
    assert second["failures"] == [{"arn": agent.arn, "reason": "RESOURCE:PORTS"}]
    two = ecs.run_task(taskDefinition="static", count=2)  # the same in one call
    assert two["failures"] == [{"arn": agent.arn, "reason": "RESOURCE:PORTS"}]
    # a port the instance keeps for itself (ECS's default PORTS: 22, ...) and host mode's containerPort
    _register(ecs, "ssh", "host", {"containerPort": 22})
    assert ecs.run_task(taskDefinition="ssh")["failures"] == [{"arn": agent.arn, "reason": "RESOURCE:PORTS"}]
    assert ecs.start_task(taskDefinition="ssh", containerInstances=[agent.arn])["failures"] == [
        {"arn": agent.arn, "reason": "RESOURCE:PORTS"}
    ]
    # DescribeContainerInstances lists the ports in use among the remaining resources, as ECS does
    [described] = ecs.describe_container_instances(containerInstances=[agent.arn])["containerInstances"]
    remaining = {r["name"]: r for r in described["remainingResources"]}
    assert remaining["PORTS"]["stringSetValue"] == ["22", "2375", "2376", "8080", "51678", "51679"]
    assert remaining["PORTS_UDP"]["stringSetValue"] == []
    # the port is free again once the task stopped
    ecs.stop_task(task=arn)
    agent.wait_for_task(arn, "STOPPED")
    agent.stopped(arn)
    assert ecs.run_task(taskDefinition="static")["failures"] == []


def test_dynamic_host_ports_from_the_ephemeral_range(api: TaskvpcServer, agents: Any) -> None:
    agents().start()
    ecs = api.client("ecs")
    _register(ecs, "dynamic", "bridge", {"containerPort": 80}, {"containerPort": 53, "protocol": "udp"})
    run = ecs.run_task(taskDefinition="dynamic", count=2)
    assert run["failures"] == []
    bound = [_bindings(ecs, t["taskArn"]) for t in run["tasks"]]
    assert bound[0] == [
        {"bindIP": "0.0.0.0", "containerPort": 80, "hostPort": 49153, "protocol": "tcp"},
        {"bindIP": "0.0.0.0", "containerPort": 53, "hostPort": 49153, "protocol": "udp"},
    ]
    assert [b["hostPort"] for b in bound[1]] == [49154, 49154]
    third = ecs.run_task(taskDefinition="dynamic")["tasks"][0]["taskArn"]
    assert [b["hostPort"] for b in _bindings(ecs, third)] == [49155, 49155]


def test_awsvpc_tasks_hold_no_host_port(api: TaskvpcServer, agents: Any) -> None:
    from tests.integration.ecs_support import awsvpc, default_subnets

    agents().start()
    ecs = api.client("ecs")
    ecs.register_task_definition(
        family="vpc",
        networkMode="awsvpc",
        containerDefinitions=[
            {"name": "web", "image": "busybox", "memory": 64, "portMappings": [{"containerPort": 22}]}
        ],
    )
    subnet = default_subnets(api.client("ec2"))["us-east-1a"]
    run = ecs.run_task(taskDefinition="vpc", networkConfiguration=awsvpc(subnet))
    assert run["failures"] == []
    assert _bindings(ecs, run["tasks"][0]["taskArn"]) == []
