"""Density: how the cost of one more task grows as one host fills with awsvpc tasks (runc by default).

Run as root, under the shared lock, on a machine with nothing else of taskvpc's running:

    flock /tmp/taskvpc-root.lock .venv/bin/python bench/density.py --tasks 1000 [--runtime runc]

It starts its own ``taskvpc up`` (private state dir, unique name prefix; the launch benchmark's busybox
httpd task definition), creates more subnets in the agent's AZ when one /20 cannot hold ``--tasks``, and
ramps up with RunTask calls of 10 (several in flight). At each checkpoint (100, 2,000, 5,000 running,
those not above ``--tasks``) the ramp pauses and ``--batches`` batches of 10 are timed one after the
other: RunTask(count=10) until DescribeTasks says all ten RUNNING (the ten stay). Measured there too:
the agent's and the server's RSS and the CPU they used per task started since the previous checkpoint,
the machine's MemAvailable, the shims' proportional set size (PSS), and the size of the agent's
desired-state answer (a full one, ``after=0``, and a delta since the previous generation), and the
median of each start phase of the batches' tasks (``start_phases_ms``, from the agent's ``start phases``
log lines: ``agent/starttiming.py``).
At the end ``--stop`` tasks are stopped (StopTask from 4 threads) and timed until DescribeTasks says
STOPPED and until their namespaces are gone; then everything is stopped and drained, the server stops,
and the host is checked for anything left of the prefix (namespaces, links, mounts, cgroups, processes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import launch  # bench/launch.py, beside this file

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from taskvpc.agent import starttiming  # noqa: E402
from taskvpc.agent.client import AgentClient, AgentCredentials  # noqa: E402

BATCH = 10
SUBNET_HOLDS = 4091  # a /20 less AWS's five reserved addresses


def meminfo(key: str) -> int:
    """A ``/proc/meminfo`` value in KiB."""
    with open("/proc/meminfo") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(f"{key}:"))


def proc_stat(pid: int) -> tuple[int, float]:
    """(RSS KiB, CPU seconds) of ``pid``."""
    with open(f"/proc/{pid}/status") as handle:
        rss = next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:"))
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rpartition(")")[2].split()
    return rss, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        return []


def agent_pid(server_pid: int) -> int:
    for child in children(server_pid):
        with contextlib.suppress(OSError), open(f"/proc/{child}/cmdline", "rb") as handle:
            if b"taskvpc.agent.main" in handle.read():
                return child
    raise SystemExit("no agent process under the server")


def pids_mentioning(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/cmdline", "rb") as handle:
                if text.encode() in handle.read():
                    found.append(int(entry))
    return found


def pss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as handle:
            total += next((int(line.split()[1]) for line in handle if line.startswith("Pss:")), 0)
    return total


def why_stopped(task: dict[str, Any]) -> str:
    """A stopped task's reason and each container's (a start failure's words are the container's)."""
    containers = "; ".join(f"{c['name']}: {c.get('reason') or '-'}" for c in task.get("containers", []))
    return f"{task.get('stoppedReason')} [{containers}]"


def agent_log_summary(log: Path) -> dict[str, Any]:
    """Counts of the agent's start warnings in ``taskvpc up``'s log (``--log-level warning``)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    slow = [line for line in lines if "slow container start" in line]
    seconds = [float(line.rpartition("seconds=")[2].split()[0]) for line in slow if "seconds=" in line]
    return {
        "slow_starts_over_5s": len(slow),
        "slowest_start_s": max(seconds, default=None),
        "start_timeouts": sum("container start timed out" in line for line in lines),
        "start_failures": sum("start failed" in line for line in lines),
    }


def wait_running(ecs: Any, arns: list[str]) -> None:
    pending = set(arns)
    while pending:
        ordered = sorted(pending)
        for index in range(0, len(ordered), 100):
            for task in ecs.describe_tasks(cluster="default", tasks=ordered[index : index + 100])["tasks"]:
                if task["lastStatus"] == "RUNNING":
                    pending.discard(task["taskArn"])
                elif task["lastStatus"] == "STOPPED":
                    raise SystemExit(f"task stopped: {why_stopped(task)}")
        if pending:
            time.sleep(0.005 if len(pending) <= BATCH else 0.05)


