"""Placement (taskvpc.scheduler.placement): filters and their reasons, strategies, constraints, validation."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from taskvpc.domain.errors import ClientError
from taskvpc.domain.instance_types import task_eni_capacity
from taskvpc.scheduler import (
    InstanceSnapshot,
    PlacementConstraint,
    PlacementFailure,
    PlacementStrategy,
    RequiredAttribute,
    TaskRequest,
    check_instance,
    constraints_from_api,
    instance_failure,
    place,
    required_from_api,
    strategies_from_api,
)

ARN = "arn:aws:ecs:us-east-1:123456789012:container-instance/default/"
TASK_ENI = RequiredAttribute("ecs.capability.task-eni")


def inst(
    name: str,
    az: str = "us-east-1a",
    cpu: int = 4096,
    memory: int = 8192,
    enis: int = 3,
    task_eni: bool = True,
    attributes: dict[str, str | None] | None = None,
    **kw: Any,
) -> InstanceSnapshot:
    """An ACTIVE m5.xlarge-like instance with ``ecs.capability.task-eni`` unless told otherwise."""
    merged: dict[str, str | None] = {"ecs.instance-type": "m5.xlarge"}
    if task_eni:
        merged["ecs.capability.task-eni"] = None
    merged.update(attributes or {})
    return InstanceSnapshot(
        arn=ARN + name,
        instance_id="i-" + name,
        availability_zone=az,
        remaining={"CPU": cpu, "MEMORY": memory},
        task_eni_free=enis,
        attributes=merged,
        **kw,
    )


def req(count: int = 1, cpu: int = 256, memory: int = 512, **kw: Any) -> TaskRequest:
    return TaskRequest(cpu=cpu, memory=memory, count=count, required_attributes=(TASK_ENI,), **kw)


def run(
    request: TaskRequest, *instances: InstanceSnapshot, seed: int = 7
) -> tuple[list[str], list[dict[str, str]]]:
    placement = place(request, instances, random.Random(seed))
    return [a.removeprefix(ARN) for a in placement.assignments], [f.to_api() for f in placement.failures]


def failures_by_name(failures: list[dict[str, str]]) -> dict[str, str]:
    return {f["arn"].removeprefix(ARN): f["reason"] for f in failures}


# --------------------------------------------------------------------------------------------------- cluster


def test_empty_cluster_is_an_error_not_a_failure() -> None:
    with pytest.raises(ClientError) as info:
        place(req(), [], random.Random(0))
    assert (info.value.code, info.value.message) == (
        "InvalidParameterException",
        "No Container Instances were found in your cluster.",
    )


def test_only_draining_instances_is_the_same_error() -> None:
    with pytest.raises(ClientError):
        place(req(), [inst("a", status="DRAINING")], random.Random(0))


def test_draining_instances_never_get_tasks_and_report_nothing() -> None:
    placed, failures = run(req(count=3), inst("a", status="DRAINING"), inst("b"))
    assert placed == ["b", "b", "b"] and failures == []
    placed, failures = run(req(count=1, cpu=9999), inst("a", status="DRAINING"), inst("b"))
    assert placed == [] and failures_by_name(failures) == {"b": "RESOURCE:CPU"}


# --------------------------------------------------------------------------------------------------- reasons


@pytest.mark.parametrize(
    ("instance", "request_kw", "reason"),
    [
        (inst("x", agent_connected=False), {}, "AGENT"),
        (inst("x", task_eni=False), {}, "ATTRIBUTE"),
        (inst("x", az="us-east-1c"), {"allowed_azs": frozenset({"us-east-1a", "us-east-1b"})}, "LOCATION"),
        (inst("x", cpu=100), {}, "RESOURCE:CPU"),
        (inst("x", memory=100), {}, "RESOURCE:MEMORY"),
        (inst("x", enis=0), {}, "RESOURCE:ENI"),
        (
            inst("x"),
            {
                "placement_constraints": (
                    PlacementConstraint("memberOf", "attribute:ecs.instance-type =~ t2.*"),
                )
            },
            "MemberOf placement constraint unsatisfied.",
        ),
        (
            inst("x", task_groups={"family:web": 1}),
            {"placement_constraints": (PlacementConstraint("distinctInstance"),), "group": "family:web"},
            "DistinctInstance placement constraint unsatisfied.",
        ),
    ],
)
def test_each_reason(instance: InstanceSnapshot, request_kw: dict[str, Any], reason: str) -> None:
    placed, failures = run(req(**request_kw), instance)
    assert placed == []
    # no "detail", as in real outputs, except ATTRIBUTE's: which attribute is missing (taskvpc's addition)
    detail = {"detail": "Missing attribute: ecs.capability.task-eni"} if reason == "ATTRIBUTE" else {}
    assert failures == [{"arn": instance.arn, "reason": reason, **detail}]


def test_value_of_a_required_attribute_must_match() -> None:
    need = TaskRequest(cpu=1, memory=1, required_attributes=(RequiredAttribute("ecs.os-type", "linux"),))
    assert run(need, inst("a", attributes={"ecs.os-type": "windows"}))[1][0]["reason"] == "ATTRIBUTE"
    assert run(need, inst("a", attributes={"ecs.os-type": "linux"}))[0] == ["a"]


def test_a_task_places_only_on_instances_of_its_os_type() -> None:
    windows = inst("w", attributes={"ecs.os-type": "windows", "ecs.os-family": "WINDOWS_SERVER_2022_CORE"})
    linux, unsaid = inst("l", attributes={"ecs.os-type": "linux"}), inst("u")  # unsaid: e.g. Fargate's
    placed, failures = run(req(count=3), windows, linux, unsaid)
    assert len(placed) == 3 and set(placed) <= {"l", "u"}
    placed, failures = run(req(), windows)
    assert failures == [
        {"arn": windows.arn, "reason": "ATTRIBUTE", "detail": "Missing attribute: ecs.os-type=linux"}
    ]
    placed, failures = run(req(count=2, os_type="windows"), windows, linux)
    assert placed == ["w", "w"]
    assert run(req(os_type="windows"), linux)[1][0]["detail"] == "Missing attribute: ecs.os-type=windows"


def test_reasons_are_checked_in_the_documented_order() -> None:
    everything_wrong = inst(
        "x", az="us-east-1c", cpu=0, memory=0, enis=0, task_eni=False, agent_connected=False
    )
    request = req(
        allowed_azs=frozenset({"us-east-1a"}),
        placement_constraints=(PlacementConstraint("memberOf", "attribute:none exists"),),
    )
    steps = [
        ({"agent_connected": True}, "ATTRIBUTE"),
        ({"attributes": {"ecs.capability.task-eni": None, "ecs.instance-type": "m5.xlarge"}}, "LOCATION"),
        ({"availability_zone": "us-east-1a"}, "RESOURCE:CPU"),
        ({"remaining": {"CPU": 4096, "MEMORY": 0}}, "RESOURCE:MEMORY"),
        ({"remaining": {"CPU": 4096, "MEMORY": 4096}}, "RESOURCE:ENI"),
        ({"task_eni_free": 1}, "MemberOf placement constraint unsatisfied."),
    ]
    assert check_instance(request, everything_wrong) == "AGENT"
    current = everything_wrong
    for change, reason in steps:
        current = replace(current, **change)  # type: ignore[arg-type]
        assert check_instance(request, current) == reason
    assert check_instance(req(), current) is None


def test_one_failure_per_instance_each_with_its_own_reason() -> None:
    placed, failures = run(
        req(cpu=1024, allowed_azs=frozenset({"us-east-1a"})),
        inst("a", cpu=512),
        inst("b", agent_connected=False),
        inst("c", az="us-east-1b"),
        inst("d", enis=0),
    )
    assert placed == []
    assert failures_by_name(failures) == {
        "a": "RESOURCE:CPU",
        "b": "AGENT",
        "c": "LOCATION",
        "d": "RESOURCE:ENI",
    }


def test_awsvpc_off_needs_no_eni() -> None:
    placed, _ = run(replace(req(count=2), needs_eni=False), inst("a", enis=0))
    assert placed == ["a", "a"]


# --------------------------------------------------------------------------------------------------- counting


def test_c5_large_takes_two_awsvpc_tasks_then_resource_eni() -> None:
    c5 = inst("c5", cpu=2048, memory=3700, enis=task_eni_capacity("c5.large") or 0)
    placed, failures = run(req(count=3, cpu=128, memory=128), c5)
    assert placed == ["c5", "c5"]
    assert failures_by_name(failures) == {"c5": "RESOURCE:ENI"}


def test_partial_placement_keeps_what_was_placed() -> None:
    placed, failures = run(req(count=5, memory=3000), inst("a", memory=6000), inst("b", memory=3500))
    assert sorted(placed) == ["a", "a", "b"]
    assert failures_by_name(failures) == {"a": "RESOURCE:MEMORY", "b": "RESOURCE:MEMORY"}


def test_inputs_are_not_modified_and_results_are_deterministic() -> None:
    cluster = [inst(n) for n in "abcd"]
    before = [c.copy() for c in cluster]
    first = run(req(count=6), *cluster, seed=3)
    assert cluster == before
    assert run(req(count=6), *cluster, seed=3) == first
    assert run(req(count=6), *reversed(cluster), seed=3) == first  # input order does not matter


# --------------------------------------------------------------------------------------------------- strategies


def test_binpack_memory_fills_one_instance_before_the_next() -> None:
    request = req(count=6, memory=1000, placement_strategy=(PlacementStrategy("binpack", "memory"),))
    placed, failures = run(request, inst("a", memory=4000), inst("b", memory=3000), inst("c", memory=5000))
    assert failures == []
    assert placed == ["b", "b", "b", "a", "a", "a"]


def test_binpack_cpu() -> None:
    request = req(count=2, cpu=1024, placement_strategy=(PlacementStrategy("binpack", "CPU"),))
    placed, _ = run(request, inst("a", cpu=4096), inst("b", cpu=2048))
    assert placed == ["b", "b"]


def test_spread_on_az_alternates_azs() -> None:
    cluster = [inst("a1", az="us-east-1a"), inst("a2", az="us-east-1a"), inst("b1", az="us-east-1b")]
    request = req(
        count=4, placement_strategy=(PlacementStrategy("spread", "attribute:ecs.availability-zone"),)
    )
    placed, _ = run(request, *cluster)
    azs = ["a" if p.startswith("a") else "b" for p in placed]
    assert azs in (["a", "b", "a", "b"], ["b", "a", "a", "b"], ["a", "b", "b", "a"], ["b", "a", "b", "a"])
    assert Counter(azs) == {"a": 2, "b": 2}


def test_spread_counts_tasks_already_running_in_the_group() -> None:
    cluster = [inst("a", az="us-east-1a", task_groups={"family:web": 3}), inst("b", az="us-east-1b")]
    request = req(
        count=3,
        group="family:web",
        placement_strategy=(PlacementStrategy("spread", "attribute:ecs.availability-zone"),),
    )
    assert run(request, *cluster)[0] == ["b", "b", "b"]


def test_spread_on_instance_id_then_binpack_breaks_ties() -> None:
    cluster = [inst("a", memory=8000), inst("b", memory=6000), inst("c", memory=7000)]
    request = req(
        count=6,
        memory=100,
        placement_strategy=(
            PlacementStrategy("spread", "instanceId"),
            PlacementStrategy("binpack", "memory"),
        ),
    )
    placed, _ = run(request, *cluster)
    assert placed[:3] == ["b", "c", "a"]  # each round, the fullest instance first
    assert Counter(placed) == {"a": 2, "b": 2, "c": 2}


def test_spread_by_host_is_instance_id() -> None:
    request = req(count=4, placement_strategy=(PlacementStrategy("spread", "host"),))
    assert Counter(run(request, inst("a"), inst("b"))[0]) == {"a": 2, "b": 2}


def test_spread_az_then_binpack_within_the_az() -> None:
    cluster = [
        inst("a-big", az="us-east-1a", memory=8000),
        inst("a-small", az="us-east-1a", memory=2000),
        inst("b-only", az="us-east-1b", memory=8000),
    ]
    request = req(
        count=4,
        memory=500,
        placement_strategy=(
            PlacementStrategy("spread", "attribute:ecs.availability-zone"),
            PlacementStrategy("binpack", "memory"),
        ),
    )
    placed, _ = run(request, *cluster)
    assert Counter(placed) == {"a-small": 2, "b-only": 2}


def test_random_uses_every_instance_over_seeds() -> None:
    request = req(count=1, placement_strategy=(PlacementStrategy("random"),))
    seen = {run(request, inst("a"), inst("b"), inst("c"), seed=s)[0][0] for s in range(40)}
    assert seen == {"a", "b", "c"}


def test_no_strategy_is_random_too() -> None:
    seen = {run(req(count=1), inst("a"), inst("b"), seed=s)[0][0] for s in range(40)}
    assert seen == {"a", "b"}


# --------------------------------------------------------------------------------------------------- constraints


def test_distinct_instance_with_more_tasks_than_instances() -> None:
    request = req(count=5, placement_constraints=(PlacementConstraint("distinctInstance"),))
    placed, failures = run(request, inst("a"), inst("b"), inst("c"))
    assert sorted(placed) == ["a", "b", "c"]
    assert failures_by_name(failures) == dict.fromkeys(
        "abc", "DistinctInstance placement constraint unsatisfied."
    )


def test_distinct_instance_counts_the_group_only() -> None:
    request = req(
        count=2, group="family:web", placement_constraints=(PlacementConstraint("distinctInstance"),)
    )
    cluster = [inst("a", task_groups={"family:web": 1}), inst("b", task_groups={"family:db": 4}), inst("c")]
    placed, failures = run(request, *cluster)
    assert sorted(placed) == ["b", "c"] and failures == []


def test_member_of_restricts_candidates() -> None:
    cluster = [inst("t2", attributes={"ecs.instance-type": "t2.small"}), inst("m5")]
    request = req(
        count=3,
        placement_constraints=(PlacementConstraint("memberOf", "attribute:ecs.instance-type =~ t2.*"),),
    )
    assert run(request, *cluster)[0] == ["t2", "t2", "t2"]


def test_member_of_task_group_affinity_follows_this_calls_placements() -> None:
    request = req(
        count=2,
        group="family:web",
        placement_constraints=(PlacementConstraint("memberOf", "not(task:group == family:web)"),),
    )
    placed, failures = run(request, inst("a"), inst("b"))
    assert sorted(placed) == ["a", "b"] and failures == []


def test_several_member_of_constraints_all_apply() -> None:
    request = req(
        placement_constraints=(
            PlacementConstraint("memberOf", "attribute:ecs.instance-type == m5.xlarge"),
            PlacementConstraint("memberOf", "attribute:ecs.availability-zone != us-east-1a"),
        )
    )
    assert run(request, inst("a", az="us-east-1a"), inst("b", az="us-east-1b"))[0] == ["b"]


# --------------------------------------------------------------------------------------------------- validation


def refuse(request: TaskRequest, message: str | None = None) -> None:
    with pytest.raises(ClientError) as info:
        place(request, [inst("a")], random.Random(0))
    assert info.value.code == "InvalidParameterException"
    if message is not None:
        assert info.value.message == message


def test_validation() -> None:
    refuse(req(placement_constraints=(PlacementConstraint("memberOf", "attribute:a exists"),) * 11))
    refuse(req(placement_strategy=(PlacementStrategy("random"),) * 6))
    refuse(
        req(placement_constraints=(PlacementConstraint("distinctInstance", ""),)),
        "distinctInstance expression should not be specified.",
    )
    refuse(req(placement_constraints=(PlacementConstraint("memberOf"),)))
    refuse(req(placement_constraints=(PlacementConstraint("memberOf", "colour == red"),)))
    refuse(req(placement_constraints=(PlacementConstraint("sameInstance"),)))
    refuse(req(placement_strategy=(PlacementStrategy("binpack", "disk"),)))
    refuse(req(placement_strategy=(PlacementStrategy("binpack"),)))
    refuse(req(placement_strategy=(PlacementStrategy("spread"),)))
    refuse(req(placement_strategy=(PlacementStrategy("spread", "ecs.availability-zone"),)))
    refuse(req(placement_strategy=(PlacementStrategy("pack", "cpu"),)))
    # the limits themselves are fine
    many = (PlacementConstraint("memberOf", "attribute:ecs.instance-type exists"),) * 10
    assert run(req(placement_constraints=many), inst("a"))[0] == ["a"]
    assert run(req(placement_strategy=(PlacementStrategy("random"),) * 5), inst("a"))[0] == ["a"]


def test_api_shapes() -> None:
    assert constraints_from_api([{"type": "distinctInstance"}, {"type": "memberOf", "expression": "x"}]) == (
        PlacementConstraint("distinctInstance"),
        PlacementConstraint("memberOf", "x"),
    )
    assert strategies_from_api([{"type": "spread", "field": "instanceId"}, {"type": "random"}]) == (
        PlacementStrategy("spread", "instanceId"),
        PlacementStrategy("random"),
    )
    assert required_from_api([{"name": "ecs.capability.task-eni"}, {"name": "a", "value": "b"}]) == (
        TASK_ENI,
        RequiredAttribute("a", "b"),
    )
    assert PlacementFailure("arn:x", "AGENT", "down").to_api() == {
        "arn": "arn:x",
        "reason": "AGENT",
        "detail": "down",
    }


def test_attribute_failures_name_the_missing_attributes() -> None:
    need = TaskRequest(
        cpu=256,
        memory=512,
        count=1,
        required_attributes=(
            RequiredAttribute("com.amazonaws.ecs.capability.task-iam-role"),
            TASK_ENI,
            RequiredAttribute("ecs.os-type", "linux"),
        ),
    )
    [failure] = place(need, [inst("a", attributes={"ecs.os-type": "windows"})], random.Random(0)).failures
    assert failure.to_api() == {
        "arn": failure.arn,
        "reason": "ATTRIBUTE",
        "detail": "Missing attributes: com.amazonaws.ecs.capability.task-iam-role, ecs.os-type=linux",
    }
    assert instance_failure(need, inst("a", attributes={"ecs.os-type": "linux"})) == PlacementFailure(
        failure.arn, "ATTRIBUTE", "Missing attribute: com.amazonaws.ecs.capability.task-iam-role"
    )
    assert place(req(cpu=10**6), [inst("a")], random.Random(0)).failures[0].detail is None
