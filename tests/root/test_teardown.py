"""Stopping `taskvpc up` and `taskvpc down`, for real: the host afterwards is the host before.

Each test snapshots the host (`ip netns`, `ip link`, `ip route`, `nft list tables`, /proc/mounts, the
cgroup tree), runs `taskvpc up` with a test-unique prefix and a task, stops `up` with a signal, runs
`taskvpc down`, and requires the same snapshot again.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskvpc.agent.runtime.procs import alive, proc_start_time
from tests.integration.server import VENV_BIN
from tests.root import hostcheck
from tests.root.upserver import (
    RootServer,
    container_processes,
    kill_task_shims,
    run_sample_tasks,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: real namespaces, links and processes"),
]

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _run(*command: str) -> list[str]:
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()


def _cgroup_tree() -> list[str]:
    """Top-level cgroups of every hierarchy, and everything below the ones taskvpc names."""
    tops = [CGROUP_ROOT] if (CGROUP_ROOT / "cgroup.controllers").exists() else list(CGROUP_ROOT.iterdir())
    found = []
    for top in tops:
        for entry in top.iterdir() if top.is_dir() else ():
            if entry.is_dir():
                found.append(str(entry))
                if "taskvpc" in entry.name:
                    found.extend(str(d) for d in entry.rglob("*") if d.is_dir())
    return sorted(found)


def snapshot() -> dict[str, list[str]]:
    links = [re.sub(r"^\d+: ", "", line).split()[0] for line in _run("ip", "-o", "link")]
    return {
        "netns": sorted(_run("ip", "netns", "list")),
        "links": sorted(links),
        "routes": sorted(_run("ip", "route")),
        "nft": sorted(_run("nft", "list", "tables")),
        "mounts": sorted(Path("/proc/mounts").read_text().splitlines()),
        "cgroups": _cgroup_tree(),
    }


def settled_equal(before: dict[str, list[str]], timeout: float = 10) -> dict[str, list[str]]:
    """The kernel frees namespaces asynchronously: poll until the host looks as before (or time out)."""
    deadline = time.monotonic() + timeout
    after = snapshot()
    while after != before and time.monotonic() < deadline:
        time.sleep(0.1)
        after = snapshot()
    return after


def differences(before: dict[str, list[str]], after: dict[str, list[str]]) -> dict[str, object]:
    return {
        key: {
            "gone": sorted(set(before[key]) - set(after[key])),
            "new": sorted(set(after[key]) - set(before[key])),
        }
        for key in before
        if before[key] != after[key]
    }


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[RootServer]:
    prefix = "tvd" + secrets.token_hex(2)
    up = RootServer(tmp_path / "state", prefix)
    try:
        yield up
    finally:  # whatever the test left: by PID and prefix, as the other root tests do
        up.stop()
        kill_task_shims(up.state_dir)
        hostcheck.unmount_under(up.state_dir)
        hostcheck.scrub(prefix)


def down(server: RootServer, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(VENV_BIN / "taskvpc"),
            "down",
            "--state-dir",
            str(server.state_dir),
            "--net-prefix",
            server.prefix,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def run_task(server: RootServer) -> str:
    """One sample task in a subnet of the local agent's AZ, RUNNING."""
    [arn] = run_sample_tasks(server)
    return arn


def stop_up(server: RootServer, signum: int) -> str:
    assert server.process is not None
    server.process.send_signal(signum)
    assert server.process.wait(timeout=30) == 0
    server.process = None
    return server.log_path.read_text()


