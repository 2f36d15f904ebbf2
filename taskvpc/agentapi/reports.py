"""The report: what the agent knows of its tasks, sent to the control plane.

:class:`TaskReport` and :class:`ContainerReport` are the domain's values (``taskvpc.domain.tasks`` folds them
into a task's document), defined once there; this module is their wire form. Unlike the desired-state
answer, a report is read strictly: the control plane refuses a malformed one whole (``WireError``, which
the agent API answers with ``400 BadRequest``) and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from taskvpc.domain.tasks import ContainerReport, TaskReport

__all__ = ["ContainerReport", "HealthStatus", "Report", "TaskReport", "WireError"]

Doc = dict[str, Any]


class WireError(ValueError):
    """A document that does not have the contract's shape."""


class HealthStatus(StrEnum):
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"
    UNKNOWN = "UNKNOWN"


def _opt(item: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = item.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise WireError(f"{name} has the wrong type.")
    return value


def container_report_to_wire(report: ContainerReport) -> Doc:
    return {
        "name": report.name,
        "status": report.status,
        "runtimeId": report.runtime_id,
        "exitCode": report.exit_code,
        "reason": report.reason,
        "healthStatus": report.health_status,
    }


def container_report_from_wire(doc: Any) -> ContainerReport:
    if not isinstance(doc, Mapping) or not isinstance(doc.get("name"), str):
        raise WireError("each container needs a name.")
    return ContainerReport(
        name=doc["name"],
        status=_opt(doc, "status", str),
        runtime_id=_opt(doc, "runtimeId", str),
        exit_code=_opt(doc, "exitCode", int),
        reason=_opt(doc, "reason", str),
        health_status=_opt(doc, "healthStatus", str),
    )


def task_report_to_wire(report: TaskReport) -> Doc:
    doc: Doc = {"taskArn": report.task_arn, "knownStatus": report.known_status}
    if report.attachment_status is not None:
        doc["attachmentStatus"] = report.attachment_status
    if report.pull_started_at is not None:
        doc["pullStartedAt"] = report.pull_started_at
    if report.pull_stopped_at is not None:
        doc["pullStoppedAt"] = report.pull_stopped_at
    doc["reason"] = report.reason
    doc["containers"] = [container_report_to_wire(c) for c in report.containers]
    return doc


def task_report_from_wire(doc: Any) -> TaskReport:
    if not isinstance(doc, Mapping) or not isinstance(doc.get("taskArn"), str):
        raise WireError("each task needs a taskArn.")
    containers = doc.get("containers") or []
    if not isinstance(containers, list):
        raise WireError("containers must be a list.")
    parsed = tuple(container_report_from_wire(c) for c in containers)
    pull_started = _opt(doc, "pullStartedAt", (int, float))
    pull_stopped = _opt(doc, "pullStoppedAt", (int, float))
    return TaskReport(
        task_arn=doc["taskArn"],
        known_status=_opt(doc, "knownStatus", str),
        attachment_status=_opt(doc, "attachmentStatus", str),
        pull_started_at=float(pull_started) if pull_started else None,
        pull_stopped_at=float(pull_stopped) if pull_stopped else None,
        reason=_opt(doc, "reason", str),
        containers=parsed,
    )


@dataclass(frozen=True, slots=True)
class Report:
    """The body of ``POST …/report``: the latest report of some tasks."""

    tasks: tuple[TaskReport, ...]

    @classmethod
    def of(cls, reports: Sequence[TaskReport]) -> Report:
        return cls(tuple(reports))

    @classmethod
    def from_wire(cls, doc: Any) -> Report:
        items = doc.get("tasks") if isinstance(doc, Mapping) else None
        if not isinstance(items, list):
            raise WireError("tasks must be a list.")
        return cls(tuple(task_report_from_wire(item) for item in items))

    def to_wire(self) -> Doc:
        return {"tasks": [task_report_to_wire(r) for r in self.tasks]}
