"""A delta answer makes the agent look at the tasks it changed, not at every task of the host: the engine
starts, updates and stops workers from the delta's changes (``DesiredView.changes``), the firewall gets
the changed ENIs' groups, and the workers end up as a pass over the whole merged list leaves them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from taskvpc.agent.dataplane import DataPlane
from taskvpc.agent.desiredview import DesiredView
from taskvpc.agent.engine import Engine, Reporter
from taskvpc.agent.runtime.process import ProcessRuntime
from taskvpc.agentapi.answer import DesiredState
from taskvpc.agentapi.delta import DELTA, DIGESTS, REMOVED_TASKS, TASK_COUNT
from taskvpc.agentapi.tasks import DesiredTask
from taskvpc.domain.lifecycle import DesiredStatus
from tests.unit.test_engine_vpc_users import VPCS, _task

HOST = 50


class Listed(tuple):  # type: ignore[type-arg]
    """A task list that counts the passes over it."""

    passes = 0

    def __iter__(self) -> Iterator[Any]:
        Listed.passes += 1
        return super().__iter__()


def _engine(network: DataPlane | None = None) -> Engine:
    engine = Engine(ProcessRuntime(Path("/nonexistent")), network, Reporter(lambda tasks: asyncio.sleep(0)))

    def spawn(coro: Awaitable[None], what: str) -> None:  # nothing is run here
        coro.close()  # type: ignore[attr-defined]

    engine.spawn = spawn  # type: ignore[assignment,method-assign]
    engine.adopted = True
    return engine


def _full(generation: int, tasks: list[DesiredTask]) -> DesiredState:
    return DesiredState.of(generation, tasks=tuple(tasks), instance=None)


def _delta(generation: int, changed: list[DesiredTask], removed: list[str], count: int) -> dict[str, Any]:
    return {
        "generation": generation,
        "changed": True,
        DELTA: True,
        "tasks": [t.to_wire() for t in changed],
        REMOVED_TASKS: removed,
        TASK_COUNT: count,
        DIGESTS: {},
    }


def _desired(engine: Engine) -> dict[str, DesiredStatus]:
    return {arn: w.desired.desired_status for arn, w in engine.workers.items()}


def test_a_delta_is_applied_without_a_pass_over_every_task() -> None:
    tasks = [_task(n, VPCS[n % 2]) for n in range(HOST)]
    view = DesiredView(DesiredState.from_wire)
    view.hold(_full(1, tasks))
    engine = _engine()
    assert view.state is not None
    engine.apply(view.state, view.changes)  # a full answer: every task
    assert len(engine.workers) == HOST and view.changes is None

    new, stopping = _task(HOST, VPCS[0]), replace(tasks[3], desired_status=DesiredStatus.STOPPED)
    merged = view.take(_delta(2, [new, stopping], [tasks[7].arn], HOST))
    assert merged is not None and view.changes is not None
    assert {t.arn for t in view.changes.tasks} == {new.arn, stopping.arn}
    counted = replace(merged, sections={**merged.sections, "tasks": Listed(merged.tasks)})
    Listed.passes = 0
    engine.apply(counted, view.changes)
    assert Listed.passes == 0, "the engine went over every task for a delta of three"
    desired = _desired(engine)
    assert desired[new.arn] is DesiredStatus.RUNNING  # a worker for the new task
    assert desired[tasks[3].arn] is DesiredStatus.STOPPED  # told to stop
    assert desired[tasks[7].arn] is DesiredStatus.STOPPED  # no longer listed: stopped
    assert sum(s is DesiredStatus.STOPPED for s in desired.values()) == 2

    Listed.passes = 0
    engine.apply(counted)  # without the changes (a full answer): one pass, the same outcome
    assert Listed.passes >= 1 and _desired(engine) == desired


def test_the_copy_takes_a_delta_without_a_pass_over_every_task() -> None:
    tasks = [_task(n, VPCS[0]) for n in range(HOST)]
    view = DesiredView(DesiredState.from_wire)
    view.hold(DesiredState.of(1, tasks=Listed(tasks)))
    Listed.passes = 0
    first = view.take(_delta(2, [_task(HOST, VPCS[0])], [tasks[0].arn], HOST))
    assert first is not None and Listed.passes == 1  # the copy's index, made once
    merged = first
    for generation in range(3, 8):
        held = replace(merged, sections={**merged.sections, "tasks": Listed(merged.tasks)})
        view.state = held
        Listed.passes = 0
        found = view.take(_delta(generation, [_task(HOST + generation, VPCS[1])], [], HOST + generation - 2))
        assert found is not None and Listed.passes == 0, "the copy went over every task for one change"
        merged = found
    assert [t.arn for t in merged.tasks] == [
        *(t.arn for t in tasks[1:]),
        _task(HOST, None).arn,
        *(_task(HOST + g, None).arn for g in range(3, 8)),
    ]
    assert view.take(_delta(9, [], [], 1)) is None and view.state is None  # does not add up: dropped


class Firewall:
    def __init__(self) -> None:
        self.calls: list[dict[str, tuple[str, ...]]] = []

    def set_desired(self, groups: Any, eni_groups: dict[str, tuple[str, ...]]) -> list[str]:
        self.calls.append(dict(eni_groups))
        return []


def test_the_firewall_gets_the_changed_enis_groups_alone() -> None:
    async def body() -> None:
        firewall = Firewall()
        plane = DataPlane(None, None, firewall=firewall)  # type: ignore[arg-type]
        tasks = [_task(n, VPCS[0]) for n in range(HOST)]
        state = _full(1, tasks)
        try:
            await plane.set_security(state)
            assert len(firewall.calls[-1]) == HOST
            moved = tasks[4]
            assert moved.eni is not None
            moved = replace(moved, eni=replace(moved.eni, security_group_ids=("sg-2",)))
            await plane.set_security(state, (moved,))
            assert firewall.calls[-1] == {moved.eni.network_interface_id: ("sg-2",)}  # type: ignore[union-attr]
        finally:
            plane.close()

    asyncio.run(body())


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sets(st.integers(0, 11), max_size=4),  # tasks added or changed
            st.sets(st.integers(0, 11), max_size=3),  # tasks stopped (desired STOPPED)
            st.sets(st.integers(0, 11), max_size=3),  # tasks removed from the list
        ),
        max_size=6,
    )
)
def test_deltas_leave_the_workers_as_full_answers_would(
    steps: list[tuple[set[int], set[int], set[int]]],
) -> None:
    loop = asyncio.new_event_loop()
    try:
        by_delta, by_full = _engine(), _engine()
        listed: dict[str, DesiredTask] = {t.arn: t for t in (_task(n, VPCS[0]) for n in range(4))}
        view = DesiredView(DesiredState.from_wire)
        view.hold(_full(1, list(listed.values())))
        assert view.state is not None
        by_delta.apply(view.state, view.changes)
        by_full.apply(view.state)
        for generation, (added, stopped, removed) in enumerate(steps, start=2):
            changed = {n: _task(n, VPCS[0]) for n in added}
            for n in stopped:
                changed[n] = replace(_task(n, VPCS[0]), desired_status=DesiredStatus.STOPPED)
            gone = [_task(n, None).arn for n in removed - set(changed) if _task(n, None).arn in listed]
            for arn in gone:
                del listed[arn]
            listed.update({t.arn: t for t in changed.values()})
            merged = view.take(_delta(generation, list(changed.values()), gone, len(listed)))
            assert merged is not None and view.changes is not None
            assert {t.arn for t in view.changes.tasks} == {t.arn for t in changed.values()}
            assert view.changes.removed == tuple(gone)
            by_delta.apply(merged, view.changes)
            by_full.apply(merged)
            assert _desired(by_delta) == _desired(by_full)
    finally:
        loop.close()


@pytest.fixture(autouse=True)
def _loop() -> Iterator[None]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        asyncio.set_event_loop(None)
        loop.close()