def processes_naming(path: Path) -> list[int]:
    """Live processes whose command line names ``path`` (shims name their container's directory)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            with contextlib.suppress(OSError):
                if str(path).encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
    return found


def assert_quiet(log: str) -> None:
    for bad in ("Traceback", "Exception in ASGI application", "CancelledError", "starting a new one"):
        assert bad not in log, log


def test_sigint_keeps_tasks_then_down_restores_the_host(server: RootServer) -> None:
    before = snapshot()
    server.start()
    arn = run_task(server)
    processes = [(main, proc_start_time(main)) for _, main in container_processes(server.state_dir)]
    assert len(processes) == 1

    log = stop_up(server, signal.SIGINT)
    assert_quiet(log)
    assert "1 task(s) keep running for the next 'taskvpc up' to adopt" in log
    assert f"down --state-dir {server.state_dir} --net-prefix {server.prefix}" in log
    assert all(alive(pid, start) for pid, start in processes), "tasks stay for adoption by default"
    assert hostcheck.namespaces(server.prefix), "their networks too"

    result = down(server)
    assert result.returncode == 0, result.stderr
    assert f"prefix {server.prefix}: 1 task(s)" in result.stderr
    assert "1 task(s) recorded STOPPED" in result.stderr
    assert not any(alive(pid, start) for pid, start in processes)
    assert processes_naming(server.state_dir) == []
    after = settled_equal(before)
    assert after == before, differences(before, after)
    assert server.state_dir.exists()

    # the control plane's record agrees: a new `up` shows the task STOPPED and does not start it again
    server.log_path.write_text("")
    server.start()
    ecs = server.client("ecs")
    [task] = ecs.describe_tasks(cluster="default", tasks=[arn])["tasks"]
    assert (task["lastStatus"], task["desiredStatus"]) == ("STOPPED", "STOPPED")
    assert task["stoppedReason"] == "taskvpc down: stopped on the host"
    time.sleep(1.0)
    assert [n for n in hostcheck.namespaces(server.prefix) if "-t-" in n] == []
    assert "task(s) keep running" not in stop_up(server, signal.SIGINT)
    assert down(server).returncode == 0

    again = down(server, "--purge")  # nothing left to remove, and then the state dir goes
    assert again.returncode == 0, again.stderr
    assert "nothing removed" in again.stderr
    assert not server.state_dir.exists()


def test_down_finds_everything_with_the_state_dir_damaged(server: RootServer) -> None:
    """With every file of the agent's state deleted under a running task (pid files, runc state, the
    agent's registration), down still finds the task by its cgroup, namespace and mounts."""
    before = snapshot()
    server.start()
    run_task(server)
    processes = [(main, proc_start_time(main)) for _, main in container_processes(server.state_dir)]
    assert len(processes) == 1
    log = stop_up(server, signal.SIGTERM)
    assert_quiet(log)
    agent_dir = server.state_dir / "agent"
    for directory, dirs, files in os.walk(agent_dir):
        dirs[:] = [d for d in dirs if not os.path.ismount(Path(directory, d))]  # not into a container root
        for name in files:
            (Path(directory) / name).unlink()
    assert not list(server.state_dir.glob("agent/tasks/*/*/pid"))

    result = down(server)
    assert result.returncode == 0, result.stderr
    assert not any(alive(pid, start) for pid, start in processes)
    assert processes_naming(server.state_dir) == []
    after = settled_equal(before)
    assert after == before, differences(before, after)


def test_cleanup_on_exit_and_a_second_agent_of_the_prefix(server: RootServer, tmp_path: Path) -> None:
    before = snapshot()
    server.start()
    run_task(server)
    # a second agent of the same prefix (another state dir) would remove the first one's tasks: refused
    other = subprocess.run(
        [
            str(VENV_BIN / "taskvpc"),
            "agent",
            "--net-prefix",
            server.prefix,
            "--state-dir",
            str(tmp_path / "b"),
        ],
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert other.returncode == 3
    assert f"an agent with prefix {server.prefix!r} is running" in other.stderr
    refused = down(server)
    assert refused.returncode == 1 and "stop 'taskvpc up'" in refused.stderr
    assert hostcheck.namespaces(server.prefix)

    # stopping `up --cleanup-on-exit` is `taskvpc down`: a new `up` with the flag adopts the task first
    assert_quiet(stop_up(server, signal.SIGINT))
    start_with_cleanup(server)
    log = stop_up(server, signal.SIGTERM)
    assert_quiet(log)
    assert "--cleanup-on-exit: 1 task(s)" in log
    after = settled_equal(before)
    assert after == before, differences(before, after)


def start_with_cleanup(server: RootServer) -> None:
    command = [
        str(VENV_BIN / "taskvpc"),
        "up",
        "--cleanup-on-exit",
        "--port",
        str(server.port),
        "--state-dir",
        str(server.state_dir),
        "--net-prefix",
        server.prefix,
    ]
    server.log_path.write_text("")
    with open(server.log_path, "ab") as log:
        server.process = subprocess.Popen(command, env=server.env(), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while "adopted" not in server.log_path.read_text():
        assert time.monotonic() < deadline, server.log_path.read_text()
        time.sleep(0.1)
