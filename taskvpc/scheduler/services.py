"""The service scheduler's decision, pure: what one reconcile pass of a service does.

``plan_service(service, deployments, tasks, now)`` looks at a service as it is (its deployments, its
tasks that are not STOPPED yet, how many tasks each deployment lost) and answers what to do now: start
N tasks of the PRIMARY deployment, stop these tasks, move rollout states, retire drained deployments,
roll back, and which events to write. Applying it (placing, writing rows) is the control plane's.

Rules (ECS API reference, DeploymentConfiguration; developer guide, rolling update and circuit breaker):

* Every task that is not STOPPED counts against ``maximumPercent`` (rounded down), tasks on their way
  down included, so no moment has more tasks up than the maximum.
* A task is healthy when it is RUNNING, wanted RUNNING, and not UNHEALTHY after the grace period; the
  scheduler never stops a healthy task if that leaves fewer than ``minimumHealthyPercent`` (rounded up).
* Tasks of older deployments and tasks above the desired count are surplus: unhealthy surplus goes at
  once, healthy surplus as far as the minimum allows. An UNHEALTHY task is replaced.
* A task that stopped on its own (essential container exit, failure to start, failed health check) is a
  failed task of its deployment. With the circuit breaker on, reaching the threshold fails the
  deployment: it starts nothing more and, with ``rollback``, the last completed deployment comes back
  as a new PRIMARY. Failing tasks also make the scheduler wait before it starts more (backoff).
* The PRIMARY deployment is COMPLETED when it runs the desired count healthy and nothing else is up;
  the service is in a steady state when that holds and no other deployment is left.

Behind load balancers (a deployment with ``loadBalancers``; developer guide, "Use load balancing to
distribute Amazon ECS service traffic" and the task lifecycle):

* A RUNNING task is registered in its deployment's target groups; it counts as healthy only once every
  target of it is ``healthy`` (so a rolling update drains old tasks only as new targets pass their checks,
  and the deployment completes only then). ``initial`` is not healthy, and not a failure either.
* A target ``unhealthy`` after ``healthCheckGracePeriodSeconds`` (from the task's start) gets its task
  replaced: "Task failed ELB health checks in (target-group ...)".
* The scheduler never stops a registered task outright: it deregisters it first (``deregister``; the task
  shows DEACTIVATING, desired STOPPED, meanwhile), waits until its targets have left ``draining`` (the
  group's deregistration delay) and only then stops it (``stop``: on to STOPPING) with the reason it chose. A task that goes down for another reason is deregistered at once (``release``).

Retries that cannot succeed yet (:class:`Retry`): a placement that found no instance, a registration the load
balancer refused. ECS retries both without flooding (its scheduler does not re-run placement every moment,
and a service event that still holds is not repeated); we retry after 0.5 s, doubling per failure up to 30 s
(our numbers: ECS documents none), and at once when the world the attempt failed in changed (the
``fingerprint``: the cluster's instances and their usage, the PRIMARY deployment, the desired count), so an
instance that registers or a task that stops is used within one pass. The event of a failure that persists
is written once, then again only every six hours (ECS's repeat of an unresolved event; unconfirmed number).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from taskvpc.domain import services as svc

RUNNING = "RUNNING"
DEACTIVATING = "DEACTIVATING"  # stopped by the scheduler, held while its targets drain
STOPPED = "STOPPED"
PENDING_STATUSES = frozenset({"PROVISIONING", "PENDING", "ACTIVATING"})
BACKOFF_BASE = 1.0  # seconds after the first recent failure; doubles per failure # unconfirmed (ECS
BACKOFF_MAX = 300.0  # throttles failing services but documents no numbers)

RETRY_BASE = 0.5  # seconds after the first failed attempt; doubles per failure (ours: ECS documents none)
RETRY_MAX = 30.0
EVENT_REPEAT = 6 * 3600.0  # an unresolved failure's event again after this # unconfirmed number

# What the load balancers say of a task (the control plane sums up its targets' health this way).
NO_LB = "NONE"  # its deployment has no load balancers
UNREGISTERED = "UNREGISTERED"  # it has, but no target of the task is registered (yet, or any more)
INITIAL, HEALTHY, UNHEALTHY, DRAINING = "initial", "healthy", "unhealthy", "draining"
REGISTERED = frozenset({INITIAL, HEALTHY, UNHEALTHY})
ELB_UNHEALTHY_STOP_REASON = "Task failed ELB health checks in (target-group {group})"  # real stoppedReason


@dataclass(frozen=True, slots=True)
class Retry:
    """A step that failed: how often in a row, when it may be tried again, the world it failed in, and
    when its event was last written (kept across attempts until the step succeeds)."""

    attempts: int
    retry_at: float
    fingerprint: str = ""
    event_at: float | None = None


def retry_delay(attempts: int) -> float:
    """Seconds to wait after ``attempts`` failures in a row: 0.5, 1, 2, ... capped at 30."""
    if attempts <= 0:
        return 0.0
    return float(min(RETRY_MAX, RETRY_BASE * 2 ** min(attempts - 1, 32)))


def waiting(retry: Retry | None, fingerprint: str, now: float) -> bool:
    """True while a failed step must not be tried again: its delay has not passed and nothing changed."""
    return retry is not None and retry.fingerprint == fingerprint and now < retry.retry_at


def failed_again(previous: Retry | None, fingerprint: str, now: float) -> tuple[Retry, bool]:
    """The retry after one more failure at ``now``, and whether to write its event. A failure in a changed
    world starts the delays over; the event is written for a new failure and then every EVENT_REPEAT."""
    same = previous is not None and previous.fingerprint == fingerprint
    attempts = previous.attempts + 1 if same and previous is not None else 1
    event_at = previous.event_at if previous is not None else None
    due = event_at is None or now - event_at >= EVENT_REPEAT
    retry = Retry(attempts, now + retry_delay(attempts), fingerprint, now if due else event_at)
    return retry, due


def fingerprint(parts: Iterable[object]) -> str:
    """A short stable digest of what a placement depends on (see :class:`Retry`)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()
    return digest[:16]


