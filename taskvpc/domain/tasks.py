"""The ECS task document (the DescribeTasks ``Task`` shape) and the events that move it: pure.

The control plane keeps one document per task, in the wire form DescribeTasks returns, and changes it only
through the functions here; every move of ``lastStatus``, of a container's ``lastStatus`` and of the ENI
attachment's ``status`` goes through the transition tables of :mod:`taskvpc.domain.lifecycle`, so an
illegal move is a bug that raises rather than a silent oddity in an API answer.

What the functions do, in the order a task lives (shapes from real outputs, reference spec section 3):

* :func:`new_task` - RunTask/StartTask: ``PROVISIONING`` for ``awsvpc`` (attachment ``PRECREATED`` with only
  ``subnetId``; containers ``PENDING`` with ``networkInterfaces: []``), ``PENDING`` otherwise; version 1.
* :func:`apply_report` - what the agent reports: the ENI attached (``PENDING``, attachment ``ATTACHED`` with
  ``subnetId``, ``networkInterfaceId``, ``macAddress``, ``privateDnsName``, ``privateIPv4Address``, each
  container's ``networkInterfaces``, ``connectivity`` ``CONNECTED``), every essential container running
  (``ACTIVATING`` then ``RUNNING``: there is no load balancer to register with yet), containers exiting (an
  essential one stops the task: ``EssentialContainerExited``), the task stopped (``executionStoppedAt``; on
  to ``DEPROVISIONING``). It returns what the store must do (attach or release the ENI).
* :func:`request_stop` - StopTask (``UserInitiated``), an essential exit, a failure to start: desired
  ``STOPPED``, ``stopCode``, ``stoppedReason``, ``stoppingAt``; ``RUNNING`` goes to ``DEACTIVATING`` (the
  agent's next word moves it on to ``STOPPING``), ``PENDING`` to ``STOPPING``, ``PROVISIONING`` to
  ``DEPROVISIONING``.
* :func:`begin_deactivating` / :func:`deactivated` - the service scheduler stops a task registered in target
  groups: ``DEACTIVATING`` with desired ``STOPPED`` while its targets drain (the agent is still told
  ``RUNNING``: :func:`agent_desired_status`), then ``STOPPING`` once they are gone and the agent gets the stop.
* :func:`finish` - the ENI is released: attachment ``DELETED``, ``STOPPED``, ``stoppedAt``.

``version`` goes up by one for every call that changes the document (:func:`bump_version`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from taskvpc.domain import lifecycle
from taskvpc.domain.errors import invalid_parameter
from taskvpc.domain.lifecycle import (
    AttachmentEvent,
    AttachmentStatus,
    ContainerEvent,
    ContainerStatus,
    StopCode,
    TaskEvent,
    TaskStatus,
)
from taskvpc.domain.units import parse_cpu_units, parse_memory_mib

Doc = dict[str, Any]

AWSVPC = "awsvpc"
ENI_ATTACHMENT_TYPE = "ElasticNetworkInterface"
LAUNCH_TYPE = "EC2"
# Tasks counted as pending (cluster and instance ``pendingTasksCount``); RUNNING ones are the running count.
PENDING_STATES = frozenset({TaskStatus.PROVISIONING, TaskStatus.PENDING, TaskStatus.ACTIVATING})
STOPPING_STATES = frozenset(
    {TaskStatus.DEACTIVATING, TaskStatus.STOPPING, TaskStatus.DEPROVISIONING, TaskStatus.STOPPED}
)
# Set while a task's targets drain: the task stays DEACTIVATING and its containers keep running (hidden from
# DescribeTasks, as every member starting with "_").
DEREGISTERING = "_deregistering"
FAILED_TO_START_REASON = "Task failed to start"  # unconfirmed: ECS's texts name the cause instead

# The order real DescribeTasks outputs print a container's members in (the API model's order).
CONTAINER_KEY_ORDER = (
    "containerArn",
    "taskArn",
    "name",
    "image",
    "imageDigest",
    "runtimeId",
    "lastStatus",
    "exitCode",
    "reason",
    "networkBindings",
    "networkInterfaces",
    "healthStatus",
    "managedAgents",
    "cpu",
    "memory",
    "memoryReservation",
    "gpuIds",
)
_CONTAINER_OVERRIDE_FIELDS = ("command", "cpu", "memory", "memoryReservation", "resourceRequirements")


# --------------------------------------------------------------------------------------------- overrides


def check_overrides(task_definition: Mapping[str, Any], overrides: Mapping[str, Any]) -> None:
    """InvalidParameterException for an override of a container the task definition does not have."""
    names = {c["name"] for c in task_definition.get("containerDefinitions", [])}
    for override in overrides.get("containerOverrides", []):
        name = override.get("name")
        if name not in names:
            # real text (RunTask outputs quoted in public notes)
            raise invalid_parameter(
                f"Override for container named {name} is not a container in the TaskDefinition."
            )
    for member, parse in (("cpu", parse_cpu_units), ("memory", parse_memory_mib)):
        value = overrides.get(member)
        if value is not None and parse(str(value)) is None:
            raise invalid_parameter(f"Invalid '{member}' override: {value}.")  # unconfirmed wording


def effective_containers(task_definition: Mapping[str, Any], overrides: Mapping[str, Any]) -> list[Doc]:
    """The task definition's container definitions with the RunTask container overrides applied."""
    by_name = {o.get("name"): o for o in overrides.get("containerOverrides", [])}
    result: list[Doc] = []
    for definition in task_definition.get("containerDefinitions", []):
        container = dict(definition)
        override = by_name.get(container["name"])
        if override:
            for member in _CONTAINER_OVERRIDE_FIELDS:
                if member in override:
                    container[member] = override[member]
            if "environment" in override:
                merged = {e["name"]: e for e in container.get("environment", [])}
                merged.update({e["name"]: e for e in override["environment"]})
                container["environment"] = list(merged.values())
            if "environmentFiles" in override:
                container["environmentFiles"] = [
                    *container.get("environmentFiles", []),
                    *override["environmentFiles"],
                ]
        container.setdefault("essential", True)
        result.append(container)
    return result


