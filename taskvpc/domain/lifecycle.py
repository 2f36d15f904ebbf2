"""The lifecycles ECS reports, each one transition table: ``(state, event) -> next state``.

As in h11's ``_state.py``, the tables are the whole truth: a pair that is not a key is an illegal move and
raises :class:`IllegalTransition`; nothing else in the code base decides which status follows which.
:func:`mermaid` renders a table as a diagram, so the docs are generated from the same data.

Sources: task ``lastStatus`` flow from the ECS Developer Guide ``task-lifecycle.md``; enums from the ECS API
model (botocore ``ecs/2014-11-13``: ``Attachment.status``, ``ContainerInstance.status``, ``TaskStopCode``,
``DesiredStatus``); instance moves from ``UpdateContainerInstancesState`` (only ACTIVE <-> DRAINING, and only
from ACTIVE or DRAINING) and ``container-instance-eni.md`` (REGISTERING / REGISTRATION_FAILED /
DEREGISTERING with trunking). Where the table goes beyond the documents it says so beside the row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar


class TaskStatus(StrEnum):
    PROVISIONING = "PROVISIONING"
    PENDING = "PENDING"
    ACTIVATING = "ACTIVATING"
    RUNNING = "RUNNING"
    DEACTIVATING = "DEACTIVATING"
    STOPPING = "STOPPING"
    DEPROVISIONING = "DEPROVISIONING"
    STOPPED = "STOPPED"


class TaskEvent(StrEnum):
    ENI_ATTACHED = "eni_attached"  # ENI created, attached and configured; the task network exists
    CONTAINERS_STARTED = "containers_started"  # every essential container is running
    ACTIVATED = "activated"  # load-balancer / service-discovery registration done (or nothing to do)
    STOP_REQUESTED = "stop_requested"  # StopTask, a scheduler, a drain...
    ESSENTIAL_EXITED = "essential_exited"  # an essential container exited on its own
    FAILED_TO_START = "failed_to_start"  # ENI timeout, a container that cannot start, ...
    DEACTIVATED = "deactivated"  # load-balancer deregistration done (or nothing to do)
    CONTAINERS_STOPPED = "containers_stopped"  # every container stopped (SIGTERM, then SIGKILL)
    ENI_RELEASED = "eni_released"  # namespace, link and address gone, ENI deleted


class DesiredStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"


class ContainerStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"


class ContainerEvent(StrEnum):
    STARTED = "started"
    EXITED = "exited"  # the process ended (exit code recorded by the caller)
    START_FAILED = "start_failed"  # tried and failed (reason recorded by the caller)
    CANCELLED = "cancelled"  # never tried: the task stopped first, or a dependency can no longer be met


class AttachmentStatus(StrEnum):
    PRECREATED = "PRECREATED"
    CREATED = "CREATED"
    ATTACHING = "ATTACHING"
    ATTACHED = "ATTACHED"
    DETACHING = "DETACHING"
    DETACHED = "DETACHED"
    DELETED = "DELETED"
    FAILED = "FAILED"


class AttachmentEvent(StrEnum):
    CREATED = "created"  # the ENI record exists in EC2
    ATTACH_STARTED = "attach_started"
    ATTACHED = "attached"  # the agent acknowledged it (SubmitAttachmentStateChanges)
    FAILED = "failed"
    DETACH_STARTED = "detach_started"
    DETACHED = "detached"
    DELETED = "deleted"  # the ENI is gone


class ContainerInstanceStatus(StrEnum):
    REGISTERING = "REGISTERING"
    REGISTRATION_FAILED = "REGISTRATION_FAILED"
    ACTIVE = "ACTIVE"
    DRAINING = "DRAINING"
    DEREGISTERING = "DEREGISTERING"
    INACTIVE = "INACTIVE"


class ContainerInstanceEvent(StrEnum):
    REGISTERED = "registered"  # trunk ENI (if any) ready
    REGISTRATION_FAILED = "registration_failed"
    DRAIN = "drain"  # UpdateContainerInstancesState status=DRAINING
    ACTIVATE = "activate"  # UpdateContainerInstancesState status=ACTIVE
    DEREGISTER = "deregister"  # DeregisterContainerInstance, nothing to tear down
    DEREGISTER_STARTED = "deregister_started"  # deregistration with a trunk ENI to deprovision
    DEREGISTERED = "deregistered"  # trunk ENI gone


_TS, _TE = TaskStatus, TaskEvent

TASK_TRANSITIONS: dict[tuple[TaskStatus, TaskEvent], TaskStatus] = {
    (_TS.PROVISIONING, _TE.ENI_ATTACHED): _TS.PENDING,
    (_TS.PROVISIONING, _TE.FAILED_TO_START): _TS.DEPROVISIONING,  # e.g. the ENI provisioning timeout
    (_TS.PROVISIONING, _TE.STOP_REQUESTED): _TS.DEPROVISIONING,  # nothing started: only the ENI to release
    (_TS.PENDING, _TE.CONTAINERS_STARTED): _TS.ACTIVATING,
    (_TS.PENDING, _TE.FAILED_TO_START): _TS.STOPPING,  # stop whatever did start
    (_TS.PENDING, _TE.ESSENTIAL_EXITED): _TS.STOPPING,
    (_TS.PENDING, _TE.STOP_REQUESTED): _TS.STOPPING,  # never activated, so nothing to deactivate
    (_TS.ACTIVATING, _TE.ACTIVATED): _TS.RUNNING,
    (_TS.ACTIVATING, _TE.FAILED_TO_START): _TS.DEACTIVATING,
    (_TS.ACTIVATING, _TE.ESSENTIAL_EXITED): _TS.DEACTIVATING,
    (_TS.ACTIVATING, _TE.STOP_REQUESTED): _TS.DEACTIVATING,
    (_TS.RUNNING, _TE.ESSENTIAL_EXITED): _TS.DEACTIVATING,
    (_TS.RUNNING, _TE.STOP_REQUESTED): _TS.DEACTIVATING,
    (_TS.DEACTIVATING, _TE.DEACTIVATED): _TS.STOPPING,
    (_TS.STOPPING, _TE.CONTAINERS_STOPPED): _TS.DEPROVISIONING,
    (_TS.DEPROVISIONING, _TE.ENI_RELEASED): _TS.STOPPED,
}

_CS, _CE = ContainerStatus, ContainerEvent

CONTAINER_TRANSITIONS: dict[tuple[ContainerStatus, ContainerEvent], ContainerStatus] = {
    (_CS.PENDING, _CE.STARTED): _CS.RUNNING,
    (_CS.PENDING, _CE.START_FAILED): _CS.STOPPED,
    (_CS.PENDING, _CE.CANCELLED): _CS.STOPPED,
    (_CS.RUNNING, _CE.EXITED): _CS.STOPPED,
}

_AS, _AE = AttachmentStatus, AttachmentEvent

# Observed in DescribeTasks: PRECREATED (subnetId only) -> ATTACHED (full details). The other states come
# from the enum; where they sit is our reading of their names [U].
ATTACHMENT_TRANSITIONS: dict[tuple[AttachmentStatus, AttachmentEvent], AttachmentStatus] = {
    (_AS.PRECREATED, _AE.CREATED): _AS.CREATED,
    (_AS.PRECREATED, _AE.ATTACH_STARTED): _AS.ATTACHING,
    (_AS.PRECREATED, _AE.ATTACHED): _AS.ATTACHED,
    (_AS.PRECREATED, _AE.FAILED): _AS.FAILED,
    (_AS.PRECREATED, _AE.DELETED): _AS.DELETED,  # task stopped before any ENI existed
    (_AS.CREATED, _AE.ATTACH_STARTED): _AS.ATTACHING,
    (_AS.CREATED, _AE.ATTACHED): _AS.ATTACHED,
    (_AS.CREATED, _AE.FAILED): _AS.FAILED,
    (_AS.CREATED, _AE.DELETED): _AS.DELETED,
    (_AS.ATTACHING, _AE.ATTACHED): _AS.ATTACHED,
    (_AS.ATTACHING, _AE.FAILED): _AS.FAILED,
    (_AS.ATTACHING, _AE.DETACH_STARTED): _AS.DETACHING,
    (_AS.ATTACHED, _AE.DETACH_STARTED): _AS.DETACHING,
    (_AS.DETACHING, _AE.DETACHED): _AS.DETACHED,
    (_AS.DETACHING, _AE.DELETED): _AS.DELETED,
    (_AS.DETACHED, _AE.DELETED): _AS.DELETED,
    (_AS.FAILED, _AE.DELETED): _AS.DELETED,  # a failed ENI is still cleaned up
}

_IS, _IE = ContainerInstanceStatus, ContainerInstanceEvent

CONTAINER_INSTANCE_TRANSITIONS: dict[
    tuple[ContainerInstanceStatus, ContainerInstanceEvent], ContainerInstanceStatus
] = {
    (_IS.REGISTERING, _IE.REGISTERED): _IS.ACTIVE,
    (_IS.REGISTERING, _IE.REGISTRATION_FAILED): _IS.REGISTRATION_FAILED,
    (_IS.ACTIVE, _IE.DRAIN): _IS.DRAINING,
    (_IS.ACTIVE, _IE.ACTIVATE): _IS.ACTIVE,  # setting the state it already has is accepted [I]
    (_IS.DRAINING, _IE.ACTIVATE): _IS.ACTIVE,
    (_IS.DRAINING, _IE.DRAIN): _IS.DRAINING,  # [I], as above
    (_IS.ACTIVE, _IE.DEREGISTER): _IS.INACTIVE,
    (_IS.DRAINING, _IE.DEREGISTER): _IS.INACTIVE,
    (_IS.REGISTRATION_FAILED, _IE.DEREGISTER): _IS.INACTIVE,  # "can be manually deregistered"
    (_IS.ACTIVE, _IE.DEREGISTER_STARTED): _IS.DEREGISTERING,
    (_IS.DRAINING, _IE.DEREGISTER_STARTED): _IS.DEREGISTERING,
    (_IS.REGISTRATION_FAILED, _IE.DEREGISTER_STARTED): _IS.DEREGISTERING,
    (_IS.DEREGISTERING, _IE.DEREGISTERED): _IS.INACTIVE,
}

# Desired status only moves forward (amazon-ecs-agent ``task_manager.go``): PENDING < RUNNING < STOPPED.
DESIRED_ORDER: dict[DesiredStatus, int] = {
    DesiredStatus.PENDING: 0,
    DesiredStatus.RUNNING: 1,
    DesiredStatus.STOPPED: 2,
}


class StopCode(StrEnum):
    TASK_FAILED_TO_START = "TaskFailedToStart"
    ESSENTIAL_CONTAINER_EXITED = "EssentialContainerExited"
    USER_INITIATED = "UserInitiated"
    SERVICE_SCHEDULER_INITIATED = "ServiceSchedulerInitiated"
    SPOT_INTERRUPTION = "SpotInterruption"
    TERMINATION_NOTICE = "TerminationNotice"
    INFRASTRUCTURE_HEALTH = "InfrastructureHealth"  # newer botocore models only


# ``stoppedReason`` texts ECS writes itself (confirmed from real DescribeTasks / StopTask output).
ESSENTIAL_CONTAINER_EXITED_REASON = "Essential container in task exited"
USER_STOP_REASON = "Task stopped by user"  # StopTask without ``reason``; stopCode UserInitiated
ENI_PROVISIONING_TIMEOUT_REASON = "Timeout waiting for network interface provisioning to complete."

_DEFAULT_REASONS: dict[StopCode, str] = {
    StopCode.ESSENTIAL_CONTAINER_EXITED: ESSENTIAL_CONTAINER_EXITED_REASON,
    StopCode.USER_INITIATED: USER_STOP_REASON,
}

_EVENT_STOP_CODES: dict[TaskEvent, StopCode] = {
    TaskEvent.STOP_REQUESTED: StopCode.USER_INITIATED,
    TaskEvent.ESSENTIAL_EXITED: StopCode.ESSENTIAL_CONTAINER_EXITED,
    TaskEvent.FAILED_TO_START: StopCode.TASK_FAILED_TO_START,
}


S = TypeVar("S", bound=StrEnum)
E = TypeVar("E", bound=StrEnum)


class IllegalTransition(Exception):
    """A ``(state, event)`` pair that is not in the machine's table: a bug in whoever sent the event."""

    def __init__(self, machine: str, state: str, event: str) -> None:
        super().__init__(f"{machine}: no transition from {state} on {event}")
        self.machine = machine
        self.state = state
        self.event = event


