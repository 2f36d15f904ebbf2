"""Plain data the scheduler works on: a snapshot of the cluster, a request, and the answer.

The control plane builds these from its store; the scheduler never reads or writes anything else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from taskvpc.scheduler.ports import HostPorts, PortNeeds

CPU = "CPU"
MEMORY = "MEMORY"
AZ_ATTRIBUTE = "ecs.availability-zone"
OS_TYPE_ATTRIBUTE = "ecs.os-type"


@dataclass
class InstanceSnapshot:
    """One container instance as the scheduler sees it; ``place`` works on its own copies."""

    arn: str
    instance_id: str  # ec2InstanceId
    availability_zone: str
    remaining: dict[str, int]  # remainingResources: CPU units, MEMORY MiB
    task_eni_free: int  # free task-ENI slots (max ENIs - 1 - ENIs in use)
    status: str = "ACTIVE"
    agent_connected: bool = True
    attributes: dict[str, str | None] = field(default_factory=dict)  # name -> value (None: no value)
    task_groups: dict[str, int] = field(default_factory=dict)  # group -> its running+pending tasks here
    running_tasks_count: int = 0
    pending_tasks_count: int = 0
    agent_version: str | None = None
    registered_at: datetime | None = None
    ports: HostPorts = field(default_factory=HostPorts)  # host ports held (reserved and by tasks)

    def attribute(self, name: str) -> tuple[bool, str | None]:
        """``(present, value)``; the AZ attribute falls back to ``availability_zone``."""
        if name in self.attributes:
            return True, self.attributes[name]
        if name == AZ_ATTRIBUTE:
            return True, self.availability_zone
        return False, None

    def copy(self) -> InstanceSnapshot:
        return replace(
            self,
            remaining=dict(self.remaining),
            attributes=dict(self.attributes),
            task_groups=dict(self.task_groups),
            ports=self.ports.copy(),
        )


@dataclass(frozen=True, slots=True)
class RequiredAttribute:
    """A ``requiresAttributes`` entry of the task definition: the instance needs ``name`` (= ``value``)."""

    name: str
    value: str | None = None

    def satisfied_by(self, instance: InstanceSnapshot) -> bool:
        present, value = instance.attribute(self.name)
        return present and (self.value is None or value == self.value)


@dataclass(frozen=True, slots=True)
class PlacementConstraint:
    type: str  # distinctInstance | memberOf
    expression: str | None = None


@dataclass(frozen=True, slots=True)
class PlacementStrategy:
    type: str  # random | spread | binpack
    field: str | None = None


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """What to place: ``count`` copies of one task (CPU units and MEMORY MiB for the whole task)."""

    cpu: int
    memory: int
    needs_eni: bool = True
    required_attributes: tuple[RequiredAttribute, ...] = ()
    placement_constraints: tuple[PlacementConstraint, ...] = ()
    placement_strategy: tuple[PlacementStrategy, ...] = ()
    allowed_azs: frozenset[str] | None = None  # AZs of the awsvpcConfiguration subnets
    group: str | None = None  # RunTask ``group`` (default ``family:<family>``, set by the caller)
    count: int = 1
    ports: PortNeeds = field(default_factory=PortNeeds)  # host ports of a bridge/host task
    os_type: str = "linux"  # the definition's OS: only an instance of the same ``ecs.os-type`` takes it


@dataclass(frozen=True, slots=True)
class PlacementFailure:
    """One entry of RunTask's ``failures``: the container instance and why it could not take the task."""

    arn: str
    reason: str
    detail: str | None = None

    def to_api(self) -> dict[str, str]:
        out = {"arn": self.arn, "reason": self.reason}
        if self.detail is not None:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True, slots=True)
class Placement:
    """``assignments[i]`` is the instance ARN for the i-th placed task; unplaced tasks leave ``failures``."""

    assignments: tuple[str, ...]
    failures: tuple[PlacementFailure, ...]


def constraints_from_api(items: Iterable[Mapping[str, Any]]) -> tuple[PlacementConstraint, ...]:
    return tuple(PlacementConstraint(str(c.get("type", "")), c.get("expression")) for c in items)


def strategies_from_api(items: Iterable[Mapping[str, Any]]) -> tuple[PlacementStrategy, ...]:
    return tuple(PlacementStrategy(str(s.get("type", "")), s.get("field")) for s in items)


def required_from_api(items: Iterable[Mapping[str, Any]]) -> tuple[RequiredAttribute, ...]:
    """From a task definition's ``requiresAttributes`` (``targetType``/``targetId`` are not used here)."""
    return tuple(RequiredAttribute(str(a["name"]), a.get("value")) for a in items)