def task_limits(
    task_definition: Mapping[str, Any], overrides: Mapping[str, Any]
) -> tuple[int | None, int | None]:
    """The task-level (CPU units, MiB) limits its containers share, overrides first; None where unset."""
    cpu_text = overrides.get("cpu") or task_definition.get("cpu")
    memory_text = overrides.get("memory") or task_definition.get("memory")
    cpu = parse_cpu_units(str(cpu_text)) if cpu_text is not None else None
    memory = parse_memory_mib(str(memory_text)) if memory_text is not None else None
    return cpu, memory


def task_resources(
    task_definition: Mapping[str, Any], overrides: Mapping[str, Any], containers: Sequence[Mapping[str, Any]]
) -> tuple[int, int]:
    """(CPU units, MEMORY MiB) the task takes from its instance: task-level values, else the containers'."""
    cpu, memory = task_limits(task_definition, overrides)
    if cpu is None:
        cpu = sum(int(c.get("cpu") or 0) for c in containers)
    if memory is None:
        memory = sum(int(c.get("memory") or c.get("memoryReservation") or 0) for c in containers)
    return cpu, memory


def overrides_view(task_definition: Mapping[str, Any], overrides: Mapping[str, Any]) -> Doc:
    """``Task.overrides`` as ECS echoes it: one entry per container (``{"name"}`` when not overridden)."""
    by_name = {o.get("name"): o for o in overrides.get("containerOverrides", [])}
    view: Doc = {
        "containerOverrides": [
            by_name.get(c["name"]) or {"name": c["name"]}
            for c in task_definition.get("containerDefinitions", [])
        ],
        "inferenceAcceleratorOverrides": list(overrides.get("inferenceAcceleratorOverrides", [])),
    }
    for member in ("cpu", "memory", "taskRoleArn", "executionRoleArn", "ephemeralStorage"):
        if member in overrides:
            view[member] = overrides[member]
    return view


