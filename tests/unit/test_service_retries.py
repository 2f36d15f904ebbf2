"""Retries of what the service scheduler could not do (placement, target registration): the backoff,
its reset when the world changes, the throttled event (hypothesis); and a task held in DEACTIVATING while
its targets drain (task document)."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

from hypothesis import given, settings, strategies as st

from taskvpc.domain import tasks as taskdoc
from taskvpc.domain.lifecycle import StopCode
from taskvpc.scheduler import services as planner
from taskvpc.scheduler.services import DeploymentState, Retry, ServiceState, TaskState, plan_service
from tests.unit.test_service_planner import worlds
from tests.unit.test_task_documents import ESSENTIAL, _new, _report, _running


def _service(**extra: Any) -> ServiceState:
    return ServiceState("web", "ACTIVE", 2, 100, 200, **extra)


PRIMARY = [DeploymentState("ecs-svc/1", "PRIMARY", "IN_PROGRESS")]


@given(st.integers(1, 200))
def test_the_delay_doubles_from_half_a_second_up_to_thirty(attempts: int) -> None:
    delay = planner.retry_delay(attempts)
    assert 0.5 <= delay <= 30.0
    assert planner.retry_delay(attempts + 1) == min(30.0, 2 * delay)
    assert planner.retry_delay(1) == 0.5 and planner.retry_delay(0) == 0.0


@given(
    failures=st.lists(st.tuples(st.floats(0.0, 20.0), st.sampled_from(["a", "b"])), min_size=1, max_size=40)
)
@settings(max_examples=300)
def test_failures_back_off_reset_on_change_and_write_the_event_once(
    failures: list[tuple[float, str]],
) -> None:
    now, retry, events = 1000.0, None, 0
    for gap, world in failures:
        now += gap
        previous = retry
        retry, due = planner.failed_again(previous, world, now)
        events += due
        if previous is None or previous.fingerprint != world:
            assert retry.attempts == 1  # a changed world starts the delays over
        else:
            assert retry.attempts == previous.attempts + 1
        assert retry.retry_at == now + planner.retry_delay(retry.attempts)
        assert planner.waiting(retry, world, now)  # not again at once in the same world ...
        assert not planner.waiting(retry, "c", now)  # ... but at once in another
        assert not planner.waiting(retry, world, retry.retry_at)
    assert events == 1  # well within six hours: the failure is reported once


def test_the_event_comes_back_after_six_hours_of_the_same_failure() -> None:
    retry, due = planner.failed_again(None, "a", 0.0)
    assert due and retry.event_at == 0.0
    retry, due = planner.failed_again(retry, "b", 100.0)
    assert not due and retry.event_at == 0.0  # a changed world is no new failure to report
    retry, due = planner.failed_again(retry, "b", 6 * 3600.0)
    assert due and retry.event_at == 6 * 3600.0


def test_a_waiting_placement_starts_nothing_until_its_time_or_a_change() -> None:
    retry = Retry(attempts=3, retry_at=110.0, fingerprint="cap-1", event_at=90.0)
    waiting = _service(placement_retry=retry, capacity="cap-1")
    assert plan_service(waiting, PRIMARY, [], now=105.0).start == {}
    assert plan_service(waiting, PRIMARY, [], now=110.0).start == {"ecs-svc/1": 2}
    changed = _service(placement_retry=retry, capacity="cap-2")  # an instance registered, a task stopped...
    assert plan_service(changed, PRIMARY, [], now=105.0).start == {"ecs-svc/1": 2}
    assert plan_service(_service(), PRIMARY, [], now=105.0).start == {"ecs-svc/1": 2}  # success: no retry


def test_a_refused_registration_is_retried_only_when_its_time_comes() -> None:
    running = TaskState(
        "arn:aws:ecs:r:1:task/c/" + "1" * 32, "ecs-svc/1", "RUNNING", started_at=0.0, lb=planner.UNREGISTERED
    )
    refused = replace(running, register_retry=Retry(2, 50.0))
    service = ServiceState("web", "ACTIVE", 1, 100, 200)
    assert plan_service(service, PRIMARY, [refused], now=49.0).register == []
    assert plan_service(service, PRIMARY, [refused], now=50.0).register == [refused.arn]
    assert plan_service(service, PRIMARY, [running], now=49.0).register == [running.arn]


def test_the_fingerprint_is_stable_and_tells_worlds_apart() -> None:
    parts = ["ecs-svc/1", 2, ("arn:i/1", "ACTIVE", 4)]
    assert planner.fingerprint(parts) == planner.fingerprint(list(parts))
    assert planner.fingerprint(parts) != planner.fingerprint(["ecs-svc/1", 2, ("arn:i/1", "ACTIVE", 5)])


def test_a_drained_task_is_deactivating_until_its_targets_are_gone() -> None:
    doc = _new()
    _running(doc)
    before = copy.deepcopy(doc)
    code = StopCode.SERVICE_SCHEDULER_INITIATED
    assert taskdoc.begin_deactivating(doc, code, "Scaling activity initiated by (deployment ecs-svc/1)", 3.0)
    taskdoc.bump_version(before, doc)
    assert (doc["lastStatus"], doc["desiredStatus"], doc["stopCode"]) == (
        "DEACTIVATING",
        "STOPPED",
        "ServiceSchedulerInitiated",
    )
    assert doc["stoppingAt"] == 3.0 and taskdoc.is_deactivating(doc)
    assert taskdoc.agent_desired_status(doc) == "RUNNING"  # the agent keeps it serving while it drains
    assert not taskdoc.begin_deactivating(doc, code, "again", 3.5)
    _report(doc, 4.0, known_status="RUNNING")  # the agent's reports do not move it on meanwhile
    assert doc["lastStatus"] == "DEACTIVATING"
    assert taskdoc.deactivated(doc)  # the targets drained
    assert (doc["lastStatus"], taskdoc.agent_desired_status(doc)) == ("STOPPING", "STOPPED")
    assert not taskdoc.is_deactivating(doc) and not taskdoc.deactivated(doc)
    effects = _report(doc, 5.0, known_status="STOPPED")
    assert effects.release_eni and doc["lastStatus"] == "DEPROVISIONING"


def test_a_task_that_exits_while_it_drains_goes_down_at_once() -> None:
    doc = _new()
    _running(doc)
    taskdoc.begin_deactivating(doc, StopCode.SERVICE_SCHEDULER_INITIATED, "Scaling activity", 3.0)
    taskdoc.apply_report(
        doc,
        taskdoc.TaskReport(
            task_arn="t",
            known_status="STOPPED",
            containers=(taskdoc.ContainerReport("web", "STOPPED", exit_code=1),),
        ),
        4.0,
        essential=ESSENTIAL,
    )
    assert doc["lastStatus"] == "DEPROVISIONING" and not taskdoc.is_deactivating(doc)
    assert doc["stopCode"] == "ServiceSchedulerInitiated"  # the first reason stays


def test_only_a_running_task_is_held() -> None:
    doc = _new()  # PROVISIONING
    assert not taskdoc.begin_deactivating(doc, StopCode.SERVICE_SCHEDULER_INITIATED, None, 1.0)
    assert taskdoc.agent_desired_status(doc) == "RUNNING" and not taskdoc.deactivated(doc)


@given(world=worlds(), retry_at=st.floats(90.0, 110.0), same=st.booleans())
@settings(max_examples=300, deadline=None)
def test_a_waiting_placement_only_holds_back_the_starts(
    world: tuple[ServiceState, list[DeploymentState], list[TaskState]], retry_at: float, same: bool
) -> None:
    service, deployments, tasks = world
    plain = plan_service(service, deployments, tasks, now=100.0)
    retry = Retry(2, retry_at, "cap-1")
    held = plan_service(
        replace(service, placement_retry=retry, capacity="cap-1" if same else "cap-2"),
        deployments,
        tasks,
        100.0,
    )
    if same and retry_at > 100.0:
        assert held.start == {}
        assert (held.stop, held.deregister, held.register, held.release) == (
            plain.stop,
            plain.deregister,
            plain.register,
            plain.release,
        )
    else:  # its time has come, or the cluster changed: exactly the plan without a retry
        assert held == plain
