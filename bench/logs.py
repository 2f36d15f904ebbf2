"""CloudWatch Logs round trip: N events in through PutLogEvents batches, read back exactly and in order.

    .venv/bin/python bench/logs.py                       # starts `taskvpc up --no-agent` (SQLite) on loopback
    .venv/bin/python bench/logs.py --database-url postgresql://...   # the same on PostgreSQL
    .venv/bin/python bench/logs.py --endpoint http://127.0.0.1:4599  # a running server (its keys in env)

Writes ``--events`` (100,000) events into one stream in batches of ``--batch`` (10,000, the API's limit),
then reads them back with GetLogEvents (startFromHead, following nextForwardToken until it repeats) and
with FilterLogEvents (following nextToken), and fails unless both give exactly the events written, in
order. Prints the time of each phase and events/s.
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--endpoint", help="a running server; default: start taskvpc on loopback")
    parser.add_argument("--database-url", help="PostgreSQL URL for the started taskvpc (default SQLite)")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
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
