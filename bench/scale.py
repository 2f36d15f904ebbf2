#!/usr/bin/env python3
"""Describe and list at scale: latency of EC2/ECS listings with a big store, over HTTP with SigV4.

1. **Populate** (once per template directory, reused by later runs): a SQLite store with
   ``--groups`` security groups (every tenth with an ingress rule naming another group), ``--task-defs``
   task definitions (100 families) and ``--stopped-tasks`` STOPPED tasks, written through the control
   plane's own use cases in this process (one real RunTask, then copies of its row, for the tasks).
2. For each of ``--repeat`` runs: copy the template to a fresh state dir, start ``taskvpc up --no-agent``
   on it (a child process on a free 127.0.0.1 port), register one agent instance through the agent API, then
   * **single**: one client, ``--requests`` calls of each operation back to back (p50/p99);
   * **mixed**: ``--clients`` clients (processes x threads, keep-alive HTTP/1.1, calls signed beforehand) for ``--duration``
     seconds picking operations at random, while one agent long-polls (``wait=0.25`` s, lateness beyond
     the wait is what counts) and, with ``--heavy``, one more client lists every security group
     (DescribeSecurityGroups without MaxResults) in a loop.
3. Prints the median over the runs of each figure, and with ``--json`` writes every run.

``--server-pythonpath DIR`` runs the server from another source tree (e.g. ``git archive`` of an older
commit) with this virtualenv, for before/after numbers on the same template.

    .venv/bin/python bench/scale.py --template /tmp/scale-template --repeat 3
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

REGION = "us-east-1"
ACCESS_KEY = "AKIATASKVPCSCALE0001"
SECRET_KEY = "taskvpc-scale-bench-secret-not-a-real-one"
ECS_TARGET = "AmazonEC2ContainerServiceV20141113."
FAMILIES = 100
MARKER = "populated.json"
POLL_WAIT = 0.25


# ---- populate ---------------------------------------------------------------------------------------


def populate(template: Path, groups: int, task_defs: int, stopped: int) -> dict[str, Any]:
    """Fill ``template``/taskvpc.db through the control plane's use cases; what was made, for the runs."""
    from sqlalchemy import insert

    from taskvpc.api.app import ControlPlane, Settings
    from taskvpc.control import agent
    from taskvpc.control.ec2 import security_groups, sg_rules
    from taskvpc.control.ecs import clusters, task_definitions, tasks
    from taskvpc.store import ecs_repo
    from taskvpc.store.db import Database, sqlite_url
    from taskvpc.store.schema import tasks as tasks_table

    template.mkdir(parents=True, exist_ok=True)
    db = Database(sqlite_url(template))
    db.migrate()
    plane = ControlPlane(Settings("000000000000", ACCESS_KEY, SECRET_KEY), db)
    plane.prepare_region(REGION)

    def ctx() -> Any:
        return plane.context(REGION, time.time())

    started = time.monotonic()
    clusters.create_cluster(ctx(), {"clusterName": "default"})
    group_ids: list[str] = []
    for i in range(groups):
        made = security_groups.create_security_group(
            ctx(), {"GroupName": f"scale-{i:05d}", "Description": f"scale group {i}"}
        )
        group_ids.append(made["GroupId"])
        if i % 10 == 9:
            sg_rules.authorize_security_group_ingress(
                ctx(),
                {
                    "GroupId": made["GroupId"],
                    "IpPermissions": [
                        {
                            "IpProtocol": "tcp",
                            "FromPort": 80,
                            "ToPort": 80,
                            "UserIdGroupPairs": [{"GroupId": group_ids[i - 1]}],
                        }
                    ],
                },
            )
    print(f"  {groups} security groups in {time.monotonic() - started:.0f} s", flush=True)
    started = time.monotonic()
    for i in range(task_defs):
        task_definitions.register_task_definition(
            ctx(),
            {
                "family": f"scale-fam-{i % FAMILIES:03d}",
                "containerDefinitions": [
                    {"name": "web", "image": "busybox:latest", "memory": 64, "command": ["sleep", "3600"]}
                ],
            },
        )
    print(f"  {task_defs} task definitions in {time.monotonic() - started:.0f} s", flush=True)
    started = time.monotonic()
    registered = agent.register(
        ctx(),
        {
            "cluster": "default",
            "instanceId": "i-0123456789abcdef0",
            "resources": {"CPU": 4096, "MEMORY": 8192},
            "maxTaskEnis": 10,
        },
    )
    agent.generation(ctx(), registered["containerInstanceArn"].rpartition("/")[2], True)  # connected
    run = tasks.run_task(ctx(), {"taskDefinition": "scale-fam-000", "count": 1})
    if not run["tasks"]:
        raise RuntimeError(f"RunTask placed nothing: {run}")
    model_arn = run["tasks"][0]["taskArn"]
    stop = tasks.stop_task(ctx(), {"task": model_arn, "reason": "scale"})["task"]
    task_ids: list[str] = []
    with db.transaction() as conn:
        from taskvpc.store import tasks_repo

        model = tasks_repo.get_tasks(conn, REGION, "default", [model_arn.rpartition("/")[2]])
        row = next(iter(model.values()))
        prefix = model_arn.rpartition("/")[0]
        batch = []
        for i in range(stopped):
            task_id = f"{i:032x}"
            arn = f"{prefix}/{task_id}"
            body = {**stop, "taskArn": arn, "lastStatus": "STOPPED", "desiredStatus": "STOPPED"}
            body["stoppedAt"] = body.get("stoppedAt") or time.time()
            batch.append(
                {
                    **{k: v for k, v in row.items() if k not in ("body", "spec")},
                    "id": task_id,
                    "arn": arn,
                    "family": f"scale-fam-{i % FAMILIES:03d}",
                    "desired_status": "STOPPED",
                    "last_status": "STOPPED",
                    "eni_id": None,
                    "created_at": time.time(),
                    "updated_at": time.time(),
                    "stopped_at": time.time(),
                    "body": ecs_repo.dumps(body),
                    "spec": ecs_repo.dumps(row["spec"]),
                    "launch_type": "EC2",
                }
            )
            task_ids.append(task_id)
        conn.execute(insert(tasks_table), batch)
    agent.deregister(ctx(), next(iter(model.values()))["container_instance_id"])
    print(f"  {stopped} stopped tasks in {time.monotonic() - started:.0f} s", flush=True)
    db.dispose()
    made = {"groups": group_ids, "task_ids": task_ids, "families": FAMILIES}
    (template / MARKER).write_text(json.dumps(made))
    return made


