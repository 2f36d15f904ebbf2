"""The task planner: ``plan_task(desired, known, now) -> [Action]``, a pure diff (kubelet's
``computePodActions``). No I/O, no clock, no asyncio: the engine owns the state and applies the actions.

Known state moves forward only (ECS's known status): a container goes PENDING -> STARTING -> RUNNING ->
STOPPING -> STOPPED (or PENDING -> STOPPED when it never starts); the task network ABSENT -> CREATING ->
READY -> REMOVING -> REMOVED (FAILED is retried a few times). The task's known status, as reported, is
PENDING until every essential container runs, then RUNNING, then STOPPED once its containers have all
stopped and its network is gone.

Rules (ECS agent ``dependencygraph/graph.go`` and ``task_manager.go``, as far as they apply):

* Nothing starts before the task network is READY.
* A container starts when each of its ``dependsOn`` holds: START - the dependency has started (it may
  have exited since, amazon-ecs-agent#3927); COMPLETE - it has exited; SUCCESS - it exited 0; HEALTHY -
  its health check passed.
* A dependency that can never hold cancels the waiting container with ECS's reason
  (``CannotStartContainerError: dependency graph: …``) and exit code 143 (amazon-ecs-agent#3218: "marked
  with exitCode 143 ... customers will be able to see a text description"); an essential container
  cancelled so stops the task (the chain reaction that PR describes). SUCCESS on a non-zero exit and a
  dependency that never started use ECS's texts; HEALTHY on a dependency that exited unhealthy, or has no
  health check, is unconfirmed (ECS's agent waits forever there; we fail fast instead).
* A dependency's ``startTimeout`` expiring (for COMPLETE/SUCCESS/HEALTHY) cancels the waiting container
  (ECS's "has timed out" text).
* An essential container that stops (exit, failed start, cancelled) stops the task with "Essential
  container in task exited"; a non-essential one does not.
* Stopping: never-started containers are cancelled; running ones get SIGTERM then SIGKILL after their
  ``stopTimeout``, dependents before their dependencies (reverse ``dependsOn`` order). When every
  container has stopped, the network is removed; then the task is STOPPED.
* A container whose state is unknown (adopted, supervisor gone) counts as running: it is stopped, never
  started a second time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from taskvpc.agentapi.network import Eni as Eni
from taskvpc.agentapi.reports import ContainerReport, HealthStatus, TaskReport as TaskReport
from taskvpc.agentapi.tasks import (  # re-exported: the planner's vocabulary (``tp.DesiredTask``)
    DEFAULT_STOP_TIMEOUT,
    Condition as Condition,
    Dependency as Dependency,
    DesiredContainer as DesiredContainer,
    DesiredTask as DesiredTask,
    DockerVolumeConfig as DockerVolumeConfig,
    EnvironmentFile as EnvironmentFile,
    LinuxParameters as LinuxParameters,
    MountPoint as MountPoint,
    Volume as Volume,
    VolumeFrom as VolumeFrom,
    VolumeScope as VolumeScope,
    task_id_of as task_id_of,
)
from taskvpc.domain.lifecycle import (
    ESSENTIAL_CONTAINER_EXITED_REASON,
    DesiredStatus,
    StopCode,
)

MAX_NETWORK_ATTEMPTS = 3
DEPENDENCY_EXIT_CODE = 143  # what ECS reports for a container stopped by an unresolvable dependency
# unconfirmed: ECS's wording for a task whose network could not be set up on the instance
NETWORK_FAILED_REASON = "ResourceInitializationError: failed to set up the task network: {error}"


# ---------------------------------------------------------------------------------------------- known


class Phase(StrEnum):
    PENDING = "PENDING"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"


class NetPhase(StrEnum):
    ABSENT = "ABSENT"
    CREATING = "CREATING"
    READY = "READY"
    FAILED = "FAILED"
    REMOVING = "REMOVING"
    REMOVED = "REMOVED"


class TaskView(StrEnum):
    """The task's known status as the agent reports it."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"


_VIEW_ORDER = {TaskView.PENDING: 0, TaskView.RUNNING: 1, TaskView.STOPPED: 2}


