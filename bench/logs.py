"""CloudWatch Logs round trip: N events in through PutLogEvents batches, read back exactly and in order.

    .venv/bin/python bench/logs.py                       # starts `taskvpc up --no-agent` (SQLite) on loopback
    .venv/bin/python bench/logs.py --database-url postgresql://...   # the same on PostgreSQL
    .venv/bin/python bench/logs.py --endpoint http://127.0.0.1:4599  # a running server (its keys in env)

Writes ``--events`` (100,000) events into one stream in batches of ``--batch`` (10,000, the API's limit),
then reads them back with GetLogEvents (startFromHead, following nextForwardToken until it repeats) and
with FilterLogEvents (following nextToken), and fails unless both give exactly the events written, in
order. Prints the time of each phase and events/s.

    sudo .venv/bin/python bench/logs.py --awslogs        # the awslogs driver: needs root (a real agent)

``--awslogs`` starts `taskvpc up` with its agent (runc, a throwaway ``--net-prefix``, ``--cleanup-on-exit``)
and measures the driver: (1) latency, a container writing one line every 100 ms: the time from the line
reaching the container's output file on the host to its being returned by GetLogEvents (polled every
10 ms with its forward token), p50/p95/max over ``--ticks`` lines; (2) a container writing ``--lines``
(100,000) lines as fast as it can (``mode: blocking``), read back by GetLogEvents and FilterLogEvents,
which must give exactly those lines, in order.

    sudo .venv/bin/python bench/logs.py --tail           # container line -> `aws logs tail --follow` (CLI v2)

``--tail`` starts the same agent and runs ``/usr/bin/aws logs tail --follow`` (Debian's CLI v2, which polls
FilterLogEvents every 5 s by itself) while a container writes one line every ``--tail-interval`` s (0.7): the
time from a line reaching the container's output file to the CLI printing it, p50/p95/max over
``--tail-lines`` (40) lines. The CLI's 5 s sleep dominates; the goal is p95 < 6 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

KEYS = ("AKIABENCHLOGS0000001", "bench-logs-secret-key-000000000000000000")
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_taskvpc(state_dir: str, database_url: str | None) -> tuple[subprocess.Popen[bytes], str]:
    exe = shutil.which("taskvpc", path=str(Path(sys.executable).parent)) or "taskvpc"
    port = free_port()
    argv = [exe, "up", "--no-agent", "--host", "127.0.0.1", "--port", str(port), "--state-dir", state_dir]
    if database_url:
        argv += ["--database-url", database_url]
    env = {**os.environ, "TASKVPC_ACCESS_KEY_ID": KEYS[0], "TASKVPC_SECRET_ACCESS_KEY": KEYS[1]}
    log = open(Path(state_dir) / "server.log", "wb")  # noqa: SIM115 - the child writes it until stopped
    process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"taskvpc exited; see {state_dir}/server.log")
        try:
            urllib.request.urlopen(f"{endpoint}/_taskvpc/health", timeout=1).close()
            return process, endpoint
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("taskvpc did not start in 30 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def run(endpoint: str, total: int, batch: int) -> dict[str, float]:
    logs: Any = boto3.client(
        "logs",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", KEYS[0]),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", KEYS[1]),
        config=Config(retries={"max_attempts": 1}, read_timeout=300),
    )
    group, stream = f"/bench/logs-{int(time.time())}", "stream"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    base = int(time.time() * 1000) - total  # one event per millisecond, ending now
    expected = [f"event {i:07d} " + "x" * 60 for i in range(total)]
    timings: dict[str, float] = {}

    started = time.perf_counter()
    for first in range(0, total, batch):
        chunk = [
            {"timestamp": base + i, "message": expected[i]} for i in range(first, min(first + batch, total))
        ]
        answer = logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=chunk)
        if answer.get("rejectedLogEventsInfo"):
            raise SystemExit(f"events rejected: {answer['rejectedLogEventsInfo']}")
    timings["put"] = time.perf_counter() - started

    started = time.perf_counter()
    got: list[str] = []
    page = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)
    while True:
        got += [e["message"] for e in page["events"]]
        token = page["nextForwardToken"]
        page = logs.get_log_events(logGroupName=group, logStreamName=stream, nextToken=token)
        if page["nextForwardToken"] == token:
            break
    timings["get"] = time.perf_counter() - started
    if got != expected:
        raise SystemExit(f"GetLogEvents read {len(got)} events, not the {total} written in order")

    started = time.perf_counter()
    filtered: list[str] = []
    kwargs: dict[str, Any] = {"logGroupName": group}
    while True:
        answer = logs.filter_log_events(**kwargs)
        filtered += [e["message"] for e in answer["events"]]
        if "nextToken" not in answer:
            break
        kwargs["nextToken"] = answer["nextToken"]
    timings["filter"] = time.perf_counter() - started
    if filtered != expected:
        raise SystemExit(f"FilterLogEvents read {len(filtered)} events, not the {total} written in order")
    logs.delete_log_group(logGroupName=group)
    return timings


def _signed_env(endpoint: str) -> dict[str, str]:
    return {
        **os.environ,
        "TASKVPC_ACCESS_KEY_ID": KEYS[0],
        "TASKVPC_SECRET_ACCESS_KEY": KEYS[1],
        "AWS_ENDPOINT_URL": endpoint,
    }


def start_with_agent(state_dir: str, prefix: str) -> tuple[subprocess.Popen[bytes], str]:
    exe = shutil.which("taskvpc", path=str(Path(sys.executable).parent)) or "taskvpc"
    port = free_port()
    argv = [exe, "up", "--allow-reset", "--cleanup-on-exit", "--port", str(port), "--state-dir", state_dir]
    argv += ["--net-prefix", prefix]
    endpoint = f"http://127.0.0.1:{port}"
    log = open(Path(state_dir) / "server.log", "wb")  # noqa: SIM115 - the child writes it until stopped
    process = subprocess.Popen(
        argv, env=_signed_env(endpoint), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    ecs = _client("ecs", endpoint)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"taskvpc exited; see {state_dir}/server.log")
        try:
            if ecs.list_container_instances(cluster="default")["containerInstanceArns"]:
                return process, endpoint
        except Exception:  # not serving yet, or no cluster yet
            pass
        time.sleep(0.2)
    stop(process)
    raise SystemExit(f"no agent registered in 60 s; see {state_dir}/server.log")


def _client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=KEYS[0],
        aws_secret_access_key=KEYS[1],
        config=Config(retries={"max_attempts": 2}, read_timeout=300),
    )


def _run_task(endpoint: str, family: str, script: str, mode: str, group: str = "/bench/awslogs") -> str:
    ecs, ec2 = _client("ecs", endpoint), _client("ec2", endpoint)
    options = {
        "awslogs-group": group,
        "awslogs-region": REGION,
        "awslogs-stream-prefix": "bench",
        "awslogs-create-group": "true",
        "mode": mode,
    }
    ecs.register_task_definition(
        family=family,
        networkMode="awsvpc",
        containerDefinitions=[
            {
                "name": "app",
                "image": "public.ecr.aws/docker/library/busybox:stable",
                "memory": 64,
                "essential": True,
                "entryPoint": ["sh", "-c"],
                "command": [script],
                "logConfiguration": {"logDriver": "awslogs", "options": options},
            }
        ],
    )
    [instance] = ecs.describe_container_instances(
        cluster="default",
        containerInstances=ecs.list_container_instances(cluster="default")["containerInstanceArns"],
    )["containerInstances"]
    zone = next(a["value"] for a in instance["attributes"] if a["name"] == "ecs.availability-zone")
    [subnet] = ec2.describe_subnets(
        Filters=[
            {"Name": "default-for-az", "Values": ["true"]},
            {"Name": "availability-zone", "Values": [zone]},
        ]
    )["Subnets"]
    run = ecs.run_task(
        taskDefinition=family,
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet["SubnetId"]]}},
    )
    if run["failures"]:
        raise SystemExit(f"RunTask failed: {run['failures']}")
    arn = str(run["tasks"][0]["taskArn"])
    ecs.get_waiter("tasks_running").wait(tasks=[arn], WaiterConfig={"Delay": 1})
    return arn


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def awslogs_latency(endpoint: str, state_dir: str, ticks: int) -> list[float]:
    """Seconds from each line's arrival in the container's log file to GetLogEvents returning it."""
    script = f'for i in $(seq 1 {ticks}); do echo "tick $i"; usleep 100000; done; exec sleep 600'
    arn = _run_task(endpoint, "bench-latency", script, "non-blocking")
    task_id = arn.rsplit("/", 1)[-1]
    log_file = Path(state_dir) / "agent" / "tasks" / task_id / "app" / "log"
    logs = _client("logs", endpoint)
    stream = f"bench/app/{task_id}"
    written: dict[str, float] = {}
    seen: dict[str, float] = {}
    token: str | None = None
    deadline = time.monotonic() + ticks * 0.1 + 60
    last_poll = 0.0
    while len(seen) < ticks and time.monotonic() < deadline:
        now = time.monotonic()
        try:
            for line in log_file.read_text().splitlines():
                written.setdefault(line, now)
        except FileNotFoundError:
            pass
        if now - last_poll >= 0.01:
            last_poll = now
            try:
                kwargs: dict[str, Any] = {"logGroupName": "/bench/awslogs", "logStreamName": stream}
                kwargs.update({"nextToken": token} if token else {"startFromHead": True})
                page = logs.get_log_events(**kwargs)
            except logs.exceptions.ResourceNotFoundException:
                continue
            token = page["nextForwardToken"]
            for event in page["events"]:
                seen.setdefault(event["message"], time.monotonic())
        time.sleep(0.002)
    _client("ecs", endpoint).stop_task(task=arn)
    return [seen[line] - written[line] for line in seen if line in written]


def awslogs_bulk(endpoint: str, lines: int) -> dict[str, float]:
    script = f'seq 1 {lines} | sed "s/^/line /"; exec sleep 600'
    started = time.perf_counter()
    arn = _run_task(endpoint, "bench-bulk", script, "blocking")
    running = time.perf_counter()
    logs = _client("logs", endpoint)
    stream = f"bench/app/{arn.rsplit('/', 1)[-1]}"
    expected = [f"line {i}" for i in range(1, lines + 1)]
    got: list[str] = []
    kwargs: dict[str, Any] = {
        "logGroupName": "/bench/awslogs",
        "logStreamName": stream,
        "startFromHead": True,
    }
    deadline = time.monotonic() + 600
    while len(got) < lines and time.monotonic() < deadline:
        try:
            page = logs.get_log_events(**kwargs)
        except logs.exceptions.ResourceNotFoundException:
            time.sleep(0.1)
            continue
        got += [e["message"] for e in page["events"]]
        if not page["events"]:
            time.sleep(0.05)
        kwargs = {
            "logGroupName": "/bench/awslogs",
            "logStreamName": stream,
            "nextToken": page["nextForwardToken"],
        }
    visible = time.perf_counter()
    if got != expected:
        raise SystemExit(f"GetLogEvents read {len(got)} events, not the {lines} lines written in order")
    filtered: list[str] = []
    fkwargs: dict[str, Any] = {"logGroupName": "/bench/awslogs", "logStreamNames": [stream]}
    while True:
        answer = logs.filter_log_events(**fkwargs)
        filtered += [e["message"] for e in answer["events"]]
        if "nextToken" not in answer:
            break
        fkwargs["nextToken"] = answer["nextToken"]
    if filtered != expected:
        raise SystemExit(f"FilterLogEvents read {len(filtered)} events, not the {lines} lines in order")
    _client("ecs", endpoint).stop_task(task=arn)
    return {"start": running - started, "visible": visible - running}


def main_awslogs(ticks: int, lines: int) -> None:
    if os.geteuid() != 0:
        raise SystemExit("--awslogs needs root (it runs a real agent)")
    state_dir = tempfile.mkdtemp(prefix="taskvpc-bench-awslogs-")
    prefix = "tvb" + os.urandom(2).hex()
    process, endpoint = start_with_agent(state_dir, prefix)
    try:
        latencies = awslogs_latency(endpoint, state_dir, ticks)
        bulk = awslogs_bulk(endpoint, lines)
    finally:
        stop(process)
        shutil.rmtree(state_dir, ignore_errors=True)
    if not latencies:
        raise SystemExit("no line became visible")
    print(f"awslogs: container line -> GetLogEvents, {len(latencies)} lines (one per 100 ms)")
    print(
        f"  p50 {_percentile(latencies, 0.5) * 1000:6.0f} ms  p95 {_percentile(latencies, 0.95) * 1000:6.0f} ms"
        f"  max {max(latencies) * 1000:6.0f} ms"
    )
    print(
        f"awslogs: {lines} lines (mode blocking) -> exactly {lines} ordered events (GetLogEvents, FilterLogEvents)"
    )
    print(
        f"  RunTask to RUNNING {bulk['start']:6.2f} s; RUNNING to the last line visible {bulk['visible']:6.2f} s"
    )
    print(f"  {lines / bulk['visible']:8.0f} lines/s end to end")


def tail_latency(endpoint: str, state_dir: str, lines: int, interval: float) -> list[float]:
    """Seconds from each line's arrival in the container's log file to `aws logs tail --follow` printing it."""
    group = "/bench/tail"
    _client("logs", endpoint).create_log_group(logGroupName=group)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=KEYS[0],
        AWS_SECRET_ACCESS_KEY=KEYS[1],
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
    )
    # CLI v2.9 predates AWS_ENDPOINT_URL: the endpoint goes on the command line
    argv = ["/usr/bin/aws", "--endpoint-url", endpoint, "logs", "tail", group, "--follow"]
    follower = subprocess.Popen(
        [*argv, "--since", "1m", "--format", "short"], env=env, stdout=subprocess.PIPE, text=True
    )
    seen: dict[str, float] = {}

    def read() -> None:
        assert follower.stdout is not None
        for printed in follower.stdout:
            seen.setdefault(printed.rstrip("\n").split(" ", 1)[-1], time.monotonic())

    threading.Thread(target=read, daemon=True).start()
    micros = int(interval * 1_000_000)
    script = f'for i in $(seq 1 {lines}); do echo "tail $i"; usleep {micros}; done; exec sleep 600'
    arn = _run_task(endpoint, "bench-tail", script, "non-blocking", group)
    log_file = Path(state_dir) / "agent" / "tasks" / arn.rsplit("/", 1)[-1] / "app" / "log"
    written: dict[str, float] = {}
    deadline = time.monotonic() + lines * interval + 60
    try:
        while len(seen) < lines and time.monotonic() < deadline:
            try:
                for line in log_file.read_text().splitlines():
                    written.setdefault(line, time.monotonic())
            except FileNotFoundError:
                pass
            time.sleep(0.01)
    finally:
        follower.kill()
        follower.wait()
        _client("ecs", endpoint).stop_task(task=arn)
    return [seen[line] - written[line] for line in seen if line in written]


def main_tail(lines: int, interval: float) -> None:
    if os.geteuid() != 0:
        raise SystemExit("--tail needs root (it runs a real agent)")
    if not os.access("/usr/bin/aws", os.X_OK):
        raise SystemExit("--tail needs the AWS CLI v2 at /usr/bin/aws (Debian package awscli)")
    state_dir = tempfile.mkdtemp(prefix="taskvpc-bench-tail-")
    process, endpoint = start_with_agent(state_dir, "tvt" + os.urandom(2).hex())
    try:
        latencies = tail_latency(endpoint, state_dir, lines, interval)
    finally:
        stop(process)
        shutil.rmtree(state_dir, ignore_errors=True)
    if not latencies:
        raise SystemExit("no line was printed by aws logs tail --follow")
    print(f"awslogs: container line -> `aws logs tail --follow` (CLI v2), {len(latencies)} lines")
    print(
        f"  p50 {_percentile(latencies, 0.5):5.2f} s  p95 {_percentile(latencies, 0.95):5.2f} s"
        f"  max {max(latencies):5.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--endpoint", help="a running server; default: start taskvpc on loopback")
    parser.add_argument("--database-url", help="PostgreSQL URL for the started taskvpc (default SQLite)")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--awslogs", action="store_true", help="measure the awslogs driver (root)")
    parser.add_argument("--ticks", type=int, default=100, help="--awslogs: lines timed for latency")
    parser.add_argument("--lines", type=int, default=100_000, help="--awslogs: lines of the bulk run")
    parser.add_argument("--tail", action="store_true", help="line -> aws logs tail --follow (root, CLI v2)")
    parser.add_argument("--tail-lines", type=int, default=40, help="--tail: lines timed")
    parser.add_argument("--tail-interval", type=float, default=0.7, help="--tail: seconds between lines")
    args = parser.parse_args()
    if args.tail:
        main_tail(args.tail_lines, args.tail_interval)
        return
    if args.awslogs:
        main_awslogs(args.ticks, args.lines)
        return
    if not 1 <= args.batch <= 10_000 or not 1 <= args.events <= 10_000_000:
        parser.error("--batch must be 1..10000 and --events 1..10000000")
    process = None
    state_dir = tempfile.mkdtemp(prefix="taskvpc-bench-logs-")
    try:
        endpoint = args.endpoint
        if endpoint is None:
            process, endpoint = start_taskvpc(state_dir, args.database_url)
        timings = run(endpoint, args.events, args.batch)
    finally:
        if process is not None:
            stop(process)
        shutil.rmtree(state_dir, ignore_errors=True)
    store = "PostgreSQL" if args.database_url else ("SQLite" if args.endpoint is None else args.endpoint)
    print(f"{args.events} events in batches of {args.batch} ({store}); read back exactly, in order")
    for phase, label in (("put", "PutLogEvents"), ("get", "GetLogEvents"), ("filter", "FilterLogEvents")):
        seconds = timings[phase]
        print(f"  {label:<16} {seconds:7.2f} s  {args.events / seconds:10.0f} events/s")


if __name__ == "__main__":
    main()
