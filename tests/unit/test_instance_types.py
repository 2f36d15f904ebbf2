"""EC2 instance-type limits (taskvpc.domain.instance_types)."""

from __future__ import annotations

import pytest

from taskvpc.domain.instance_types import (
    INSTANCE_TYPES,
    lookup,
    task_eni_capacity,
    trunk_task_capacity,
)

# "Task limit without ENI trunking" from the ECS Developer Guide (container-instance-eni.md), an independent
# source from the vpc-cni ENILimit the table holds: it must always equal max ENIs - 1.
GUIDE_TASKS_WITHOUT_TRUNKING = {
    "m5.large": 2, "m5.xlarge": 3, "m5.2xlarge": 3, "m5.4xlarge": 7, "m5.8xlarge": 7,
    "m5.12xlarge": 7, "m5.16xlarge": 14, "m5.24xlarge": 14,
    "m5a.large": 2, "m5a.8xlarge": 7, "m5a.16xlarge": 14,
    "m6a.large": 2, "m6a.8xlarge": 7, "m6a.48xlarge": 14,
    "m6g.medium": 1, "m6g.large": 2, "m6g.xlarge": 3, "m6g.16xlarge": 14,
    "m6i.large": 2, "m6i.xlarge": 3, "m6i.2xlarge": 3, "m6i.4xlarge": 7, "m6i.8xlarge": 7,
    "m6i.12xlarge": 7, "m6i.16xlarge": 14, "m6i.24xlarge": 14, "m6i.32xlarge": 14,
    "m7g.medium": 1, "m7g.12xlarge": 7, "m7g.16xlarge": 14,
    "c5.large": 2, "c5.xlarge": 3, "c5.2xlarge": 3, "c5.4xlarge": 7, "c5.9xlarge": 7,
    "c5.12xlarge": 7, "c5.18xlarge": 14, "c5.24xlarge": 14,
    "c5a.large": 2, "c5a.8xlarge": 7, "c5a.16xlarge": 14, "c5a.24xlarge": 14,
    "c6a.large": 2, "c6a.32xlarge": 14,
    "c6g.medium": 1, "c6g.4xlarge": 7, "c6g.16xlarge": 14,
    "c6i.large": 2, "c6i.8xlarge": 7, "c6i.32xlarge": 14,
    "c7g.medium": 1, "c7g.16xlarge": 14,
    "r5.large": 2, "r5.xlarge": 3, "r5.2xlarge": 3, "r5.4xlarge": 7, "r5.12xlarge": 7,
    "r5.16xlarge": 14, "r5.24xlarge": 14,
    "r5a.large": 2, "r5a.8xlarge": 7, "r5a.24xlarge": 14,
    "r6a.large": 2, "r6a.48xlarge": 14,
    "r6g.medium": 1, "r6g.16xlarge": 14,
    "r6i.large": 2, "r6i.4xlarge": 7, "r6i.32xlarge": 14,
}  # fmt: skip


def test_c5_large_hosts_two_awsvpc_tasks() -> None:
    c5 = lookup("c5.large")
    assert c5 is not None
    assert (c5.max_enis, c5.task_eni_capacity, c5.vcpus, c5.cpu_units, c5.memory_mib) == (3, 2, 2, 2048, 4096)
    assert task_eni_capacity("c5.large") == 2
    assert trunk_task_capacity("c5.large") == 10  # "a c5.large ... launch ten tasks ... instead of two"


@pytest.mark.parametrize(("name", "tasks"), sorted(GUIDE_TASKS_WITHOUT_TRUNKING.items()))
def test_capacity_agrees_with_the_ecs_guide(name: str, tasks: int) -> None:
    assert task_eni_capacity(name) == tasks


@pytest.mark.parametrize(
    ("name", "enis"),
    [
        ("t2.nano", 2), ("t2.micro", 2), ("t2.small", 3), ("t2.2xlarge", 3),
        ("t3.nano", 2), ("t3.small", 3), ("t3.xlarge", 4),
        ("t3a.small", 2),  # unlike t3.small
        ("t4g.small", 3), ("t4g.2xlarge", 4),
        ("m7i.large", 3), ("m7i.48xlarge", 15), ("c7i.large", 3), ("c7i.24xlarge", 15),
    ],
)  # fmt: skip
def test_burstable_and_newest_families(name: str, enis: int) -> None:
    known = lookup(name)
    assert known is not None and known.max_enis == enis


@pytest.mark.parametrize(
    ("name", "vcpus", "memory_mib"),
    [
        ("t2.nano", 1, 512), ("t2.medium", 2, 4096), ("t3.micro", 2, 1024), ("t4g.2xlarge", 8, 32768),
        ("m5.large", 2, 8192), ("c5.9xlarge", 36, 73728), ("r5.large", 2, 16384),
        ("m6g.medium", 1, 4096), ("c6g.medium", 1, 2048), ("r6i.32xlarge", 128, 1048576),
    ],
)  # fmt: skip
def test_sizes(name: str, vcpus: int, memory_mib: int) -> None:
    known = lookup(name)
    assert known is not None and (known.vcpus, known.memory_mib) == (vcpus, memory_mib)


def test_unknown_types_are_none_for_the_caller_to_decide() -> None:
    assert lookup("z9.huge") is None
    assert task_eni_capacity("z9.huge") is None
    assert trunk_task_capacity("z9.huge") is None


def test_trunking_unsupported_or_unlisted_is_none() -> None:
    assert trunk_task_capacity("t3.large") is None
    assert trunk_task_capacity("r5.8xlarge") is None  # named unsupported in the guide
    assert trunk_task_capacity("m7i.large") is None  # newer than the archived guide
    assert trunk_task_capacity("m6i.8xlarge") == 90
    assert trunk_task_capacity("m6g.medium") == 4


def test_every_family_in_the_brief_is_covered_nano_to_24xlarge() -> None:
    families = ["t2", "t3", "t3a", "t4g", "m5", "m5a", "m6i", "m6g", "m7i", "c5", "c5a", "c6i", "c6g", "c7i"]
    families += ["r5", "r6i"]
    for family in families:
        assert any(name.startswith(family + ".") for name in INSTANCE_TYPES), family
    assert {"m5.24xlarge", "t3.nano", "c5.24xlarge", "r5.24xlarge"} <= INSTANCE_TYPES.keys()


def test_table_invariants() -> None:
    for name, t in INSTANCE_TYPES.items():
        assert t.name == name
        assert t.vcpus > 0 and t.memory_mib >= 512
        assert t.max_enis >= 2
        assert t.cpu_units == 1024 * t.vcpus
        assert t.trunk_tasks is None or t.trunk_tasks >= t.task_eni_capacity
