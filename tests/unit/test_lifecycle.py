"""Lifecycle tables (taskvpc.domain.lifecycle): every (state, event) pair, every path, the diagrams."""

from __future__ import annotations

import itertools
from typing import Any

import botocore.session
import pytest
from hypothesis import given, strategies as st

from taskvpc.domain.lifecycle import (
    ALL_MACHINES,
    ATTACHMENT,
    CONTAINER,
    CONTAINER_INSTANCE,
    ENI_PROVISIONING_TIMEOUT_REASON,
    ESSENTIAL_CONTAINER_EXITED_REASON,
    TASK,
    USER_STOP_REASON,
    AttachmentEvent,
    AttachmentStatus,
    ContainerEvent,
    ContainerInstanceEvent,
    ContainerInstanceStatus,
    ContainerStatus,
    DesiredStatus,
    IllegalTransition,
    Machine,
    StopCode,
    TaskEvent,
    TaskStatus,
    advance_desired,
    markdown,
    mermaid,
    next_attachment_status,
    next_container_status,
    next_instance_status,
    next_task_status,
    stop_code_for,
    stopped_reason,
)

MACHINE_IDS = [m.name for m in ALL_MACHINES]


@pytest.mark.parametrize("machine", ALL_MACHINES, ids=MACHINE_IDS)
def test_every_state_event_pair(machine: Machine[Any, Any]) -> None:
    legal = 0
    for state, event in itertools.product(machine.all_states(), machine.all_events()):
        if (state, event) in machine.table:
            legal += 1
            assert machine.next(state, event) == machine.table[(state, event)]
            assert machine.allows(state, event)
        else:
            assert not machine.allows(state, event)
            with pytest.raises(IllegalTransition) as info:
                machine.next(state, event)
            assert (info.value.machine, info.value.state, info.value.event) == (machine.name, state, event)
    assert legal == len(machine.table)


@pytest.mark.parametrize("machine", ALL_MACHINES, ids=MACHINE_IDS)
def test_every_state_reachable_and_every_state_reaches_an_end(machine: Machine[Any, Any]) -> None:
    reachable = {machine.initial}
    frontier = [machine.initial]
    while frontier:
        state = frontier.pop()
        for event in machine.events_from(state):
            target = machine.next(state, event)
            if target not in reachable:
                reachable.add(target)
                frontier.append(target)
    assert reachable == set(machine.all_states())
    ends: set[Any] = set(machine.terminal())
    for state in machine.all_states():
        seen, stack = {state}, [state]
        while stack:
            current = stack.pop()
            for event in machine.events_from(current):
                target = machine.next(current, event)
                if target not in seen:
                    seen.add(target)
                    stack.append(target)
        assert seen & ends, f"{machine.name}: {state} never ends"


def test_terminal_states() -> None:
    assert TASK.terminal() == [TaskStatus.STOPPED]
    assert CONTAINER.terminal() == [ContainerStatus.STOPPED]
    assert ATTACHMENT.terminal() == [AttachmentStatus.DELETED]
    assert CONTAINER_INSTANCE.terminal() == [ContainerInstanceStatus.INACTIVE]


def walk(start: TaskStatus, *events: TaskEvent) -> list[TaskStatus]:
    seen = [start]
    for event in events:
        seen.append(next_task_status(seen[-1], event))
    return seen


def test_task_happy_path_is_the_documented_flow() -> None:
    e = TaskEvent
    path = walk(
        TaskStatus.PROVISIONING,
        e.ENI_ATTACHED,
        e.CONTAINERS_STARTED,
        e.ACTIVATED,
        e.STOP_REQUESTED,
        e.DEACTIVATED,
        e.CONTAINERS_STOPPED,
        e.ENI_RELEASED,
    )
    assert [s.value for s in path] == [
        "PROVISIONING",
        "PENDING",
        "ACTIVATING",
        "RUNNING",
        "DEACTIVATING",
        "STOPPING",
        "DEPROVISIONING",
        "STOPPED",
    ]


def test_task_failures_before_running_still_release_the_eni() -> None:
    e = TaskEvent
    assert walk(TaskStatus.PROVISIONING, e.FAILED_TO_START, e.ENI_RELEASED)[-1] is TaskStatus.STOPPED
    assert walk(TaskStatus.PROVISIONING, e.FAILED_TO_START)[-1] is TaskStatus.DEPROVISIONING
    path = walk(TaskStatus.PENDING, e.ESSENTIAL_EXITED, e.CONTAINERS_STOPPED, e.ENI_RELEASED)
    assert path[1:] == [TaskStatus.STOPPING, TaskStatus.DEPROVISIONING, TaskStatus.STOPPED]
    with pytest.raises(IllegalTransition):
        next_task_status(TaskStatus.STOPPED, e.STOP_REQUESTED)
    with pytest.raises(IllegalTransition):
        next_task_status(TaskStatus.PROVISIONING, e.CONTAINERS_STARTED)  # no skipping the network


