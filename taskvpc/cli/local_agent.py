"""The agent that ``taskvpc up`` runs beside the control plane on the same host, as a child process.

It is the same program as ``taskvpc agent`` and talks to the control plane only over HTTP. It dies with
``taskvpc up`` (PR_SET_PDEATHSIG), so a restarted ``up`` never finds a second agent running; the task
processes it supervised keep running and the next agent adopts them. If the agent dies on its own (a
crash, a ``kill -9``), ``up`` starts a new one, which adopts the running tasks in the same way.

The agent runs in a session of its own: a Ctrl-C in ``up``'s terminal reaches only ``up``, which stops
the agent itself (:meth:`LocalAgent.stop`) and never restarts one while stopping.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from taskvpc.agent.prefix import EXIT_PREFIX_BUSY
from taskvpc.cli.config import Credentials

_PR_SET_PDEATHSIG = 1
FLOOR_TASK_ENIS = 1024
# What one awsvpc task costs this host at least, counted against the machine's memory: its network
# (namespace, veth pair, router port, firewall elements) and a supervised container (runc with the C
# supervisor: 1.3-1.7 MiB of MemAvailable per task at 5,000 running, bench/density.py; the process
# runtime's Python shims cost ~3.7 MiB, and then the memory itself is the limit, not this estimate).
TASK_MEMORY_BYTES = 2 << 20
log = logging.getLogger("taskvpc.up")


def machine_task_enis(meminfo: str = "/proc/meminfo") -> int:
    """The awsvpc tasks this host can hold by its memory: the local agent's default task-ENI limit, so the
    limit is the machine's own (a host has no EC2 ENI limit). Never below ``FLOOR_TASK_ENIS``."""
    try:
        with open(meminfo) as handle:
            total_kib = next(int(line.split()[1]) for line in handle if line.startswith("MemTotal:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return FLOOR_TASK_ENIS
    return max(FLOOR_TASK_ENIS, total_kib * 1024 // TASK_MEMORY_BYTES)


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def start_local_agent(
    endpoint: str, state_dir: Path, credentials: Credentials, region: str, extra_args: list[str]
) -> subprocess.Popen[bytes]:
    agent_dir = state_dir / "agent"
    agent_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "TASKVPC_ACCESS_KEY_ID": credentials.access_key_id,
        "TASKVPC_SECRET_ACCESS_KEY": credentials.secret_access_key,
    }
    command = [
        sys.executable,
        "-m",
        "taskvpc.agent.main",
        "--endpoint",
        endpoint,
        "--cluster",
        "default",
        "--state-dir",
        str(agent_dir),
        "--region",
        region,
        *extra_args,
    ]
    return subprocess.Popen(command, env=env, preexec_fn=_die_with_parent, start_new_session=True)


def stop_local_agent(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


class LocalAgent:
    """Keeps one local agent running until ``stop``; restarts it (after a pause) when it exits."""

    RESTART_DELAY = 0.5

    def __init__(
        self, endpoint: str, state_dir: Path, credentials: Credentials, region: str, extra_args: list[str]
    ) -> None:
        self._arguments = (endpoint, state_dir, credentials, region, extra_args)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.process = start_local_agent(*self._arguments)
        self._thread = threading.Thread(target=self._watch, name="local-agent", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stopping.is_set():
            code = self.process.wait()
            if self._stopping.wait(self.RESTART_DELAY):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                if code == EXIT_PREFIX_BUSY:  # it said why; another start would say the same
                    log.error("local agent (pid %s) cannot run here; not starting another", self.process.pid)
                    return
                log.warning("local agent (pid %s) exited with %s; starting a new one", self.process.pid, code)
                self.process = start_local_agent(*self._arguments)

    def stop(self) -> None:
        """Stop the agent (SIGTERM, SIGKILL after 15 s) and never start another; idempotent."""
        self._stopping.set()  # first, outside the lock: the watcher must not restart what we stop
        with self._lock:
            stop_local_agent(self.process)
        self._thread.join(timeout=5)
