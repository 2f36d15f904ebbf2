#!/usr/bin/env python3
"""The agent's own cost per desired-state poll and per network reconcile as the host fills (no root).

The agent's pure parts over in-memory fakes: the data plane (``agent/dataplane.py``: ``netplan.plan``
through the unit tests' ``FakeDriver``, the real ``FirewallSync`` over their in-memory nftables loader),
the desired-state copy (``agent/desiredview.py``) and the engine (``agent/engine.py``, its workers not run).
At each checkpoint (``--at``, default 100, 2,000, 5,000 tasks running, every one with an ENI and its
network made), it times, ``--reps`` times (median, CPU time of this process):

* **poll**: a delta answer carrying one new task taken into the copy, the engine given the merged state,
  the firewall given its groups and ENI memberships (``DataPlane.set_security``), the flow logs' watch
  list recomputed (``agent/flowlogs.watched``): what the agent does per answer;
* **reconcile**: one more task's network ensured (``DataPlane.ensure_task``, one reconcile) and then
  removed (``remove_task``): what each task start and stop costs the data plane.

    .venv/bin/python bench/agent_growth.py --at 100 2000 5000 --reps 7
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import platform
import statistics
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from taskvpc.agent import flowlogs, netplan, taskplan as tp
from taskvpc.agent.dataplane import DataPlane
from taskvpc.agent.desiredview import DesiredView
from taskvpc.agent.engine import Engine, Reporter, TaskWorker
from taskvpc.agent.runtime.process import ProcessRuntime
from taskvpc.agent.security import FirewallSync
from taskvpc.agentapi.answer import DesiredState
from taskvpc.agentapi.delta import DELTA, DIGESTS, REMOVED_TASKS, TASK_COUNT
from taskvpc.agentapi.network import Eni, SecurityGroup, Subnet, Vpc
from taskvpc.agentapi.tasks import DesiredTask
from tests.unit.test_firewall_sync import Loader
from tests.unit.test_netplan import FakeDriver

CFG = netplan.NetConfig()
VPC = "vpc-0123456789abcdef0"
SUBNET = Subnet.of("subnet-0a", "10.0.0.0/16")
HOSTS = list(ipaddress.ip_network("10.0.0.0/16").hosts())[4:]


def task(n: int) -> DesiredTask:
    eni = Eni(
        f"att-{n}",
        f"eni-{n:017x}",
        f"0e:00:00:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:{n & 255:02x}",
        str(HOSTS[n]),
        16,
        SUBNET.gateway,
        SUBNET.subnet_id,
        VPC,
        security_group_ids=("sg-1",),
    )
    container = {"name": "web", "image": "busybox", "essential": True}
    doc = {"taskArn": f"arn:aws:ecs:us-east-1:000000000000:task/default/{n:032x}", "desiredStatus": "RUNNING",
           "family": "web", "revision": 1, "containers": [container], "eni": eni.to_wire()}  # fmt: skip
    return DesiredTask.from_wire(doc)


def state_of(generation: int, tasks: list[DesiredTask]) -> DesiredState:
    group = SecurityGroup("sg-1", VPC, (), ())
    return DesiredState.from_wire(
        {
            "generation": generation,
            "changed": True,
            "instance": {"status": "ACTIVE", "containerInstanceArn": "arn:aws:ecs:::container-instance/x"},
            "tasks": [t.to_wire() for t in tasks],
            "vpcs": [Vpc(VPC, ("10.0.0.0/16",), (SUBNET,)).to_wire()],
            "securityGroups": [group.to_wire()],
        }
    )


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def checkpoint(count: int, reps: int, tmp: Path) -> dict[str, float]:
    driver, loader = FakeDriver(), Loader()
    plane = DataPlane(driver, CFG, netns_paths=False, firewall=FirewallSync(loader, CFG))
    tasks = [task(n) for n in range(count)]
    state = state_of(1, tasks)
    plane.set_vpcs(state.vpcs)
    for t in tasks:
        plane.want(t)
    await plane.reconcile()  # every network made, in one plan
    await plane.set_security(state)

    engine = Engine(ProcessRuntime(tmp), plane, Reporter(lambda report: asyncio.sleep(0)))
    spawned: list[Awaitable[None]] = []

    def spawn(coro: Awaitable[None], what: str) -> None:  # run below, in the timed part; workers not run
        if what.startswith("worker"):
            coro.close()  # type: ignore[attr-defined]
        else:
            spawned.append(coro)

    engine.spawn = spawn  # type: ignore[assignment,method-assign]
    engine._set_vpcs(state)
    for t in state.tasks:  # the entries the held answer has: an unchanged one is the same object
        worker = TaskWorker(engine, t, tp.KnownTask(t.arn))
        worker.entry = t
        engine.workers[t.arn] = worker
    engine.adopted = True
    view = DesiredView(lambda doc: DesiredState.from_wire(doc))
    view.hold(state)

    poll_s, reconcile_s, remove_s = [], [], []
    generation = 1
    for rep in range(reps):
        new = task(count + rep)
        generation += 1
        doc: dict[str, Any] = {
            "generation": generation, "changed": True, DELTA: True, "tasks": [new.to_wire()],
            REMOVED_TASKS: [], TASK_COUNT: len(view.state.tasks) + 1 if view.state else 0, DIGESTS: {},
        }  # fmt: skip
        started = time.process_time()
        merged = view.take(doc)
        assert merged is not None, "the delta adds up"
        changes = getattr(view, "changes", None)  # (the tree before it had none: a pass over every task)
        engine.apply(merged) if changes is None else engine.apply(merged, changes)
        for coro in spawned:
            await coro
        spawned.clear()
        flowlogs.watched(merged)
        poll_s.append(time.process_time() - started)
        worker = engine.workers.pop(new.arn)  # not run: forgotten at once (the engine's own bookkeeping)
        engine.worker_done(worker)
        engine.finished.discard(new.arn)

        started = time.process_time()
        await plane.ensure_task(new)
        reconcile_s.append(time.process_time() - started)
        started = time.process_time()
        await plane.remove_task(new.task_id)
        remove_s.append(time.process_time() - started)
        generation += 1
        gone = {"generation": generation, "changed": True, DELTA: True, "tasks": [], REMOVED_TASKS: [new.arn],
                TASK_COUNT: count, DIGESTS: {}}  # fmt: skip
        assert view.take(gone) is not None
    plane.close()
    return {
        "running": count,
        "poll_ms": median_ms(poll_s),
        "ensure_ms": median_ms(reconcile_s),
        "remove_ms": median_ms(remove_s),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--at", type=int, nargs="+", default=[100, 2000, 5000])
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    import tempfile

    results = []
    with tempfile.TemporaryDirectory(prefix="taskvpc-agent-growth-") as tmp:
        for count in sorted(args.at):
            row = asyncio.run(checkpoint(count, args.reps, Path(tmp)))
            results.append(row)
            print(
                f"running={count:5d}  poll (one new task) {row['poll_ms']:6.2f} ms  "
                f"ensure one network {row['ensure_ms']:6.2f} ms  remove one {row['remove_ms']:6.2f} ms",
                flush=True,
            )
    print(
        f"\nmachine: {platform.node()} {platform.machine()} python {platform.python_version()} (CPU ms, median)"
    )
    if len(results) > 1:
        first, last = results[0], results[-1]
        print(
            f"ratio {last['running']}/{first['running']}: "
            + ", ".join(f"{k} {last[k] / first[k]:.2f}x" for k in first if k.endswith("_ms"))
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