# --------------------------------------------------------------------------------------------- creation


@dataclass(frozen=True, slots=True)
class NewTask:
    """Everything :func:`new_task` needs; identifiers and times come from the caller (no clock here)."""

    task_arn: str
    cluster_arn: str
    task_definition: Mapping[str, Any]
    overrides: Mapping[str, Any]
    containers: Sequence[Mapping[str, Any]]  # effective container definitions
    container_arns: Sequence[str]
    container_instance_arn: str
    availability_zone: str
    cpu: int
    memory: int
    group: str
    created_at: float
    started_by: str | None = None
    attachment_id: str | None = None  # awsvpc: the ENI attachment
    subnet_id: str | None = None  # awsvpc: the subnet the ENI was reserved in
    cpu_architecture: str | None = None  # the instance's ``ecs.cpu-architecture``
    tags: Sequence[Mapping[str, str]] = field(default_factory=tuple)


def new_task(spec: NewTask) -> Doc:
    awsvpc = spec.attachment_id is not None
    containers = []
    for definition, arn in zip(spec.containers, spec.container_arns, strict=True):
        container: Doc = {
            "containerArn": arn,
            "taskArn": spec.task_arn,
            "name": definition["name"],
            "image": definition.get("image"),
            "lastStatus": ContainerStatus.PENDING.value,
            "networkInterfaces": [],
            "cpu": str(definition.get("cpu") or 0),
        }
        if definition.get("memory") is not None:
            container["memory"] = str(definition["memory"])
        if definition.get("memoryReservation") is not None:
            container["memoryReservation"] = str(definition["memoryReservation"])
        containers.append(container)
    doc: Doc = {
        "attachments": [],
        "availabilityZone": spec.availability_zone,
        "clusterArn": spec.cluster_arn,
        "containerInstanceArn": spec.container_instance_arn,
        "containers": containers,
        "cpu": str(spec.cpu),
        "createdAt": spec.created_at,
        "desiredStatus": lifecycle.DesiredStatus.RUNNING.value,
        "enableExecuteCommand": False,
        "group": spec.group,
        "lastStatus": (TaskStatus.PROVISIONING if awsvpc else TaskStatus.PENDING).value,
        "launchType": LAUNCH_TYPE,
        "memory": str(spec.memory),
        "overrides": overrides_view(spec.task_definition, spec.overrides),
        "taskArn": spec.task_arn,
        "taskDefinitionArn": spec.task_definition["taskDefinitionArn"],
        "version": 1,
    }
    if spec.cpu_architecture:
        doc["attributes"] = [{"name": "ecs.cpu-architecture", "value": spec.cpu_architecture}]
    if spec.started_by:
        doc["startedBy"] = spec.started_by
    if awsvpc:
        doc["attachments"] = [
            {
                "id": spec.attachment_id,
                "type": ENI_ATTACHMENT_TYPE,
                "status": AttachmentStatus.PRECREATED.value,
                "details": [{"name": "subnetId", "value": spec.subnet_id}],
            }
        ]
    else:
        doc["healthStatus"] = "UNKNOWN"
    return sort_task(doc)


def sort_task(doc: Doc) -> Doc:
    """Members in the order current ECS prints them (alphabetical); containers in model order."""
    doc["containers"] = [
        {key: c[key] for key in CONTAINER_KEY_ORDER if key in c} for c in doc.get("containers", [])
    ]
    return dict(sorted(doc.items()))


# --------------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class EniDetails:
    """The task ENI as the attachment's ``details`` show it once attached."""

    network_interface_id: str
    mac_address: str
    private_dns_name: str
    private_ipv4_address: str


