#!/usr/bin/env python3
"""Soak: mixed API load for a long time while tasks start and stop on the real agent (issue #13, item 3).

As root: starts ``taskvpc up`` (SQLite store, its local agent, runc or the process runtime) under a
unique net prefix, then for ``--minutes`` (default 30):

* ``--clients`` threads send a mixed, paced load (``--rate`` requests/s in all): reads (DescribeTasks,
  ListTasks, DescribeTaskDefinition, ListTaskDefinitions, DescribeClusters, DescribeSecurityGroups,
  DescribeSubnets, DescribeNetworkInterfaces) and writes (RegisterTaskDefinition + Deregister,
  CreateSecurityGroup + AuthorizeSecurityGroupIngress + DeleteSecurityGroup, TagResource);
* a churn thread keeps ``--tasks`` awsvpc tasks running, stopping the oldest ``--churn`` and running as
  many new ones every ``--churn-interval`` seconds;
* a sampler reads the server's and the agent's RSS (split into anonymous memory - heap, malloc arenas,
  what grows if something accumulates - and file-backed pages, the mapped libraries), threads, CPU time
  and open files every 5 s.

Each ``--window`` gets latency percentiles (reads, writes, RunTask) and the memory medians. The verdict
compares windows after ``--warmup`` minutes: memory (server RSS and anon, agent RSS) within +-10% of the
first measured window in every window, with the first-to-last change; latency p50/p99 of the last window
within 1.5x of the first. Afterwards every task is stopped, ``up`` is stopped
``taskvpc down`` removes what ``up`` keeps for a restart, and then nothing of the prefix may be left:
namespaces, links, cgroups, mounts, processes.

    sudo .venv/bin/python bench/soak.py                         # 30 minutes, as in the issue
    sudo .venv/bin/python bench/soak.py --minutes 3 --window 30  # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import launch

SAMPLE_EVERY_S = 5.0
MEMORY_TOLERANCE = 0.10
LATENCY_TOLERANCE = 1.5


@dataclass
class Recorder:
    started: float
    window_s: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[tuple[int, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[tuple[int, str], int] = field(default_factory=lambda: defaultdict(int))
    samples: dict[int, list[dict[str, float]]] = field(default_factory=lambda: defaultdict(list))

    def window(self) -> int:
        return int((time.monotonic() - self.started) // self.window_s)

    def record(self, kind: str, seconds: float, ok: bool) -> None:
        key = (self.window(), kind)
        with self.lock:
            if ok:
                self.latencies[key].append(seconds)
            else:
                self.errors[key] += 1

    def sample(self, values: dict[str, float]) -> None:
        with self.lock:
            self.samples[self.window()].append(values)


def timed(recorder: Recorder, kind: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    started = time.perf_counter()
    try:
        answer = call(*args, **kwargs)
    except Exception as error:
        recorder.record(kind, time.perf_counter() - started, ok=False)
        print(f"{kind} failed: {error}", file=sys.stderr)
        return None
    recorder.record(kind, time.perf_counter() - started, ok=True)
    return answer


class Soak:
    def __init__(self, port: int, recorder: Recorder, args: argparse.Namespace) -> None:
        self.port, self.recorder, self.args = port, recorder, args
        self.stop = threading.Event()
        self.running: list[str] = []
        self.running_lock = threading.Lock()
        self.runs = self.stops = 0

    def api_worker(self, index: int, network: dict[str, Any]) -> None:
        ecs, ec2 = launch.clients(self.port)
        pace = self.args.clients / self.args.rate
        rng = random.Random(index)
        next_at = time.monotonic()
        step = 0
        while not self.stop.is_set():
            next_at += pace
            step += 1
            with self.running_lock:
                sample = rng.sample(self.running, min(5, len(self.running)))
            if step % 20 == 0:
                self.write_pair(index, step, ecs, ec2)
            else:
                read = rng.choice(READS)
                read(self.recorder, ecs, ec2, sample)
            delay = next_at - time.monotonic()
            if delay > 0:
                self.stop.wait(delay)
            else:
                next_at = time.monotonic()  # behind: do not burst to catch up

    def write_pair(self, index: int, step: int, ecs: Any, ec2: Any) -> None:
        kind = (step // 20) % 3
        if kind == 0:
            family = f"soak-reg-{index}"
            answer = timed(
                self.recorder,
                "write",
                ecs.register_task_definition,
                **{**launch.TASK_DEFINITION, "family": family},
            )
            if answer:
                arn = answer["taskDefinition"]["taskDefinitionArn"]
                timed(self.recorder, "write", ecs.deregister_task_definition, taskDefinition=arn)
        elif kind == 1:
            name = f"soak-{index}-{step}"
            answer = timed(
                self.recorder, "write", ec2.create_security_group, GroupName=name, Description="soak"
            )
            if answer:
                group = answer["GroupId"]
                timed(
                    self.recorder,
                    "write",
                    ec2.authorize_security_group_ingress,
                    GroupId=group,
                    IpPermissions=[
                        {
                            "IpProtocol": "tcp",
                            "FromPort": 80,
                            "ToPort": 80,
                            "IpRanges": [{"CidrIp": "10.0.0.0/8"}],
                        }
                    ],
                )
                timed(self.recorder, "write", ec2.delete_security_group, GroupId=group)
        else:
            cluster = ecs.describe_clusters(clusters=["default"])["clusters"][0]["clusterArn"]
            timed(
                self.recorder,
                "write",
                ecs.tag_resource,
                resourceArn=cluster,
                tags=[{"key": f"soak-{index}", "value": str(step)}],
            )

    def churn(self, network: dict[str, Any]) -> None:
        ecs, _ = launch.clients(self.port)
        while not self.stop.is_set():
            with self.running_lock:
                missing = self.args.tasks - len(self.running)
                oldest = self.running[: self.args.churn] if missing <= 0 else []
            for arn in oldest:
                if timed(self.recorder, "StopTask", ecs.stop_task, cluster="default", task=arn) is not None:
                    self.stops += 1
                with self.running_lock:
                    self.running.remove(arn)
            count = max(missing, len(oldest))
            while count > 0 and not self.stop.is_set():
                batch = min(10, count)
                answer = timed(
                    self.recorder,
                    "RunTask",
                    ecs.run_task,
                    cluster="default",
                    taskDefinition="bench-launch",
                    count=batch,
                    networkConfiguration=network,
                )
                count -= batch
                if answer:
                    self.runs += len(answer["tasks"])
                    with self.running_lock:
                        self.running.extend(t["taskArn"] for t in answer["tasks"])
            self.stop.wait(self.args.churn_interval)

    def sampler(self, server_pid: int) -> None:
        while not self.stop.is_set():
            agent = agent_pid(server_pid)
            values = {f"server_{k}": v for k, v in process_stats(server_pid).items()}
            if agent:
                values.update({f"agent_{k}": v for k, v in process_stats(agent).items()})
            values["soak_cpu_s"] = process_stats(os.getpid()).get("cpu_s", 0.0)
            values["machine_busy_s"] = machine_busy_seconds()
            with self.running_lock:
                values["tasks_wanted"] = float(len(self.running))
            self.recorder.sample(values)
            self.stop.wait(SAMPLE_EVERY_S)


def _describe_tasks(recorder: Recorder, ecs: Any, ec2: Any, sample: list[str]) -> None:
    if sample:
        timed(recorder, "read", ecs.describe_tasks, cluster="default", tasks=sample)


READS = (
    _describe_tasks,
    lambda r, ecs, ec2, s: timed(r, "read", ecs.list_tasks, cluster="default"),
    lambda r, ecs, ec2, s: timed(r, "read", ecs.describe_task_definition, taskDefinition="bench-launch"),
    lambda r, ecs, ec2, s: timed(r, "read", ecs.list_task_definitions, maxResults=10),
    lambda r, ecs, ec2, s: timed(r, "read", ecs.describe_clusters, clusters=["default"]),
    lambda r, ecs, ec2, s: timed(r, "read", ec2.describe_security_groups, MaxResults=5),
    lambda r, ecs, ec2, s: timed(r, "read", ec2.describe_subnets),
    lambda r, ecs, ec2, s: timed(r, "read", ec2.describe_network_interfaces, MaxResults=5),
)


def process_stats(pid: int) -> dict[str, float]:
    """RSS (MiB), CPU seconds so far and open files of one process; empty if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        files = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_kib = int(fields["VmRSS"].split()[0])
    # VmRSS splits into RssAnon (heap, arenas: what grows if something leaks) and RssFile + RssShmem
    # (mapped libraries and files: flat once loaded).
    anon_kib = int(fields["RssAnon"].split()[0])
    ticks = os.sysconf("SC_CLK_TCK")
    return {
        "rss_mib": rss_kib / 1024,
        "anon_mib": anon_kib / 1024,
        "file_mib": (rss_kib - anon_kib) / 1024,
        "threads": float(fields["Threads"]),
        "cpu_s": (int(stat[11]) + int(stat[12])) / ticks,
        "fds": float(files),
    }


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent busy since boot (user+nice+system+irq+softirq+steal)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def agent_pid(server_pid: int) -> int | None:
    """The local agent: the child of ``up`` running ``taskvpc.agent.main``."""
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            if b"taskvpc.agent.main" in cmdline:
                return int(child)
    return None


