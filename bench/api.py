#!/usr/bin/env python3
"""Load generator for ECS (JSON 1.1) and EC2 (query) API calls against any endpoint URL.

Two ways to drive an endpoint:

* server-bound (``--mode server``): each request is serialized and SigV4-signed once per
  measurement; ``--connections`` keep-alive HTTP/1.1 connections (asyncio streams, spread
  over ``--client-procs`` processes) then send those exact bytes back to back, parsing
  just enough of each response (status line, Content-Length or chunked) to find its end.
* client-bound (``--mode client``): a boto3 client called in a loop (``--client-threads``).

For every endpoint x operation it reports ops/s, p50 and p99 latency and the error count,
the median over ``--repeat`` repetitions; endpoints are interleaved inside every repetition
(in a rotating order) so that machine noise hits them all alike. With several endpoints it
also prints the first endpoint's throughput over each other one's, and (for servers started
here) the other's server CPU time per request over the first's, which a busy machine
disturbs much less. A window in which other processes took noticeable CPU is flagged.

``--start moto|ministack|taskvpc`` (or ``--compare`` for all three) starts a server as a
child process on a free 127.0.0.1 port and kills it (by PID / its own process group) at exit.

Example::

    python bench/api.py --compare --duration 10 --repeat 3 --json out.json
    python bench/api.py --endpoint mine=http://127.0.0.1:4599 --start moto --mode both
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import ipaddress
import json
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlencode, urlsplit

ECS_TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113."
EC2_API_VERSION = "2016-11-15"

# Fixture data created by the setup phase (idempotently) on every endpoint.
CLUSTERS = ("bench-0", "bench-1", "bench-2")
MAIN_FAMILY = "bench-web"
MAIN_FAMILY_REVISIONS = 5
EXTRA_FAMILIES = tuple(f"bench-fam-{i:02d}" for i in range(20))

DEFAULT_OPS = "DescribeTaskDefinition,ListTaskDefinitions,DescribeClusters"
DEFAULT_ACCESS_KEY = "AKIATASKVPCBENCH0001"
DEFAULT_SECRET_KEY = "taskvpc-bench-secret-key-not-a-real-one-00"
MAX_DURATION_S = 600.0  # one measurement must stay well inside the 15 min SigV4 skew window
DISPATCH_DELAY_NS = 200_000_000  # time given to client processes to receive a job
OTHER_LOAD_WARN_PCT = 20.0  # CPU used outside server and client that makes a run suspect
GRACE_S = 5.0  # in-flight requests still unanswered this long after the window are timeouts


@dataclass(frozen=True)
class Operation:
    name: str
    service: str  # "ecs" (JSON 1.1 + X-Amz-Target) or "ec2" (query protocol)
    params: Mapping[str, Any]


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("DescribeTaskDefinition", "ecs", {"taskDefinition": MAIN_FAMILY}),
        Operation("ListTaskDefinitions", "ecs", {}),
        Operation("DescribeClusters", "ecs", {"clusters": list(CLUSTERS)}),
        Operation("ListClusters", "ecs", {}),
        Operation("DescribeVpcs", "ec2", {}),
    )
}


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    """One endpoint under test; ``proc`` is set when this script started the server."""

    name: str
    url: str
    proc: subprocess.Popen[bytes] | None = None
    log_path: str | None = None

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _find_executable(name: str) -> str | None:
    """Prefer the script next to this interpreter (the venv), then $PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which(name)


def _server_command(
    kind: str, port: int, state_dir: str, keys: tuple[str, str]
) -> tuple[list[str], dict[str, str], str]:
    """The argv, environment and readiness path to start ``kind`` on 127.0.0.1:``port``."""
    env = dict(os.environ)
    if kind == "moto":
        exe = _find_executable("moto_server")
        if exe is None:
            raise SystemExit("moto_server not found: pip install 'moto[server]'")
        return [exe, "-H", "127.0.0.1", "-p", str(port)], env, "/moto-api/"
    if kind == "ministack":
        exe = _find_executable("ministack")
        if exe is None:
            raise SystemExit("ministack not found: pip install ministack")
        # GATEWAY_PORT/BIND_HOST place the single HTTP listener; the optional side
        # listeners (IoT mTLS, SFTP) are turned off so nothing binds beyond 127.0.0.1:port.
        env.update(
            GATEWAY_PORT=str(port),
            BIND_HOST="127.0.0.1",
            IOT_MTLS_ENABLED="0",
            SFTP_ENABLED="0",
            PERSIST_STATE="0",
            TMPDIR=state_dir,
        )
        return [exe], env, "/_ministack/health"
    if kind == "taskvpc":
        exe = _find_executable("taskvpc")
        if exe is None:
            raise SystemExit("taskvpc not found: pip install -e . in the repository")
        env.update(TASKVPC_ACCESS_KEY_ID=keys[0], TASKVPC_SECRET_ACCESS_KEY=keys[1])
        argv = [exe, "up", "--no-agent", "--host", "127.0.0.1", "--port", str(port), "--state-dir", state_dir]
        return argv, env, "/_taskvpc/health"
    raise SystemExit(f"--start: unknown server {kind!r} (moto, ministack, taskvpc)")