@dataclass(frozen=True, slots=True)
class KnownContainer:
    name: str
    phase: Phase = Phase.PENDING
    started: bool = False  # it ran at some point (START is satisfied for good)
    exit_code: int | None = None
    reason: str | None = None
    health: HealthStatus = HealthStatus.UNKNOWN
    runtime_id: str | None = None
    started_at: float | None = None
    unknown: bool = False  # adopted in a state we cannot establish: counts as running


@dataclass(frozen=True, slots=True)
class KnownTask:
    arn: str
    containers: Mapping[str, KnownContainer] = field(default_factory=dict)
    network: NetPhase = NetPhase.ABSENT
    network_attempts: int = 0
    network_error: str | None = None
    stopping: bool = False
    stop_reason: str | None = None  # set when the agent decided the stop itself
    stop_code: StopCode | None = None
    status: TaskView = TaskView.PENDING
    reported: TaskReport | None = None  # the last report handed to the reporter
    stopped_acked: bool = False  # the control plane has our STOPPED report
    pull_started_at: float | None = None  # when the first image pull began (epoch seconds)
    pull_stopped_at: float | None = None  # when the latest image pull ended

    def container(self, name: str) -> KnownContainer:
        return self.containers.get(name) or KnownContainer(name)

    def with_container(self, container: KnownContainer) -> KnownTask:
        return replace(self, containers={**self.containers, container.name: container})


# ---------------------------------------------------------------------------------------------- report


_REPORTED_PHASE = {
    Phase.PENDING: "PENDING",
    Phase.STARTING: "PENDING",
    Phase.RUNNING: "RUNNING",
    Phase.STOPPING: "RUNNING",
    Phase.STOPPED: "STOPPED",
}


def report_for(desired: DesiredTask, known: KnownTask) -> TaskReport:
    """What the agent tells the control plane about this task now."""
    names = [c.name for c in desired.containers] + [
        n for n in known.containers if desired.container(n) is None
    ]
    containers = []
    for name in names:
        c = known.container(name)
        containers.append(
            ContainerReport(
                name=name,
                status=_REPORTED_PHASE[c.phase],
                runtime_id=c.runtime_id,
                exit_code=c.exit_code if c.phase is Phase.STOPPED else None,
                reason=c.reason if c.phase is Phase.STOPPED else None,
                health_status=c.health.value,
            )
        )
    view = derive_status(desired, known)
    if known.network in (NetPhase.READY, NetPhase.REMOVING):
        attachment: str | None = "ATTACHED"
    elif known.network is NetPhase.REMOVED:
        attachment = "DETACHED"
    else:
        attachment = None
    return TaskReport(
        task_arn=desired.arn,
        known_status=view.value,
        attachment_status=attachment,
        reason=known.stop_reason,
        containers=tuple(containers),
        pull_started_at=known.pull_started_at,
        pull_stopped_at=known.pull_stopped_at,
    )


def derive_status(desired: DesiredTask, known: KnownTask) -> TaskView:
    """The task's known status; never moves backwards from ``known.status``."""
    computed = TaskView.PENDING
    all_stopped = all(known.container(c.name).phase is Phase.STOPPED for c in desired.containers) and all(
        c.phase is Phase.STOPPED for c in known.containers.values()
    )
    if known.stopping and all_stopped and known.network is NetPhase.REMOVED:
        computed = TaskView.STOPPED
    elif not known.stopping and known.network is NetPhase.READY:
        essentials = [c for c in desired.containers if c.essential]
        if essentials and all(known.container(c.name).phase is Phase.RUNNING for c in essentials):
            computed = TaskView.RUNNING
    return computed if _VIEW_ORDER[computed] > _VIEW_ORDER[known.status] else known.status


# ---------------------------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class BeginStop:
    """The task stops from now on (the agent's decision when ``reason`` is set)."""

    reason: str | None
    code: StopCode


@dataclass(frozen=True, slots=True)
class EnsureNetwork:
    attempt: int = 0  # failed attempts so far: the engine backs off before retrying


@dataclass(frozen=True, slots=True)
class StartContainer:
    name: str


@dataclass(frozen=True, slots=True)
class CancelContainer:
    """A container that never started and never will: STOPPED without running."""

    name: str
    reason: str | None = None
    exit_code: int | None = None


@dataclass(frozen=True, slots=True)
class StopContainer:
    name: str
    timeout: float


@dataclass(frozen=True, slots=True)
class RemoveNetwork:
    pass


