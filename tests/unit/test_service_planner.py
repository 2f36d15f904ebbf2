"""The service scheduler's planner: rolling-deployment bounds (hypothesis), convergence, the circuit
breaker, events; and the service validation of the domain."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings, strategies as st

from taskvpc.domain import services as svc
from taskvpc.domain.errors import ClientError
from taskvpc.scheduler.services import (
    DeploymentState,
    ServiceState,
    TargetFailure,
    TaskState,
    plan_service,
)

STATUSES = ["PROVISIONING", "PENDING", "ACTIVATING", "RUNNING", "DEACTIVATING", "STOPPING"]
LB_STATES = ["UNREGISTERED", "initial", "healthy", "unhealthy", "draining"]


def _service(desired: int, low: int, high: int, **extra: object) -> ServiceState:
    return ServiceState(
        name="web",
        status="ACTIVE",
        desired_count=desired,
        minimum_healthy_percent=low,
        maximum_percent=high,
        **extra,  # type: ignore[arg-type]
    )


def _healthy(task: TaskState) -> bool:
    return (
        task.last_status == "RUNNING"
        and task.desired_status == "RUNNING"
        and task.health != "UNHEALTHY"
        and task.lb in ("NONE", "healthy")
        and task.drain_reason is None
    )


@st.composite
def worlds(draw: st.DrawFn) -> tuple[ServiceState, list[DeploymentState], list[TaskState]]:
    desired = draw(st.integers(0, 12))
    low = draw(st.integers(0, 100))
    high = draw(st.integers(max(100, low), 200))
    deployments = [
        DeploymentState("ecs-svc/2", "PRIMARY", draw(st.sampled_from(["IN_PROGRESS", "COMPLETED"])))
    ]
    deployments += [
        DeploymentState(f"ecs-svc/{n}", "ACTIVE", "COMPLETED") for n in range(draw(st.integers(0, 2)))
    ]
    tasks = []
    balanced = draw(st.booleans())
    for n in range(draw(st.integers(0, 16))):
        desired_status = draw(st.sampled_from(["RUNNING", "RUNNING", "STOPPED"]))
        last = draw(st.sampled_from(STATUSES))
        lb = draw(st.sampled_from(LB_STATES)) if balanced else "NONE"
        tasks.append(
            TaskState(
                arn=f"arn:aws:ecs:r:1:task/c/{n:032x}",
                deployment=draw(st.sampled_from([d.id for d in deployments])),
                last_status=last,
                desired_status=desired_status,
                health=draw(st.sampled_from(["UNKNOWN", "HEALTHY", "UNHEALTHY"])),
                started_at=0.0,
                created_at=float(n),
                lb=lb,
                lb_failure=TargetFailure("tg", 80, "Health checks failed") if lb == "unhealthy" else None,
                drain_reason=draw(st.sampled_from([None, None, "Scaling activity"])) if balanced else None,
            )
        )
    return _service(desired, low, high), deployments, tasks


@given(worlds())
@settings(max_examples=400, deadline=None)
def test_a_plan_stays_within_the_bounds(
    world: tuple[ServiceState, list[DeploymentState], list[TaskState]],
) -> None:
    service, deployments, tasks = world
    plan = plan_service(service, deployments, tasks, now=100.0)
    minimum, maximum = svc.task_bounds(
        service.desired_count, service.minimum_healthy_percent, service.maximum_percent
    )
    live = [t for t in tasks if t.last_status != "STOPPED"]
    started = sum(plan.start.values())
    if started:
        assert len(live) + started <= maximum  # never more than maximumPercent up
        assert set(plan.start) == {"ecs-svc/2"}  # only the PRIMARY starts tasks
    stopped = {arn for arn, _ in plan.stop} | {arn for arn, _ in plan.deregister}
    healthy_before = [t for t in live if _healthy(t)]
    healthy_after = [t for t in healthy_before if t.arn not in stopped]
    if len(healthy_after) < len(healthy_before):  # a healthy task was stopped ...
        assert len(healthy_after) >= minimum  # ... only down to minimumHealthyPercent
    # only tasks wanted RUNNING, or held in DEACTIVATING by the scheduler's own drain
    assert all(
        t.desired_status == "RUNNING" or (t.last_status == "DEACTIVATING" and t.drain_reason is not None)
        for t in live
        if t.arn in stopped
    )
    by_arn = {t.arn: t for t in tasks}
    # A task with targets is never stopped outright: it is deregistered and stopped once they are gone.
    assert all(by_arn[arn].lb in ("NONE", "UNREGISTERED") for arn, _ in plan.stop)
    assert all(by_arn[arn].lb != "NONE" for arn, _ in plan.deregister)
    assert all(by_arn[arn].lb in ("initial", "healthy", "unhealthy") for arn in plan.release)
    for arn in plan.register:  # only RUNNING tasks, wanted, with nothing registered yet
        task = by_arn[arn]
        assert (task.last_status, task.desired_status, task.lb) == ("RUNNING", "RUNNING", "UNREGISTERED")
        assert task.drain_reason is None


def _step(
    tasks: list[TaskState],
    plan_start: dict[str, int],
    plan_stop: list[tuple[str, str]],
    ids: itertools.count[int],
) -> list[TaskState]:
    """The world after one pass: pending tasks run, stopping tasks stop, new tasks are PROVISIONING."""
    stopping = {arn for arn, _ in plan_stop}
    after = []
    for task in tasks:
        if task.last_status == "STOPPED":
            continue
        if task.desired_status == "STOPPED":
            continue  # it stopped since the last pass
        if task.arn in stopping:
            after.append(
                TaskState(task.arn, task.deployment, task.last_status, "STOPPED", created_at=task.created_at)
            )
        elif task.last_status != "RUNNING":
            after.append(TaskState(task.arn, task.deployment, "RUNNING", created_at=task.created_at))
        else:
            after.append(task)
    for deployment, count in plan_start.items():
        for _ in range(count):
            n = next(ids)
            after.append(
                TaskState(f"arn:aws:ecs:r:1:task/c/{n:032x}", deployment, "PROVISIONING", created_at=n)
            )
    return after


@given(
    desired=st.integers(1, 10),
    low=st.integers(0, 100),
    high=st.integers(100, 200),
)
@settings(max_examples=200, deadline=None)
def test_a_rolling_deployment_converges_within_the_bounds(desired: int, low: int, high: int) -> None:
    minimum, maximum = svc.task_bounds(desired, low, high)
    if maximum <= desired and minimum >= desired:
        return  # no room to start and none to stop: ECS cannot roll either
    service = _service(desired, low, high)
    ids = itertools.count(100)
    tasks = [
        TaskState(f"arn:aws:ecs:r:1:task/c/{n:032x}", "ecs-svc/1", "RUNNING", created_at=n)
        for n in range(desired)
    ]
    deployments = [
        DeploymentState("ecs-svc/2", "PRIMARY", "IN_PROGRESS"),
        DeploymentState("ecs-svc/1", "ACTIVE", "COMPLETED"),
    ]
    for _ in range(6 * desired + 10):
        plan = plan_service(service, deployments, tasks, now=0.0)
        running = sum(1 for t in tasks if t.last_status == "RUNNING")
        assert running >= minimum
        assert sum(1 for t in tasks if t.last_status != "STOPPED") <= max(maximum, desired)
        if plan.steady:
            break
        deployments = [
            DeploymentState(d.id, d.status, plan.rollout.get(d.id, (d.rollout_state, ""))[0])
            for d in deployments
            if d.id not in plan.retire
        ]
        service = _service(desired, low, high, steady=plan.steady)
        tasks = _step(tasks, plan.start, plan.stop, ids)
    else:
        raise AssertionError("the deployment never settled")
    assert [d.id for d in deployments if d.id not in plan.retire] == ["ecs-svc/2"]
    assert plan.events[-1] == "(service web) has reached a steady state."
    assert all(t.deployment == "ecs-svc/2" and t.last_status == "RUNNING" for t in tasks)


def test_the_circuit_breaker_fails_the_deployment_and_rolls_back() -> None:
    service = _service(3, 100, 200, circuit_breaker=True, rollback=True, stable_deployment="ecs-svc/1")
    old = [TaskState(f"arn:aws:ecs:r:1:task/c/{n:032x}", "ecs-svc/1", "RUNNING") for n in range(3)]
    primary = DeploymentState("ecs-svc/2", "PRIMARY", "IN_PROGRESS", failed_tasks=2)
    deployments = [primary, DeploymentState("ecs-svc/1", "ACTIVE", "COMPLETED")]
    assert not plan_service(service, deployments, old, now=0.0).rollback
    deployments[0] = DeploymentState("ecs-svc/2", "PRIMARY", "IN_PROGRESS", failed_tasks=3)
    plan = plan_service(service, deployments, old, now=0.0)
    assert plan.rollback and plan.start == {} and plan.stop == []
    assert plan.rollout["ecs-svc/2"][0] == "FAILED"
    assert plan.events == [
        "(service web) (deployment ecs-svc/2) deployment failed: tasks failed to start.",
        "(service web) rolling back to deployment ecs-svc/1.",
    ]


def test_failing_tasks_back_off_before_more_start() -> None:
    service = _service(2, 100, 200)
    failing = DeploymentState(
        "ecs-svc/2", "PRIMARY", "IN_PROGRESS", failed_tasks=3, recent_failures=3, last_failure_at=10.0
    )
    assert plan_service(service, [failing], [], now=11.0).start == {}  # 4 s backoff after 3 failures
    assert plan_service(service, [failing], [], now=14.0).start == {"ecs-svc/2": 2}


def test_unhealthy_tasks_are_replaced_after_the_grace_period() -> None:
    service = _service(1, 100, 200, grace_period=30.0)
    sick = TaskState(
        "arn:aws:ecs:r:1:task/c/" + "0" * 32, "ecs-svc/1", "RUNNING", health="UNHEALTHY", started_at=0.0
    )
    primary = [DeploymentState("ecs-svc/1", "PRIMARY", "COMPLETED")]
    assert plan_service(service, primary, [sick], now=10.0).stop == []
    plan = plan_service(service, primary, [sick], now=40.0)
    assert plan.stop == [(sick.arn, "Task failed container health checks")]
    assert plan.start == {"ecs-svc/1": 1}


def test_a_draining_service_stops_everything_then_is_drained() -> None:
    service = ServiceState("web", "DRAINING", 0, 100, 200)
    task = TaskState("arn:aws:ecs:r:1:task/c/" + "1" * 32, "ecs-svc/1", "RUNNING")
    deployments = [DeploymentState("ecs-svc/1", "PRIMARY", "COMPLETED")]
    plan = plan_service(service, deployments, [task], now=0.0)
    assert plan.stop == [(task.arn, "Scaling activity initiated by (deployment ecs-svc/1)")]
    assert not plan.drained
    assert plan_service(service, deployments, [], now=0.0).drained


@pytest.mark.parametrize(("desired", "threshold"), [(0, 3), (1, 3), (7, 4), (10, 5), (400, 200), (1000, 200)])
def test_circuit_breaker_threshold(desired: int, threshold: int) -> None:
    assert svc.circuit_breaker_threshold(desired) == threshold


def test_bounds_round_the_minimum_up_and_the_maximum_down() -> None:
    assert svc.task_bounds(3, 50, 150) == (2, 4)
    assert svc.task_bounds(4, 50, 150) == (2, 6)


def test_validation_messages() -> None:
    with pytest.raises(ClientError) as excinfo:
        svc.check_launch_choice(
            {"launchType": "EC2", "capacityProviderStrategy": [{"capacityProvider": "x"}]}
        )
    assert excinfo.value.message == (
        "Specifying both a launch type and capacity provider strategy is not supported. Remove one and try again."
    )
    with pytest.raises(ClientError):
        svc.deployment_configuration({"minimumHealthyPercent": 101}, None)
    with pytest.raises(ClientError):
        svc.check_create({"serviceName": "bad name", "desiredCount": 1})
    with pytest.raises(ClientError):
        svc.check_create({"serviceName": "web", "schedulingStrategy": "DAEMON", "desiredCount": 1})
    merged = svc.deployment_configuration(
        {"maximumPercent": 150}, {"minimumHealthyPercent": 50, "maximumPercent": 200}
    )
    assert (merged["minimumHealthyPercent"], merged["maximumPercent"]) == (50, 150)
    assert svc.deployment_id(7) == "ecs-svc/0000000000000000007"
