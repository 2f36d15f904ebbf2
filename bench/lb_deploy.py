"""Rolling deploys of a load-balanced awsvpc service under a steady request rate (part of bench/lb.py).

A 4-task service is registered in one target group behind the ALB (HTTP) and one behind the NLB (TCP).
While a paced client sends ``rate`` requests/s through one LB (each on a new connection, ``threads``
threads), the service is redeployed (``forceNewDeployment``) ``deploys`` times, one after another; the
client runs from before the first deploy to after the last one. Every request's outcome is counted by
kind, so "zero failures" / "zero resets" are counts, not impressions: ``ok`` (200 with a body), ``http
<code>``, ``refused`` (a RST to the SYN), ``reset`` (a RST later in the connection), ``timeout``,
``empty`` (closed without an answer), ``error <errno>``.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from taskvpc.agent.drivers import netns

# The namespace the load comes from: None for the host (through its access route); a task's namespace fd
# when the host has no route to the VPC (another `taskvpc up` holds the host link address), set by lb.py.
client_namespace: int | None = None


def connect(address: str, port: int, timeout: float) -> socket.socket:
    """A connection to ``address``:``port`` from the client's namespace (a socket keeps the namespace it
    was made in, so only its making needs the thread switched)."""
    if client_namespace is None:
        return socket.create_connection((address, port), timeout=timeout)
    with netns.entered(client_namespace):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


def outcome(address: str, port: int, timeout: float = 2.0) -> str:
    """What one GET / on a new connection came to (see the module docstring)."""
    try:
        with connect(address, port, timeout) as sock:
            sock.sendall(f"GET / HTTP/1.0\r\nHost: {address}\r\n\r\n".encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return f"error {errno.errorcode.get(exc.errno or 0, exc.errno)}"
    answer = b"".join(chunks)
    if not answer:
        return "empty"
    head, _, body = answer.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    status = parts[1].decode(errors="replace") if len(parts) > 1 else "?"
    return "ok" if status == "200" and body.strip() else f"http {status}"


@dataclass
class PacedClient:
    """``rate`` requests/s in total from ``threads`` threads, each on its own schedule (a late thread
    sends at once and does not make up what it missed beyond that: it never bursts)."""

    address: str
    port: int
    rate: float
    threads: int = 4
    outcomes: Counter[str] = field(default_factory=Counter)
    answered_by: Counter[str] = field(default_factory=Counter)
    started: float = 0.0
    stopped: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self.started = time.monotonic()
        self._workers = [threading.Thread(target=self._run, args=(i,)) for i in range(self.threads)]
        for worker in self._workers:
            worker.start()

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join()
        self.stopped = time.monotonic()

    def _run(self, index: int) -> None:
        period = self.threads / self.rate
        due = self.started + index * period / self.threads
        while not self._stop.is_set():
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            due = max(due + period, time.monotonic() - period)
            result = outcome(self.address, self.port)
            with self._lock:
                self.outcomes[result] += 1

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.outcomes)

    def summary(self) -> dict[str, Any]:
        total = sum(self.outcomes.values())
        seconds = self.stopped - self.started
        return {
            "requests": total,
            "seconds": round(seconds, 1),
            "requests/s": round(total / seconds, 1) if seconds else 0.0,
            "failed": total - self.outcomes["ok"],
            "outcomes": dict(self.outcomes),
        }


def describe(ecs: Any, service: str) -> dict[str, Any]:
    found: dict[str, Any] = ecs.describe_services(cluster="default", services=[service])["services"][0]
    return found


def settled(ecs: Any, service: str, count: int) -> bool:
    """One deployment left, COMPLETED, with ``count`` running tasks and nothing else running."""
    found = describe(ecs, service)
    [primary] = [d for d in found["deployments"] if d["status"] == "PRIMARY"]
    if len(found["deployments"]) != 1 or primary["rolloutState"] != "COMPLETED":
        return False
    if primary["runningCount"] != count:
        return False
    running = ecs.list_tasks(cluster="default", serviceName=service, desiredStatus="RUNNING")["taskArns"]
    return len(running) == count


def wait_settled(ecs: Any, service: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not settled(ecs, service, count):
        if time.monotonic() > deadline:
            found = describe(ecs, service)
            events = "\n".join(e["message"] for e in found["events"][:10])
            raise SystemExit(f"service {service} not settled within {timeout} s:\n{events}")
        time.sleep(0.2)


def rolling_deploys(
    ecs: Any, service: str, count: int, client: PacedClient, deploys: int, timeout: float = 120.0
) -> dict[str, Any]:
    """``deploys`` forced new deployments under ``client``'s load, one after another; each one's duration
    (UpdateService to one COMPLETED deployment with ``count`` tasks and no other task running) and the
    outcomes counted during it."""
    durations, per_deploy = [], []
    problem = None
    client.start()
    try:
        time.sleep(1.0)  # steady load before the first deploy
        for _ in range(deploys):
            before = client.snapshot()
            started = time.monotonic()
            ecs.update_service(cluster="default", service=service, forceNewDeployment=True)
            try:
                wait_settled(ecs, service, count, timeout)
            except SystemExit as exc:  # what the client saw until then still counts
                problem = str(exc)
                break
            durations.append(round(time.monotonic() - started, 2))
            during = client.snapshot() - before
            per_deploy.append(dict(during))
        time.sleep(1.0)  # and after the last one
    finally:
        client.stop()
    found = {"deploy seconds": durations, "outcomes per deploy": per_deploy, **client.summary()}
    return {**found, "problem": problem} if problem else found
