"""Reachability probes: a TCP connect from a task's network namespace, as the console's matrix asks.

Each answer's ``probes`` section (``taskvpc/agentapi/probes.py``) lists the probes the control plane
wants; a probe id is run once (the section keeps listing it until its result arrives). The socket is made
inside the task's namespace on a short-lived thread (``netns.entered`` switches only that thread, and a
socket keeps the namespace it was made in), then connected from the event loop with a timeout, so the
packets leave through the task's own ENI and meet the same nftables security groups as the task's traffic.
Results go out as ``probeResults`` reports, batched per answer.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable

from taskvpc.agent.drivers import netns
from taskvpc.agentapi.answer import DesiredState
from taskvpc.agentapi.probes import PROBES, TIMEOUT, Probe, ProbeResult

log = logging.getLogger(__name__)

REMEMBER = 4_096  # probe ids already run (a later answer may still list them until the result lands)


def _socket_in(netns_path: str, family: int) -> socket.socket:
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with netns.entered(fd):
            sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    finally:
        os.close(fd)
    sock.setblocking(False)
    return sock


async def connect_from(netns_path: str, address: str, port: int, timeout: float = TIMEOUT) -> tuple[str, str]:
    """(outcome, detail) of one TCP connect to ``address:port`` from the namespace at ``netns_path``."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        sock = await asyncio.to_thread(_socket_in, netns_path, family)
    except OSError as error:
        return "error", f"no namespace: {error.strerror}"
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (address, port)), timeout)
        return "connected", ""
    except TimeoutError:
        return "timeout", ""
    except ConnectionRefusedError:
        return "refused", ""
    except OSError as error:
        if error.errno == errno.ETIMEDOUT:
            return "timeout", ""
        return "error", error.strerror or str(error)
    finally:
        sock.close()


class Prober:
    """Runs the probes of each answer it is given, once per id; ``send`` reports the results."""

    def __init__(
        self,
        netns_path: Callable[[str], str | None],
        send: Callable[[tuple[ProbeResult, ...]], Awaitable[object]],
    ) -> None:
        self._netns_path = netns_path
        self._send = send
        self._seen: dict[str, None] = {}  # insertion-ordered, bounded
        self._running: set[asyncio.Task[None]] = set()

    def submit(self, answer: DesiredState) -> None:
        fresh = [p for p in answer[PROBES] if p.probe_id not in self._seen]
        for probe in fresh:
            self._seen[probe.probe_id] = None
        while len(self._seen) > REMEMBER:
            del self._seen[next(iter(self._seen))]
        if fresh:
            task = asyncio.get_running_loop().create_task(self._run(fresh))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _one(self, probe: Probe) -> ProbeResult:
        started = time.monotonic()
        path = self._netns_path(probe.task_id)
        if path is None or not os.path.exists(path):
            outcome, detail = "error", "the task has no network namespace on this host"
        else:
            outcome, detail = await connect_from(path, probe.address, probe.port)
        return ProbeResult(probe.probe_id, outcome, round((time.monotonic() - started) * 1000, 1), detail)

    async def _run(self, probes: list[Probe]) -> None:
        results = await asyncio.gather(*(self._one(p) for p in probes))
        try:
            await self._send(tuple(results))
        except Exception as error:  # the control plane gives up on them; the console can ask again
            log.warning("probe results not delivered (%s)", error)

    async def close(self) -> None:
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)