def percentile(values: list[float], fraction: float) -> float:
    return launch.percentile(values, fraction) if values else float("nan")


def summarize(recorder: Recorder, warmup_windows: int) -> dict[str, Any]:
    windows = sorted({w for w, _ in recorder.latencies} | set(recorder.samples))
    rows = []
    for window in windows:
        row: dict[str, Any] = {"window": window}
        for kind in ("read", "write", "RunTask", "StopTask"):
            values = recorder.latencies.get((window, kind), [])
            row[kind] = {
                "count": len(values),
                "errors": recorder.errors.get((window, kind), 0),
                "p50_ms": percentile(values, 0.5) * 1000,
                "p99_ms": percentile(values, 0.99) * 1000,
            }
        samples = recorder.samples.get(window, [])
        for key in (
            "server_rss_mib",
            "server_anon_mib",
            "server_file_mib",
            "server_threads",
            "agent_rss_mib",
            "agent_anon_mib",
            "server_fds",
            "agent_fds",
        ):
            present = [s[key] for s in samples if key in s]
            row[key] = statistics.median(present) if present else float("nan")
        for key in ("server_cpu_s", "agent_cpu_s", "soak_cpu_s", "machine_busy_s"):
            present = [s[key] for s in samples if key in s]
            row[key] = (max(present) - min(present)) if len(present) > 1 else float("nan")
        # CPU the rest of the machine took (other work on a shared host, the tasks themselves): the
        # latency tail follows it, so it is reported beside the percentiles.
        row["other_cpu_s"] = (
            row["machine_busy_s"] - row["server_cpu_s"] - row["agent_cpu_s"] - row["soak_cpu_s"]
        )
        rows.append(row)
    measured = [r for r in rows if r["window"] >= warmup_windows]
    # The last window may be partial: judge on complete ones only.
    measured = measured[:-1] if len(measured) > 2 else measured
    verdict: dict[str, Any] = {}
    if len(measured) >= 2:
        first, last = measured[0], measured[-1]
        for key in ("server_rss_mib", "server_anon_mib", "agent_rss_mib"):
            spread = [r[key] for r in measured]
            verdict[key] = {
                "first": first[key],
                "last": last[key],
                "change_pct": 100 * (last[key] - first[key]) / first[key],
                "min": min(spread),
                "max": max(spread),
                # every judged window, not only the last, within the tolerance of the first
                "flat": all(abs(v - first[key]) <= MEMORY_TOLERANCE * first[key] for v in spread),
            }
        for kind in ("read", "write"):
            verdict[f"{kind}_latency"] = {
                "first_p50_ms": first[kind]["p50_ms"],
                "last_p50_ms": last[kind]["p50_ms"],
                "first_p99_ms": first[kind]["p99_ms"],
                "last_p99_ms": last[kind]["p99_ms"],
                "flat": last[kind]["p50_ms"] <= LATENCY_TOLERANCE * first[kind]["p50_ms"]
                and last[kind]["p99_ms"] <= LATENCY_TOLERANCE * first[kind]["p99_ms"],
            }
    return {"windows": rows, "verdict": verdict}


