"""The engine counts its workers per VPC, so a finished task closes its VPC's 169.254.170.2 listeners
when it was that VPC's last, without looking at every other worker (a stop of thousands did that once
per task)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from taskvpc.agent import netplan, taskplan as tp
from taskvpc.agent.engine import Engine, Reporter, TaskWorker
from taskvpc.agent.runtime.process import ProcessRuntime
from taskvpc.agent.taskmeta_server import TaskEndpoints
from taskvpc.agentapi.network import Eni
from taskvpc.agentapi.tasks import DesiredTask

VPCS = ("vpc-0000000000000000a", "vpc-0000000000000000b", "vpc-0000000000000000c")


class Listener:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def _task(number: int, vpc_id: str | None) -> DesiredTask:
    arn = f"arn:aws:ecs:us-east-1:000000000000:task/default/{number:032x}"
    task = DesiredTask.from_wire({"taskArn": arn, "desiredStatus": "RUNNING", "family": "web", "revision": 1})
    if vpc_id is None:
        return task
    eni = Eni(
        attachment_id=f"att-{number}",
        network_interface_id=f"eni-{number:017x}",
        mac_address="0e:00:00:00:00:05",
        private_ipv4_address="172.31.0.5",
        prefix_length=20,
        gateway="172.31.0.1",
        subnet_id="subnet-0123456789abcdef0",
        vpc_id=vpc_id,
        private_dns_name="ip-172-31-0-5.ec2.internal",
        security_group_ids=("sg-1",),
    )
    return replace(task, eni=eni)


@pytest.fixture()
def engine(tmp_path: Path) -> Iterator[Engine]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        made = Engine(ProcessRuntime(tmp_path), None, Reporter(lambda tasks: asyncio.sleep(0)))

        def spawn(coro: Awaitable[None], what: str) -> None:  # the workers are not run here
            coro.close()  # type: ignore[attr-defined]

        made.spawn = spawn  # type: ignore[assignment,method-assign]
        made.endpoints = TaskEndpoints(made, netplan.NetConfig(), secret="s", region="us-east-1")
        yield made
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _start(engine: Engine, number: int, vpc_id: str | None) -> TaskWorker:
    task = _task(number, vpc_id)
    worker = TaskWorker(engine, task, tp.KnownTask(task.arn))
    engine._start_worker(worker)
    return worker


def test_the_last_task_of_a_vpc_closes_its_listeners_and_only_then(engine: Engine) -> None:
    assert engine.endpoints is not None
    listeners = {vpc_id: Listener() for vpc_id in VPCS}
    engine.endpoints.listeners = dict(listeners)  # type: ignore[arg-type]
    a1, a2, b1 = _start(engine, 1, VPCS[0]), _start(engine, 2, VPCS[0]), _start(engine, 3, VPCS[1])
    no_eni = _start(engine, 4, None)
    assert engine.vpcs_in_use() == {VPCS[0], VPCS[1]}

    engine.worker_done(no_eni)  # no VPC of its own; VPC c has no task: its listeners go
    assert listeners[VPCS[2]].closed and not listeners[VPCS[0]].closed and not listeners[VPCS[1]].closed
    engine.worker_done(a1)
    assert not listeners[VPCS[0]].closed, "a2 still uses it"
    engine.worker_done(a1)  # the same worker reported twice changes nothing
    assert engine.vpcs_in_use() == {VPCS[0], VPCS[1]}
    engine.worker_done(a2)
    assert listeners[VPCS[0]].closed and not listeners[VPCS[1]].closed
    assert set(engine.endpoints.listeners) == {VPCS[1]}

    replacement = _start(engine, 3, VPCS[1])  # a worker replaced under the same arn counts once
    engine.worker_done(b1)  # the replaced one ending: not the current worker, nothing changes
    assert engine.vpcs_in_use() == {VPCS[1]} and not listeners[VPCS[1]].closed
    engine.worker_done(replacement)
    assert listeners[VPCS[1]].closed and engine.vpcs_in_use() == set() and not engine.workers


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 7), st.sampled_from((*VPCS, None))), max_size=40))
def test_the_vpcs_in_use_are_those_of_the_current_workers(
    steps: list[tuple[bool, int, str | None]],
) -> None:
    loop = asyncio.new_event_loop()
    try:
        engine = Engine(ProcessRuntime(Path("/nonexistent")), None, Reporter(lambda tasks: asyncio.sleep(0)))
        engine.spawn = lambda coro, what: coro.close()  # type: ignore[assignment,method-assign,attr-defined]
        for start, number, vpc_id in steps:
            arn = _task(number, None).arn
            if start:
                _start(engine, number, vpc_id)
            elif arn in engine.workers:
                engine.worker_done(engine.workers[arn])
            expected = {w.desired.eni.vpc_id for w in engine.workers.values() if w.desired.eni}
            assert engine.vpcs_in_use() == expected
    finally:
        loop.close()