def run_batch(ecs: Any, network: dict[str, Any], count: int = BATCH) -> tuple[list[str], float]:
    """RunTask(count); the task ARNs and the call's own time (s)."""
    started = time.perf_counter()
    response = ecs.run_task(
        cluster="default", taskDefinition="bench-launch", count=count, networkConfiguration=network
    )
    if response["failures"]:
        raise SystemExit(f"placement failures: {response['failures']}")
    return [t["taskArn"] for t in response["tasks"]], time.perf_counter() - started


def ramp(
    ecs: Any,
    network: dict[str, Any],
    running: list[str],
    target: int,
    inflight: int,
    until: float,
    floor_kib: int = 0,
) -> str | None:
    """RunTask calls of 10, ``inflight`` batches ahead, until ``target`` tasks are RUNNING; None then, or
    why the ramp stopped early: ``until`` (monotonic) came, the machine's MemAvailable fell below
    ``floor_kib`` (the tasks already asked for are waited for), or a task stopped instead of running."""
    pending: list[str] = []
    cut: str | None = None
    while len(running) < target and not (cut and not pending):
        if cut is None and time.monotonic() > until:
            cut = "out of time"
        if cut is None and meminfo("MemAvailable") < floor_kib:
            cut = f"MemAvailable {meminfo('MemAvailable') // 1024} MiB, below the floor"
        while not cut and len(pending) < inflight * BATCH and len(running) + len(pending) < target:
            arns, _ = run_batch(ecs, network, min(BATCH, target - len(running) - len(pending)))
            pending += arns
        done, failed = set(), set()
        for index in range(0, len(pending), 100):
            for task in ecs.describe_tasks(cluster="default", tasks=pending[index : index + 100])["tasks"]:
                if task["lastStatus"] == "RUNNING":
                    done.add(task["taskArn"])
                elif task["lastStatus"] == "STOPPED":
                    failed.add(task["taskArn"])
                    cut = cut or f"task stopped during the ramp: {why_stopped(task)}"
        running += [arn for arn in pending if arn in done]
        pending = [arn for arn in pending if arn not in done and arn not in failed]
        if pending:
            time.sleep(0.05)
    return cut


def add_subnets(ec2: Any, zone: str, tasks: int) -> list[str]:
    """The zone's default subnet, and as many new /20s of its VPC as ``tasks`` (plus the checkpoint
    batches) need."""
    subnets = ec2.describe_subnets()["Subnets"]
    default = next(s for s in subnets if s["AvailabilityZone"] == zone and s.get("DefaultForAz"))
    vpc = ec2.describe_vpcs(VpcIds=[default["VpcId"]])["Vpcs"][0]
    taken = [ipaddress.ip_network(s["CidrBlock"]) for s in subnets if s["VpcId"] == vpc["VpcId"]]
    free = (
        n
        for n in ipaddress.ip_network(vpc["CidrBlock"]).subnets(new_prefix=20)
        if not any(n.overlaps(t) for t in taken)
    )
    ids = [default["SubnetId"]]
    while len(ids) * SUBNET_HOLDS < tasks + 200:
        made = ec2.create_subnet(VpcId=vpc["VpcId"], CidrBlock=str(next(free)), AvailabilityZone=zone)
        ids.append(made["Subnet"]["SubnetId"])
    return ids


def desired_bytes(port: int, instance_id: str) -> dict[str, int]:
    """Sizes (JSON bytes) of a full desired-state answer and of one after the last change."""

    async def fetch() -> dict[str, int]:
        client = AgentClient(f"http://127.0.0.1:{port}", AgentCredentials(launch.KEY_ID, launch.SECRET))
        try:
            full = await client.desired(instance_id, 0, 0)
            generation = int(full.get("generation", 0))
            previous = max(generation - 1, 0)  # a delta since the previous generation (agent API 2.1)
            last = await client.desired(instance_id, previous, 0, since=previous)
        finally:
            await client.close()
        return {
            "full": len(json.dumps(full, separators=(",", ":"))),
            "after_last_change": len(json.dumps(last, separators=(",", ":"))),
        }

    return asyncio.run(fetch())