def _http_get_status(host: str, port: int, path: str, timeout: float) -> int | None:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
            first = s.recv(64)
    except OSError:
        return None
    try:
        return int(first.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


class Servers(contextlib.AbstractContextManager["Servers"]):
    """Starts servers as children in their own process group; kills and reaps them on exit."""

    def __init__(self, workdir: str, keys: tuple[str, str]) -> None:
        self._workdir = workdir
        self._keys = keys
        self._owner = os.getpid()
        self.started: list[Target] = []

    def start(self, kind: str, name: str, timeout: float = 90.0) -> Target:
        port = _free_port()
        state_dir = tempfile.mkdtemp(prefix=f"{name}-", dir=self._workdir)
        argv, env, ready_path = _server_command(kind, port, state_dir, self._keys)
        log_path = os.path.join(self._workdir, f"{name}.log")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=state_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        target = Target(name, f"http://127.0.0.1:{port}", proc, log_path)
        self.started.append(target)
        print(f"[start] {name}: pid {proc.pid}, {target.url}, log {log_path}", file=sys.stderr)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited with {proc.returncode} while starting:\n{_tail(log_path)}")
            status = _http_get_status("127.0.0.1", port, ready_path, timeout=2.0)
            if status is not None and status < 500:
                return target
            time.sleep(0.2)
        raise SystemExit(
            f"{name} did not answer on {target.url}{ready_path} within {timeout:.0f}s:\n{_tail(log_path)}"
        )

    def __exit__(self, *exc: object) -> None:
        if os.getpid() != self._owner:  # never from a forked client process
            return
        for target in reversed(self.started):
            _stop(target)


def _stop(target: Target) -> None:
    proc = target.proc
    if proc is None or proc.poll() is not None:
        return
    # The server leads its own session/process group (start_new_session), so the group
    # id is its PID: this reaches its worker processes, if any, and nothing else.
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group, if the leader went first
    print(f"[stop] {target.name}: pid {proc.pid} exit {proc.returncode}", file=sys.stderr)


def _tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, "rb") as f:
            return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")
    except OSError:
        return ""