# ---- requests ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One signed request: method, path and query, headers, body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def _sign(url: str, method: str, service: str, headers: dict[str, str], body: bytes) -> Call:
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), service, REGION).add_auth(request)
    path = url.split("/", 3)[3] if url.count("/") >= 3 else ""
    return Call(method, "/" + path, dict(request.headers.items()), body)


def ec2(base: str, action: str, **params: Any) -> Call:
    body = urlencode({"Action": action, "Version": "2016-11-15", **params}).encode()
    return _sign(base + "/", "POST", "ec2", {"Content-Type": "application/x-www-form-urlencoded"}, body)


def ecs(base: str, operation: str, params: dict[str, Any]) -> Call:
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": ECS_TARGET + operation}
    return _sign(base + "/", "POST", "ecs", headers, json.dumps(params).encode())


def agent_call(base: str, method: str, path: str, payload: dict[str, Any] | None = None) -> Call:
    body = json.dumps(payload).encode() if payload is not None else b""
    headers = {"Content-Type": "application/json"} if payload is not None else {}
    return _sign(base + path, method, "ecs", headers, body)


def send(conn: HTTPConnection, call: Call) -> tuple[int, bytes, float]:
    """(status, body, seconds from the first byte sent to the last byte read)."""
    started = time.perf_counter()
    conn.request(call.method, call.path, body=call.body or None, headers=call.headers)
    response = conn.getresponse()
    body = response.read()
    return response.status, body, time.perf_counter() - started