@dataclass(frozen=True, slots=True)
class ServiceState:
    name: str
    status: str  # ACTIVE | DRAINING
    desired_count: int
    minimum_healthy_percent: int
    maximum_percent: int
    circuit_breaker: bool = False
    rollback: bool = False
    grace_period: float = 0.0
    steady: bool = False  # the newest steady-state event still holds
    stable_deployment: str | None = None  # the last deployment that completed (rollback target)
    placement_retry: Retry | None = None  # the last placement found no room (or failed)
    capacity: str = ""  # fingerprint of what placement depends on now


@dataclass(frozen=True, slots=True)
class DeploymentState:
    id: str
    status: str  # PRIMARY | ACTIVE
    rollout_state: str  # IN_PROGRESS | COMPLETED | FAILED
    failed_tasks: int = 0  # its tasks that stopped on their own, ever
    recent_failures: int = 0  # ... in the backoff window
    last_failure_at: float | None = None


@dataclass(frozen=True, slots=True)
class TargetFailure:
    """Where a task's target is unhealthy: the group, the port and ELB's description of why."""

    target_group: str
    port: int
    description: str


@dataclass(frozen=True, slots=True)
class TaskState:
    arn: str
    deployment: str
    last_status: str
    desired_status: str = RUNNING
    health: str = "UNKNOWN"
    started_at: float | None = None
    created_at: float = 0.0
    lb: str = NO_LB  # NO_LB, UNREGISTERED, or its targets' state taken together (initial ... draining)
    lb_failure: TargetFailure | None = None  # set when ``lb`` is unhealthy
    drain_reason: str | None = None  # deregistered by the scheduler, to be stopped with this reason
    register_retry: Retry | None = None  # its registration was refused: not again before then

    @property
    def task_id(self) -> str:
        return self.arn.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class Counts:
    running: int = 0
    pending: int = 0


@dataclass
class ServicePlan:
    start: dict[str, int] = field(default_factory=dict)  # deployment id -> tasks to start
    stop: list[tuple[str, str]] = field(default_factory=list)  # (task ARN, stoppedReason)
    register: list[str] = field(default_factory=list)  # RUNNING tasks to register in their target groups
    deregister: list[tuple[str, str]] = field(default_factory=list)  # drain, then stop with the reason
    release: list[str] = field(default_factory=list)  # going down otherwise, still registered
    rollout: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (state, reason)
    retire: list[str] = field(default_factory=list)  # drained non-primary deployments
    rollback: bool = False  # make a new PRIMARY from ``stable_deployment``'s launch
    events: list[str] = field(default_factory=list)
    steady: bool = False
    drained: bool = False  # a DRAINING service has no task left: INACTIVE
    counts: Counts = Counts()
    deployment_counts: dict[str, Counts] = field(default_factory=dict)


