"""The service scheduler's apply step: one reconcile pass of one service, in one transaction.

``reconcile_in(conn, ctx, service_id)`` reads the service, its deployments and its tasks, asks the pure
planner (:func:`taskvpc.scheduler.services.plan_service`) what to do, and does it: starts tasks with
RunTask's own placement and creation (``startedBy`` = the deployment id, ``group`` = ``service:NAME``),
asks tasks to stop (``ServiceSchedulerInitiated``), moves deployments, writes events and counts. It is
keyed and level-triggered: running it again on an unchanged world changes nothing. The control plane's
reconcile runner drives it (:class:`taskvpc.control.reconcile.services.ServiceScheduler`): its listing,
:func:`busy_services`, finds in one unlocked bulk read the services a pass would change.

Behind load balancers it also registers RUNNING tasks in their deployment's target groups and
deregisters a task before it stops it (:mod:`taskvpc.control.elbv2.service_targets`). The service
document keeps, for each live task, the targets it registered (``_targets``) and, while they drain, the
reason it will be stopped with (``_draining``); the task shows DEACTIVATING (desired STOPPED) meanwhile,
its agent still told RUNNING, and moves on to STOPPING only once its targets have left ``draining``.

What it could not do is retried with a backoff rather than on every pass (``_placement`` for a placement
that found no room, ``_registerRetry`` per task for a registration a group refused; see
:class:`taskvpc.scheduler.services.Retry`), so a service that waits costs no write transaction.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.ecs import services as service_calls, task_roles, task_state, tasks
from taskvpc.control.elbv2 import service_targets
from taskvpc.domain import services as svc, tasks as taskdoc
from taskvpc.domain.errors import ClientError
from taskvpc.domain.lifecycle import StopCode, TaskEvent
from taskvpc.scheduler import PlacementFailure, services as planner
from taskvpc.scheduler.services import DeploymentState, ServicePlan, ServiceState, TaskState, plan_service
from taskvpc.store import ecs_repo, services_repo, tasks_repo

Row = dict[str, Any]
Doc = dict[str, Any]
TaskRow = tuple[str, str, str, str, float, Doc]

FAILURE_WINDOW = 900.0  # seconds of failures that count for backoff # unconfirmed (ECS has no number)
_FAILURE_CODES = frozenset({StopCode.ESSENTIAL_CONTAINER_EXITED.value, StopCode.TASK_FAILED_TO_START.value})

# "The closest matching (container-instance ID) ..." endings per placement failure (developer guide,
# service event messages); the reasons without a known text are quoted as ECS quotes RESOURCE:ENI.
_CLOSEST = {
    "RESOURCE:CPU": "has insufficient CPU units available.",
    "RESOURCE:MEMORY": "has insufficient memory available.",
    "ATTRIBUTE": "is missing an attribute required by your task.",
}


_ELB_FAILURE = planner.ELB_UNHEALTHY_STOP_REASON.split("{", 1)[0]


def _is_failure(body: Doc) -> bool:
    if body.get("desiredStatus") != "STOPPED":
        return False
    reason = str(body.get("stoppedReason") or "")
    return (
        body.get("stopCode") in _FAILURE_CODES
        or reason == svc.UNHEALTHY_STOP_REASON
        or reason.startswith(_ELB_FAILURE)
    )


def _retry(raw: Doc | None) -> planner.Retry | None:
    if not raw:
        return None
    return planner.Retry(
        int(raw["attempts"]), float(raw["retryAt"]), str(raw["fingerprint"]), raw.get("eventAt")
    )


def _retry_doc(retry: planner.Retry) -> Doc:
    return {
        "attempts": retry.attempts,
        "retryAt": retry.retry_at,
        "fingerprint": retry.fingerprint,
        "eventAt": retry.event_at,
    }


InstanceRow = dict[str, Any]


def _capacity(doc: Doc, deployments: list[Doc], instances: list[InstanceRow], desired: int) -> str:
    """What a placement of this service depends on: any change (an instance registers or drains, a task
    starts or stops and its instance's usage moves, UpdateService) makes a failed placement worth a retry."""
    primary = next((d["id"] for d in deployments if d["status"] == svc.PRIMARY), "")
    parts: list[object] = [primary, desired, doc.get("placementConstraints"), doc.get("placementStrategy")]
    parts += sorted((row["arn"], row["status"], row["version"]) for row in instances)
    return planner.fingerprint(parts)


def _group_arns(doc: Doc) -> set[str]:
    """The target groups a pass may read: those the service's tasks registered in."""
    return {entry["targetGroupArn"] for entries in (doc.get("_targets") or {}).values() for entry in entries}


def _lb_state(
    doc: Doc, deployment: Doc | None, arn: str, targets: service_targets.TargetRows, now: float
) -> tuple[str, planner.TargetFailure | None]:
    recorded = (doc.get("_targets") or {}).get(arn)
    if recorded is not None:  # [] when its groups were deleted: nothing to be healthy in
        return service_targets.summarize(recorded, targets, now) if recorded else (planner.NO_LB, None)
    if deployment is not None and deployment.get("_loadBalancers"):
        return planner.UNREGISTERED, None
    return planner.NO_LB, None


def _states(
    doc: Doc,
    deployments: list[Doc],
    rows: list[TaskRow],
    now: float,
    desired: int,
    targets: service_targets.TargetRows,
    capacity: str,
) -> tuple[ServiceState, list[DeploymentState], list[TaskState]]:
    configuration = doc["deploymentConfiguration"]
    breaker = configuration.get("deploymentCircuitBreaker") or {}
    service = ServiceState(
        name=doc["serviceName"],
        status=doc["status"],
        desired_count=desired,
        minimum_healthy_percent=configuration["minimumHealthyPercent"],
        maximum_percent=configuration["maximumPercent"],
        circuit_breaker=bool(breaker.get("enable")),
        rollback=bool(breaker.get("rollback")),
        grace_period=float(doc.get("healthCheckGracePeriodSeconds") or 0),
        steady=bool(doc.get("_steady")),
        stable_deployment=(doc.get("_stable") or {}).get("id"),
        placement_retry=_retry(doc.get("_placement")),
        capacity=capacity,
    )
    register_retries = doc.get("_registerRetry") or {}
    task_states: list[TaskState] = []
    failures: dict[str, list[float]] = {}
    by_id = {d["id"]: d for d in deployments}
    draining = doc.get("_draining") or {}
    for arn, started_by, last, desired_status, _updated, body in rows:
        if _is_failure(body):
            failures.setdefault(started_by, []).append(float(body.get("stoppingAt") or 0))
        lb, failure = _lb_state(doc, by_id.get(started_by), arn, targets, now)
        if last != "STOPPED" or lb in planner.REGISTERED:  # a stopped one only to deregister it
            task_states.append(
                TaskState(
                    arn=arn,
                    deployment=started_by,
                    last_status=last,
                    desired_status=desired_status,
                    health=body.get("healthStatus", "UNKNOWN"),
                    started_at=body.get("startedAt"),
                    created_at=float(body.get("createdAt") or 0),
                    lb=lb,
                    lb_failure=failure,
                    drain_reason=draining.get(arn),
                    register_retry=_retry(register_retries.get(arn)),
                )
            )
    deployment_states = []
    for d in deployments:
        times = failures.get(d["id"], [])
        recent = [t for t in times if t >= now - FAILURE_WINDOW]
        deployment_states.append(
            DeploymentState(
                id=d["id"],
                status=d["status"],
                rollout_state=d["rolloutState"],
                failed_tasks=len(times) if d["rolloutState"] == svc.IN_PROGRESS else d.get("failedTasks", 0),
                recent_failures=len(recent),
                last_failure_at=max(recent) if recent else None,
            )
        )
    return service, deployment_states, task_states


def _placeable(conn: Connection, region: str, cluster: str) -> list[InstanceRow]:
    """The instances placement looks at (ACTIVE and DRAINING, as :func:`tasks.place_tasks` reads them)."""
    return tasks_repo.list_instances(conn, region, cluster, statuses=["ACTIVE", "DRAINING"])


def _desired(doc: Doc, instances: list[InstanceRow]) -> int:
    if doc["schedulingStrategy"] != svc.DAEMON:
        return int(doc["desiredCount"])
    return sum(1 for row in instances if row["status"] == "ACTIVE")


@dataclass
class _Assessment:
    plan: ServicePlan
    deployments: list[Doc]
    states: list[DeploymentState]
    desired: int
    rows: list[TaskRow]
    capacity: str


def _since(deployments: list[Doc], now: float) -> float:
    """Stopped tasks older than this do not matter: failures count within the window, or for as long
    as a deployment is in progress (the circuit breaker's count)."""
    in_progress = [d["createdAt"] for d in deployments if d["rolloutState"] == svc.IN_PROGRESS]
    return float(min([now - FAILURE_WINDOW, *in_progress]))


def _assessment(
    row: Row,
    deployments: list[Doc],
    rows: list[TaskRow],
    now: float,
    desired: int,
    targets: service_targets.TargetRows,
    instances: list[InstanceRow],
) -> _Assessment:
    capacity = _capacity(row["body"], deployments, instances, desired)
    service, deployment_states, task_states = _states(
        row["body"], deployments, rows, now, desired, targets, capacity
    )
    plan = plan_service(service, deployment_states, task_states, now)
    return _Assessment(plan, deployments, deployment_states, desired, rows, capacity)


def _assess(conn: Connection, ctx: RequestContext, row: Row) -> _Assessment:
    deployments = services_repo.deployments_of(conn, row["id"])
    rows = services_repo.tasks_of(
        conn,
        ctx.region,
        row["cluster"],
        [d["id"] for d in deployments],
        stopped_since=_since(deployments, ctx.now),
    )
    instances = _placeable(conn, ctx.region, row["cluster"])
    desired = _desired(row["body"], instances)
    targets = service_targets.read_targets(conn, _group_arns(row["body"]))
    return _assessment(row, deployments, rows, ctx.now, desired, targets, instances)


def _refresh_counts(doc: Doc, by_id: dict[str, Doc], found: _Assessment) -> None:
    """The counts DescribeServices shows, from the plan's view of the tasks."""
    plan = found.plan
    for ident, deployment in by_id.items():
        counts = plan.deployment_counts.get(ident)
        known = next((d for d in found.states if d.id == ident), None)
        if counts is not None:
            deployment.update(runningCount=counts.running, pendingCount=counts.pending)
        if known is not None and deployment["rolloutState"] == svc.IN_PROGRESS:
            deployment["failedTasks"] = known.failed_tasks
        if deployment["status"] == svc.PRIMARY:
            deployment["desiredCount"] = found.desired
        elif counts is not None:
            deployment["desiredCount"] = counts.running + counts.pending
    doc.update(runningCount=plan.counts.running, pendingCount=plan.counts.pending, _steady=plan.steady)
    if doc["schedulingStrategy"] == svc.DAEMON:
        doc["desiredCount"] = found.desired
    _prune(doc, found.rows)


def _prune(doc: Doc, rows: list[TaskRow]) -> None:
    """Forget the targets of tasks that are gone and the drains of tasks no longer wanted RUNNING."""
    live = {arn for arn, _by, last, _desired, _at, _body in rows if last != "STOPPED"}
    running = {
        arn for arn, _by, last, desired, _at, _body in rows if last != "STOPPED" and desired == "RUNNING"
    }
    held = running | {arn for arn, _by, _last, _desired, _at, body in rows if taskdoc.is_deactivating(body)}
    for member, keep in (("_targets", live), ("_draining", held), ("_registerRetry", running)):
        if member in doc:
            kept = {arn: value for arn, value in doc[member].items() if arn in keep}
            if kept:
                doc[member] = kept
            else:
                del doc[member]


def _idle(row: Row, found: _Assessment) -> bool:
    """True when a pass would change nothing (checked on an unlocked read: a steady service costs no
    write transaction)."""
    plan = found.plan
    if plan.start or plan.stop or plan.rollout or plan.retire or plan.rollback or plan.events or plan.drained:
        return False
    if plan.register or plan.deregister or plan.release:
        return False
    doc = copy.deepcopy(row["body"])
    by_id = {d["id"]: copy.deepcopy(d) for d in found.deployments}
    _refresh_counts(doc, by_id, found)
    return doc == row["body"] and list(by_id.values()) == found.deployments


def busy_services(conn: Connection, now: float) -> list[tuple[str, str]]:
    """(region, id) of the live (ACTIVE or DRAINING) services a pass would change at ``now``, read in
    bulk without locks (a handful of queries per cluster, whatever the number of services): a steady
    service costs no write transaction, so a pass over 1,000 of them takes a fraction of a second."""
    keys = services_repo.live_service_keys(conn)
    rows = services_repo.get_services(conn, [service_id for _region, service_id in keys])
    by_cluster: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        if row["status"] != svc.INACTIVE:
            by_cluster.setdefault((row["region"], row["cluster"]), []).append(row)
    deployments = services_repo.deployments_of_services(conn, [r["id"] for r in rows])
    targets = service_targets.read_targets(conn, {arn for r in rows for arn in _group_arns(r["body"])})
    busy: list[tuple[str, str]] = []
    for (region, cluster), members in by_cluster.items():
        ids = [d["id"] for r in members for d in deployments.get(r["id"], [])]
        since = min([now - FAILURE_WINDOW, *(_since(deployments.get(r["id"], []), now) for r in members)])
        tasks_by_deployment: dict[str, list[TaskRow]] = {}
        for task in services_repo.tasks_of(conn, region, cluster, ids, stopped_since=since):
            tasks_by_deployment.setdefault(task[1], []).append(task)
        instances = _placeable(conn, region, cluster)
        for row in members:
            mine = deployments.get(row["id"], [])
            task_rows = [t for d in mine for t in tasks_by_deployment.get(d["id"], [])]
            desired = _desired(row["body"], instances)
            if not _idle(row, _assessment(row, mine, task_rows, now, desired, targets, instances)):
                busy.append((region, row["id"]))
    return busy


def reconcile_in(conn: Connection, ctx: RequestContext, service_id: str) -> bool:
    """One pass over one service in the caller's transaction; True when it changed anything."""
    row = services_repo.get_service(conn, service_id)
    if row is None or row["status"] == svc.INACTIVE or row["region"] != ctx.region:
        return False
    cluster_name = row["cluster"]
    tasks_repo.lock_cluster(conn, ctx.region, cluster_name)  # as every writer of the cluster does
    cluster = ecs_repo.get_cluster(conn, ctx.region, cluster_name)
    services_repo.lock_service(conn, service_id)
    row = services_repo.get_service(conn, service_id)  # re-read under the locks
    if row is None or cluster is None or row["status"] == svc.INACTIVE:
        return False
    return _reconcile(conn, ctx, row, cluster)


def reconcile_service(ctx: RequestContext, service_id: str) -> bool:
    """:func:`reconcile_in` in a transaction of its own (tests, and callers outside a runner)."""
    with ctx.db.transaction() as conn:
        return reconcile_in(conn, ctx, service_id)


def _reconcile(conn: Connection, ctx: RequestContext, row: Row, cluster: Doc) -> bool:
    doc = row["body"]
    before = repr(doc)
    cluster_name = row["cluster"]
    found = _assess(conn, ctx, row)
    plan = found.plan
    saved = {d["id"]: repr(d) for d in found.deployments}
    by_id = {d["id"]: d for d in found.deployments}
    events = list(plan.events)
    touched: set[str] = set()

    for ident, (state, reason) in plan.rollout.items():
        by_id[ident].update(rolloutState=state, rolloutStateReason=reason, updatedAt=ctx.now)
        if state == svc.COMPLETED:
            balancers = by_id[ident].get("_loadBalancers") or []
            doc["_stable"] = {"id": ident, **svc.launch_of(by_id[ident]), "_loadBalancers": balancers}
    for ident in plan.retire:
        by_id[ident]["status"] = svc.INACTIVE
    if plan.rollback and doc.get("_stable"):
        for deployment in by_id.values():
            services_repo.save_deployment(conn, deployment)
        stable = doc["_stable"]
        launch = {k: v for k, v in stable.items() if k not in ("id", "_loadBalancers")}
        doc["loadBalancers"] = stable.get("_loadBalancers", doc.get("loadBalancers") or [])
        service_calls.new_primary(conn, ctx, row, launch)
        by_id = {d["id"]: d for d in services_repo.deployments_of(conn, row["id"])}
        saved = {}
    events += _balance(conn, ctx, doc, plan, found.rows, by_id, touched)
    _stop(conn, ctx, plan.stop, touched)
    for arn, _reason in plan.stop:
        (doc.get("_draining") or {}).pop(arn, None)
    for ident, count in plan.start.items():
        placed, message = _start(conn, ctx, cluster, row, by_id[ident], count, touched)
        if placed:
            doc.pop("_placement", None)
            if message is not None:
                events.append(message)
            continue
        retry, due = planner.failed_again(_retry(doc.get("_placement")), found.capacity, ctx.now)
        doc["_placement"] = _retry_doc(retry)
        if due and message is not None:
            events.append(message)

    _refresh_counts(doc, by_id, found)
    deployments_changed = False
    for ident, deployment in by_id.items():
        if saved.get(ident) != repr(deployment):
            services_repo.save_deployment(conn, deployment)
            deployments_changed = True
    if plan.drained:
        doc["status"] = svc.INACTIVE
    _write_events(conn, ctx, row["id"], events)
    changed = bool(events or touched or deployments_changed or repr(doc) != before)
    if repr(doc) != before:
        services_repo.save_service(conn, row, ctx.now)
    if touched:
        tasks.after_changes(conn, ctx, cluster_name, touched)
    return changed


def _balance(
    conn: Connection,
    ctx: RequestContext,
    doc: Doc,
    plan: ServicePlan,
    rows: list[TaskRow],
    by_id: dict[str, Doc],
    touched: set[str],
) -> list[str]:
    """The plan's load-balancer steps: register, deregister to drain, release; their events."""
    name = doc["serviceName"]
    bodies = {arn: (started_by, body) for arn, started_by, _last, _desired, _at, body in rows}
    recorded: dict[str, list[Doc]] = doc.setdefault("_targets", {})
    entries: list[Doc] = []
    for arn in plan.register:
        started_by, body = bodies[arn]
        ip = service_targets.task_address(body)
        balancers = (by_id.get(started_by) or {}).get("_loadBalancers") or []
        if ip is not None and balancers:
            recorded[arn] = service_targets.existing(conn, ctx, service_targets.targets_for(balancers, ip))
            entries += recorded[arn]
    refused: dict[str, str] = {}
    events = service_targets.register(conn, ctx, name, entries, refused)
    events += _registration_retries(ctx, doc, plan.register, recorded, refused)
    leaving = [e for arn, _reason in plan.deregister for e in recorded.get(arn, [])]
    leaving += [e for arn in plan.release for e in recorded.get(arn, [])]
    events += service_targets.deregister(conn, ctx, name, leaving)
    draining: dict[str, str] = doc.setdefault("_draining", {})
    fresh: dict[str, int] = {}
    for arn, reason in plan.deregister:
        if arn not in draining:
            started_by = bodies[arn][0]
            fresh[started_by] = fresh.get(started_by, 0) + 1
        draining[arn] = reason
    _deactivate(conn, ctx, plan.deregister, touched)
    for task_set, count in sorted(fresh.items()):
        # real text (service event messages; notes §3)
        events.append(
            f"(service {name}, taskSet {task_set}) has begun draining connections on {count} tasks."
        )
    for member in ("_targets", "_draining"):
        if not doc[member]:
            del doc[member]
    return events


def _registration_retries(
    ctx: RequestContext,
    doc: Doc,
    registered: list[str],
    recorded: dict[str, list[Doc]],
    refused: dict[str, str],
) -> list[str]:
    """Back off the tasks whose targets a group refused (retried after :func:`planner.retry_delay`, not
    every pass); forget the retries of those that got in. The refusal's event as often as ECS repeats it."""
    retries: dict[str, Doc] = doc.setdefault("_registerRetry", {})
    events: list[str] = []
    for arn in registered:
        groups = [e["targetGroupArn"] for e in recorded.get(arn, []) if e["targetGroupArn"] in refused]
        if not groups:
            retries.pop(arn, None)
            continue
        retry, due = planner.failed_again(_retry(retries.get(arn)), "", ctx.now)
        retries[arn] = _retry_doc(retry)
        if due:
            name = doc["serviceName"]
            events += [service_targets.event_register_failed(name, g, refused[g]) for g in groups]
    if not retries:
        del doc["_registerRetry"]
    return events


def _write_events(conn: Connection, ctx: RequestContext, service_id: str, messages: list[str]) -> None:
    if not messages:
        return
    newest = services_repo.events_of(conn, service_id, 1)
    last = newest[0]["message"] if newest else None
    for message in messages:
        if message == last:  # ECS does not repeat an event that still holds # unconfirmed policy
            continue
        services_repo.add_event(conn, service_id, ctx.new_id(), ctx.now, message, svc.MAX_EVENTS)
        last = message


def _stop(conn: Connection, ctx: RequestContext, stops: list[tuple[str, str]], touched: set[str]) -> None:
    rows = {t["arn"]: t for t in tasks_repo.get_tasks_by_arn(conn, [arn for arn, _ in stops])}
    for arn, reason in stops:
        task = rows.get(arn)
        if task is None:
            continue
        before = task_state.snapshot(task)
        if taskdoc.deactivated(task["body"]):  # drained: DEACTIVATING -> STOPPING, the agent gets the stop
            task_state.save(conn, ctx, task, before)
            if task["eni_id"]:  # its desired status (as the agent sees it) changed, the column did not
                tasks_repo.mark_eni_tasks_changed(conn, [task["eni_id"]])
        elif taskdoc.request_stop(
            task["body"], TaskEvent.STOP_REQUESTED, StopCode.SERVICE_SCHEDULER_INITIATED, reason, ctx.now
        ):
            task_state.save(conn, ctx, task, before)
        else:
            continue
        if task["container_instance_id"]:
            touched.add(task["container_instance_id"])


def _deactivate(
    conn: Connection, ctx: RequestContext, leaving: list[tuple[str, str]], touched: set[str]
) -> None:
    """The tasks whose drain begins: DEACTIVATING, desired STOPPED, until their targets are gone."""
    rows = tasks_repo.get_tasks_by_arn(conn, [arn for arn, _ in leaving])
    reasons = dict(leaving)
    for task in rows:
        before = task_state.snapshot(task)
        code = StopCode.SERVICE_SCHEDULER_INITIATED
        if taskdoc.begin_deactivating(task["body"], code, reasons[task["arn"]], ctx.now):
            task_state.save(conn, ctx, task, before)
            if task["container_instance_id"]:
                touched.add(task["container_instance_id"])


def _start(
    conn: Connection,
    ctx: RequestContext,
    cluster: Doc,
    row: Row,
    deployment: Doc,
    count: int,
    touched: set[str],
) -> tuple[bool, str | None]:
    """Start ``count`` tasks of ``deployment``: whether any started, and the event (started, or why not)."""
    doc = row["body"]
    name = doc["serviceName"]
    params: Doc = {
        **svc.launch_of(deployment),
        "group": f"service:{name}",
        "startedBy": deployment["id"],
    }
    constraints = list(doc.get("placementConstraints") or [])
    if doc["schedulingStrategy"] == svc.DAEMON:
        constraints.append({"type": "distinctInstance"})
    try:
        launch = tasks.prepare_launch(conn, ctx, cluster, params)
        # a role ECS cannot assume does not refuse Create/UpdateService: each launch fails with an event
        # "(service S) failed to launch a task with (error ECS was unable to assume the role ...)"
        # (public service events: boto/boto3#1878, aws-samples/aws-modern-application-workshop#88)
        task_roles.check_task_roles(conn, ctx, row["cluster"], launch.td, launch.overrides)
        launch.service_name = name
        created, failures = tasks.place_tasks(
            conn, ctx, launch, count, constraints, list(doc.get("placementStrategy") or [])
        )
    except ClientError as error:
        if error.message == "No Container Instances were found in your cluster.":
            return False, svc.event_unable_to_place(name, f"Reason: {error.message}")
        # the form of ECS's "failed to launch a task with (error ...)" events (developer guide)
        return False, f"(service {name}) failed to launch a task with (error {error.message})."
    for task in created:
        touched.add(task["container_instance_id"])
        _tag(conn, ctx, doc, launch.td, task, row["cluster"])
    if created:
        return True, svc.event_started(name, [t["id"] for t in created])
    return False, svc.event_unable_to_place(name, _closest(failures))


def _closest(failures: tuple[PlacementFailure, ...]) -> str:
    if not failures:
        return "Reason: No Container Instances were found in your cluster."
    first = failures[0]
    instance_id = first.arn.rsplit("/", 1)[-1]
    ending = _CLOSEST.get(first.reason, f'encountered error "{first.reason}".')
    return f"The closest matching (container-instance {instance_id}) {ending}"


def _tag(conn: Connection, ctx: RequestContext, doc: Doc, td: Doc, task: Row, cluster: str) -> None:
    """propagateTags and enableECSManagedTags (developer guide, tagging your resources)."""
    new_tags: list[dict[str, str]] = []
    if doc.get("propagateTags") == "SERVICE":
        new_tags += ecs_repo.get_tags(conn, doc["serviceArn"])
    elif doc.get("propagateTags") == "TASK_DEFINITION":
        new_tags += ecs_repo.get_tags(conn, td["taskDefinitionArn"])
    if doc.get("enableECSManagedTags"):
        new_tags += svc.managed_tags(cluster, doc["serviceName"])
    if new_tags:
        ecs_repo.put_tags(conn, ctx.region, task["arn"], list({t["key"]: t for t in new_tags}.values()))