def _cpu_seconds(roots: Sequence[int], descendants: bool) -> float | None:
    """user+system CPU seconds of the ``roots`` processes (and their descendants), from /proc."""
    ppid_of: dict[int, int] = {}
    ticks_of: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2 :].split()
        ppid_of[int(entry)] = int(fields[1])
        ticks_of[int(entry)] = int(fields[11]) + int(fields[12])
    if not any(root in ticks_of for root in roots):
        return None
    tree, frontier = set(roots), list(roots)
    while descendants and frontier:
        parent = frontier.pop()
        for pid, ppid in ppid_of.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return sum(ticks_of.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle, all cores together (from /proc/stat)."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


@dataclass
class WindowCpu:
    """CPU seconds spent inside one measured window, by whom."""

    server_s: float | None = None  # the server's process tree (servers started here only)
    client_s: float | None = None  # this benchmark's client processes / threads
    machine_s: float = 0.0  # every process on the machine


def measure_window(target: Target, client_pids: Sequence[int], warm_ns: int, end_ns: int) -> WindowCpu:
    """Sleep through the measured window, sampling CPU counters at its edges."""

    def sample() -> tuple[float | None, float | None, float]:
        server = _cpu_seconds([target.proc.pid], descendants=True) if target.proc is not None else None
        return server, _cpu_seconds(client_pids, descendants=False), _machine_busy_seconds()

    _sleep_until(warm_ns)
    before = sample()
    _sleep_until(end_ns)
    after = sample()
    server, client = (
        None if a is None or b is None else a - b for a, b in zip(after[:2], before[:2], strict=True)
    )
    return WindowCpu(server, client, after[2] - before[2])


def _sleep_until(deadline_ns: int) -> None:
    delay = (deadline_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)


# --------------------------------------------------------------------------- requests


def build_request(target: Target, op: Operation, keys: tuple[str, str], region: str) -> bytes:
    """The complete HTTP/1.1 request for ``op``, SigV4-signed now (valid for 15 minutes)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    parts = urlsplit(target.url)
    path = parts.path or "/"
    headers: dict[str, str] = {"Host": parts.netloc}
    if op.service == "ecs":
        body = json.dumps(dict(op.params), separators=(",", ":")).encode()
        headers["Content-Type"] = "application/x-amz-json-1.1"
        headers["X-Amz-Target"] = ECS_TARGET_PREFIX + op.name
    else:
        body = urlencode({"Action": op.name, "Version": EC2_API_VERSION, **op.params}).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
    request = AWSRequest(method="POST", url=target.url.rstrip("/") + path, data=body, headers=headers)
    SigV4Auth(Credentials(*keys), op.service, region).add_auth(request)
    lines = [f"POST {path} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    lines += [f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """Read one response: (status, connection reusable, body). Just enough HTTP/1.1."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    keep_alive = head[5:8] == b"1.1" and b"\r\nconnection: close" not in lower
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        length = int(lower[at + 17 : lower.index(b"\r\n", at + 17)])
        return status, keep_alive, (await reader.readexactly(length) if length else b"")
    at = lower.find(b"\r\ntransfer-encoding:")
    if at >= 0 and b"chunked" in lower[at : lower.index(b"\r\n", at + 2)]:
        chunks: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                return status, keep_alive, b"".join(chunks)
            chunks.append((await reader.readexactly(size + 2))[:-2])
    if status in (204, 304) or 100 <= status < 200:
        return status, keep_alive, b""
    return status, False, await reader.read()  # delimited by the end of the connection


async def probe(target: Target, request: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(target.host, target.port)
    try:
        writer.write(request)
        status, _, body = await asyncio.wait_for(read_response(reader), 30.0)
        return status, body
    finally:
        writer.close()


# --------------------------------------------------------------------------- server-bound load


@dataclass
class Job:
    host: str
    port: int
    request: bytes
    connections: int
    warm_ns: int  # time.monotonic_ns() at which the measured window opens
    end_ns: int  # ... and closes
    use_uvloop: bool


@dataclass
class Tally:
    """What one client process (or thread group) saw; merged across processes."""

    latencies_ns: array.array[int] = field(default_factory=lambda: array.array("q"))
    statuses: Counter[int] = field(default_factory=Counter)  # non-2xx responses
    failures: Counter[str] = field(default_factory=Counter)  # connection errors, timeouts
    samples: dict[str, str] = field(default_factory=dict)  # first body/message per error kind
    response_bytes: int | None = 0  # body size of the last 2xx response (None: not seen by boto3 mode)
    cpu: WindowCpu = field(default_factory=WindowCpu)  # filled in by the parent

    def merge(self, other: Tally) -> None:
        self.latencies_ns.extend(other.latencies_ns)
        self.statuses.update(other.statuses)
        self.failures.update(other.failures)
        for key, value in other.samples.items():
            self.samples.setdefault(key, value)
        self.response_bytes = self.response_bytes or other.response_bytes

    def error(self, key: str, detail: str) -> None:
        self.failures[key] += 1
        self.samples.setdefault(key, detail[:300])


async def _drive_connection(job: Job, tally: Tally) -> None:
    clock = time.monotonic_ns
    record = tally.latencies_ns.append
    request, warm_ns, end_ns = job.request, job.warm_ns, job.end_ns
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    try:
        while clock() < end_ns:
            if writer is None or reader is None:
                try:
                    reader, writer = await asyncio.open_connection(job.host, job.port)
                except OSError as exc:
                    tally.error(f"connect: {type(exc).__name__}", str(exc))
                    await asyncio.sleep(0.05)
                    continue
            start = clock()
            try:
                writer.write(request)
                status, keep_alive, body = await read_response(reader)
            except (OSError, EOFError, ValueError, asyncio.LimitOverrunError) as exc:
                tally.error(f"io: {type(exc).__name__}", str(exc))
                writer.close()
                writer = None
                await asyncio.sleep(0.01)
                continue
            done = clock()
            if 200 <= status < 300:
                if warm_ns <= done <= end_ns:
                    record(done - start)
                tally.response_bytes = len(body)
            else:
                tally.statuses[status] += 1
                tally.samples.setdefault(f"HTTP {status}", body[:300].decode(errors="replace"))
            if not keep_alive:
                # Let the server close first, so TIME_WAIT lands on its side and not on
                # this side's ephemeral ports (a close-per-request server would exhaust them).
                with contextlib.suppress(OSError):
                    await reader.read()
                writer.close()
                writer = None
    finally:
        if writer is not None:
            writer.close()


async def _run_job_async(job: Job, tally: Tally) -> None:
    tasks = [asyncio.create_task(_drive_connection(job, tally)) for _ in range(job.connections)]
    timeout = max(0.0, (job.end_ns - time.monotonic_ns()) / 1e9) + GRACE_S
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
        tally.error("timeout", f"no response within {GRACE_S:.0f}s after the window closed")
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        if task.exception() is not None:
            tally.error("crash", repr(task.exception()))


def run_job(job: Job) -> Tally:
    tally = Tally()
    loop_factory = None
    if job.use_uvloop:
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_run_job_async(job, tally))
    return tally


def _client_process(conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    while (job := conn.recv()) is not None:
        conn.send(run_job(job))


class ClientPool:
    """``size`` long-lived client processes, each running its share of the connections."""

    def __init__(self, size: int) -> None:
        ctx = multiprocessing.get_context("fork")
        self._conns: list[Connection] = []
        self._procs: list[multiprocessing.process.BaseProcess] = []
        for _ in range(size):
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(target=_client_process, args=(child_end,), daemon=True)
            proc.start()
            child_end.close()
            self._conns.append(parent_end)
            self._procs.append(proc)

    def run(self, job: Job, target: Target) -> Tally:
        shares = [job.connections // len(self._conns)] * len(self._conns)
        for i in range(job.connections % len(self._conns)):
            shares[i] += 1
        busy = [conn for conn, share in zip(self._conns, shares, strict=True) if share]
        for conn, share in zip(self._conns, shares, strict=True):
            if share:
                conn.send(Job(**{**asdict(job), "connections": share}))
        tally = Tally()
        tally.cpu = measure_window(target, [p.pid for p in self._procs if p.pid], job.warm_ns, job.end_ns)
        for conn in busy:
            tally.merge(conn.recv())
        return tally

    def close(self, abort: bool = False) -> None:
        """Stop the processes: politely after the last job, at once when ``abort``."""
        for conn, proc in zip(self._conns, self._procs, strict=True):
            if abort:
                proc.kill()
            else:
                with contextlib.suppress(OSError):
                    conn.send(None)
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.close(abort=exc_type is not None)


# --------------------------------------------------------------------------- client-bound load


class BotoClients:
    """boto3 clients per (endpoint, service, thread), created once and reused."""

    def __init__(self, keys: tuple[str, str], region: str) -> None:
        self._keys = keys
        self._region = region
        self._cache: dict[tuple[str, str, int], Any] = {}

    def get(self, target: Target, service: str, slot: int = 0) -> Any:
        key = (target.url, service, slot)
        if key not in self._cache:
            import boto3
            from botocore.config import Config

            self._cache[key] = boto3.session.Session().client(
                service,
                endpoint_url=target.url,
                region_name=self._region,
                aws_access_key_id=self._keys[0],
                aws_secret_access_key=self._keys[1],
                config=Config(retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=30),
            )
        return self._cache[key]


def run_client_bound(
    clients: BotoClients, target: Target, op: Operation, threads: int, warm_ns: int, end_ns: int
) -> Tally:
    from botocore import xform_name
    from botocore.exceptions import BotoCoreError, ClientError

    tallies = [Tally() for _ in range(threads)]
    calls = [getattr(clients.get(target, op.service, i), xform_name(op.name)) for i in range(threads)]
    params = dict(op.params)

    def loop(call: Any, tally: Tally) -> None:
        clock = time.monotonic_ns
        while clock() < end_ns:
            start = clock()
            try:
                call(**params)
            except ClientError as exc:
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
                tally.statuses[status] += 1
                tally.samples.setdefault(f"HTTP {status}", str(exc)[:300])
                continue
            except BotoCoreError as exc:
                tally.error(f"boto: {type(exc).__name__}", str(exc))
                time.sleep(0.05)
                continue
            done = clock()
            if warm_ns <= done <= end_ns:
                tally.latencies_ns.append(done - start)

    workers = [
        threading.Thread(target=loop, args=pair, daemon=True) for pair in zip(calls, tallies, strict=True)
    ]
    for worker in workers:
        worker.start()
    cpu = measure_window(target, [os.getpid()], warm_ns, end_ns)
    for worker in workers:
        worker.join()
    total = Tally(cpu=cpu)
    for tally in tallies:
        total.merge(tally)
    return total


# --------------------------------------------------------------------------- setup


def setup_fixtures(clients: BotoClients, target: Target) -> None:
    """Clusters and task definitions for the operations to read; idempotent."""
    ecs = clients.get(target, "ecs")
    for name in CLUSTERS:
        ecs.create_cluster(clusterName=name, tags=[{"key": "bench", "value": "taskvpc"}])
    revisions: Counter[str] = Counter()
    kwargs: dict[str, Any] = {}
    for _ in range(1000):  # pages
        page = ecs.list_task_definitions(**kwargs)
        for arn in page.get("taskDefinitionArns", []):
            revisions[arn.rsplit("/", 1)[-1].rsplit(":", 1)[0]] += 1
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    wanted = [(MAIN_FAMILY, MAIN_FAMILY_REVISIONS)] + [(family, 1) for family in EXTRA_FAMILIES]
    for family, count in wanted:
        for revision in range(revisions[family], count):
            ecs.register_task_definition(**_task_definition(family, revision))


def _task_definition(family: str, revision: int) -> dict[str, Any]:
    return {
        "family": family,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["EC2"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [
            {
                "name": "app",
                "image": f"public.ecr.aws/docker/library/nginx:1.{25 + revision}",
                "essential": True,
                "cpu": 256,
                "memory": 512,
                "portMappings": [{"containerPort": 80, "protocol": "tcp"}],
                "environment": [{"name": f"SETTING_{i}", "value": f"value-{i}"} for i in range(4)],
                "command": ["nginx", "-g", "daemon off;"],
            }
        ],
        "tags": [{"key": "bench", "value": "taskvpc"}],
    }


# --------------------------------------------------------------------------- measurement & report


@dataclass
class Measurement:
    repetition: int
    mode: str
    operation: str
    endpoint: str
    window_s: float
    ops: int
    ops_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    errors: int
    error_detail: dict[str, int]
    error_samples: dict[str, str]
    response_bytes: int | None
    client_cpu_us_per_op: float | None
    server_cpu_us_per_op: float | None
    server_cpu_pct: float | None  # % of one core
    client_cpu_pct: float | None  # % of one core
    other_cpu_pct: float | None  # % of one core used by neither: load from outside the benchmark


def _percentile_ms(sorted_ns: Sequence[int], q: float) -> float | None:
    if not sorted_ns:
        return None
    rank = max(0, min(len(sorted_ns) - 1, int(q * len(sorted_ns) + 0.999999) - 1))
    return sorted_ns[rank] / 1e6


def summarize(rep: int, mode: str, op: str, target: Target, window_s: float, tally: Tally) -> Measurement:
    lat = sorted(tally.latencies_ns)
    ops = len(lat)
    cpu = tally.cpu
    detail = {f"HTTP {k}": v for k, v in sorted(tally.statuses.items())} | dict(tally.failures)
    return Measurement(
        repetition=rep,
        mode=mode,
        operation=op,
        endpoint=target.name,
        window_s=window_s,
        ops=ops,
        ops_per_s=ops / window_s,
        p50_ms=_percentile_ms(lat, 0.50),
        p99_ms=_percentile_ms(lat, 0.99),
        errors=sum(detail.values()),
        error_detail=detail,
        error_samples=dict(tally.samples),
        response_bytes=tally.response_bytes,
        client_cpu_us_per_op=cpu.client_s / ops * 1e6 if cpu.client_s is not None and ops else None,
        server_cpu_us_per_op=cpu.server_s / ops * 1e6 if cpu.server_s is not None and ops else None,
        server_cpu_pct=_pct(cpu.server_s, window_s),
        client_cpu_pct=_pct(cpu.client_s, window_s),
        other_cpu_pct=(
            _pct(max(0.0, cpu.machine_s - cpu.server_s - cpu.client_s), window_s)
            if cpu.server_s is not None and cpu.client_s is not None
            else None
        ),
    )


def _pct(cpu_s: float | None, window_s: float) -> float | None:
    return None if cpu_s is None else cpu_s / window_s * 100


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def aggregate(runs: Sequence[Measurement]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, str], list[Measurement]] = {}
    for run in runs:
        groups.setdefault((run.mode, run.operation, run.endpoint), []).append(run)
    rows = []
    for (mode, op, endpoint), group in groups.items():
        errors: Counter[str] = Counter()
        for run in group:
            errors.update(run.error_detail)
        rows.append(
            {
                "mode": mode,
                "operation": op,
                "endpoint": endpoint,
                "repetitions": len(group),
                "ops_per_s": _median([r.ops_per_s for r in group]),
                "p50_ms": _median([r.p50_ms for r in group]),
                "p99_ms": _median([r.p99_ms for r in group]),
                "errors": sum(errors.values()),
                "error_detail": dict(errors),
                "response_bytes": group[-1].response_bytes,
                "client_cpu_us_per_op": _median([r.client_cpu_us_per_op for r in group]),
                "server_cpu_us_per_op": _median([r.server_cpu_us_per_op for r in group]),
                "server_cpu_pct": _median([r.server_cpu_pct for r in group]),
                "other_cpu_pct_max": max(
                    (r.other_cpu_pct for r in group if r.other_cpu_pct is not None), default=None
                ),
            }
        )
    return rows


def ratios(rows: Sequence[dict[str, Any]], endpoints: Sequence[str]) -> list[dict[str, Any]]:
    """Per mode x op, the first endpoint against each other one: ops/s of the first divided by the
    other's, and server CPU per op of the other divided by the first's (both: > 1 = first is better).
    The CPU ratio is known only for servers started here, and holds up better on a busy machine."""
    by_key = {(r["mode"], r["operation"], r["endpoint"]): r for r in rows}

    def ratio(numerator: float | None, denominator: float | None) -> float | None:
        return numerator / denominator if numerator and denominator else None

    out = []
    for mode, op in dict.fromkeys((r["mode"], r["operation"]) for r in rows):
        first = by_key.get((mode, op, endpoints[0]), {})
        entry: dict[str, Any] = {"mode": mode, "operation": op}
        for name in endpoints[1:]:
            other = by_key.get((mode, op, name), {})
            entry[f"{endpoints[0]}/{name}"] = {
                "ops_per_s": ratio(first.get("ops_per_s"), other.get("ops_per_s")),
                "server_cpu_per_op": ratio(
                    other.get("server_cpu_us_per_op"), first.get("server_cpu_us_per_op")
                ),
            }
        out.append(entry)
    return out


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(rows: Sequence[dict[str, Any]], ratio_rows: Sequence[dict[str, Any]], header: str) -> str:
    out = [
        header,
        "",
        "| mode | operation | endpoint | ops/s | p50 ms | p99 ms | errors | server CPU µs/op | resp bytes |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['mode']} | {r['operation']} | {r['endpoint']} | {_fmt(r['ops_per_s'], 0)} | {_fmt(r['p50_ms'], 2)} "
            f"| {_fmt(r['p99_ms'], 2)} | {r['errors']} | {_fmt(r['server_cpu_us_per_op'], 0)} | {_fmt(r['response_bytes'], 0)} |"
        )
    if ratio_rows and len(ratio_rows[0]) > 2:
        names = [k for k in ratio_rows[0] if k not in ("mode", "operation")]
        out += [
            "",
            "Ratios: ops/s, then in brackets server CPU per op (the other's over the first's); > 1 favours the first.",
            "",
            "| mode | operation | " + " | ".join(names) + " |",
            "|---|---|" + "---:|" * len(names),
        ]
        for r in ratio_rows:
            cells = " | ".join(
                f"{_fmt(r[n]['ops_per_s'], 2)}x ({_fmt(r[n]['server_cpu_per_op'], 2)}x)" for n in names
            )
            out.append(f"| {r['mode']} | {r['operation']} | {cells} |")
    others = [r["other_cpu_pct_max"] for r in rows if r["other_cpu_pct_max"] is not None]
    if others and max(others) > OTHER_LOAD_WARN_PCT:
        out += [
            "",
            f"Warning: other processes used up to {max(others):.0f}% of a core during a measured window "
            "(the machine was not quiet; compare ratios, and server CPU µs/op, rather than absolute ops/s).",
        ]
    errors = [r for r in rows if r["errors"]]
    if errors:
        out += [""] + [
            f"- errors {r['endpoint']} {r['mode']} {r['operation']}: {r['error_detail']}" for r in errors
        ]
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--endpoint",
        dest="targets",
        action="append",
        type=lambda s: ("url", s),
        default=[],
        metavar="[NAME=]URL",
        help="an already running endpoint (repeatable; loopback only by default)",
    )
    p.add_argument(
        "--start",
        dest="targets",
        action="append",
        type=lambda s: ("start", s),
        metavar="moto|ministack|taskvpc",
        help="start this server on a free 127.0.0.1 port (repeatable)",
    )
    p.add_argument(
        "--compare",
        action="store_true",
        help="same as --start taskvpc (when installed) --start moto --start ministack, after any others",
    )
    p.add_argument("--mode", choices=("server", "client", "both"), default="server")
    p.add_argument("--ops", default=DEFAULT_OPS, help=f"comma-separated, from {', '.join(OPERATIONS)}")
    p.add_argument(
        "--connections", type=int, default=8, help="server-bound: concurrent keep-alive connections"
    )
    p.add_argument(
        "--client-procs", type=int, default=1, help="server-bound: processes sharing the connections"
    )
    p.add_argument(
        "--client-threads", type=int, default=1, help="client-bound: threads, each with a boto3 client"
    )
    p.add_argument(
        "--duration", type=float, default=10.0, help="measured seconds per endpoint x op x repetition"
    )
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each measurement")
    p.add_argument("--repeat", type=int, default=3, help="repetitions; the report gives medians")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--access-key", default=os.environ.get("AWS_ACCESS_KEY_ID", DEFAULT_ACCESS_KEY))
    p.add_argument("--secret-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY", DEFAULT_SECRET_KEY))
    p.add_argument("--no-uvloop", action="store_true", help="server-bound client on asyncio's own loop")
    p.add_argument("--no-setup", action="store_true", help="skip creating the clusters and task definitions")
    p.add_argument("--allow-remote", action="store_true", help="allow non-loopback --endpoint URLs")
    p.add_argument("--json", metavar="PATH", help="also write every measurement and the summary as JSON")
    args = p.parse_args(argv)
    if args.compare:
        kinds = (["taskvpc"] if _find_executable("taskvpc") else []) + ["moto", "ministack"]
        if "taskvpc" not in kinds:
            print("[compare] taskvpc is not installed: comparing moto and ministack only", file=sys.stderr)
        args.targets += [("start", kind) for kind in kinds]
    if not args.targets:
        p.error("give at least one --endpoint, --start or --compare")
    args.use_uvloop = not args.no_uvloop and _uvloop_available()
    args.ops = [op.strip() for op in args.ops.split(",") if op.strip()]
    for op in args.ops:
        if op not in OPERATIONS:
            p.error(f"unknown operation {op!r}; known: {', '.join(OPERATIONS)}")
    if not 0 < args.duration <= MAX_DURATION_S:
        p.error(f"--duration must be in (0, {MAX_DURATION_S:.0f}]")
    if not (
        1 <= args.repeat <= 50
        and 1 <= args.connections <= 1024
        and 1 <= args.client_procs <= 64
        and 1 <= args.client_threads <= 64
        and 0 <= args.warmup <= 60
    ):
        p.error(
            "--repeat 1..50, --connections 1..1024, --client-procs/--client-threads 1..64, --warmup 0..60"
        )
    return args


def _resolve_targets(args: argparse.Namespace, servers: Servers) -> list[Target]:
    targets: list[Target] = []
    names: Counter[str] = Counter()

    def unique(name: str) -> str:
        names[name] += 1
        return name if names[name] == 1 else f"{name}#{names[name]}"

    for kind, value in args.targets:
        if kind == "start":
            targets.append(servers.start(value, unique(value)))
            continue
        name, _, url = value.rpartition("=") if "=" in value.split("://", 1)[0] else ("", "", value)
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise SystemExit(f"--endpoint {value!r}: need an http://HOST:PORT URL")
        if not args.allow_remote and not _is_loopback(parts.hostname):
            raise SystemExit(f"--endpoint {value!r}: not a loopback address (pass --allow-remote to insist)")
        targets.append(Target(unique(name or parts.netloc), url.rstrip("/")))
    return targets


def prepare_targets(
    args: argparse.Namespace, clients: BotoClients, targets: Sequence[Target], ops: Sequence[Operation]
) -> set[tuple[str, str]]:
    """Create the fixtures, then send every raw request once: (endpoint, op) pairs that fail are skipped."""
    skip: set[tuple[str, str]] = set()
    for target in targets:
        if not args.no_setup:
            try:
                setup_fixtures(clients, target)
            except Exception as exc:  # the probes below show what this costs
                print(f"[setup] {target.name}: failed, {type(exc).__name__}: {exc}", file=sys.stderr)
        for op in ops:
            request = build_request(target, op, (args.access_key, args.secret_key), args.region)
            try:
                status, body = asyncio.run(probe(target, request))
            except (OSError, EOFError, ValueError, TimeoutError) as exc:
                status, body = 0, f"{type(exc).__name__}: {exc}".encode()
            note = f"HTTP {status}, {len(body)} bytes"
            if not 200 <= status < 300:
                skip.add((target.name, op.name))
                note += f": {' '.join(body[:200].decode(errors='replace').split())} -> skipped"
            print(f"[probe] {target.name} {op.name}: {note}", file=sys.stderr)
    return skip


def measure(
    args: argparse.Namespace,
    pool: ClientPool | None,
    clients: BotoClients,
    target: Target,
    op: Operation,
    mode: str,
) -> Tally:
    """One measurement: warm-up, then ``args.duration`` seconds of load on ``target``."""
    warm_ns = time.monotonic_ns() + DISPATCH_DELAY_NS + int(args.warmup * 1e9)
    end_ns = warm_ns + int(args.duration * 1e9)
    if mode == "client":
        tally = run_client_bound(clients, target, op, args.client_threads, warm_ns, end_ns)
        tally.response_bytes = None  # boto3 does not tell
        return tally
    assert pool is not None
    request = build_request(target, op, (args.access_key, args.secret_key), args.region)  # fresh signature
    job = Job(target.host, target.port, request, args.connections, warm_ns, end_ns, args.use_uvloop)
    return pool.run(job, target)


def _uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def run(args: argparse.Namespace) -> int:
    keys = (args.access_key, args.secret_key)
    modes = ["server", "client"] if args.mode == "both" else [args.mode]
    use_uvloop = args.use_uvloop
    ops = [OPERATIONS[name] for name in args.ops]
    clients = BotoClients(keys, args.region)
    runs: list[Measurement] = []
    with contextlib.ExitStack() as stack:
        # Fork the client processes first, before any server or boto3 client exists.
        pool = stack.enter_context(ClientPool(args.client_procs)) if "server" in modes else None
        workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="taskvpc-bench-"))
        servers = stack.enter_context(Servers(workdir, keys))
        targets = _resolve_targets(args, servers)
        skip = prepare_targets(args, clients, targets, ops)
        per_measurement = args.warmup + args.duration + DISPATCH_DELAY_NS / 1e9
        count = args.repeat * len(modes) * len(ops) * len(targets) - len(skip) * args.repeat * len(modes)
        print(
            f"[plan] {count} measurements x {per_measurement:.1f}s ≈ {count * per_measurement / 60:.1f} min",
            file=sys.stderr,
        )
        for rep in range(args.repeat):
            order = targets[rep % len(targets) :] + targets[: rep % len(targets)]  # rotate positions
            for op in ops:
                for mode in modes:
                    for target in order:
                        if (target.name, op.name) in skip:
                            continue
                        tally = measure(args, pool, clients, target, op, mode)
                        m = summarize(rep, mode, op.name, target, args.duration, tally)
                        runs.append(m)
                        print(
                            f"[{rep + 1}/{args.repeat}] {mode:6} {op.name:24} {target.name:12} "
                            f"{m.ops_per_s:9,.0f} ops/s  p50 {_fmt(m.p50_ms, 2):>6} ms  "
                            f"p99 {_fmt(m.p99_ms, 2):>6} ms  errors {m.errors}  "
                            f"server CPU {_fmt(m.server_cpu_pct, 0)}%  "
                            f"client CPU {_fmt(m.client_cpu_pct, 0)}%  other load {_fmt(m.other_cpu_pct, 0)}%",
                            file=sys.stderr,
                        )
    names = [t.name for t in targets]
    rows = aggregate(runs)
    ratio_rows = ratios(rows, names) if len(names) > 1 else []
    header = (
        f"Median of {args.repeat} x {args.duration:g}s per cell; server-bound: {args.connections} connections over "
        f"{args.client_procs} client process(es), pre-signed raw HTTP/1.1 keep-alive"
        f"{' (uvloop)' if use_uvloop else ''}; client-bound: {args.client_threads} boto3 thread(s). "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}."
    )
    print(markdown(rows, ratio_rows, header))
    if args.json:
        doc = {
            "config": {k: v for k, v in vars(args).items() if k not in ("secret_key",)},
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "uvloop": use_uvloop,
            },
            "endpoints": {t.name: t.url for t in targets},
            "summary": rows,
            "ratios": ratio_rows,
            "runs": [asdict(r) for r in runs],
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def terminate(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