@dataclass(frozen=True, slots=True)
class SetStatus:
    status: TaskView


@dataclass(frozen=True, slots=True)
class Report:
    report: TaskReport


@dataclass(frozen=True, slots=True)
class Forget:
    """Everything is stopped, removed and acknowledged: drop the runtime state and end the worker."""


Action = (
    BeginStop
    | EnsureNetwork
    | StartContainer
    | CancelContainer
    | StopContainer
    | RemoveNetwork
    | SetStatus
    | Report
    | Forget
)


# ---------------------------------------------------------------------------------------------- planning


class _Resolution(StrEnum):
    READY = "ready"
    WAIT = "wait"
    NEVER = "never"


_AGENT_STATUS = {  # the ECS agent's container status names, as its error texts print them
    Phase.PENDING: "NONE",
    Phase.STARTING: "CREATED",
    Phase.RUNNING: "RUNNING",
    Phase.STOPPING: "RUNNING",
    Phase.STOPPED: "STOPPED",
}


def _describe(spec: DesiredContainer | None, name: str, known: KnownContainer) -> str:
    """The ECS agent's ``Container.String()``: ``name(image) (KNOWN->DESIRED)[ - Exit: N]``."""
    image = spec.image if spec else ""
    text = f"{name}({image}) ({_AGENT_STATUS[known.phase]}->RUNNING)"
    if known.exit_code is not None:
        text += f" - Exit: {known.exit_code}"
    return text


def _resolve(
    desired: DesiredTask, known: KnownTask, target: DesiredContainer, now: float
) -> tuple[_Resolution, str | None]:
    """Whether ``target``'s dependencies hold now, may hold later, or never can (with ECS's reason)."""
    waiting = False
    for dep in target.depends_on:
        spec = desired.container(dep.container)
        kc = known.container(dep.container)
        dep_text = _describe(spec, dep.container, kc)
        target_text = _describe(target, target.name, known.container(target.name))
        prefix = "CannotStartContainerError: dependency graph: "
        if spec is None:
            return _Resolution.NEVER, (
                f"{prefix}container ordering dependency [{dep.container}] for target [{target_text}] "
                "does not exist."
            )
        never_started = kc.phase is Phase.STOPPED and not kc.started
        if (
            dep.condition is Condition.SUCCESS
            and kc.phase is Phase.STOPPED
            and kc.started
            and kc.exit_code != 0
        ):
            return _Resolution.NEVER, (
                f"{prefix}failed to resolve container ordering dependency [{dep_text}] for target "
                f"[{target_text}] as dependency did not exit successfully."
            )
        if never_started:
            return _Resolution.NEVER, (
                f"{prefix}failed to resolve container ordering dependency [{dep_text}] for target "
                f"[{target_text}] because dependency will never start"
            )
        if dep.condition is Condition.HEALTHY and (
            spec.health_check is None or spec.health_check.argv() is None or kc.phase is Phase.STOPPED
        ):
            # unconfirmed: ECS's agent has no text for this (it waits forever); we fail fast, in its style
            return _Resolution.NEVER, (
                f"{prefix}failed to resolve container ordering dependency [{dep_text}] for target "
                f"[{target_text}] as dependency did not become healthy."
            )
        if (
            dep.condition is not Condition.START
            and kc.phase is not Phase.STOPPED
            and kc.started_at is not None
            and spec.start_timeout
            and now > kc.started_at + spec.start_timeout
        ):
            return _Resolution.NEVER, (
                f"{prefix}container ordering dependency [{dep_text}] for target [{target_text}] has timed out."
            )
        if not _holds(dep.condition, kc):
            waiting = True
    return (_Resolution.WAIT, None) if waiting else (_Resolution.READY, None)


def _holds(condition: Condition, kc: KnownContainer) -> bool:
    if condition is Condition.START:
        return kc.started
    if condition is Condition.COMPLETE:
        return kc.phase is Phase.STOPPED and kc.started
    if condition is Condition.SUCCESS:
        return kc.phase is Phase.STOPPED and kc.started and kc.exit_code == 0
    return kc.phase is Phase.RUNNING and kc.health is HealthStatus.HEALTHY


def _dependents(desired: DesiredTask, name: str) -> list[str]:
    return [c.name for c in desired.containers if any(d.container == name for d in c.depends_on)]