def backoff_delay(recent_failures: int) -> float:
    if recent_failures <= 0:
        return 0.0
    return float(min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (recent_failures - 1)))


def _counts(tasks: list[TaskState]) -> Counts:
    return Counts(
        running=sum(1 for t in tasks if t.last_status == RUNNING),
        pending=sum(1 for t in tasks if t.last_status in PENDING_STATUSES),
    )


def _unhealthy(task: TaskState, service: ServiceState, now: float) -> bool:
    if task.health != "UNHEALTHY" or task.last_status != RUNNING:
        return False
    return task.started_at is None or now - task.started_at >= service.grace_period


def _failed_elb(task: TaskState, service: ServiceState, now: float) -> bool:
    if task.lb != UNHEALTHY or task.last_status != RUNNING:
        return False
    return task.started_at is None or now - task.started_at >= service.grace_period


def event_target_unhealthy(service: str, task: TaskState, failure: TargetFailure) -> str:
    """ECS's event for an awsvpc task's failing target (developer guide, service event messages)."""
    return (
        f"(service {service}) (task {task.task_id}) (port {failure.port}) is unhealthy in "
        f"(target-group {failure.target_group}) due to (reason {failure.description})."
    )


def plan_service(
    service: ServiceState, deployments: list[DeploymentState], tasks: list[TaskState], now: float
) -> ServicePlan:
    plan = ServicePlan()
    live = [t for t in tasks if t.last_status != STOPPED]
    plan.counts = _counts(live)
    for deployment in deployments:
        plan.deployment_counts[deployment.id] = _counts([t for t in live if t.deployment == deployment.id])
    draining = service.status != svc.ACTIVE
    desired = 0 if draining else service.desired_count
    minimum, maximum = svc.task_bounds(desired, service.minimum_healthy_percent, service.maximum_percent)
    primary = next((d for d in deployments if d.status == svc.PRIMARY), None)
    wanted = [t for t in live if t.desired_status == RUNNING and t.drain_reason is None]
    draining_out = [t for t in live if t.drain_reason is not None and _held(t)]
    stopping: dict[str, str] = {}

    # Replace what failed its health checks (it is not healthy, so the minimum does not protect it).
    for task in wanted:
        if _unhealthy(task, service, now):
            stopping[task.arn] = svc.UNHEALTHY_STOP_REASON
        elif _failed_elb(task, service, now) and task.lb_failure is not None:
            stopping[task.arn] = ELB_UNHEALTHY_STOP_REASON.format(group=task.lb_failure.target_group)
            plan.events.append(event_target_unhealthy(service.name, task, task.lb_failure))

    primary_failed = primary is not None and primary.rollout_state == svc.FAILED
    if (
        primary is not None
        and not draining
        and primary.rollout_state == svc.IN_PROGRESS
        and service.circuit_breaker
        and primary.failed_tasks >= svc.circuit_breaker_threshold(desired)
    ):
        primary_failed = True
        plan.events.append(svc.event_deployment_failed(service.name, primary.id))
        target = service.stable_deployment
        if service.rollback and target is not None and target != primary.id:
            plan.rollback = True
            plan.events.append(svc.event_rolling_back(service.name, target))
            reason = svc.ROLLOUT_ROLLED_BACK_REASON.format(id=target)
        else:
            reason = svc.ROLLOUT_FAILED_REASON
        plan.rollout[primary.id] = (svc.FAILED, reason)

    def healthy(task: TaskState) -> bool:
        in_service = task.lb in (NO_LB, HEALTHY)  # behind a load balancer: healthy there too
        return task.last_status == RUNNING and task.arn not in stopping and in_service

    remaining = [t for t in wanted if t.arn not in stopping]
    ours = [t for t in remaining if primary is not None and t.deployment == primary.id]

    # Start: the PRIMARY deployment up to the desired count, within the maximum, unless backing off.
    if primary is not None and not primary_failed and not draining:
        need = desired - len(ours)
        room = maximum - len(live)
        waited = primary.last_failure_at is None or now - primary.last_failure_at >= backoff_delay(
            primary.recent_failures
        )
        placing = not waiting(service.placement_retry, service.capacity, now)
        if need > 0 and room > 0 and waited and placing:
            plan.start[primary.id] = min(need, room)

    # Stop surplus: older deployments' tasks (not while a failed PRIMARY has nothing to replace them
    # with) and tasks above the desired count; unhealthy ones first, the oldest deployments first.
    surplus = [] if primary_failed else [t for t in remaining if t not in ours]
    excess = len(ours) - desired
    if excess > 0:
        by_age = sorted(ours, key=lambda t: (t.last_status == RUNNING, -t.created_at))
        surplus += by_age[:excess]
    healthy_count = sum(1 for t in remaining if healthy(t))
    allowance = healthy_count - minimum
    for task in sorted(surplus, key=lambda t: (healthy(t), t.created_at)):
        if not healthy(task):
            stopping[task.arn] = _scaling_reason(task)
        elif allowance > 0:
            stopping[task.arn] = _scaling_reason(task)
            allowance -= 1
    _split_stops(plan, live, stopping, draining_out)
    if stopping:
        stopped_running = [t.task_id for t in live if t.arn in stopping]
        plan.events.append(svc.event_stopped(service.name, stopped_running))
    plan.register = [
        t.arn
        for t in wanted
        if t.arn not in stopping
        and t.last_status == RUNNING
        and t.lb == UNREGISTERED
        and not waiting(t.register_retry, "", now)
    ]
    plan.release = [
        t.arn
        for t in tasks
        if t.lb in REGISTERED
        and (t.desired_status != RUNNING or t.last_status == STOPPED)
        and t not in draining_out
    ]

    # Retire drained deployments; complete the primary; steady state.
    busy = {t.deployment for t in live}
    plan.retire = [d.id for d in deployments if d.status != svc.PRIMARY and d.id not in busy]
    others_up = any(t.deployment != (primary.id if primary else None) for t in live)
    settled = (
        primary is not None
        and not primary_failed
        and not others_up
        and not plan.stop
        and not plan.start
        and not plan.deregister
        and not plan.register
        and len(ours) == desired == len(live)
        and all(healthy(t) for t in ours)
    )
    if settled and primary is not None and primary.rollout_state == svc.IN_PROGRESS:
        plan.rollout[primary.id] = (svc.COMPLETED, svc.ROLLOUT_COMPLETED_REASON.format(id=primary.id))
        plan.events.append(svc.event_deployment_completed(service.name, primary.id))
    no_others = all(d.status == svc.PRIMARY or d.id in plan.retire for d in deployments)
    plan.steady = settled and no_others and not draining
    if plan.steady and not service.steady:
        plan.events.append(svc.event_steady(service.name))
    plan.drained = draining and not live
    return plan


