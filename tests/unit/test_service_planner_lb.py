"""The service planner behind load balancers: register RUNNING tasks, count them healthy only when their
targets are, deregister before stopping and stop once drained, replace a target that fails after the grace
period; a rolling deployment simulated pass by pass keeps minimumHealthyPercent of healthy targets
(hypothesis). And the control plane's summary of a task's targets (``service_targets.summarize``)."""

from __future__ import annotations

import itertools
from dataclasses import replace

from hypothesis import given, settings, strategies as st

from taskvpc.control.elbv2 import service_targets
from taskvpc.domain import services as svc
from taskvpc.scheduler.services import (
    DeploymentState,
    ServiceState,
    TargetFailure,
    TaskState,
    plan_service,
)

PRIMARY = [DeploymentState("ecs-svc/1", "PRIMARY", "COMPLETED")]
TG = "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/web/0123456789abcdef"


def _service(desired: int, low: int = 100, high: int = 200, **extra: object) -> ServiceState:
    return ServiceState("web", "ACTIVE", desired, low, high, **extra)  # type: ignore[arg-type]


def _task(n: int, deployment: str = "ecs-svc/1", **extra: object) -> TaskState:
    fields: dict[str, object] = {"last_status": "RUNNING", "started_at": 0.0, "created_at": float(n), **extra}
    return TaskState(f"arn:aws:ecs:r:1:task/c/{n:032x}", deployment, **fields)  # type: ignore[arg-type]


def test_a_running_task_is_registered_and_counts_only_once_healthy() -> None:
    fresh = _task(1, lb="UNREGISTERED")
    plan = plan_service(_service(1), PRIMARY, [fresh], now=1.0)
    assert plan.register == [fresh.arn] and not plan.steady
    pending = _task(2, last_status="PENDING", lb="UNREGISTERED")
    assert plan_service(_service(1), PRIMARY, [pending], now=1.0).register == []  # only once RUNNING
    assert not plan_service(_service(1), PRIMARY, [replace(fresh, lb="initial")], now=1.0).steady
    healthy = plan_service(_service(1), PRIMARY, [replace(fresh, lb="healthy")], now=1.0)
    assert healthy.steady and healthy.register == [] and healthy.stop == healthy.deregister == []


def test_an_unhealthy_target_is_replaced_after_the_grace_period_through_a_drain() -> None:
    failure = TargetFailure(TG, 80, "Health checks failed with these codes: [500]")
    sick = _task(1, lb="unhealthy", lb_failure=failure, started_at=100.0)
    service = _service(1, grace_period=60.0)
    assert plan_service(service, PRIMARY, [sick], now=150.0).deregister == []  # within the grace period
    plan = plan_service(service, PRIMARY, [sick], now=160.0)
    reason = f"Task failed ELB health checks in (target-group {TG})"
    assert plan.deregister == [(sick.arn, reason)] and plan.stop == []
    assert plan.start == {"ecs-svc/1": 1}
    assert plan.events == [
        f"(service web) (task {sick.task_id}) (port 80) is unhealthy in (target-group {TG}) due to "
        "(reason Health checks failed with these codes: [500]).",
        f"(service web) has stopped 1 running tasks: (task {sick.task_id}).",
    ]
    # While its targets drain it waits (and is not announced again); once they are gone it stops.
    draining = replace(sick, lb="draining", drain_reason=reason)
    waiting = plan_service(service, PRIMARY, [draining], now=161.0)
    assert waiting.stop == waiting.deregister == [] and waiting.events == []
    gone = plan_service(service, PRIMARY, [replace(draining, lb="UNREGISTERED")], now=170.0)
    assert gone.stop == [(sick.arn, reason)] and gone.events == []


def test_a_task_going_down_on_its_own_is_released_and_scale_in_drains_first() -> None:
    exited = _task(1, desired_status="STOPPED", last_status="DEACTIVATING", lb="healthy")
    stays = _task(2, lb="healthy")
    plan = plan_service(_service(1), PRIMARY, [exited, stays], now=1.0)
    assert plan.release == [exited.arn] and plan.stop == plan.deregister == []
    gone = replace(exited, last_status="STOPPED")
    assert plan_service(_service(1), PRIMARY, [gone, stays], now=1.0).release == [gone.arn]
    scale_in = plan_service(_service(1), PRIMARY, [_task(3, lb="healthy"), stays], now=1.0)
    assert len(scale_in.deregister) == 1 and scale_in.stop == []


def test_a_deleted_service_deregisters_everything_before_it_is_drained() -> None:
    service = ServiceState("web", "DRAINING", 0, 100, 200)
    tasks = [
        _task(1, lb="healthy"),
        _task(2, lb="initial"),
        _task(3, lb="UNREGISTERED", last_status="PENDING"),
    ]
    plan = plan_service(service, PRIMARY, tasks, now=1.0)
    assert sorted(arn for arn, _ in plan.deregister) == sorted(t.arn for t in tasks[:2])
    assert plan.stop == [(tasks[2].arn, "Scaling activity initiated by (deployment ecs-svc/1)")]
    assert not plan.drained


# ---- a rolling deployment, pass by pass ---------------------------------------------------------------