def _stop_decision(desired: DesiredTask, known: KnownTask) -> BeginStop | None:
    if known.stopping:
        return None
    if desired.desired_status is DesiredStatus.STOPPED:
        return BeginStop(None, StopCode.USER_INITIATED)
    for c in desired.containers:
        if c.essential and known.container(c.name).phase is Phase.STOPPED:
            return BeginStop(ESSENTIAL_CONTAINER_EXITED_REASON, StopCode.ESSENTIAL_CONTAINER_EXITED)
    if known.network is NetPhase.FAILED and known.network_attempts >= MAX_NETWORK_ATTEMPTS:
        error = known.network_error or "unknown error"
        # a resource that names its failure as ECS would (the awslogs driver's) keeps its own words
        reason = (
            error
            if error.startswith("CannotStartContainerError")
            else NETWORK_FAILED_REASON.format(error=error)
        )
        return BeginStop(reason, StopCode.TASK_FAILED_TO_START)
    return None


def plan_task(desired: DesiredTask, known: KnownTask, now: float = 0.0) -> list[Action]:
    """The actions that move ``known`` towards ``desired``; [] when there is nothing to do right now.

    Pure and idempotent: the same inputs give the same plan, and a plan never repeats work already in
    flight (STARTING / STOPPING / CREATING / REMOVING phases).
    """
    actions: list[Action] = []
    decision = _stop_decision(desired, known)
    if decision is not None:
        actions.append(decision)
    stopping = known.stopping or decision is not None
    names = [c.name for c in desired.containers] + [
        n for n in known.containers if desired.container(n) is None
    ]

    if stopping:
        running = {
            n for n in names if known.container(n).phase in (Phase.STARTING, Phase.RUNNING, Phase.STOPPING)
        }
        for name in names:
            kc = known.container(name)
            if kc.phase is Phase.PENDING:
                actions.append(CancelContainer(name))
            elif kc.phase is Phase.RUNNING and not any(d in running for d in _dependents(desired, name)):
                spec = desired.container(name)
                timeout = spec.effective_stop_timeout if spec else DEFAULT_STOP_TIMEOUT
                actions.append(StopContainer(name, timeout))
        # never-started containers are cancelled by this very plan
        all_stopped = all(known.container(n).phase in (Phase.STOPPED, Phase.PENDING) for n in names)
        if all_stopped and known.network not in (NetPhase.REMOVING, NetPhase.REMOVED, NetPhase.CREATING):
            actions.append(RemoveNetwork())
    else:
        if known.network is NetPhase.ABSENT or (
            known.network is NetPhase.FAILED and known.network_attempts < MAX_NETWORK_ATTEMPTS
        ):
            actions.append(EnsureNetwork(known.network_attempts))
        for name in names:
            spec = desired.container(name)
            kc = known.container(name)
            if spec is None:
                if kc.phase is Phase.RUNNING:  # not part of the task (any more): it has to go
                    actions.append(StopContainer(name, DEFAULT_STOP_TIMEOUT))
                continue
            if kc.phase is not Phase.PENDING or known.network is not NetPhase.READY:
                continue
            resolution, reason = _resolve(desired, known, spec, now)
            if resolution is _Resolution.READY:
                actions.append(StartContainer(name))
            elif resolution is _Resolution.NEVER:
                actions.append(CancelContainer(name, reason, DEPENDENCY_EXIT_CODE))

    after = apply_decisions(known, actions)  # the report tells what this plan has decided too
    status = derive_status(desired, after)
    if status is not known.status:
        actions.append(SetStatus(status))
    report = report_for(desired, replace(after, status=status))
    if report != known.reported:
        actions.append(Report(report))
    if status is TaskView.STOPPED and known.stopped_acked and report == known.reported:
        actions.append(Forget())
    return actions


def next_deadline(desired: DesiredTask, known: KnownTask) -> float | None:
    """When planning again may decide something with no event to prompt it: the earliest ``startTimeout``
    of a dependency a pending container waits for (the engine sets a timer for it)."""
    if known.stopping:
        return None
    deadlines = []
    for target in desired.containers:
        if known.container(target.name).phase is not Phase.PENDING:
            continue
        for dep in target.depends_on:
            spec = desired.container(dep.container)
            kc = known.container(dep.container)
            if (
                spec is not None
                and spec.start_timeout
                and dep.condition is not Condition.START
                and kc.started_at is not None
                and kc.phase is not Phase.STOPPED
            ):
                deadlines.append(kc.started_at + spec.start_timeout)
    return min(deadlines) if deadlines else None