class Probe:
    """Process and machine numbers at each checkpoint; CPU per task since the previous one."""

    def __init__(self, server_pid: int, state_dir: Path) -> None:
        self.server_pid = server_pid
        self.state_dir = state_dir
        self.last: tuple[int, float, float] | None = None  # tasks, agent CPU, server CPU

    def sample(self, tasks: int) -> dict[str, Any]:
        agent = agent_pid(self.server_pid)
        agent_rss, agent_cpu = proc_stat(agent)
        server_rss, server_cpu = proc_stat(self.server_pid)
        shims = pids_mentioning(f"{self.state_dir}/agent/tasks/")
        out: dict[str, Any] = {
            "tasks": tasks,
            "agent_rss_mib": agent_rss / 1024,
            "server_rss_mib": server_rss / 1024,
            "mem_available_mib": meminfo("MemAvailable") / 1024,
            "shims": len(shims),
            "shim_pss_kib_each": pss_kib(shims) / len(shims) if shims else 0.0,
        }
        if self.last is not None and tasks > self.last[0]:
            started = tasks - self.last[0]
            out["agent_cpu_ms_per_task"] = (agent_cpu - self.last[1]) * 1000 / started
            out["server_cpu_ms_per_task"] = (server_cpu - self.last[2]) * 1000 / started
        self.last = (tasks, agent_cpu, server_cpu)
        return out


def start_phases(log: Path, batches: list[tuple[float, float, list[str]]]) -> dict[str, float]:
    """Median milliseconds per start phase of the batches' tasks, from the agent's ``start phases`` lines
    (``agent/starttiming.py``) in ``taskvpc up``'s log; ``batches``: (RunTask sent, all RUNNING seen, ARNs)
    as epoch seconds. ``seen_ms``: RunTask sent -> the agent's worker made (the call, the agent's poll);
    ``describe_ms``: the agent's RUNNING report acknowledged -> the batch seen RUNNING (the last task's).
    ``runtime_spawn_ms`` / ``runtime_ready_ms``: a container start's own parts (the agent's checks, files
    and the shim's fork / the shim until it said ok: ``runc`` and the kernel), per container."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    by_arn = {f["task_arn"]: f for f in map(starttiming.parse, lines) if f and "task_arn" in f}
    # the runtime's parts of each container start (agent/runtime/process.py), by task id
    runtime: dict[str, list[tuple[float, float]]] = {}
    for line in lines:
        _, found_start, rest = line.partition("container start container=")
        if found_start and " spawn_ms=" in rest:
            fields = dict(p.split("=", 1) for p in ("container=" + rest).split() if "=" in p)
            task_id = Path(fields["container"]).parent.name
            runtime.setdefault(task_id, []).append((float(fields["spawn_ms"]), float(fields["ready_ms"])))
    phases: dict[str, list[float]] = {}
    for sent, seen_running, arns in batches:
        found = [by_arn[arn] for arn in arns if arn in by_arn]
        if not found:
            continue
        for fields in found:
            for key, value in fields.items():
                if key.endswith("_ms"):
                    phases.setdefault(key, []).append(float(value))
            for spawn, ready in runtime.get(fields["task_arn"].rsplit("/", 1)[-1], []):
                phases.setdefault("runtime_spawn_ms", []).append(spawn)
                phases.setdefault("runtime_ready_ms", []).append(ready)
            phases.setdefault("seen_ms", []).append((float(fields["seen_at"]) - sent) * 1000)
        last_ack = max(float(f["seen_at"]) + float(f["total_ms"]) / 1000 for f in found)
        phases.setdefault("describe_ms", []).append((seen_running - last_ack) * 1000)
    return {key: round(statistics.median(values), 1) for key, values in sorted(phases.items())}


def checkpoint(
    ecs: Any, network: dict[str, Any], running: list[str], batches: int, log: Path | None = None
) -> dict[str, Any]:
    seconds, calls, timed = [], [], []
    for _ in range(batches):
        sent = time.time()
        started = time.perf_counter()
        arns, call = run_batch(ecs, network)
        wait_running(ecs, arns)
        seconds.append(time.perf_counter() - started)
        timed.append((sent, time.time(), arns))
        calls.append(call * 1000)
        running += arns
    out: dict[str, Any] = {
        "batch_to_running_s": statistics.median(seconds),
        "batch_to_running_s_all": seconds,
        "run_task_ms": statistics.median(calls),
    }
    if log is not None:
        time.sleep(0.2)  # the log lines of the last acknowledgements are flushed
        out["start_phases_ms"] = start_phases(log, timed)
    return out


def stop_all(ecs: Any, arns: list[str]) -> list[float]:
    """StopTask of each of ``arns`` from 4 threads; each call's seconds."""

    def stop(arn: str) -> float:
        started = time.perf_counter()
        ecs.stop_task(cluster="default", task=arn)
        return time.perf_counter() - started

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(stop, arns))