def _step(
    tasks: list[TaskState],
    plan: object,
    ids: itertools.count[int],
    health_after: int,
    drain_after: int,
    ages: dict[str, int],
) -> list[TaskState]:
    """The world after one pass: pending tasks run; registered targets turn healthy after
    ``health_after`` passes and draining ones leave after ``drain_after``; stopped tasks go."""
    start: dict[str, int] = plan.start  # type: ignore[attr-defined]
    stops = dict(plan.stop)  # type: ignore[attr-defined]
    drains = dict(plan.deregister)  # type: ignore[attr-defined]
    registers = set(plan.register)  # type: ignore[attr-defined]
    after = []
    for task in tasks:
        if task.desired_status == "STOPPED" or task.arn in stops:
            continue  # it stops before the next pass
        ages[task.arn] = ages.get(task.arn, 0) + 1
        if task.arn in drains:
            ages[task.arn] = 0
            task = replace(task, lb="draining", drain_reason=drains[task.arn])
        elif task.lb == "draining" and ages[task.arn] >= drain_after:
            task = replace(task, lb="UNREGISTERED")
        elif task.arn in registers:
            ages[task.arn] = 0
            task = replace(task, lb="initial")
        elif task.lb == "initial" and ages[task.arn] >= health_after:
            task = replace(task, lb="healthy")
        elif task.last_status != "RUNNING":
            task = replace(task, last_status="RUNNING")
        after.append(task)
    for deployment, count in start.items():
        for _ in range(count):
            n = next(ids)
            after.append(_task(n, deployment, last_status="PROVISIONING", lb="UNREGISTERED"))
    return after


@given(
    desired=st.integers(1, 8),
    low=st.integers(0, 100),
    high=st.integers(100, 200),
    health_after=st.integers(1, 3),
    drain_after=st.integers(1, 3),
)
@settings(max_examples=150, deadline=None)
def test_a_rolling_deployment_behind_a_load_balancer_keeps_the_minimum_healthy(
    desired: int, low: int, high: int, health_after: int, drain_after: int
) -> None:
    minimum, maximum = svc.task_bounds(desired, low, high)
    if maximum <= desired and minimum >= desired:
        return  # no room to start and none to stop: ECS cannot roll either
    tasks = [_task(n, lb="healthy") for n in range(desired)]
    deployments = [
        DeploymentState("ecs-svc/2", "PRIMARY", "IN_PROGRESS"),
        DeploymentState("ecs-svc/1", "ACTIVE", "COMPLETED"),
    ]
    service = _service(desired, low, high)
    ids, ages = itertools.count(100), {}
    for _ in range(12 * desired + 20):
        plan = plan_service(service, deployments, tasks, now=0.0)
        in_service = [t for t in tasks if t.lb == "healthy" and t.drain_reason is None]
        assert len(in_service) >= minimum  # healthy registered targets never below the minimum
        assert sum(1 for t in tasks if t.last_status != "STOPPED") <= max(maximum, desired)
        if plan.steady:
            break
        deployments = [
            DeploymentState(d.id, d.status, plan.rollout.get(d.id, (d.rollout_state, ""))[0])
            for d in deployments
            if d.id not in plan.retire
        ]
        service = _service(desired, low, high, steady=plan.steady)
        tasks = _step(tasks, plan, ids, health_after, drain_after, ages)
    else:
        raise AssertionError("the deployment never settled")
    assert all(t.deployment == "ecs-svc/2" and t.lb == "healthy" for t in tasks)
    assert len(tasks) == desired


# ---- the control plane's summary of a task's targets ----------------------------------------------------


def _row(state: str, port: int = 80, drain_until: float | None = None, tg: str = TG) -> dict[str, object]:
    return {
        "target_group_arn": tg,
        "target_id": "10.0.0.5",
        "port": port,
        "state": state,
        "description": "Health checks failed with these codes: [500]" if state == "unhealthy" else None,
        "drain_until": drain_until,
    }


def test_summarize_a_tasks_targets() -> None:
    one = service_targets.targets_for([{"targetGroupArn": TG, "containerPort": 80}], "10.0.0.5")
    assert one == [{"targetGroupArn": TG, "ip": "10.0.0.5", "port": 80}]
    other = "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/api/fedcba9876543210"
    two = [*one, {"targetGroupArn": other, "ip": "10.0.0.5", "port": 8080}]

    def rows(*found: dict[str, object]) -> service_targets.TargetRows:
        return {(str(r["target_group_arn"]), "10.0.0.5", int(r["port"])): r for r in found}  # type: ignore[call-overload]

    assert service_targets.summarize(one, {}, 0.0) == ("UNREGISTERED", None)
    assert service_targets.summarize(one, rows(_row("initial")), 0.0) == ("initial", None)
    assert service_targets.summarize(one, rows(_row("healthy")), 0.0) == ("healthy", None)
    # healthy only when healthy in every group
    assert service_targets.summarize(two, rows(_row("healthy")), 0.0) == ("initial", None)
    both = rows(_row("healthy"), _row("healthy", 8080, tg=other))
    assert service_targets.summarize(two, both, 0.0) == ("healthy", None)
    sick = service_targets.summarize(two, rows(_row("healthy"), _row("unhealthy", 8080, tg=other)), 0.0)
    assert sick == ("unhealthy", TargetFailure(other, 8080, "Health checks failed with these codes: [500]"))
    draining = rows(_row("draining", drain_until=10.0))
    assert service_targets.summarize(one, draining, 9.9) == ("draining", None)
    assert service_targets.summarize(one, draining, 10.0) == ("UNREGISTERED", None)  # the delay has passed


def test_task_address_reads_the_eni_attachment() -> None:
    body = {
        "attachments": [
            {
                "type": "ElasticNetworkInterface",
                "details": [
                    {"name": "subnetId", "value": "subnet-1"},
                    {"name": "privateIPv4Address", "value": "172.31.0.9"},
                ],
            }
        ]
    }
    assert service_targets.task_address(body) == "172.31.0.9"
    assert service_targets.task_address({"attachments": []}) is None
