"""The agent that ``taskvpc up`` runs beside the control plane on the same host, as a child process.

It is the same program as ``taskvpc agent`` and talks to the control plane only over HTTP. It dies with
``taskvpc up`` (PR_SET_PDEATHSIG), so a restarted ``up`` never finds a second agent running; the task
processes it supervised keep running and the next agent adopts them.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

from taskvpc.cli.config import Credentials

_PR_SET_PDEATHSIG = 1


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
    return subprocess.Popen(command, env=env, preexec_fn=_die_with_parent)


def stop_local_agent(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
