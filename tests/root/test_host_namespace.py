"""An agent's host is the network namespace it starts in; two instances in one namespace coexist.

The test makes a throwaway namespace ``tvn<hex>`` and starts two `taskvpc up` in it (``nsenter --net``),
with different prefixes, state dirs and control-plane ports. Its own HTTP calls are made with this
thread switched into that namespace (a socket lives where it was made). The first instance's host link
and routes land in the throwaway namespace and the links and routes of the namespace the test runs in
(the module's own, tests/root/conftest.py) do not change; the
second instance's host access would collide with the first's (same default VPC CIDR, same link address):
it says so in one line naming the first one's link, and its tasks still run and reach each other.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.root import hostcheck
from tests.root.upserver import RootServer, kill_task_shims, run_sample_tasks

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: real namespaces, links and processes"),
]

if os.geteuid() == 0:
    from taskvpc.agent.drivers import netns


def root_view() -> tuple[list[str], list[str]]:
    links = sorted(re.sub(r"^\d+: ", "", line).split()[0] for line in _lines("ip", "-o", "link"))
    return links, sorted(_lines("ip", "route"))


def _lines(*command: str) -> list[str]:
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[tuple[str, RootServer, RootServer]]:
    name = "tvn" + secrets.token_hex(3)
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    servers = [RootServer(tmp_path / p, p + secrets.token_hex(2), name) for p in ("tva", "tvb")]
    try:
        yield name, servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()
            kill_task_shims(server.state_dir)
            hostcheck.unmount_under(server.state_dir)
            hostcheck.scrub(server.prefix)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def run_two(server: RootServer) -> list[str]:
    """Two sample tasks in the local agent's AZ; their private IPs once RUNNING."""
    arns = run_sample_tasks(server, count=2)
    ips = []
    for task in server.client("ecs").describe_tasks(cluster="default", tasks=arns)["tasks"]:
        details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
        ips.append(details["privateIPv4Address"])
    return ips


def get(ip: str, timeout: float = 15) -> str:
    """An HTTP GET of / on port 80 from this thread's namespace."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((ip, 80), timeout=2) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                return s.makefile("rb").read().decode(errors="replace")
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def task_namespaces(prefix: str) -> list[str]:
    return [n for n in hostcheck.namespaces(prefix) if n.startswith(f"{prefix}-t-")]


def test_two_instances_in_one_namespace(world: tuple[str, RootServer, RootServer]) -> None:
    name, first, second = world
    before = root_view()
    fd = netns.open_ns(name)
    assert fd is not None
    try:
        with netns.entered(fd):
            first.start()
            first_ips = run_two(first)
            # the host link and the VPC routes are in the namespace the agent started in
            links = _lines("ip", "-br", "link")
            assert any(re.match(rf"{first.prefix}h[0-9a-f]+@", line) for line in links), links
            assert any("via 169.254.100.2" in line for line in _lines("ip", "route"))
            assert "Amazon ECS Sample App" in get(first_ips[0])  # host access works there
            first_view = (sorted(_lines("ip", "-br", "link")), sorted(_lines("ip", "route")))

            second.start()
            second_ips = run_two(second)
            # the second instance touched none of the first's links and routes (its own underlay bridge and
            # port are new); its host access still works
            own_links = [line for line in _lines("ip", "-br", "link") if not line.startswith(second.prefix)]
            assert (sorted(own_links), sorted(_lines("ip", "route"))) == first_view
            assert "Amazon ECS Sample App" in get(first_ips[0])
        assert root_view() == before  # nothing of either instance in the root namespace

        log = second.log_path.read_text()
        said = [line for line in log.splitlines() if "no host access (tasks still run)" in line]
        assert len(said) == 1, log
        assert re.search(
            rf"169\.254\.100\.1 is already on interface {first.prefix}h[0-9a-f]+ \(vpc-", said[0]
        )
        assert "HostRouteConflict" not in log and "Traceback" not in log

        # the second instance's tasks reach each other, from one task's own namespace to the other
        [own] = [n for n in task_namespaces(second.prefix) if n][:1] or [None]
        assert own is not None and len(task_namespaces(second.prefix)) == 2
        task_fd = netns.open_ns(own)
        assert task_fd is not None
        try:
            with netns.entered(task_fd):
                pages = [get(ip) for ip in second_ips]
        finally:
            os.close(task_fd)
        assert all("Amazon ECS Sample App" in page for page in pages)
    finally:
        os.close(fd)