@dataclass(frozen=True, slots=True)
class ContainerReport:
    name: str
    status: str | None = None  # PENDING | RUNNING | STOPPED
    runtime_id: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    health_status: str | None = None  # HEALTHY | UNHEALTHY | UNKNOWN


@dataclass(frozen=True, slots=True)
class TaskReport:
    task_arn: str
    known_status: str | None = None  # PENDING | RUNNING | STOPPED
    attachment_status: str | None = None  # ATTACHED | DETACHED
    pull_started_at: float | None = None
    pull_stopped_at: float | None = None
    reason: str | None = None
    containers: tuple[ContainerReport, ...] = ()


@dataclass(slots=True)
class Effects:
    """What the store has to do after :func:`apply_report` (the document is already updated)."""

    attach_eni: bool = False  # mark the ENI in-use (then the document shows it ATTACHED)
    release_eni: bool = False  # delete the ENI and free its address, then call :func:`finish`
    desired_changed: bool = False  # the task's desired status moved: the agent's desired state changed


def status_of(doc: Mapping[str, Any]) -> TaskStatus:
    return TaskStatus(doc["lastStatus"])


def is_awsvpc(doc: Mapping[str, Any]) -> bool:
    return any(a.get("type") == ENI_ATTACHMENT_TYPE for a in doc.get("attachments", []))


def _move(doc: Doc, event: TaskEvent) -> None:
    doc["lastStatus"] = lifecycle.next_task_status(status_of(doc), event).value


def _eni_attachment(doc: Doc) -> Doc | None:
    for attachment in doc.get("attachments", []):
        if attachment.get("type") == ENI_ATTACHMENT_TYPE:
            return attachment  # type: ignore[no-any-return]
    return None


def _move_attachment(attachment: Doc, event: AttachmentEvent) -> None:
    current = AttachmentStatus(attachment["status"])
    attachment["status"] = lifecycle.next_attachment_status(current, event).value


def mark_attached(doc: Doc, eni: EniDetails, now: float) -> None:
    """The agent has the ENI in the task's namespace: PROVISIONING -> PENDING with the full details."""
    attachment = _eni_attachment(doc)
    if attachment is None or status_of(doc) is not TaskStatus.PROVISIONING:
        return
    _move_attachment(attachment, AttachmentEvent.ATTACHED)
    subnet_id = next((d["value"] for d in attachment["details"] if d["name"] == "subnetId"), None)
    attachment["details"] = [
        {"name": "subnetId", "value": subnet_id},
        {"name": "networkInterfaceId", "value": eni.network_interface_id},
        {"name": "macAddress", "value": eni.mac_address},
        {"name": "privateDnsName", "value": eni.private_dns_name},
        {"name": "privateIPv4Address", "value": eni.private_ipv4_address},  # capital IPv4, as ECS writes it
    ]
    for container in doc["containers"]:
        container["networkInterfaces"] = [
            {"attachmentId": attachment["id"], "privateIpv4Address": eni.private_ipv4_address}
        ]
    _move(doc, TaskEvent.ENI_ATTACHED)
    _connect(doc, now)


def _connect(doc: Doc, now: float) -> None:
    if "connectivity" not in doc:
        doc["connectivity"] = "CONNECTED"
        doc["connectivityAt"] = now
    doc.setdefault("healthStatus", "UNKNOWN")


def request_stop(doc: Doc, event: TaskEvent, code: StopCode, reason: str | None, now: float) -> bool:
    """Desired STOPPED with ``code`` and its reason; False when the task was already on its way down."""
    if doc["desiredStatus"] == lifecycle.DesiredStatus.STOPPED.value:
        return False
    doc["desiredStatus"] = lifecycle.advance_desired(
        lifecycle.DesiredStatus(doc["desiredStatus"]), lifecycle.DesiredStatus.STOPPED
    ).value
    doc["stopCode"] = code.value
    text = lifecycle.stopped_reason(code, reason)
    if text is None and code is StopCode.TASK_FAILED_TO_START:
        text = FAILED_TO_START_REASON
    if text is not None:
        doc["stoppedReason"] = text
    doc["stoppingAt"] = now
    state = status_of(doc)
    if lifecycle.TASK.allows(state, event):
        _move(doc, event)
    elif lifecycle.TASK.allows(state, TaskEvent.STOP_REQUESTED):
        _move(doc, TaskEvent.STOP_REQUESTED)
    return True


