"""Task resources (agent/taskresource.py): a phase table, and a toy resource that one registration line
brings into every task: the engine ensures it before the containers start and removes it after they stop."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from taskvpc.agent import taskresource
from taskvpc.agent.engine import Engine, Reporter
from taskvpc.agent.taskresource import Event, Phase, ResourceContext, TaskResources, advance
from taskvpc.agentapi.answer import DesiredState
from taskvpc.agentapi.reports import Report
from taskvpc.agentapi.tasks import DesiredContainer, DesiredTask, Volume
from taskvpc.domain.lifecycle import DesiredStatus
from tests.unit.test_containerspec import RecordingRuntime

ARN = "arn:aws:ecs:us-east-1:000000000000:task/default/0123456789abcdef0123456789abcdef"


def test_phases_move_only_through_the_table() -> None:
    phase = Phase.NONE
    for event in (Event.ENSURE, Event.FAILED, Event.ENSURE, Event.ENSURED, Event.REMOVE, Event.REMOVED):
        phase = advance(phase, event)
    assert phase is Phase.REMOVED
    for phase, event in (
        (Phase.REMOVED, Event.ENSURE),
        (Phase.NONE, Event.ENSURED),
        (Phase.CREATED, Event.REMOVED),
    ):
        with pytest.raises(ValueError):
            advance(phase, event)


class Toy:
    """A toy resource: records when it is ensured and removed, and what the runtime had started then."""

    name = "toy"
    events: list[tuple[str, tuple[str, ...]]] = []
    runtime: RecordingRuntime | None = None

    async def ensure(self) -> None:
        assert self.runtime is not None
        self.events.append(("ensure", tuple(self.runtime.started)))

    async def remove(self) -> None:
        assert self.runtime is not None
        self.events.append(("remove", tuple(self.runtime.started)))


def test_a_toy_resource_registered_with_one_line_is_ensured_and_removed(tmp_path: Path) -> None:
    runtime = RecordingRuntime(tmp_path)
    Toy.runtime, Toy.events = runtime, []
    reports: list[dict[str, object]] = []

    async def send(batch: Report) -> None:
        reports.extend(batch.to_wire()["tasks"])

    async def until(status: str) -> None:
        deadline = time.monotonic() + 5
        while not any(r["knownStatus"] == status for r in reports):
            assert time.monotonic() < deadline, reports
            await asyncio.sleep(0.005)

    task = DesiredTask(ARN, DesiredStatus.RUNNING, (DesiredContainer("app", image="busybox"),))

    async def main() -> None:
        engine = Engine(runtime, None, Reporter(send, interval=0.001))
        engine.spawn(engine.reporter.run(), "reporter")
        await engine.adopt(DesiredState.of(1, tasks=(task,)))
        await until("RUNNING")
        assert Toy.events == [("ensure", ())]  # before any container started
        engine.apply(DesiredState.of(2, tasks=(DesiredTask(ARN, DesiredStatus.STOPPED, task.containers),)))
        await until("STOPPED")
        assert Toy.events == [("ensure", ()), ("remove", ("app",))]  # after the containers stopped
        await engine.close()

    toy = taskresource.register(lambda ctx: Toy())  # the one line a new kind of resource needs
    try:
        asyncio.run(main())
    finally:
        taskresource.FACTORIES.remove(toy)


def test_the_task_s_own_volumes_are_a_resource(tmp_path: Path) -> None:
    task = DesiredTask(
        ARN,
        DesiredStatus.RUNNING,
        (),
        volumes=(
            Volume("scratch"),
            Volume("host", source_path="/srv"),
            Volume("../x"),
            Volume("efs", unsupported="efsVolumeConfiguration"),
        ),
    )
    resources = TaskResources(ResourceContext(task, None, tmp_path))
    assert [r.name for r in resources.resources] == ["volumes"]  # no network without an ENI and a data plane
    asyncio.run(resources.ensure())
    made = sorted(p.name for p in tmp_path.rglob("*") if p.is_dir() and p.parent.name == ".volumes")
    assert made == ["scratch"] and resources.phases == {"volumes": Phase.CREATED}
    asyncio.run(resources.remove())
    assert resources.phases == {"volumes": Phase.REMOVED}