def _split_stops(
    plan: ServicePlan, live: list[TaskState], stopping: dict[str, str], draining_out: list[TaskState]
) -> None:
    """A task with targets is deregistered first and stopped once they are gone; one without, at once."""
    by_arn = {t.arn: t for t in live}
    for arn, reason in sorted(stopping.items()):
        if by_arn[arn].lb in REGISTERED or by_arn[arn].lb == DRAINING:
            plan.deregister.append((arn, reason))
        else:
            plan.stop.append((arn, reason))
    for task in draining_out:
        assert task.drain_reason is not None
        if task.lb in REGISTERED:  # registered again meanwhile (by hand): deregister again
            plan.deregister.append((task.arn, task.drain_reason))
        elif task.lb != DRAINING:  # its targets are gone: now it may stop
            plan.stop.append((task.arn, task.drain_reason))
    plan.stop.sort()
    plan.deregister.sort()


def _held(task: TaskState) -> bool:
    """Still on its way out through the drain: wanted RUNNING (the drain began before the task was moved to
    DEACTIVATING, or it could not be) or DEACTIVATING while its targets drain."""
    return task.desired_status == RUNNING or task.last_status == DEACTIVATING


def _scaling_reason(task: TaskState) -> str:
    return svc.SCALING_STOP_REASON.format(id=task.deployment)