@dataclass(frozen=True)
class Machine(Generic[S, E]):
    """One lifecycle: its table plus the enums it ranges over, so it can be walked and drawn."""

    name: str
    table: Mapping[tuple[S, E], S]
    states: type[S]
    events: type[E]
    initial: S

    def all_states(self) -> list[S]:
        return list(self.states)

    def all_events(self) -> list[E]:
        return list(self.events)

    def next(self, state: S, event: E) -> S:
        try:
            return self.table[(state, event)]
        except KeyError:
            raise IllegalTransition(self.name, str(state), str(event)) from None

    def allows(self, state: S, event: E) -> bool:
        return (state, event) in self.table

    def events_from(self, state: S) -> list[E]:
        return [e for (s, e) in self.table if s == state]

    def terminal(self) -> list[S]:
        sources = {s for (s, _) in self.table}
        return [s for s in self.states if s not in sources]


TASK = Machine("task", TASK_TRANSITIONS, TaskStatus, TaskEvent, TaskStatus.PROVISIONING)
CONTAINER = Machine(
    "container", CONTAINER_TRANSITIONS, ContainerStatus, ContainerEvent, ContainerStatus.PENDING
)
ATTACHMENT = Machine(
    "attachment", ATTACHMENT_TRANSITIONS, AttachmentStatus, AttachmentEvent, AttachmentStatus.PRECREATED
)
CONTAINER_INSTANCE = Machine(
    "container-instance",
    CONTAINER_INSTANCE_TRANSITIONS,
    ContainerInstanceStatus,
    ContainerInstanceEvent,
    ContainerInstanceStatus.REGISTERING,
)
ALL_MACHINES: tuple[Machine[Any, Any], ...] = (TASK, CONTAINER, ATTACHMENT, CONTAINER_INSTANCE)