Maker = Callable[[str, random.Random], Call]


def operations(made: dict[str, Any]) -> dict[str, Maker]:
    groups: list[str] = made["groups"]
    task_ids: list[str] = made["task_ids"]
    families = made["families"]
    return {
        "DescribeSecurityGroups(MaxResults=5)": lambda b, r: ec2(b, "DescribeSecurityGroups", MaxResults=5),
        "DescribeSecurityGroups(GroupIds=[1])": lambda b, r: ec2(
            b, "DescribeSecurityGroups", **{"GroupId.1": r.choice(groups)}
        ),
        "DescribeSecurityGroupRules(group-id)": lambda b, r: ec2(
            b,
            "DescribeSecurityGroupRules",
            **{"Filter.1.Name": "group-id", "Filter.1.Value.1": r.choice(groups)},
        ),
        "DescribeSecurityGroups(group-name,MaxResults=20)": lambda b, r: ec2(
            b,
            "DescribeSecurityGroups",
            MaxResults=20,
            **{"Filter.1.Name": "group-name", "Filter.1.Value.1": f"scale-{r.randrange(len(groups)):05d}"},
        ),
        "ListTaskDefinitions(family)": lambda b, r: ecs(
            b,
            "ListTaskDefinitions",
            {"familyPrefix": f"scale-fam-{r.randrange(families):03d}", "maxResults": 10},
        ),
        "DescribeTaskDefinition": lambda b, r: ecs(
            b, "DescribeTaskDefinition", {"taskDefinition": f"scale-fam-{r.randrange(families):03d}"}
        ),
        "ListTaskDefinitionFamilies": lambda b, r: ecs(b, "ListTaskDefinitionFamilies", {"maxResults": 10}),
        "ListTasks(STOPPED)": lambda b, r: ecs(
            b, "ListTasks", {"desiredStatus": "STOPPED", "maxResults": 100}
        ),
        "DescribeTasks(10 stopped)": lambda b, r: ecs(b, "DescribeTasks", {"tasks": r.sample(task_ids, 10)}),
    }


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---- the server -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, state_dir: Path, pythonpath: str | None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "TASKVPC_ACCESS_KEY_ID": ACCESS_KEY, "TASKVPC_SECRET_ACCESS_KEY": SECRET_KEY}
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        self.log = open(state_dir / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        command = [sys.executable, "-m", "taskvpc.cli.main", "up", "--no-agent", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--state-dir", str(state_dir), "--log-level", "warning"]
        self.process = subprocess.Popen(
            command,
            env=env,
            cwd=state_dir,  # not this checkout: python -m would import taskvpc from the working directory
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.base + "/_taskvpc/health", timeout=1):
                    return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"taskvpc up exited; see {state_dir / 'server.log'}") from None
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("taskvpc up did not answer within 60 s")

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


# ---- measurements -----------------------------------------------------------------------------------


def single(base: str, ops: dict[str, Maker], requests: int) -> dict[str, dict[str, float]]:
    conn = HTTPConnection("127.0.0.1", int(base.rsplit(":", 1)[1]), timeout=60)
    rng = random.Random(1)
    out = {}
    for name, make in ops.items():
        times = []
        for _ in range(requests):
            status, body, took = send(conn, make(base, rng))
            if status != 200:
                raise RuntimeError(f"{name}: HTTP {status}: {body[:300]!r}")
            times.append(took)
        out[name] = {"p50_ms": percentile(times, 0.5) * 1e3, "p99_ms": percentile(times, 0.99) * 1e3}
    return out


SIGNING_TIME = 5.0  # seconds
PRESIGNED_PER_OP = 40  # signed calls per operation and client process, sent over and over


def _client_proc(
    base: str, made: dict[str, Any], threads: int, start: float, until: float, seed: int, queue: Any
) -> None:
    """``threads`` clients sending calls signed before ``start`` (as bench/api.py does: signing costs
    the client more CPU than the server spends on the call, and it runs on the same cores)."""
    ops = operations(made)
    rng = random.Random(seed)
    signed = [(name, make(base, rng)) for name, make in ops.items() for _ in range(PRESIGNED_PER_OP)]
    port = int(base.rsplit(":", 1)[1])
    results: list[tuple[str, float, int]] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        pick = random.Random(seed * 100 + index)
        conn = HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        time.sleep(max(0.0, start - time.time()))
        while time.time() < until:
            name, call = pick.choice(signed)
            status, _body, took = send(conn, call)
            mine.append((name, took, status))
        with lock:
            results.extend(mine)

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    queue.put(results)


def _heavy(base: str, start: float, until: float, queue: Any) -> None:
    """Full listings in a process of their own (reading a 10 MB answer must not slow the poller here)."""
    conn = HTTPConnection("127.0.0.1", int(base.rsplit(":", 1)[1]), timeout=120)
    time.sleep(max(0.0, start - time.time()))
    out = []
    while time.time() < until:
        status, _body, took = send(conn, ec2(base, "DescribeSecurityGroups"))
        if status == 200:
            out.append(took)
    queue.put(out)


def _poller(base: str, instance_id: str, start: float, until: float, lateness: list[float]) -> None:
    conn = HTTPConnection("127.0.0.1", int(base.rsplit(":", 1)[1]), timeout=60)
    time.sleep(max(0.0, start - time.time()))
    status, body, _ = send(
        conn, agent_call(base, "GET", f"/_taskvpc/agent/v2/instances/{instance_id}/desired?after=0&wait=0")
    )
    generation = json.loads(body)["generation"] if status == 200 else 0
    while time.time() < until:
        call = agent_call(
            base,
            "GET",
            f"/_taskvpc/agent/v2/instances/{instance_id}/desired?after={generation}&wait={POLL_WAIT}",
        )
        status, body, took = send(conn, call)
        if status == 200:
            answer = json.loads(body)
            generation = max(generation, answer["generation"])
            lateness.append(took - (POLL_WAIT if not answer.get("changed") else 0.0))


def mixed(
    base: str, made: dict[str, Any], instance_id: str, clients: int, procs: int, duration: float, heavy: bool
) -> dict[str, Any]:
    start = time.time() + SIGNING_TIME  # the clients sign their calls first
    until = start + duration
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    per = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    children = [
        context.Process(target=_client_proc, args=(base, made, n, start, until, i, queue))
        for i, n in enumerate(per)
        if n
    ]
    for child in children:
        child.start()
    lateness: list[float] = []
    heavy_times: list[float] = []
    heavy_queue = context.Queue()
    heavy_child = context.Process(target=_heavy, args=(base, start, until, heavy_queue)) if heavy else None
    if heavy_child is not None:
        heavy_child.start()
    poller = threading.Thread(target=_poller, args=(base, instance_id, start, until, lateness))
    poller.start()
    results: list[tuple[str, float, int]] = []
    for _ in children:
        results.extend(queue.get())
    if heavy_child is not None:
        heavy_times = heavy_queue.get()
        heavy_child.join()
    for child in children:
        child.join()
    poller.join()
    times = [took for _n, took, status in results if status == 200]
    errors = sum(1 for _n, _t, status in results if status != 200)
    return {
        "requests": len(results),
        "errors": errors,
        "ops_per_s": len(times) / duration,
        "p50_ms": percentile(times, 0.5) * 1e3,
        "p99_ms": percentile(times, 0.99) * 1e3,
        "poll_answers": len(lateness),
        "poll_late_p99_ms": percentile(lateness, 0.99) * 1e3,
        "poll_late_max_ms": max(lateness, default=float("nan")) * 1e3,
        "heavy_calls": len(heavy_times),
        "heavy_p50_ms": percentile(heavy_times, 0.5) * 1e3,
    }


def register_agent(base: str) -> str:
    conn = HTTPConnection("127.0.0.1", int(base.rsplit(":", 1)[1]), timeout=60)
    payload = {
        "cluster": "default",
        "instanceId": "i-0fedcba9876543210",
        "resources": {"CPU": 1024, "MEMORY": 2048},
        "maxTaskEnis": 10,
    }
    status, body, _ = send(conn, agent_call(base, "POST", "/_taskvpc/agent/v2/register", payload))
    if status != 200:
        raise RuntimeError(f"agent register: HTTP {status}: {body[:300]!r}")
    return str(json.loads(body)["containerInstanceArn"]).rpartition("/")[2]


def one_run(template: Path, made: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="taskvpc-scale-") as workdir:
        state = Path(workdir)
        for name in os.listdir(template):
            if name.startswith("taskvpc.db"):
                shutil.copy2(template / name, state / name)
        server = Server(state, args.server_pythonpath)
        try:
            instance_id = register_agent(server.base)
            ops = operations(made)
            single(server.base, ops, 20)  # warm caches and connections
            run: dict[str, Any] = {"single": single(server.base, ops, args.requests)}
            for phase, heavy in (("mixed", False), ("mixed_heavy", True)):
                if heavy and not args.heavy:
                    continue
                cpu = server.cpu_seconds()
                run[phase] = mixed(
                    server.base, made, instance_id, args.clients, args.procs, args.duration, heavy
                )
                run[phase]["server_cpu_ms_per_request"] = (
                    (server.cpu_seconds() - cpu) * 1e3 / max(1, run[phase]["requests"])
                )
            return run
        finally:
            server.stop()


def median_of(runs: list[dict[str, Any]], *path: str) -> float:
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value[key]
        values.append(float(value))
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--template", type=Path, default=Path(tempfile.gettempdir()) / "taskvpc-scale-template"
    )
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--task-defs", type=int, default=10_000)
    parser.add_argument("--stopped-tasks", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--requests", type=int, default=200, help="calls per operation in the single phase")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--procs", type=int, default=4, help="client processes the clients are spread over")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--heavy", action="store_true", help="also a mixed run beside full listings")
    parser.add_argument("--server-pythonpath", default=None, help="run the server from this source tree")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    if (args.template / MARKER).exists():
        made = json.loads((args.template / MARKER).read_text())
        print(
            f"template {args.template}: reusing ({len(made['groups'])} groups, {len(made['task_ids'])} tasks)"
        )
    else:
        print(f"template {args.template}: populating", flush=True)
        made = populate(args.template, args.groups, args.task_defs, args.stopped_tasks)
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    runs = []
    for index in range(args.repeat):
        print(f"run {index + 1}/{args.repeat}", flush=True)
        runs.append(one_run(args.template, made, args))
    if not runs:
        return 0
    print(f"\nmedian of {len(runs)} runs (milliseconds)")
    print(f"{'operation (one client)':48} {'p50':>8} {'p99':>8}")
    for name in runs[0]["single"]:
        p50 = median_of(runs, "single", name, "p50_ms")
        p99 = median_of(runs, "single", name, "p99_ms")
        print(f"{name:48} {p50:8.2f} {p99:8.2f}")
    for phase in ("mixed", "mixed_heavy"):
        if phase not in runs[0]:
            continue
        figures = {key: median_of(runs, phase, key) for key in runs[0][phase]}
        print(
            f"\n{phase} ({args.clients} clients{', beside full listings' if phase == 'mixed_heavy' else ''}): "
            f"{figures['ops_per_s']:.0f} ops/s, p50 {figures['p50_ms']:.2f}, p99 {figures['p99_ms']:.2f}, "
            f"errors {figures['errors']:.0f}; long poll lateness p99 {figures['poll_late_p99_ms']:.1f}, "
            f"max {figures['poll_late_max_ms']:.1f} ({figures['poll_answers']:.0f} answers); "
            f"server CPU {figures['server_cpu_ms_per_request']:.2f} ms/request"
            + (f"; full listing p50 {figures['heavy_p50_ms']:.0f}" if phase == "mixed_heavy" else "")
        )
    if args.json:
        args.json.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
