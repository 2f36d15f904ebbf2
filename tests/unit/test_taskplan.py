"""The task planner: every dependsOn condition, essential/non-essential exits, stops, idempotence."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings, strategies as st

from taskvpc.agent import taskplan as tp
from taskvpc.agent.runtime import HealthCheckSpec, HealthStatus
from taskvpc.domain.lifecycle import ESSENTIAL_CONTAINER_EXITED_REASON, DesiredStatus, StopCode

ARN = "arn:aws:ecs:us-east-1:000000000000:task/default/0123456789abcdef0123456789abcdef"
CHECK = HealthCheckSpec(("CMD-SHELL", "true"), interval=5, timeout=2, retries=3)


def ctr(
    name: str,
    essential: bool = True,
    depends: tuple[tuple[str, str], ...] = (),
    health: bool = False,
    stop_timeout: float | None = None,
    start_timeout: float | None = None,
) -> tp.DesiredContainer:
    return tp.DesiredContainer(
        name=name,
        essential=essential,
        image=f"img/{name}",
        command=("sleep", "1"),
        depends_on=tuple(tp.Dependency(n, tp.Condition(c)) for n, c in depends),
        health_check=CHECK if health else None,
        stop_timeout=stop_timeout,
        start_timeout=start_timeout,
    )


def task(*containers: tp.DesiredContainer, status: DesiredStatus = DesiredStatus.RUNNING) -> tp.DesiredTask:
    return tp.DesiredTask(ARN, status, tuple(containers))


def io(actions: list[tp.Action]) -> list[tp.Action]:
    """The actions that do I/O or change containers (no SetStatus/Report bookkeeping)."""
    return [a for a in actions if not isinstance(a, tp.SetStatus | tp.Report)]


def step(
    desired: tp.DesiredTask, known: tp.KnownTask, now: float = 0.0
) -> tuple[list[tp.Action], tp.KnownTask]:
    actions = tp.plan_task(desired, known, now)
    return actions, tp.apply_decisions(known, actions)


def ready(desired: tp.DesiredTask) -> tp.KnownTask:
    """Network up, nothing started, first report handed over."""
    known = tp.network_ready(tp.KnownTask(desired.arn))
    _, known = step(desired, known)
    return tp.KnownTask(desired.arn, network=tp.NetPhase.READY, reported=known.reported)


def started(known: tp.KnownTask, *names: str, at: float = 0.0) -> tp.KnownTask:
    for name in names:
        known = tp.container_started(known, name, f"rt-{name}", at)
    return known


def exited(known: tp.KnownTask, name: str, code: int | None) -> tp.KnownTask:
    return tp.container_exited(known, name, code)


def starts(actions: list[tp.Action]) -> set[str]:
    return {a.name for a in actions if isinstance(a, tp.StartContainer)}


def stops(actions: list[tp.Action]) -> set[str]:
    return {a.name for a in actions if isinstance(a, tp.StopContainer)}


def cancels(actions: list[tp.Action]) -> dict[str, tp.CancelContainer]:
    return {a.name: a for a in actions if isinstance(a, tp.CancelContainer)}


def begin_stop(actions: list[tp.Action]) -> tp.BeginStop | None:
    return next((a for a in actions if isinstance(a, tp.BeginStop)), None)


# ---------------------------------------------------------------------------------------------- start-up


def test_network_comes_first_then_independent_containers_start_together() -> None:
    desired = task(ctr("a"), ctr("b"), ctr("c", depends=(("a", "START"),)))
    actions, known = step(desired, tp.KnownTask(ARN))
    assert io(actions) == [tp.EnsureNetwork(0)]
    assert known.network is tp.NetPhase.CREATING
    assert io(tp.plan_task(desired, known)) == []  # in flight: nothing repeated
    actions, known = step(desired, tp.network_ready(known))
    assert starts(actions) == {"a", "b"}
    assert known.container("a").phase is tp.Phase.STARTING
    assert io(tp.plan_task(desired, known)) == []


def test_task_is_pending_until_every_essential_container_runs() -> None:
    desired = task(ctr("a", health=True), ctr("b"), ctr("side", essential=False, depends=(("a", "HEALTHY"),)))
    known = started(ready(desired), "a")
    assert tp.derive_status(desired, known) is tp.TaskView.PENDING
    known = started(known, "b")
    assert tp.derive_status(desired, known) is tp.TaskView.RUNNING  # the waiting sidecar does not count
    actions, known = step(desired, known)
    assert tp.SetStatus(tp.TaskView.RUNNING) in actions
    report = next(a.report for a in actions if isinstance(a, tp.Report))
    assert report.known_status == "RUNNING"
    assert report.attachment_status == "ATTACHED"
    assert [(c.name, c.status) for c in report.containers] == [
        ("a", "RUNNING"),
        ("b", "RUNNING"),
        ("side", "PENDING"),
    ]


def test_failed_network_is_retried_then_fails_the_task() -> None:
    desired = task(ctr("a"))
    _, known = step(desired, tp.KnownTask(ARN))
    for attempt in range(1, tp.MAX_NETWORK_ATTEMPTS):
        known = tp.network_failed(known, "boom")
        actions, known = step(desired, known)
        assert io(actions) == [tp.EnsureNetwork(attempt)]
    known = tp.network_failed(known, "boom")
    actions, known = step(desired, known)
    stop = begin_stop(actions)
    assert stop is not None and stop.code is StopCode.TASK_FAILED_TO_START
    assert stop.reason is not None and "boom" in stop.reason
    assert cancels(actions).keys() == {"a"}
    assert tp.RemoveNetwork() in actions  # whatever half-exists goes


# ---------------------------------------------------------------------------------------------- dependsOn


def test_start_condition_holds_once_the_dependency_ran_even_if_it_exited() -> None:
    desired = task(ctr("a", essential=False), ctr("b", depends=(("a", "START"),)))
    known = ready(desired)
    assert starts(tp.plan_task(desired, known)) == {"a"}
    assert starts(tp.plan_task(desired, replace_phase(known, "a", tp.Phase.STARTING))) == set()
    assert starts(tp.plan_task(desired, started(known, "a"))) == {"b"}
    assert starts(tp.plan_task(desired, exited(started(known, "a"), "a", 1))) == {"b"}  # ecs-agent#3927


def test_complete_condition_waits_for_any_exit() -> None:
    desired = task(ctr("init", essential=False), ctr("app", depends=(("init", "COMPLETE"),)))
    known = started(ready(desired), "init")
    assert starts(tp.plan_task(desired, known)) == set()
    assert starts(tp.plan_task(desired, exited(known, "init", 3))) == {"app"}


def test_success_condition_needs_exit_zero() -> None:
    desired = task(ctr("init", essential=False), ctr("app", depends=(("init", "SUCCESS"),)))
    known = started(ready(desired), "init")
    assert starts(tp.plan_task(desired, known)) == set()
    assert starts(tp.plan_task(desired, exited(known, "init", 0))) == {"app"}


def test_success_condition_on_a_failed_dependency_cancels_and_stops_the_task() -> None:
    desired = task(ctr("init", essential=False, depends=()), ctr("app", depends=(("init", "SUCCESS"),)))
    known = exited(started(ready(desired), "init"), "init", 1)
    actions, known = step(desired, known)
    cancel = cancels(actions)["app"]
    assert cancel.exit_code == 143
    assert cancel.reason == (
        "CannotStartContainerError: dependency graph: failed to resolve container ordering dependency "
        "[init(img/init) (STOPPED->RUNNING) - Exit: 1] for target [app(img/app) (NONE->RUNNING)] "
        "as dependency did not exit successfully."
    )
    assert known.container("app").phase is tp.Phase.STOPPED
    # the essential container is now stopped: the task stops, as ECS's chain reaction does
    actions, known = step(desired, known)
    assert begin_stop(actions) == tp.BeginStop(
        ESSENTIAL_CONTAINER_EXITED_REASON, StopCode.ESSENTIAL_CONTAINER_EXITED
    )
    assert tp.RemoveNetwork() in actions


def test_unsatisfiable_dependency_of_a_non_essential_container_does_not_stop_the_task() -> None:
    desired = task(
        ctr("app"),
        ctr("init", essential=False),
        ctr("after", essential=False, depends=(("init", "SUCCESS"),)),
    )
    known = exited(started(ready(desired), "app", "init"), "init", 2)
    actions, known = step(desired, known)
    assert cancels(actions).keys() == {"after"}
    actions, known = step(desired, known)
    assert begin_stop(actions) is None
    assert tp.derive_status(desired, known) is tp.TaskView.RUNNING


def test_healthy_condition_waits_for_a_passing_health_check() -> None:
    desired = task(ctr("db", health=True), ctr("app", depends=(("db", "HEALTHY"),)))
    known = started(ready(desired), "db")
    assert starts(tp.plan_task(desired, known)) == set()
    unhealthy = tp.container_health(known, "db", HealthStatus.UNHEALTHY)
    assert starts(tp.plan_task(desired, unhealthy)) == set()
    healthy = tp.container_health(known, "db", HealthStatus.HEALTHY)
    assert starts(tp.plan_task(desired, healthy)) == {"app"}


def test_healthy_condition_on_a_dependency_without_health_check_can_never_hold() -> None:
    desired = task(ctr("db", essential=False), ctr("app", depends=(("db", "HEALTHY"),)))
    known = started(ready(desired), "db")
    cancel = cancels(tp.plan_task(desired, known))["app"]
    assert cancel.reason is not None and "did not become healthy" in cancel.reason


def test_healthy_condition_on_an_exited_dependency_can_never_hold() -> None:
    desired = task(ctr("db", essential=False, health=True), ctr("app", depends=(("db", "HEALTHY"),)))
    known = exited(started(ready(desired), "db"), "db", 0)
    assert "app" in cancels(tp.plan_task(desired, known))


def test_dependency_that_never_started_cancels_its_dependents_in_a_chain() -> None:
    desired = task(
        ctr("a", essential=False),
        ctr("b", essential=False, depends=(("a", "START"),)),
        ctr("c", depends=(("b", "START"),)),
    )
    known = tp.container_start_failed(ready(desired), "a", "CannotStartContainerError: exec: nope")
    actions, known = step(desired, known)
    assert cancels(actions)["b"].reason is not None
    assert "because dependency will never start" in str(cancels(actions)["b"].reason)
    actions, known = step(desired, known)
    assert "c" in cancels(actions)
    actions, known = step(desired, known)
    assert begin_stop(actions) is not None  # c is essential


def test_dependency_start_timeout_expires() -> None:
    desired = task(ctr("init", essential=False, start_timeout=5), ctr("app", depends=(("init", "COMPLETE"),)))
    known = started(ready(desired), "init", at=100.0)
    assert io(tp.plan_task(desired, known, now=104.0)) == []
    cancel = cancels(tp.plan_task(desired, known, now=106.0))["app"]
    assert cancel.reason is not None and cancel.reason.endswith("has timed out.")


def test_start_condition_ignores_start_timeout() -> None:
    desired = task(ctr("a", essential=False, start_timeout=1), ctr("b", depends=(("a", "START"),)))
    known = started(ready(desired), "a", at=0.0)
    assert starts(tp.plan_task(desired, known, now=100.0)) == {"b"}


def test_several_dependencies_must_all_hold() -> None:
    desired = task(
        ctr("db", health=True),
        ctr("init", essential=False),
        ctr("app", depends=(("db", "HEALTHY"), ("init", "SUCCESS"))),
    )
    known = started(ready(desired), "db", "init")
    known = tp.container_health(known, "db", HealthStatus.HEALTHY)
    assert starts(tp.plan_task(desired, known)) == set()
    assert starts(tp.plan_task(desired, exited(known, "init", 0))) == {"app"}


# ---------------------------------------------------------------------------------------------- exits, stops


def test_essential_exit_stops_the_task_in_reverse_dependency_order() -> None:
    desired = task(
        ctr("db", stop_timeout=7),
        ctr("app", depends=(("db", "START"),), stop_timeout=3),
        ctr("web", depends=(("app", "START"),)),
        ctr("logs", essential=False),
    )
    known = started(ready(desired), "db", "app", "web", "logs")
    known = exited(known, "web", 2)
    actions, known = step(desired, known)
    stop = begin_stop(actions)
    assert stop == tp.BeginStop(ESSENTIAL_CONTAINER_EXITED_REASON, StopCode.ESSENTIAL_CONTAINER_EXITED)
    # web already stopped; app has no running dependent; db waits for app
    assert [a for a in actions if isinstance(a, tp.StopContainer)] == [
        tp.StopContainer("app", 3),
        tp.StopContainer("logs", 30.0),
    ]
    assert io(tp.plan_task(desired, known)) == []
    known = exited(known, "app", 143)
    actions, known = step(desired, known)
    assert stops(actions) == {"db"}
    assert tp.StopContainer("db", 7) in actions
    known = exited(exited(known, "db", 137), "logs", 0)
    actions, known = step(desired, known)
    assert io(actions) == [tp.RemoveNetwork()]
    assert tp.derive_status(desired, known) is not tp.TaskView.STOPPED  # not before the network is gone
    known = tp.network_removed(known)
    actions, known = step(desired, known)
    report = next(a.report for a in actions if isinstance(a, tp.Report))
    assert report.known_status == "STOPPED"
    assert report.attachment_status == "DETACHED"
    assert report.reason == ESSENTIAL_CONTAINER_EXITED_REASON
    assert {c.name: c.exit_code for c in report.containers} == {"db": 137, "app": 143, "web": 2, "logs": 0}


def test_non_essential_exit_does_not_stop_the_task() -> None:
    desired = task(ctr("app"), ctr("side", essential=False))
    known = exited(started(ready(desired), "app", "side"), "side", 1)
    actions, _ = step(desired, known)
    assert begin_stop(actions) is None
    assert io(actions) == []


def test_essential_start_failure_stops_the_task() -> None:
    desired = task(ctr("app"), ctr("side", essential=False))
    known = started(ready(desired), "side")
    known = tp.container_start_failed(known, "app", "CannotStartContainerError: exec: x")
    actions, known = step(desired, known)
    assert begin_stop(actions) is not None
    assert stops(actions) == {"side"}
    report = next(a.report for a in actions if isinstance(a, tp.Report))
    assert {c.name: (c.status, c.exit_code, c.reason) for c in report.containers}["app"] == (
        "STOPPED",
        None,
        "CannotStartContainerError: exec: x",
    )


def test_stop_while_pending_cancels_what_never_started() -> None:
    desired = task(ctr("a"), ctr("b", depends=(("a", "HEALTHY"),)))
    _, known = step(desired, tp.KnownTask(ARN))  # network CREATING
    stopped = replace(desired, desired_status=DesiredStatus.STOPPED)
    actions, known = step(stopped, known)
    assert begin_stop(actions) == tp.BeginStop(None, StopCode.USER_INITIATED)
    assert cancels(actions).keys() == {"a", "b"}
    assert tp.RemoveNetwork() not in actions  # the ensure in flight finishes first
    actions, known = step(stopped, tp.network_ready(known))
    assert io(actions) == [tp.RemoveNetwork()]
    actions, known = step(stopped, tp.network_removed(known))
    report = next(a.report for a in actions if isinstance(a, tp.Report))
    assert report.known_status == "STOPPED"
    assert all(c.status == "STOPPED" and c.exit_code is None for c in report.containers)
    assert report.reason is None  # the control plane knows why it asked


def test_stop_waits_for_a_container_being_started() -> None:
    desired = task(ctr("a"))
    actions, known = step(desired, ready(desired))
    assert starts(actions) == {"a"}
    stopped = replace(desired, desired_status=DesiredStatus.STOPPED)
    actions, known = step(stopped, known)
    assert io(actions) == [tp.BeginStop(None, StopCode.USER_INITIATED)]
    actions, known = step(stopped, started(known, "a"))
    assert stops(actions) == {"a"}


def test_unknown_adopted_container_is_stopped_never_started_again() -> None:
    desired = task(ctr("a"), status=DesiredStatus.STOPPED)
    known = tp.KnownTask(
        ARN, containers={"a": tp.KnownContainer("a", tp.Phase.RUNNING, started=True, unknown=True)}
    )
    actions = tp.plan_task(desired, known)
    assert stops(actions) == {"a"} and starts(actions) == set()


def test_container_that_is_not_desired_is_stopped() -> None:
    desired = task(ctr("a"))
    known = started(ready(desired), "a", "ghost")
    assert stops(tp.plan_task(desired, known)) == {"ghost"}


def test_forget_only_after_the_stopped_report_is_acknowledged() -> None:
    desired = task(ctr("a"), status=DesiredStatus.STOPPED)
    known = tp.KnownTask(ARN)
    for _ in range(5):
        actions, known = step(desired, known)
        if tp.RemoveNetwork() in actions:
            known = tp.network_removed(known)
    assert known.status is tp.TaskView.STOPPED
    assert tp.Forget() not in tp.plan_task(desired, known)
    assert tp.plan_task(desired, replace(known, stopped_acked=True)) == [tp.Forget()]


def test_known_status_never_moves_backwards() -> None:
    desired = task(ctr("a"))
    known = replace(started(ready(desired), "a"), status=tp.TaskView.RUNNING)
    known = replace(known, network=tp.NetPhase.FAILED)
    assert tp.derive_status(desired, known) is tp.TaskView.RUNNING


def test_desired_status_only_moves_forward() -> None:
    running = task(ctr("a"))
    stopped = replace(running, desired_status=DesiredStatus.STOPPED, stop_reason="bye")
    assert stopped.advanced(running).desired_status is DesiredStatus.STOPPED
    assert running.advanced(stopped).desired_status is DesiredStatus.STOPPED
    assert running.advanced(stopped).stop_reason == "bye"


def test_planning_is_idempotent() -> None:
    """The same inputs give the same plan; once its decisions are recorded, planning again adds nothing."""
    desired = task(ctr("a"), ctr("b", depends=(("a", "START"),)))
    known = tp.KnownTask(ARN)
    for _ in range(4):
        first = tp.plan_task(desired, known)
        assert first == tp.plan_task(desired, known)
        known = tp.apply_decisions(known, first)
        assert tp.plan_task(desired, known) == []
        if known.network is tp.NetPhase.CREATING:
            known = tp.network_ready(known)
        for name, c in known.containers.items():
            if c.phase is tp.Phase.STARTING:
                known = tp.container_started(known, name, "x", 0.0)
    assert known.container("b").phase is tp.Phase.RUNNING


def replace_phase(known: tp.KnownTask, name: str, phase: tp.Phase) -> tp.KnownTask:
    return known.with_container(replace(known.container(name), phase=phase))


# ---------------------------------------------------------------------------------------------- wire


def test_desired_task_from_the_agent_api() -> None:
    doc = {
        "taskArn": ARN,
        "desiredStatus": "RUNNING",
        "family": "web",
        "revision": 3,
        "eni": {
            "attachmentId": "a1",
            "networkInterfaceId": "eni-0123456789abcdef0",
            "macAddress": "0e:00:00:00:00:01",
            "privateIpv4Address": "172.31.0.5",
            "prefixLength": 20,
            "gateway": "172.31.0.1",
            "subnetId": "subnet-1",
            "vpcId": "vpc-1",
            "securityGroupIds": ["sg-1"],
        },
        "containers": [
            {
                "name": "app",
                "essential": True,
                "image": "busybox",
                "entryPoint": ["sh", "-c"],
                "command": ["echo hi"],
                "environment": [{"name": "A", "value": "1"}],
                "workingDirectory": "/srv",
                "user": "1000:1000",
                "dependsOn": [{"containerName": "db", "condition": "HEALTHY"}],
                "healthCheck": {"command": ["CMD", "true"], "interval": 10, "timeout": 2, "retries": 2},
                "stopTimeout": 5,
            },
            {"name": "db", "essential": False},
        ],
    }
    desired = tp.DesiredTask.from_wire(doc)
    assert desired.task_id == "0123456789abcdef0123456789abcdef"
    app = desired.containers[0]
    assert app.entry_point == ("sh", "-c") and app.command == ("echo hi",)
    assert app.environment == (("A", "1"),)
    assert app.depends_on == (tp.Dependency("db", tp.Condition.HEALTHY),)
    assert app.health_check == HealthCheckSpec(("CMD", "true"), 10.0, 2.0, 2, 0.0)
    assert app.stop_timeout == 5.0 and desired.containers[1].effective_stop_timeout == 30.0
    assert desired.eni is not None and desired.eni.prefix_length == 20
    assert desired.containers[1].essential is False


# ---------------------------------------------------------------------------------------------- simulation


@st.composite
def task_shapes(draw: st.DrawFn) -> tp.DesiredTask:
    """Random acyclic tasks: container i may only depend on containers before it."""
    count = draw(st.integers(1, 5))
    containers = []
    for i in range(count):
        deps = draw(
            st.lists(
                st.tuples(st.sampled_from([f"c{j}" for j in range(i)]), st.sampled_from(list(tp.Condition))),
                max_size=min(i, 2),
                unique_by=lambda d: d[0],
            )
            if i
            else st.just([])
        )
        containers.append(
            ctr(f"c{i}", essential=draw(st.booleans()), depends=tuple(deps), health=draw(st.booleans()))
        )
    if not any(c.essential for c in containers):
        containers[-1] = replace(containers[-1], essential=True)
    return task(*containers)


@settings(max_examples=300, deadline=None)
@given(task_shapes(), st.data())
def test_any_run_respects_dependencies_and_ends_clean(desired: tp.DesiredTask, data: st.DataObject) -> None:
    """Random outcomes in random order: starts follow dependsOn, stops follow reverse order, each
    container starts at most once, and the task always ends STOPPED with its network removed."""
    known = tp.KnownTask(ARN)
    inflight: list[tp.Action] = []
    started_once: set[str] = set()
    stop_requested = False
    for _ in range(200):
        before = known
        actions, known = step(desired, known, now=0.0)
        for action in actions:
            if isinstance(action, tp.StartContainer):
                assert action.name not in started_once
                started_once.add(action.name)
                spec = desired.container(action.name)
                assert spec is not None
                assert before.network is tp.NetPhase.READY and not known.stopping
                for dep in spec.depends_on:
                    assert tp._holds(dep.condition, before.container(dep.container))
            if isinstance(action, tp.StopContainer):
                for dependent in tp._dependents(desired, action.name):
                    assert before.container(dependent).phase in (tp.Phase.PENDING, tp.Phase.STOPPED)
            if isinstance(action, tp.RemoveNetwork):
                assert all(c.phase is tp.Phase.STOPPED for c in known.containers.values())
            if isinstance(action, tp.EnsureNetwork | tp.StartContainer | tp.StopContainer | tp.RemoveNetwork):
                inflight.append(action)
            if isinstance(action, tp.Forget):
                assert known.network is tp.NetPhase.REMOVED
                return
        if known.status is tp.TaskView.STOPPED and known.reported is not None:
            known = replace(known, stopped_acked=True)
            continue
        choices = ["finish"] * len(inflight) + ["exit", "health"]
        if not stop_requested:
            choices.append("stop")
        choice = data.draw(st.sampled_from(choices))
        if choice == "stop":
            stop_requested = True
            desired = replace(desired, desired_status=DesiredStatus.STOPPED)
        elif choice == "finish" and inflight:
            action = inflight.pop(data.draw(st.integers(0, len(inflight) - 1)))
            if isinstance(action, tp.EnsureNetwork):
                known = tp.network_ready(known) if data.draw(st.booleans()) else tp.network_failed(known, "x")
            elif isinstance(action, tp.StartContainer):
                if data.draw(st.integers(0, 9)) == 0:
                    known = tp.container_start_failed(known, action.name, "CannotStartContainerError: x")
                else:
                    known = tp.container_started(known, action.name, "rt", 0.0)
            elif isinstance(action, tp.StopContainer):
                known = tp.container_exited(known, action.name, 143)
            elif isinstance(action, tp.RemoveNetwork):
                known = tp.network_removed(known)
        elif choice == "exit":
            running = [
                n for n, c in known.containers.items() if c.phase in (tp.Phase.RUNNING, tp.Phase.STOPPING)
            ]
            if running:
                known = tp.container_exited(
                    known, data.draw(st.sampled_from(running)), data.draw(st.sampled_from([0, 1]))
                )
        elif choice == "health":
            running = [n for n, c in known.containers.items() if c.phase is tp.Phase.RUNNING]
            if running:
                known = tp.container_health(known, data.draw(st.sampled_from(running)), HealthStatus.HEALTHY)
        if not inflight and choice != "stop" and not stop_requested and data.draw(st.integers(0, 5)) == 0:
            stop_requested = True
            desired = replace(desired, desired_status=DesiredStatus.STOPPED)
    raise AssertionError(f"the run did not end: {known}")


@pytest.mark.parametrize("condition", list(tp.Condition))
def test_every_condition_is_satisfiable(condition: tp.Condition) -> None:
    desired = task(ctr("dep", essential=False, health=True), ctr("app", depends=(("dep", condition.value),)))
    known = started(ready(desired), "dep")
    if condition in (tp.Condition.COMPLETE, tp.Condition.SUCCESS):
        known = exited(known, "dep", 0)
    if condition is tp.Condition.HEALTHY:
        known = tp.container_health(known, "dep", HealthStatus.HEALTHY)
    assert starts(tp.plan_task(desired, known)) == {"app"}


def test_next_deadline_is_the_earliest_dependency_start_timeout() -> None:
    desired = task(
        ctr("a", essential=False, start_timeout=5),
        ctr("b", essential=False, start_timeout=3),
        ctr("app", depends=(("a", "COMPLETE"), ("b", "HEALTHY"))),
        ctr("other", depends=(("a", "START"),)),
    )
    known = ready(desired)
    assert tp.next_deadline(desired, known) is None  # nothing started yet
    known = started(known, "a", at=100.0)
    assert tp.next_deadline(desired, known) == 105.0
    known = started(known, "b", at=101.0)
    assert tp.next_deadline(desired, known) == 104.0
    assert tp.next_deadline(desired, replace(known, stopping=True)) is None