def begin_deactivating(doc: Doc, code: StopCode, reason: str | None, now: float) -> bool:
    """The scheduler deregisters a RUNNING task from its target groups before it stops it (developer guide,
    task lifecycle: DEACTIVATING is the load balancer deregistration): desired STOPPED with ``code`` and
    ``reason``, RUNNING -> DEACTIVATING now, and it stays there, its containers running, until
    :func:`deactivated`. False (nothing changed) for a task that is not RUNNING or already going down."""
    if status_of(doc) is not TaskStatus.RUNNING or doc["desiredStatus"] != lifecycle.DesiredStatus.RUNNING:
        return False
    request_stop(doc, TaskEvent.STOP_REQUESTED, code, reason, now)
    doc[DEREGISTERING] = True
    return True


def deactivated(doc: Doc) -> bool:
    """Its targets have drained: DEACTIVATING -> STOPPING, and the agent now gets the stop. False when the
    task was not held in DEACTIVATING (nothing changed)."""
    if not doc.pop(DEREGISTERING, False):
        return False
    if status_of(doc) is TaskStatus.DEACTIVATING:
        _move(doc, TaskEvent.DEACTIVATED)
    return True


def is_deactivating(doc: Mapping[str, Any]) -> bool:
    """Held in DEACTIVATING while its targets drain (see :func:`begin_deactivating`)."""
    return bool(doc.get(DEREGISTERING))


def agent_desired_status(doc: Mapping[str, Any]) -> str:
    """The desired status the agent is given: RUNNING while the targets drain (the task keeps serving the
    connections in flight), the document's otherwise."""
    return lifecycle.DesiredStatus.RUNNING.value if is_deactivating(doc) else str(doc["desiredStatus"])


def _walk_down(doc: Doc) -> None:
    """After the agent stopped everything: on through DEACTIVATING and STOPPING to DEPROVISIONING."""
    doc.pop(DEREGISTERING, None)  # stopped on its own while draining: nothing is held any more
    steps = {
        TaskStatus.DEACTIVATING: TaskEvent.DEACTIVATED,
        TaskStatus.STOPPING: TaskEvent.CONTAINERS_STOPPED,
    }
    while (event := steps.get(status_of(doc))) is not None:
        _move(doc, event)


def finish(doc: Doc, now: float) -> None:
    """The ENI (if any) is released: attachment DELETED; DEPROVISIONING -> STOPPED."""
    attachment = _eni_attachment(doc)
    if attachment is not None:
        state = AttachmentStatus(attachment["status"])
        if state in (AttachmentStatus.ATTACHED, AttachmentStatus.ATTACHING):
            _move_attachment(attachment, AttachmentEvent.DETACH_STARTED)
        if lifecycle.ATTACHMENT.allows(AttachmentStatus(attachment["status"]), AttachmentEvent.DELETED):
            _move_attachment(attachment, AttachmentEvent.DELETED)
    if status_of(doc) is TaskStatus.DEPROVISIONING:
        _move(doc, TaskEvent.ENI_RELEASED)
        doc["stoppedAt"] = now
    doc.setdefault("executionStoppedAt", now)


def fail_unattached(doc: Doc, reason: str, now: float) -> bool:
    """The ENI was never attached in time: attachment ``FAILED``, the task stopped (``TaskFailedToStart``
    with ``reason``, unless a stop came first) and its containers cancelled; the caller then releases the
    ENI (:func:`finish`). False when the attachment is not ``PRECREATED`` any more (nothing to do)."""
    attachment = _eni_attachment(doc)
    if attachment is None or attachment["status"] != AttachmentStatus.PRECREATED.value:
        return False
    _move_attachment(attachment, AttachmentEvent.FAILED)
    request_stop(doc, TaskEvent.FAILED_TO_START, StopCode.TASK_FAILED_TO_START, reason, now)
    for container in doc["containers"]:
        _stop_container(container)
    doc.setdefault("executionStoppedAt", now)
    return True