def test_container_instance_moves() -> None:
    s, e = ContainerInstanceStatus, ContainerInstanceEvent
    assert next_instance_status(s.ACTIVE, e.DRAIN) is s.DRAINING
    assert next_instance_status(s.DRAINING, e.ACTIVATE) is s.ACTIVE
    assert next_instance_status(s.DRAINING, e.DEREGISTER) is s.INACTIVE
    assert next_instance_status(s.REGISTERING, e.REGISTRATION_FAILED) is s.REGISTRATION_FAILED
    for state in (s.REGISTERING, s.REGISTRATION_FAILED, s.DEREGISTERING, s.INACTIVE):
        for event in (e.DRAIN, e.ACTIVATE):  # UpdateContainerInstancesState refuses these states
            with pytest.raises(IllegalTransition):
                next_instance_status(state, event)


def test_container_and_attachment_paths() -> None:
    assert next_container_status(ContainerStatus.PENDING, ContainerEvent.CANCELLED) is ContainerStatus.STOPPED
    with pytest.raises(IllegalTransition):
        next_container_status(ContainerStatus.STOPPED, ContainerEvent.STARTED)
    a, ae = AttachmentStatus, AttachmentEvent
    assert next_attachment_status(a.PRECREATED, ae.ATTACHED) is a.ATTACHED  # the observed jump
    assert next_attachment_status(a.ATTACHED, ae.DETACH_STARTED) is a.DETACHING
    with pytest.raises(IllegalTransition):
        next_attachment_status(a.DELETED, ae.ATTACHED)


@given(st.lists(st.sampled_from(list(DesiredStatus)), min_size=1, max_size=8))
def test_desired_status_only_moves_forward(requests: list[DesiredStatus]) -> None:
    order = [DesiredStatus.PENDING, DesiredStatus.RUNNING, DesiredStatus.STOPPED]
    current = DesiredStatus.PENDING
    for requested in requests:
        after = advance_desired(current, requested)
        assert order.index(after) == max(order.index(current), order.index(requested))
        current = after
    assert advance_desired(DesiredStatus.STOPPED, DesiredStatus.RUNNING) is DesiredStatus.STOPPED


def _ecs_enum(shape: str) -> list[str]:
    model = botocore.session.get_session().get_service_model("ecs")
    return list(model.shape_for(shape).enum)


def test_enums_match_the_ecs_api_model() -> None:
    assert [c.value for c in StopCode] == _ecs_enum("TaskStopCode")
    assert {d.value for d in DesiredStatus} == set(_ecs_enum("DesiredStatus"))
    # The model's ContainerInstanceStatus enum omits INACTIVE, which its documentation lists.
    assert set(_ecs_enum("ContainerInstanceStatus")) | {"INACTIVE"} == {
        s.value for s in ContainerInstanceStatus
    }
    documented = [
        "PRECREATED",
        "CREATED",
        "ATTACHING",
        "ATTACHED",
        "DETACHING",
        "DETACHED",
        "DELETED",
        "FAILED",
    ]
    assert [s.value for s in AttachmentStatus] == documented


def test_stop_codes_and_reasons() -> None:
    assert stop_code_for(TaskEvent.STOP_REQUESTED) is StopCode.USER_INITIATED
    assert stop_code_for(TaskEvent.ESSENTIAL_EXITED) is StopCode.ESSENTIAL_CONTAINER_EXITED
    assert stop_code_for(TaskEvent.FAILED_TO_START) is StopCode.TASK_FAILED_TO_START
    assert stop_code_for(TaskEvent.ENI_ATTACHED) is None
    assert stopped_reason(StopCode.USER_INITIATED) == USER_STOP_REASON == "Task stopped by user"
    assert stopped_reason(StopCode.USER_INITIATED, "deploy 42") == "deploy 42"
    assert stopped_reason(StopCode.ESSENTIAL_CONTAINER_EXITED) == ESSENTIAL_CONTAINER_EXITED_REASON
    assert ESSENTIAL_CONTAINER_EXITED_REASON == "Essential container in task exited"
    assert stopped_reason(StopCode.TASK_FAILED_TO_START) is None  # the caller says what failed
    assert ENI_PROVISIONING_TIMEOUT_REASON.startswith("Timeout waiting for network interface")


@pytest.mark.parametrize("machine", ALL_MACHINES, ids=MACHINE_IDS)
def test_diagram_mentions_every_transition(machine: Machine[Any, Any]) -> None:
    diagram = mermaid(machine)
    assert diagram.startswith("stateDiagram-v2\n")
    assert f"[*] --> {machine.initial.value}" in diagram
    for (state, event), target in machine.table.items():
        assert f"    {state.value} --> {target.value}: {event.value}\n" in diagram
    edges = [line for line in diagram.splitlines() if ": " in line]
    assert len(edges) == len(machine.table)


def test_markdown_has_every_machine() -> None:
    page = markdown()
    for machine in ALL_MACHINES:
        assert f"## {machine.name}" in page
        assert mermaid(machine) in page
