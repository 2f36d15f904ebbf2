"""`taskvpc up` as root with its local agent, for the root tests that drive the whole product."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskvpc.agent.runtime.procs import proc_start_time
from tests.integration.server import VENV_BIN, TaskvpcServer
from tests.root import hostcheck
from tests.support import hostns

REPO = Path(__file__).resolve().parents[2]


def container_processes(state_dir: Path) -> list[tuple[int, int]]:
    """(shim pid, container main pid) of every container the test's agent keeps a pid file for."""
    found = []
    for pid_file in state_dir.glob("agent/tasks/*/*/pid"):
        try:
            doc = json.loads(pid_file.read_text())
            found.append((int(doc["shimPid"]), int(doc["pid"])))
        except (OSError, ValueError, KeyError):
            continue
    return found


def is_our_shim(pid: int, state_dir: Path | None = None) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"taskvpc-shim" in cmdline and (state_dir is None or str(state_dir).encode() in cmdline)


def kill_task_shims(state_dir: Path) -> None:
    """Stop the containers this test's agent started (found by their pid files), by PID: SIGTERM to each
    shim, SIGKILL to each container's main process that outlives it (a container's PID 1 may ignore
    SIGTERM)."""
    targets = []
    for shim, main in container_processes(state_dir):
        if is_our_shim(shim, state_dir):
            targets.append((main, proc_start_time(main)))
            os.kill(shim, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(t is not None and proc_start_time(m) == t for m, t in targets):
        time.sleep(0.05)
    for main, started in targets:
        if started is not None and proc_start_time(main) == started:
            os.kill(main, signal.SIGKILL)


class RootServer(TaskvpcServer):
    """`taskvpc up` with its local agent, namespaced by a test-unique prefix.

    It runs in the network namespace the test is in (the module's throwaway one, tests/root/conftest.py),
    or, with ``netns``, in that named namespace: then its process starts there (``nsenter``) and the
    test talks to it inside ``with server.inside():`` (start() does so itself).
    """

    def __init__(
        self, state_dir: Path, prefix: str, netns: str | None = None, extra_args: tuple[str, ...] = ()
    ) -> None:
        super().__init__(state_dir)
        self.prefix = prefix
        self.netns = netns
        self.extra_args = extra_args  # more `taskvpc up` options (e.g. --runtime process)

    def inside(self) -> contextlib.AbstractContextManager[None]:
        """This thread in the server's namespace for the body (no switch without ``netns``)."""
        return hostns.entered(self.netns)

    def command_prefix(self) -> list[str]:
        """What puts a command into the server's namespace (nothing without ``netns``)."""
        return [] if self.netns is None else ["nsenter", f"--net=/run/netns/{self.netns}"]

    def start(self) -> RootServer:
        with self.inside():
            return self._start()

    def _start(self) -> RootServer:
        import urllib.error

        command = [
            *self.command_prefix(),
            str(VENV_BIN / "taskvpc"),
            "up",
            "--allow-reset",
            "--port",
            str(self.port),
            "--state-dir",
            str(self.state_dir),
            "--net-prefix",
            self.prefix,
            *self.extra_args,
        ]
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/_taskvpc/health", timeout=1):
                    break
            except (OSError, urllib.error.URLError):
                time.sleep(0.05)
        # registered and polling: an instance counts as connected from its agent's first poll on, and
        # RunTask before that fails placement with AGENT (seen on a loaded machine)
        ecs = self.client("ecs")
        while time.monotonic() < deadline:
            try:
                if _agent_connected(ecs):
                    return self
            except ecs.exceptions.ClusterNotFoundException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"no agent registered and connected:\n{self.log_path.read_text()}")


def _agent_connected(ecs: Any) -> bool:
    arns = ecs.list_container_instances(cluster="default")["containerInstanceArns"]
    if not arns:
        return False
    found = ecs.describe_container_instances(cluster="default", containerInstances=arns)
    return all(i["agentConnected"] for i in found["containerInstances"])


@pytest.fixture()
def root_server(tmp_path: Path) -> Iterator[RootServer]:
    prefix = "tvw" + secrets.token_hex(2)
    server = RootServer(tmp_path / "state", prefix)
    try:
        yield server.start()
    finally:
        left, mounted = clean_up(server)
        assert not left, f"left behind: {left}"
        assert not mounted, f"mounts left behind: {mounted}"


def clean_up(server: RootServer) -> tuple[list[str], list[str]]:
    """Remove whatever the test left of ``server``, by PID and prefix (its links in its namespace):
    (what could not be removed, the mounts that were still there)."""
    server.stop()
    kill_task_shims(server.state_dir)
    mounted = hostcheck.mounts_under(server.state_dir)
    hostcheck.unmount_under(server.state_dir)
    with server.inside():
        hostcheck.scrub(server.prefix)
        return hostcheck.wait_clean(server.prefix), mounted


def fetch(url: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return str(response.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def web_group(server: RootServer, name: str = "web") -> str:
    """A group in the default VPC open on tcp/80 to everyone (the host's requests come from 169.254.100.1)."""
    ec2 = server.client("ec2")
    group_id = str(ec2.create_security_group(GroupName=name, Description="sample page on 80")["GroupId"])
    ec2.authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        ],
    )
    return group_id


def run_sample_tasks(server: RootServer, count: int = 1) -> list[str]:
    """``count`` tasks of examples/linux-simple-web.json in the local agent's AZ (its default subnet there),
    open on tcp/80; their ARNs once RUNNING."""
    ecs, ec2 = server.client("ecs"), server.client("ec2")
    ecs.register_task_definition(**json.loads((REPO / "examples" / "linux-simple-web.json").read_text()))
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
        cluster="default",
        taskDefinition="linux-simple-web",
        count=count,
        networkConfiguration={
            "awsvpcConfiguration": {"subnets": [subnet["SubnetId"]], "securityGroups": [web_group(server)]}
        },
    )
    assert run["failures"] == []
    arns = [str(t["taskArn"]) for t in run["tasks"]]
    ecs.get_waiter("tasks_running").wait(cluster="default", tasks=arns, WaiterConfig={"Delay": 1})
    return arns


def container_pids(state_dir: Path) -> list[int]:
    """The main process of every container the test's agent runs (from the runtime's pid files)."""
    return [main for _, main in container_processes(state_dir)]