def machine_cpu() -> tuple[float, float]:
    """(busy, all) CPU seconds of the machine since boot (``/proc/stat``; idle and iowait are not busy)."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values) - values[3] - values[4]) / tick, sum(values) / tick


class CpuSpent:
    """CPU seconds spent by the server, the agent, this client and the whole machine since it began."""

    def __init__(self, server_pid: int) -> None:
        self.pids = {"server": server_pid, "agent": agent_pid(server_pid)}
        self.began = self._now()

    def _now(self) -> dict[str, float]:
        now = {name: proc_stat(pid)[1] for name, pid in self.pids.items()}
        now["client"] = time.process_time()
        now["machine_busy"], now["machine_all"] = machine_cpu()
        return now

    def since(self) -> dict[str, float]:
        now = self._now()
        return {name: round(now[name] - self.began[name], 2) for name in now}


def timed_stop(ecs: Any, arns: list[str], prefix: str, server_pid: int) -> dict[str, Any]:
    """Stop ``arns``: seconds until the calls returned, until all STOPPED, until their namespaces went;
    with where the time went (each call's seconds; CPU seconds of server, agent, client and machine
    until the calls returned and until all was done)."""
    namespaces_before = len(launch.task_namespaces(prefix))
    spent = CpuSpent(server_pid)
    started = time.perf_counter()
    calls = stop_all(ecs, arns)
    called = time.perf_counter()
    cpu_calls = spent.since()
    pending = set(arns)
    stopped_at = gone_at = None
    while pending or gone_at is None:
        if pending:
            ordered = sorted(pending)
            for index in range(0, len(ordered), 100):
                for task in ecs.describe_tasks(cluster="default", tasks=ordered[index : index + 100])[
                    "tasks"
                ]:
                    if task["lastStatus"] == "STOPPED":
                        pending.discard(task["taskArn"])
            if not pending:
                stopped_at = time.perf_counter()
        if gone_at is None and len(launch.task_namespaces(prefix)) <= namespaces_before - len(arns):
            gone_at = time.perf_counter()
        time.sleep(0.1)
    assert stopped_at is not None
    calls.sort()
    return {
        "tasks": len(arns),
        "calls_s": called - started,
        "all_stopped_s": stopped_at - started,
        "namespaces_gone_s": gone_at - started,
        "call_ms": {
            "median": calls[len(calls) // 2] * 1000,
            "p90": calls[len(calls) * 9 // 10] * 1000,
            "max": calls[-1] * 1000,
        },
        "cpu_s_until_calls_returned": cpu_calls,
        "cpu_s_until_all_done": spent.since(),
    }


def leftovers(prefix: str, state_dir: Path) -> dict[str, Any]:
    netns = [
        line
        for line in subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout.split("\n")
        if line.startswith(prefix)
    ]
    links = [
        line
        for line in subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout.split("\n")
        if line.startswith(prefix)
    ]
    cgroups = [str(p) for p in Path("/sys/fs/cgroup").glob(f"**/taskvpc-{prefix}*")]
    return {
        "netns": netns,
        "links": links,
        "mounts": launch.mounts_under(state_dir),
        "cgroups": cgroups,
        "processes": pids_mentioning(str(state_dir)) + pids_mentioning(prefix),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=1000, help="running tasks to reach (goal 5000)")
    parser.add_argument("--checkpoints", default="100,2000,5000", help="running counts to time batches at")
    parser.add_argument("--batches", type=int, default=5, help="timed batches of 10 per checkpoint")
    parser.add_argument("--stop", type=int, default=2000, help="tasks stopped at once at the end (timed)")
    parser.add_argument("--inflight", type=int, default=4, help="RunTask batches ahead during the ramp")
    parser.add_argument("--runtime", default="runc", choices=("auto", "runc", "process"))
    parser.add_argument("--max-minutes", type=float, default=0, help="stop ramping after this long")
    parser.add_argument(
        "--min-available-mib",
        type=int,
        default=3072,
        help="stop ramping when the machine's MemAvailable falls below this (a shared machine)",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--log", type=Path, help="keep a copy of taskvpc up's log (agent warnings)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/density.py needs root (it runs the agent)", file=sys.stderr)
        return 1
    points = sorted({int(p) for p in args.checkpoints.split(",") if 0 < int(p) <= args.tasks} | {args.tasks})
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still cleans up (``finally``)
    prefix = "tvd" + secrets.token_hex(2)
    port = launch.free_port()
    result: dict[str, Any] = {"runtime": args.runtime, "tasks": args.tasks, "prefix": prefix}
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="taskvpc-density-") as tmp:
        state = Path(tmp) / "state"
        room = (args.tasks + args.batches * BATCH * len(points) + 100) * 16 + 4096  # MiB of 16 MiB tasks
        server = launch.start_server(state, prefix, port, args.runtime, extra=["--memory", str(room)])
        running: list[str] = []
        try:
            ecs, ec2 = launch.clients(port)
            launch.wait_for_instance(ecs)
            ecs.register_task_definition(**launch.TASK_DEFINITION)
            instance = ecs.describe_container_instances(
                cluster="default",
                containerInstances=ecs.list_container_instances(cluster="default")["containerInstanceArns"],
            )["containerInstances"][0]
            instance_id = instance["containerInstanceArn"].rsplit("/", 1)[-1]  # as the agent API's URLs
            zone = next(a["value"] for a in instance["attributes"] if a["name"] == "ecs.availability-zone")
            network = launch.network_configuration(ec2)
            network["awsvpcConfiguration"]["subnets"] = add_subnets(
                ec2, zone, args.tasks + args.batches * BATCH * len(points)
            )
            warm, _ = run_batch(ecs, network, 1)  # the router namespace, code paths (no TCP probe: the
            wait_running(ecs, warm)  # host link may be another agent's on a shared machine)
            running += warm
            probe = Probe(server.pid, state)
            result["start"] = probe.sample(0)
            result["checkpoints"] = []
            until = began + args.max_minutes * 60 if args.max_minutes else float("inf")
            for point in points:
                why = ramp(ecs, network, running, point, args.inflight, until, args.min_available_mib * 1024)
                if why is not None:  # measure the stop of what runs, clean up
                    result["ramp_cut_at"], result["ramp_cut_because"] = len(running), why
                    print(f"ramp stopped at {len(running)} running: {why}", flush=True)
                    break
                sample = probe.sample(len(running))
                sample.update(checkpoint(ecs, network, running, args.batches, Path(tmp) / "server.log"))
                try:
                    sample["desired_bytes"] = desired_bytes(port, instance_id)
                except Exception as exc:  # a measurement's failure must not lose the others
                    sample["desired_bytes"] = repr(exc)
                result["checkpoints"].append(sample)
                print(json.dumps(sample), flush=True)
            result["peak"] = probe.sample(len(running))
            doomed, running = running[: args.stop], running[args.stop :]
            result["stop"] = timed_stop(ecs, doomed, prefix, server.pid)
            print(json.dumps(result["stop"]), flush=True)
            result["after_stop"] = probe.sample(len(running))
            stop_all(ecs, running)
            launch.drain(ecs, state, timeout=600)
        finally:
            with contextlib.suppress(OSError):
                result["agent_log"] = agent_log_summary(Path(tmp) / "server.log")
                if args.log:
                    shutil.copyfile(Path(tmp) / "server.log", args.log)
            server.terminate()
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:  # (never skip the teardown below)
                server.kill()
                server.wait()
            subprocess.run(
                [str(launch.VENV_BIN / "taskvpc"), "down", "--state-dir", str(state), "--net-prefix", prefix],
                capture_output=True,
                check=False,
            )
            launch.cleanup(prefix)
            result["left"] = leftovers(prefix, state)
    result["minutes"] = (time.monotonic() - began) / 60
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if not any(result["left"].values()) else 3


if __name__ == "__main__":
    sys.exit(main())
