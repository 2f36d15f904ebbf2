"""RunTask placement end to end: ECS's failure reasons, constraints, strategies, DRAINING."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.ecs_support import awsvpc, default_subnets, register_web
from tests.integration.server import Server


def _setup(api: Server, **td: Any) -> tuple[Any, dict[str, str]]:
    ecs = api.client("ecs")
    register_web(ecs, **td)
    return ecs, default_subnets(api.client("ec2"))


def _run(ecs: Any, subnet: str, **request: Any) -> dict[str, Any]:
    result: dict[str, Any] = ecs.run_task(
        taskDefinition="web", networkConfiguration=awsvpc(subnet), **request
    )
    return result


def test_eni_capacity_of_a_c5_large(api: Server, agents: Any) -> None:
    agent = agents(instance_type="c5.large").start()  # 3 ENIs: the primary + 2 task ENIs
    ecs, subnets = _setup(api)
    a = subnets["us-east-1a"]
    assert len(_run(ecs, a)["tasks"]) == 1
    assert len(_run(ecs, a)["tasks"]) == 1
    third = _run(ecs, a)
    assert third["tasks"] == []
    assert third["failures"] == [{"arn": agent.arn, "reason": "RESOURCE:ENI"}]
    # a slot frees when a task is stopped and its ENI released
    arn = ecs.list_tasks()["taskArns"][0]
    ecs.stop_task(task=arn)
    agent.wait_for_task(arn, "STOPPED")
    agent.stopped(arn)
    assert len(_run(ecs, a)["tasks"]) == 1


def test_count_beyond_capacity_places_what_fits(api: Server, agents: Any) -> None:
    agent = agents(instance_type="c5.large").start()
    ecs, subnets = _setup(api)
    result = _run(ecs, subnets["us-east-1a"], count=3)
    assert len(result["tasks"]) == 2
    assert result["failures"] == [{"arn": agent.arn, "reason": "RESOURCE:ENI"}]


def test_location_attribute_agent_memory_cpu(api: Server, agents: Any) -> None:
    ecs, subnets = _setup(api, cpu="1024", memory="2048")
    in_a = agents().start()  # default subnet of us-east-1a
    assert _run(ecs, subnets["us-east-1b"])["failures"] == [{"arn": in_a.arn, "reason": "LOCATION"}]
    in_a.stop()
    ecs.deregister_container_instance(containerInstance=in_a.arn)

    no_eni = agents(attributes={"ecs.capability.task-eni": "x"}).start()
    ecs.delete_attributes(attributes=[{"name": "ecs.capability.task-eni", "targetId": no_eni.arn}])
    # deleting an agent attribute works as on ECS; the agent puts it back when it registers again
    assert _run(ecs, subnets["us-east-1a"])["failures"] == [
        {"arn": no_eni.arn, "reason": "ATTRIBUTE", "detail": "Missing attribute: ecs.capability.task-eni"}
    ]
    no_eni.register()
    assert len(_run(ecs, subnets["us-east-1a"])["tasks"]) == 1
    no_eni.stop()
    ecs.deregister_container_instance(containerInstance=no_eni.arn, force=True)

    silent = agents()
    silent.register()  # registered, but its agent never polls
    assert _run(ecs, subnets["us-east-1a"])["failures"] == [{"arn": silent.arn, "reason": "AGENT"}]
    ecs.deregister_container_instance(containerInstance=silent.arn)

    small = agents(cpu=4096, memory=1024).start()
    assert _run(ecs, subnets["us-east-1a"])["failures"] == [{"arn": small.arn, "reason": "RESOURCE:MEMORY"}]
    small.stop()
    ecs.deregister_container_instance(containerInstance=small.arn)

    weak = agents(cpu=512, memory=8192).start()
    assert _run(ecs, subnets["us-east-1a"])["failures"] == [{"arn": weak.arn, "reason": "RESOURCE:CPU"}]


def test_member_of_and_distinct_instance(api: Server, agents: Any) -> None:
    ecs, subnets = _setup(api)
    first = agents(max_task_enis=10).start()
    second = agents(max_task_enis=10).start()
    ecs.put_attributes(attributes=[{"name": "stack", "value": "prod", "targetId": first.arn}])
    result = _run(
        ecs, subnets["us-east-1a"], count=4,
        placementConstraints=[{"type": "memberOf", "expression": "attribute:stack == prod"}],
    )  # fmt: skip
    assert {t["containerInstanceArn"] for t in result["tasks"]} == {first.arn}
    nothing = _run(
        ecs, subnets["us-east-1a"],
        placementConstraints=[{"type": "memberOf", "expression": "attribute:stack == test"}],
    )  # fmt: skip
    assert nothing["tasks"] == []
    assert (
        sorted(f["reason"] for f in nothing["failures"]) == ["MemberOf placement constraint unsatisfied."] * 2
    )
    by_type = _run(
        ecs, subnets["us-east-1a"],
        placementConstraints=[{"type": "memberOf", "expression": f"ec2InstanceId == {second.instance_id}"}],
    )  # fmt: skip
    assert by_type["tasks"][0]["containerInstanceArn"] == second.arn

    distinct = _run(
        ecs,
        subnets["us-east-1a"],
        count=3,
        group="spread-me",
        placementConstraints=[{"type": "distinctInstance"}],
    )
    assert sorted(t["containerInstanceArn"] for t in distinct["tasks"]) == sorted([first.arn, second.arn])
    assert {f["reason"] for f in distinct["failures"]} == {
        "DistinctInstance placement constraint unsatisfied."
    }


def test_task_definition_constraints_apply(api: Server, agents: Any) -> None:
    ecs, subnets = _setup(
        api,
        placementConstraints=[{"type": "memberOf", "expression": "attribute:ecs.instance-type == m5.large"}],
    )
    agents(instance_type="c5.large").start()
    m5 = agents(instance_type="m5.large").start()
    result = _run(ecs, subnets["us-east-1a"], count=2)
    assert {t["containerInstanceArn"] for t in result["tasks"]} == {m5.arn}


def test_strategies_binpack_and_spread(api: Server, agents: Any) -> None:
    ecs, subnets = _setup(api)
    big = agents(max_task_enis=10, memory=8192).start()
    small = agents(max_task_enis=10, memory=4096).start()
    packed = _run(
        ecs, subnets["us-east-1a"], count=4, placementStrategy=[{"type": "binpack", "field": "memory"}]
    )
    assert {t["containerInstanceArn"] for t in packed["tasks"]} == {small.arn}
    spread = _run(
        ecs, subnets["us-east-1a"], count=4, group="even",
        placementStrategy=[{"type": "spread", "field": "instanceId"}],
    )  # fmt: skip
    assert Counter(t["containerInstanceArn"] for t in spread["tasks"]) == {big.arn: 2, small.arn: 2}


def test_spread_across_availability_zones(api: Server, agents: Any) -> None:
    ecs, subnets = _setup(api)
    in_a = agents(max_task_enis=10, subnet_id=subnets["us-east-1a"]).start()
    in_b = agents(max_task_enis=10, subnet_id=subnets["us-east-1b"]).start()
    result = ecs.run_task(
        taskDefinition="web",
        count=6,
        networkConfiguration=awsvpc(subnets["us-east-1a"], subnets["us-east-1b"]),
        placementStrategy=[{"type": "spread", "field": "attribute:ecs.availability-zone"}],
    )
    zones = Counter(t["availabilityZone"] for t in result["tasks"])
    assert zones == {"us-east-1a": 3, "us-east-1b": 3}
    for task in result["tasks"]:  # each task's ENI is in the subnet of its instance's zone
        agent = in_a if task["containerInstanceArn"] == in_a.arn else in_b
        entry = agent.wait_for_task(task["taskArn"])
        assert entry["eni"]["subnetId"] == subnets[task["availabilityZone"]]


def test_draining_stops_new_placement(api: Server, agents: Any) -> None:
    ecs, subnets = _setup(api)
    first = agents(max_task_enis=10).start()
    running = _run(ecs, subnets["us-east-1a"])["tasks"][0]["taskArn"]
    drained = ecs.update_container_instances_state(containerInstances=[first.arn], status="DRAINING")
    assert drained["containerInstances"][0]["status"] == "DRAINING" and drained["failures"] == []
    assert first.wait_for(lambda d: d["instance"]["status"] == "DRAINING")
    # the running task is not touched (it belongs to no service)
    assert ecs.describe_tasks(tasks=[running])["tasks"][0]["desiredStatus"] == "RUNNING"
    second = agents(max_task_enis=10).start()
    placed = _run(ecs, subnets["us-east-1a"], count=3)
    assert {t["containerInstanceArn"] for t in placed["tasks"]} == {second.arn}
    second.stop()
    ecs.update_container_instances_state(containerInstances=[second.arn], status="DRAINING")
    with pytest.raises(ClientError) as excinfo:
        _run(ecs, subnets["us-east-1a"])
    assert excinfo.value.response["Error"]["Message"] == "No Container Instances were found in your cluster."
    ecs.update_container_instances_state(containerInstances=[first.arn], status="ACTIVE")
    assert _run(ecs, subnets["us-east-1a"])["tasks"][0]["containerInstanceArn"] == first.arn


def test_tasks_place_only_on_instances_of_their_os_type(api: Server, agents: Any) -> None:
    windows = agents(
        attributes={"ecs.os-type": "windows", "ecs.os-family": "WINDOWS_SERVER_2022_CORE"}
    ).start()  # what a Windows AMI's instance registers (agent/instance_config.py)
    ecs, subnets = _setup(api)
    assert _run(ecs, subnets["us-east-1a"])["failures"] == [
        {"arn": windows.arn, "reason": "ATTRIBUTE", "detail": "Missing attribute: ecs.os-type=linux"}
    ]
    register_web(ecs, runtimePlatform={"operatingSystemFamily": "WINDOWS_SERVER_2022_CORE"}, cpu="1024")
    [task] = _run(ecs, subnets["us-east-1a"])["tasks"]
    assert task["containerInstanceArn"] == windows.arn
    linux = agents().start()
    windows.stop()
    ecs.deregister_container_instance(containerInstance=windows.arn, force=True)
    assert _run(ecs, subnets["us-east-1a"])["failures"] == [
        {"arn": linux.arn, "reason": "ATTRIBUTE", "detail": "Missing attribute: ecs.os-type=windows"}
    ]