def force_stop(doc: Doc, code: StopCode, reason: str | None, now: float) -> None:
    """The instance is gone (forced deregistration): stop without the agent; the caller then releases."""
    request_stop(doc, TaskEvent.STOP_REQUESTED, code, reason, now)
    if status_of(doc) is TaskStatus.PROVISIONING:
        _move(doc, TaskEvent.STOP_REQUESTED)
    for container in doc["containers"]:
        _stop_container(container)
    _walk_down(doc)
    doc.setdefault("executionStoppedAt", now)


def _stop_container(container: Doc) -> None:
    state = ContainerStatus(container["lastStatus"])
    if state is ContainerStatus.RUNNING:
        container["lastStatus"] = lifecycle.next_container_status(state, ContainerEvent.EXITED).value
    elif state is ContainerStatus.PENDING:
        container["lastStatus"] = lifecycle.next_container_status(state, ContainerEvent.CANCELLED).value


_CONTAINER_ORDER = {ContainerStatus.PENDING: 0, ContainerStatus.RUNNING: 1, ContainerStatus.STOPPED: 2}


def _apply_container(container: Doc, report: ContainerReport) -> tuple[bool, bool]:
    """Update one container; (stopped just now, failed to start)."""
    if report.runtime_id:
        container["runtimeId"] = report.runtime_id
    if report.health_status in ("HEALTHY", "UNHEALTHY", "UNKNOWN"):
        container["healthStatus"] = report.health_status
    if report.status not in ("PENDING", "RUNNING", "STOPPED"):
        return False, False
    current = ContainerStatus(container["lastStatus"])
    target = ContainerStatus(report.status)
    if _CONTAINER_ORDER[target] <= _CONTAINER_ORDER[current]:
        return False, False  # known status only moves forward
    failed = False
    if target is ContainerStatus.RUNNING:
        event = ContainerEvent.STARTED
    elif current is ContainerStatus.RUNNING:
        event = ContainerEvent.EXITED
    elif report.exit_code is None:
        event, failed = ContainerEvent.START_FAILED, True
    else:  # it ran (briefly) between two reports
        container["lastStatus"] = lifecycle.next_container_status(current, ContainerEvent.STARTED).value
        current, event = ContainerStatus.RUNNING, ContainerEvent.EXITED
    container["lastStatus"] = lifecycle.next_container_status(current, event).value
    if target is ContainerStatus.RUNNING:
        container.setdefault("networkBindings", [])
        container.setdefault("healthStatus", "UNKNOWN")
    if target is ContainerStatus.STOPPED:
        if report.exit_code is not None:
            container["exitCode"] = report.exit_code
        if report.reason:
            container["reason"] = report.reason
    return target is ContainerStatus.STOPPED, failed


def _task_health(doc: Doc, health_checked: Iterable[str]) -> str:
    checked = set(health_checked)
    states = [c.get("healthStatus", "UNKNOWN") for c in doc["containers"] if c["name"] in checked]
    if not states:
        return "UNKNOWN"
    if "UNHEALTHY" in states:
        return "UNHEALTHY"
    return "HEALTHY" if all(s == "HEALTHY" for s in states) else "UNKNOWN"


