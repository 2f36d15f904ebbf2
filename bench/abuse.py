#!/usr/bin/env python3
"""Abuse bench: keyless peers try to exhaust taskvpc while a signed client measures its latency.

The attack (issue #12, "cheap before authenticated"), all at once against one ``taskvpc up``:

* ``--slow`` slowloris clients: each sends a request line and then one header byte a second, and
  connects again once the server closes it (it must, after its head timeout: 408);
* ``--oversize`` clients each sending a ``--header-mib`` header that never ends (431 after 32 KiB);
* ``--bodies`` clients each sending an unsigned ``--body-mib`` form body, alternately with a
  ``Content-Length`` (413 before a byte of it is read) and chunked (413 once past the limit).

Meanwhile one client sends a signed ECS ``ListClusters`` every 20 ms on a keep-alive connection and
records each answer's latency; the server's RSS is sampled every 50 ms. The attackers run in a child
process, so their own CPU does not land in the measured client's latencies.

    .venv/bin/python bench/abuse.py                 # starts 'taskvpc up --no-agent' on a free port
    .venv/bin/python bench/abuse.py --duration 30 --json out.json

Done when (issue #12): p99 < 50 ms and peak RSS < 200 MiB at 200 slow, 20 oversize, 4 bodies.
``tests/integration/test_transport_limits.py`` runs a shorter round of the same attack.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from taskvpc.wire import sigv4  # noqa: E402
from taskvpc.wire.http import HttpRequest  # noqa: E402

ACCESS_KEY_ID = "AKIABENCHABUSE000001"
SECRET_ACCESS_KEY = "taskvpc-abuse-bench-secret-00000000000000"
MIB = 1024 * 1024


@dataclass
class Attack:
    slow: int = 200
    oversize: int = 20
    header_mib: int = 20
    bodies: int = 4
    body_mib: int = 16
    duration: float = 15.0  # measured seconds, after a warm-up in which every attacker connects
    warmup: float = 2.0


@dataclass
class Result:
    signed_requests: int
    signed_errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    rss_start_mib: float
    rss_peak_mib: float
    attacker_answers: dict[str, int] = field(default_factory=dict)  # "slow 408" -> count, ...
    slow_closed_after_s: float | None = None  # median time from connect to the server closing

    def summary(self) -> str:
        closed = f"{self.slow_closed_after_s:.1f} s" if self.slow_closed_after_s is not None else "never"
        return (
            f"signed ListClusters: {self.signed_requests} requests, {self.signed_errors} errors, "
            f"p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, max {self.max_ms:.1f} ms\n"
            f"server RSS: {self.rss_start_mib:.0f} MiB at start, peak {self.rss_peak_mib:.0f} MiB\n"
            f"attackers were answered: {dict(sorted(self.attacker_answers.items()))}\n"
            f"slow clients closed by the server after {closed} (median)"
        )


# --------------------------------------------------------------------------------------------------
# Attackers (in a child process)


async def _status_of(reader: asyncio.StreamReader) -> str:
    try:
        line = await asyncio.wait_for(reader.readline(), timeout=30)
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return "reset"
    parts = line.split()
    return parts[1].decode() if len(parts) > 1 else "closed"


async def _slow_client(port: int, until: float, answers: Counter[str], closed_after: list[float]) -> None:
    while time.monotonic() < until:
        started = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            answers["slow connect-failed"] += 1
            await asyncio.sleep(1)
            continue
        reader_task = asyncio.ensure_future(_status_of(reader))
        try:
            writer.write(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            while not reader_task.done() and time.monotonic() < until:
                writer.write(b"a")
                await writer.drain()
                await asyncio.wait([reader_task], timeout=1.0)
        except OSError:
            pass
        if reader_task.done():
            answers[f"slow {reader_task.result()}"] += 1
            closed_after.append(time.monotonic() - started)
        else:
            reader_task.cancel()
        writer.close()


async def _flood(port: int, until: float, answers: Counter[str], kind: str, mib: int, chunked: bool) -> None:
    block = b"a" * 65536
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            answers[f"{kind} connect-failed"] += 1
            await asyncio.sleep(0.2)
            continue
        reader_task = asyncio.ensure_future(_status_of(reader))
        if kind == "oversize":
            writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Huge: ")
        else:
            framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % (mib * MIB)
            writer.write(
                b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n" + framing + b"\r\n\r\n"
            )
        chunk = b"%x\r\n%s\r\n" % (len(block), block) if chunked else block
        with contextlib.suppress(OSError):
            for _ in range(mib * 16):
                if reader_task.done():
                    break
                writer.write(chunk)
                await writer.drain()
        answers[f"{kind}{' chunked' if chunked else ''} {await reader_task}"] += 1
        writer.close()
        chunked = not chunked if kind == "body" else chunked


async def _attack(port: int, attack: Attack, until: float) -> tuple[dict[str, int], list[float]]:
    answers: Counter[str] = Counter()
    closed_after: list[float] = []
    jobs = [_slow_client(port, until, answers, closed_after) for _ in range(attack.slow)]
    jobs += [
        _flood(port, until, answers, "oversize", attack.header_mib, False) for _ in range(attack.oversize)
    ]
    jobs += [_flood(port, until, answers, "body", attack.body_mib, i % 2 == 1) for i in range(attack.bodies)]
    await asyncio.gather(*jobs)
    return dict(answers), closed_after


def _attacker_main(port: int, attack: Attack, until_wall: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    until = time.monotonic() + (until_wall - time.time())
    out.put(asyncio.run(_attack(port, attack, until)))


# --------------------------------------------------------------------------------------------------
# The measured client and the RSS sampler (in this process)


def _signed_list_clusters(port: int) -> HttpRequest:
    body = b"{}"
    request = HttpRequest(
        "POST",
        "/",
        "",
        {
            "host": f"127.0.0.1:{port}",
            "content-type": "application/x-amz-json-1.1",
            "x-amz-target": "AmazonEC2ContainerServiceV20141113.ListClusters",
        },
        body,
    )
    return sigv4.sign_headers(
        request,
        access_key_id=ACCESS_KEY_ID,
        secret=SECRET_ACCESS_KEY,
        region="us-east-1",
        service="ecs",
        now=datetime.now(UTC),
    )


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(port: int, server_pid: int, attack: Attack) -> Result:
    """Run the attack against a server on ``port`` (its process ``server_pid``) and measure."""
    until_wall = time.time() + attack.warmup + attack.duration
    queue: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()  # type: ignore[type-arg]
    attacker = multiprocessing.get_context("spawn").Process(
        target=_attacker_main, args=(port, attack, until_wall, queue), daemon=True
    )
    rss_start = rss_mib(server_pid)
    attacker.start()
    latencies: list[float] = []
    errors = 0
    peak = rss_start
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    measure_from = time.time() + attack.warmup
    next_sample = 0.0
    while time.time() < until_wall:
        now = time.time()
        if now >= next_sample:
            peak = max(peak, rss_mib(server_pid))
            next_sample = now + 0.05
        if now < measure_from:
            time.sleep(0.02)
            continue
        signed = _signed_list_clusters(port)
        started = time.perf_counter()
        try:
            connection.request(signed.method, signed.path, signed.body, signed.headers)
            response = connection.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        elapsed = (time.perf_counter() - started) * 1000
        if ok:
            latencies.append(elapsed)
        else:
            errors += 1
        time.sleep(0.02)
    connection.close()
    answers, closed_after = queue.get(timeout=120)
    attacker.join(timeout=30)
    peak = max(peak, rss_mib(server_pid))
    latencies.sort()

    def pick(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

    closed_after.sort()
    return Result(
        signed_requests=len(latencies) + errors,
        signed_errors=errors,
        p50_ms=pick(0.50),
        p99_ms=pick(0.99),
        max_ms=latencies[-1] if latencies else float("nan"),
        rss_start_mib=rss_start,
        rss_peak_mib=peak,
        attacker_answers=answers,
        slow_closed_after_s=closed_after[len(closed_after) // 2] if closed_after else None,
    )


# --------------------------------------------------------------------------------------------------
# A server to attack


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def started_server() -> Iterator[tuple[int, int]]:
    """``taskvpc up --no-agent`` on a free loopback port with the bench's keys; yields (port, pid)."""
    state = Path(tempfile.mkdtemp(prefix="taskvpc-abuse-"))
    port = _free_port()
    env = {
        **os.environ,
        "TASKVPC_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "TASKVPC_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "TASKVPC_ACCOUNT_ID": "123456789012",
    }
    taskvpc = Path(sys.executable).with_name("taskvpc")
    command = [str(taskvpc), "up", "--no-agent", "--port", str(port), "--state-dir", str(state / "state")]
    log = open(state / "server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_taskvpc/health", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((state / "server.log").read_text()) from None
                time.sleep(0.05)
        yield port, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
        log.close()
        shutil.rmtree(state, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults = Attack()
    for name in ("slow", "oversize", "header_mib", "bodies", "body_mib"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    parser.add_argument("--duration", type=float, default=defaults.duration)
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args()
    attack = Attack(
        slow=args.slow,
        oversize=args.oversize,
        header_mib=args.header_mib,
        bodies=args.bodies,
        body_mib=args.body_mib,
        duration=min(args.duration, 600.0),
    )
    print(f"attack: {asdict(attack)}", flush=True)
    with started_server() as (port, pid):
        result = measure(port, pid, attack)
    print(result.summary())
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2))
    met = result.p99_ms < 50 and result.rss_peak_mib < 200 and result.signed_errors == 0
    print("done-when (p99 < 50 ms, RSS < 200 MiB, no signed error):", "met" if met else "NOT met")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
