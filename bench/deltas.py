#!/usr/bin/env python3
"""Desired-state deltas: bytes per poll and the agent's work per answer, full state against deltas.

Starts ``taskvpc up --no-agent`` (SQLite, a private state dir, a free 127.0.0.1 port), registers one agent
instance through the agent API (tests/integration/fake_agent.py, which reports tasks RUNNING and STOPPED
as an agent would) and grows it to ``--tasks`` awsvpc tasks in RunTask calls of ``--batch``. After each call,
and after StopTask of one batch at the end, it polls twice:

* **full** (an agent without ``since``, as before deltas): the answer's bytes, the server's answer time,
  and the agent-side work of the old path: reading the whole answer, then for each new ENI what the old
  ``FirewallSync.add_eni`` did (rebuild the VPC's whole ``FirewallModel`` and diff it against the last
  one with ``nft_update.render_update``);
* **delta** (``since``/``have``): bytes, server time, and the new path: reading the delta, merging it into
  the held copy (``agentapi.delta.merge``) and one ``nft_eni.TableState.add_eni`` per new ENI.

Agent-side work is CPU time (``time.process_time``) of those steps in this process, per task of the batch.
No root needed, nothing touches the host's network.

    .venv/bin/python bench/deltas.py --tasks 300 --batch 10
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from taskvpc.agentapi.answer import DesiredState
from taskvpc.agentapi.delta import Delta, digests_of, encode_have, merge
from taskvpc.agentapi.reports import ContainerReport, TaskReport
from taskvpc.netmodel.evaluator import GroupRules
from taskvpc.netmodel.firewall_ir import EniPort, FirewallModel
from taskvpc.netmodel.nft_eni import TableState
from taskvpc.netmodel.nft_update import render_update
from tests.integration.ecs_support import awsvpc, default_subnets, register_web
from tests.integration.fake_agent import FakeAgent
from tests.integration.server import TaskvpcServer


def poll(agent: FakeAgent, since: int | None, have: dict[str, str]) -> tuple[dict[str, Any], int, float]:
    query = {"after": -1 if since is None else since, "wait": 0}
    if since is not None:
        query.update(since=since, have=encode_have(have))
    started = time.perf_counter()
    doc = agent.request("GET", f"/instances/{agent.id}/desired", query=urlencode(query))
    elapsed = time.perf_counter() - started
    return doc, len(json.dumps(doc, separators=(",", ":"))), elapsed


def port(state: DesiredState, arn: str) -> EniPort:
    task = next(t for t in state.tasks if t.arn == arn)
    assert task.eni is not None
    eni = task.eni
    return EniPort(
        eni.network_interface_id,
        "tv" + eni.network_interface_id[-13:],
        eni.private_ipv4_address,
        eni.mac_address,
        eni.security_group_ids,
    )


def rules(state: DesiredState) -> dict[str, GroupRules]:
    return {g: r for groups in state.security_groups.values() for g, r in groups.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="taskvpc-deltas-") as tmp:
        server = TaskvpcServer(Path(tmp)).start()
        try:
            agent = FakeAgent(server, max_task_enis=args.tasks + args.batch, cpu=1 << 24, memory=1 << 28)
            agent.register()
            agent.request("GET", f"/instances/{agent.id}/desired", query="after=-1&wait=0")  # connected
            ecs, ec2 = server.client("ecs"), server.client("ec2")
            register_web(ecs, cpu="256", memory="512")
            subnet = default_subnets(ec2)["us-east-1a"]
            network = awsvpc(subnet)
            first, _, _ = poll(agent, None, {})
            view, digests = DesiredState.from_wire(first), digests_of(first)
            table = TableState("taskvpc", "tv-host", rules=rules(view))
            old_model = FirewallModel("taskvpc", (), rules(view), "tv-host")
            running: list[str] = []

            def step(label: str, arns: list[str], added: bool) -> None:
                nonlocal view, digests, old_model
                full, full_bytes, full_s = poll(agent, None, {})
                delta_doc, delta_bytes, delta_s = poll(agent, view.generation, digests)

                cpu = time.process_time()
                state = DesiredState.from_wire(json.loads(json.dumps(full)))
                model = old_model
                for arn in arns:  # the old add_eni/remove_eni: the whole model rebuilt and diffed per ENI
                    if added:
                        enis = (*model.enis, port(state, arn))
                    else:
                        gone = port(view, arn).eni_id
                        enis = tuple(e for e in model.enis if e.eni_id != gone)
                    new = FirewallModel(
                        "taskvpc", tuple(sorted(enis, key=lambda e: e.eni_id)), rules(state), "tv-host"
                    )
                    render_update(model, new)
                    model = new
                full_cpu = time.process_time() - cpu

                cpu = time.process_time()
                delta = Delta.from_wire(json.loads(json.dumps(delta_doc)))
                merged = merge(view, delta)
                assert merged is not None, "a delta that does not add up"
                for arn in arns:
                    if added:
                        table.add_eni(port(merged, arn))
                    else:
                        table.remove_eni(port(view, arn).eni_id)
                delta_cpu = time.process_time() - cpu

                old_model = model
                view, digests = merged, dict(delta.digests)
                rows.append(
                    {
                        "step": label,
                        "tasks": len(view.tasks),
                        "changed": len(arns),
                        "full_bytes": full_bytes,
                        "delta_bytes": delta_bytes,
                        "full_server_ms": full_s * 1000,
                        "delta_server_ms": delta_s * 1000,
                        "full_agent_ms_per_task": full_cpu * 1000 / len(arns),
                        "delta_agent_ms_per_task": delta_cpu * 1000 / len(arns),
                    }
                )
                r = rows[-1]
                print(
                    f"{label:>10} tasks={r['tasks']:4d} bytes full={full_bytes:8d} delta={delta_bytes:6d}  "
                    f"server ms full={r['full_server_ms']:6.1f} delta={r['delta_server_ms']:5.1f}  "
                    f"agent ms/task full={r['full_agent_ms_per_task']:6.2f} delta={r['delta_agent_ms_per_task']:5.2f}",
                    flush=True,
                )

            while len(running) < args.tasks:
                placed = ecs.run_task(taskDefinition="web", count=args.batch, networkConfiguration=network)
                if placed["failures"]:
                    raise SystemExit(f"placement failures: {placed['failures']}")
                arns = [t["taskArn"] for t in placed["tasks"]]
                step("run", arns, True)
                for arn in arns:  # the agent brings them up
                    agent.report(
                        TaskReport(
                            arn, "RUNNING", "ATTACHED", containers=(ContainerReport("web", "RUNNING", "x"),)
                        )
                    )
                running += arns
            stopping = running[: args.batch]
            for arn in stopping:
                ecs.stop_task(task=arn)
            for arn in stopping:
                agent.report(TaskReport(arn, "STOPPED", "DETACHED"))
            step("stop", stopping, False)
        finally:
            server.stop()

    def median(key: str, lo: int, hi: int) -> float:
        return statistics.median(r[key] for r in rows if lo <= r["tasks"] <= hi)

    print(f"\nmachine: {platform.node()} {platform.machine()} python {platform.python_version()}")
    for lo, hi in ((90, 110), (190, 210), (args.tasks - 10, args.tasks + 10)):
        if any(lo <= r["tasks"] <= hi for r in rows):
            print(
                f"~{(lo + hi) // 2} tasks: bytes/poll full {median('full_bytes', lo, hi):.0f} delta "
                f"{median('delta_bytes', lo, hi):.0f}; agent ms/task full {median('full_agent_ms_per_task', lo, hi):.2f} "
                f"delta {median('delta_agent_ms_per_task', lo, hi):.2f}; server ms/poll full "
                f"{median('full_server_ms', lo, hi):.1f} delta {median('delta_server_ms', lo, hi):.1f}"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