def is_decision(action: Action) -> bool:
    """Actions complete in :func:`apply_decision` alone, after which planning again may find more."""
    return isinstance(action, BeginStop | CancelContainer | SetStatus)


# ---------------------------------------------------------------------------------------------- effects


def apply_decision(known: KnownTask, action: Action) -> KnownTask:
    """The state change an action makes at once, before any I/O (used by the engine and by tests).

    Decisions (BeginStop, CancelContainer, SetStatus, Report) are complete here; I/O actions move their
    subject into its in-flight phase (STARTING, STOPPING, CREATING, REMOVING).
    """
    if isinstance(action, BeginStop):
        return replace(known, stopping=True, stop_reason=action.reason, stop_code=action.code)
    if isinstance(action, CancelContainer):
        kc = known.container(action.name)
        return known.with_container(
            replace(kc, phase=Phase.STOPPED, reason=action.reason, exit_code=action.exit_code)
        )
    if isinstance(action, StartContainer):
        return known.with_container(replace(known.container(action.name), phase=Phase.STARTING))
    if isinstance(action, StopContainer):
        return known.with_container(replace(known.container(action.name), phase=Phase.STOPPING))
    if isinstance(action, EnsureNetwork):
        return replace(known, network=NetPhase.CREATING)
    if isinstance(action, RemoveNetwork):
        return replace(known, network=NetPhase.REMOVING)
    if isinstance(action, SetStatus):
        return replace(known, status=action.status)
    if isinstance(action, Report):
        return replace(known, reported=action.report)
    return known


def apply_decisions(known: KnownTask, actions: Iterable[Action]) -> KnownTask:
    for action in actions:
        known = apply_decision(known, action)
    return known


# Outcomes of I/O, as the engine records them.


def container_started(known: KnownTask, name: str, runtime_id: str, started_at: float) -> KnownTask:
    kc = known.container(name)
    if kc.phase is Phase.STOPPED:
        return known
    phase = Phase.STOPPING if kc.phase is Phase.STOPPING else Phase.RUNNING
    return known.with_container(
        replace(kc, phase=phase, started=True, runtime_id=runtime_id, started_at=started_at, unknown=False)
    )


def image_pulled(known: KnownTask, started_at: float | None, stopped_at: float | None) -> KnownTask:
    """Record a container's image pull: the task keeps the first start and the latest end (as ECS's agent
    does: ``SetPullStartedAt`` only sets it once, ``SetPullStoppedAt`` always overwrites)."""
    if started_at is not None and (known.pull_started_at is None or started_at < known.pull_started_at):
        known = replace(known, pull_started_at=started_at)
    if stopped_at is not None and (known.pull_stopped_at is None or stopped_at > known.pull_stopped_at):
        known = replace(known, pull_stopped_at=stopped_at)
    return known


def container_start_failed(known: KnownTask, name: str, reason: str) -> KnownTask:
    kc = known.container(name)
    return known.with_container(replace(kc, phase=Phase.STOPPED, reason=reason, exit_code=None))


def container_exited(
    known: KnownTask, name: str, exit_code: int | None, reason: str | None = None
) -> KnownTask:
    kc = known.container(name)
    if kc.phase is Phase.STOPPED:
        return known
    return known.with_container(
        replace(kc, phase=Phase.STOPPED, started=True, exit_code=exit_code, reason=reason or kc.reason)
    )


def container_health(known: KnownTask, name: str, health: HealthStatus) -> KnownTask:
    return known.with_container(replace(known.container(name), health=health))


def network_ready(known: KnownTask) -> KnownTask:
    return replace(known, network=NetPhase.READY, network_error=None)


def network_failed(known: KnownTask, error: str) -> KnownTask:
    return replace(
        known, network=NetPhase.FAILED, network_attempts=known.network_attempts + 1, network_error=error
    )


def network_removed(known: KnownTask) -> KnownTask:
    return replace(known, network=NetPhase.REMOVED)