def leftovers(prefix: str, state_dir: Path) -> list[str]:
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
    found += [f"netns {line.split()[0]}" for line in netns if line.startswith(prefix)]
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout.split("\n")
    found += [f"link {line.split()[0]}" for line in links if line.startswith(prefix)]
    found += [f"cgroup {p}" for p in Path("/sys/fs/cgroup").glob(f"*/taskvpc-{prefix}")]
    found += [f"mount {m}" for m in launch.mounts_under(state_dir)]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if str(state_dir).encode() in (proc / "cmdline").read_bytes():
                    found.append(f"process {proc.name}")
    return found


def print_table(summary: dict[str, Any], window_s: float) -> None:
    print(
        "\n| window (min) | reads | read p50/p99 ms | writes | write p50/p99 ms | RunTask p50 ms "
        "| server RSS (anon + file) MiB | server threads | agent RSS MiB | server CPU s | agent CPU s "
        "| other CPU s | errors |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in summary["windows"]:
        errors = sum(row[k]["errors"] for k in ("read", "write", "RunTask", "StopTask"))
        print(
            f"| {row['window'] * window_s / 60:.1f} | {row['read']['count']} | "
            f"{row['read']['p50_ms']:.1f}/{row['read']['p99_ms']:.1f} | {row['write']['count']} | "
            f"{row['write']['p50_ms']:.1f}/{row['write']['p99_ms']:.1f} | {row['RunTask']['p50_ms']:.0f} | "
            f"{row['server_rss_mib']:.1f} ({row['server_anon_mib']:.1f} + {row['server_file_mib']:.1f}) | "
            f"{row['server_threads']:.0f} | {row['agent_rss_mib']:.1f} | {row['server_cpu_s']:.1f} | "
            f"{row['agent_cpu_s']:.1f} | {row['other_cpu_s']:.0f} | {errors} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--window", type=float, default=180.0, help="seconds per reported window")
    parser.add_argument("--warmup", type=float, default=3.0, help="minutes not judged")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rate", type=float, default=60.0, help="API requests/s over all clients")
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--churn", type=int, default=2)
    parser.add_argument("--churn-interval", type=float, default=3.0)
    parser.add_argument("--runtime", default="auto", choices=("auto", "runc", "process"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/soak.py needs root (it runs the agent)", file=sys.stderr)
        return 1
    prefix = "tvs" + secrets.token_hex(2)
    port = launch.free_port()
    with tempfile.TemporaryDirectory(prefix="taskvpc-soak-") as tmp:
        state_dir = Path(tmp) / "state"
        server = launch.start_server(state_dir, prefix, port, args.runtime)
        recorder = Recorder(started=time.monotonic(), window_s=args.window)
        soak = Soak(port, recorder, args)
        threads: list[threading.Thread] = []
        try:
            ecs, ec2 = launch.clients(port)
            launch.wait_for_instance(ecs)
            ecs.register_task_definition(**launch.TASK_DEFINITION)
            network = launch.network_configuration(ec2)
            recorder.started = time.monotonic()
            threads = [
                threading.Thread(target=soak.sampler, args=(server.pid,), daemon=True),
                threading.Thread(target=soak.churn, args=(network,), daemon=True),
            ]
            threads += [
                threading.Thread(target=soak.api_worker, args=(i, network), daemon=True)
                for i in range(args.clients)
            ]
            for thread in threads:
                thread.start()
            soak.stop.wait(args.minutes * 60)
        finally:
            soak.stop.set()
            for thread in threads:
                thread.join(timeout=60)
            with contextlib.suppress(Exception):
                launch.drain(launch.clients(port)[0], state_dir)
            server.terminate()
            server.wait(timeout=60)
            # `up` keeps its routers for a restart; `taskvpc down` is how a user removes them.
            down = subprocess.run(
                [
                    str(launch.VENV_BIN / "taskvpc"),
                    "down",
                    "--net-prefix",
                    prefix,
                    "--state-dir",
                    str(state_dir),
                ],
                capture_output=True,
                text=True,
            )
            print(down.stdout.strip() or down.stderr.strip())
            left = leftovers(prefix, state_dir)
            launch.cleanup(prefix)
        summary = summarize(recorder, int(args.warmup * 60 // args.window))
    summary.update(
        {
            "runs": soak.runs,
            "stops": soak.stops,
            "left_behind": left,
            "args": vars(args) | {"json": str(args.json)},
        }
    )
    print_table(summary, args.window)
    print(
        json.dumps(
            {"verdict": summary["verdict"], "runs": soak.runs, "stops": soak.stops, "left_behind": left},
            indent=2,
        )
    )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str))
    flat = all(v.get("flat", False) for v in summary["verdict"].values()) and bool(summary["verdict"])
    return 0 if flat and not left else 2


if __name__ == "__main__":
    sys.exit(main())