def apply_report(
    doc: Doc,
    report: TaskReport,
    now: float,
    *,
    essential: Mapping[str, bool],
    health_checked: Iterable[str] = (),
    eni: EniDetails | None = None,
) -> Effects:
    """Fold one task report from the agent into ``doc``; a report that would move backwards is ignored.

    ``essential`` maps container names to their ``essential`` flag; ``health_checked`` names the essential
    containers with a ``healthCheck`` (they decide the task's ``healthStatus``); ``eni`` is the task ENI.
    """
    effects = Effects()
    if status_of(doc) is TaskStatus.STOPPED:
        return effects
    if report.pull_started_at is not None and "pullStartedAt" not in doc:
        doc["pullStartedAt"] = report.pull_started_at
    # the first pull's start and the latest pull's end, as ECS's agent keeps them (task.go SetPullStartedAt
    # sets once, SetPullStoppedAt overwrites)
    if report.pull_stopped_at is not None and report.pull_stopped_at > doc.get("pullStoppedAt", 0.0):
        doc["pullStoppedAt"] = report.pull_stopped_at
    known = report.known_status
    if (
        status_of(doc) is TaskStatus.PROVISIONING
        and doc["desiredStatus"] != lifecycle.DesiredStatus.STOPPED.value
        and (report.attachment_status == "ATTACHED" or known == "RUNNING")
        and eni is not None
    ):
        effects.attach_eni = True
        mark_attached(doc, eni, now)
    elif status_of(doc) is TaskStatus.PENDING and not is_awsvpc(doc):
        _connect(doc, now)

    by_name = {c["name"]: c for c in doc["containers"]}
    essential_stopped: list[tuple[Doc, bool]] = []
    for item in report.containers:
        container = by_name.get(item.name)
        if container is None:
            continue
        stopped, failed = _apply_container(container, item)
        if stopped and essential.get(item.name, True):
            essential_stopped.append((container, failed))
    if doc.get("healthStatus") is not None:
        doc["healthStatus"] = _task_health(doc, health_checked)

    desired_running = doc["desiredStatus"] == lifecycle.DesiredStatus.RUNNING.value
    state = status_of(doc)
    if desired_running and known == "RUNNING" and state is TaskStatus.PENDING and not essential_stopped:
        _move(doc, TaskEvent.CONTAINERS_STARTED)
        _move(doc, TaskEvent.ACTIVATED)  # nothing to register with yet (no load balancers)
        doc["startedAt"] = now
    if desired_running and essential_stopped:
        container, failed = essential_stopped[0]
        if failed or status_of(doc) is TaskStatus.PROVISIONING:
            reason = container.get("reason") or report.reason
            request_stop(doc, TaskEvent.FAILED_TO_START, StopCode.TASK_FAILED_TO_START, reason, now)
        else:
            request_stop(doc, TaskEvent.ESSENTIAL_EXITED, StopCode.ESSENTIAL_CONTAINER_EXITED, None, now)
        effects.desired_changed = True
    elif (
        status_of(doc) is TaskStatus.DEACTIVATING
        and report.known_status is not None
        and not is_deactivating(doc)
    ):
        _move(doc, TaskEvent.DEACTIVATED)  # the agent has the stop: nothing to deregister, so STOPPING

    if known == "STOPPED":
        if doc["desiredStatus"] == lifecycle.DesiredStatus.RUNNING.value:
            if status_of(doc) in (TaskStatus.PROVISIONING, TaskStatus.PENDING):
                request_stop(
                    doc, TaskEvent.FAILED_TO_START, StopCode.TASK_FAILED_TO_START, report.reason, now
                )
            else:
                code = StopCode.ESSENTIAL_CONTAINER_EXITED
                request_stop(doc, TaskEvent.ESSENTIAL_EXITED, code, report.reason, now)
            effects.desired_changed = True
        for container in doc["containers"]:
            _stop_container(container)
        _walk_down(doc)
        doc.setdefault("executionStoppedAt", now)
        if status_of(doc) is TaskStatus.DEPROVISIONING:
            effects.release_eni = True
    return effects


def bump_version(before: Mapping[str, Any], after: Doc) -> bool:
    """``version`` + 1 when anything else changed; True if it did."""
    if dict(before) == after:
        return False
    after["version"] = int(before.get("version", 0)) + 1
    return True