def next_task_status(state: TaskStatus, event: TaskEvent) -> TaskStatus:
    return TASK.next(state, event)


def next_container_status(state: ContainerStatus, event: ContainerEvent) -> ContainerStatus:
    return CONTAINER.next(state, event)


def next_attachment_status(state: AttachmentStatus, event: AttachmentEvent) -> AttachmentStatus:
    return ATTACHMENT.next(state, event)


def next_instance_status(
    state: ContainerInstanceStatus, event: ContainerInstanceEvent
) -> ContainerInstanceStatus:
    return CONTAINER_INSTANCE.next(state, event)


def advance_desired(current: DesiredStatus, requested: DesiredStatus) -> DesiredStatus:
    """The desired status after a request: forward moves win, backward or redundant ones are ignored."""
    return requested if DESIRED_ORDER[requested] > DESIRED_ORDER[current] else current


def stop_code_for(event: TaskEvent) -> StopCode | None:
    """The stopCode a task gets when ``event`` starts its stop (``None`` for events that do not).

    A stop requested by a scheduler rather than a user is ``ServiceSchedulerInitiated``; the caller knows
    who asked and may pass that code instead.
    """
    return _EVENT_STOP_CODES.get(event)


def stopped_reason(code: StopCode, reason: str | None = None) -> str | None:
    """``stoppedReason``: the caller's text if given (StopTask ``reason``), else ECS's default for ``code``."""
    if reason:
        return reason
    return _DEFAULT_REASONS.get(code)


def mermaid(machine: Machine[S, E]) -> str:
    """The table as a Mermaid ``stateDiagram-v2``: one edge per key, labelled with its event."""
    lines = ["stateDiagram-v2", f"    [*] --> {machine.initial.value}"]
    for (state, event), target in machine.table.items():
        lines.append(f"    {state.value} --> {target.value}: {event.value}")
    for state in machine.terminal():
        lines.append(f"    {state.value} --> [*]")
    return "\n".join(lines) + "\n"


def markdown(machines: Sequence[Machine[Any, Any]] = ALL_MACHINES) -> str:
    """A Markdown page with one Mermaid diagram per machine."""
    parts = ["# Lifecycles\n", "Generated from `taskvpc/domain/lifecycle.py`; do not edit by hand.\n"]
    for m in machines:
        parts.append(f"\n## {m.name}\n\n```mermaid\n{mermaid(m)}```\n")
    return "".join(parts)
