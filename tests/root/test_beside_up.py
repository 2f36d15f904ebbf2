"""A root test flow beside a running `taskvpc up`: both work, and the first one's task keeps serving.

This is "``make up`` in one terminal, ``make test`` in another". The resident `taskvpc up` stands for the
user's: it runs in a namespace of its own (``tvq<hex>``, standing for the root namespace, where
``make up`` runs) with a task serving the sample page. Meanwhile the test does what a root test does, in
the module's throwaway namespace with another prefix: `taskvpc up`, a task in the same default VPC
(same CIDR, maybe the same address), the page from the host, SIGTERM and `taskvpc down`, and that host
as before. The resident's namespace (links, routes, nft tables), its prefix's namespaces, cgroups and
mounts stay exactly as they were throughout, and its task still serves afterwards.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.root import hostcheck
from tests.root.test_teardown import differences, down, settled_equal, snapshot, stop_up
from tests.root.upserver import RootServer, clean_up, fetch, run_sample_tasks
from tests.support import hostns

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: real namespaces, links and processes"),
]


def _lines(*command: str) -> list[str]:
    return sorted(subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines())


def view(server: RootServer) -> dict[str, list[str]]:
    """What belongs to ``server``: its namespace's links, routes and tables (entered), and its prefix's
    named namespaces, cgroups and mounts (machine-wide)."""
    with server.inside():
        local = {
            "links": [line.split()[0] for line in _lines("ip", "-br", "link")],
            "routes": _lines("ip", "route"),
            "nft": _lines("nft", "list", "tables"),
            "forwarding": [Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()],
        }
    return {
        **local,
        "netns": hostcheck.namespaces(server.prefix),
        "cgroups": [str(d) for d in hostcheck.cgroups(server.prefix)],
        "mounts": hostcheck.mounts_under(server.state_dir),
    }


def task_ip(server: RootServer, arn: str) -> str:
    [task] = server.client("ecs").describe_tasks(cluster="default", tasks=[arn])["tasks"]
    details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
    return str(details["privateIPv4Address"])


@pytest.fixture()
def resident(tmp_path: Path) -> Iterator[RootServer]:
    name = hostns.create("tvq")
    server = RootServer(tmp_path / "resident", "tvy" + secrets.token_hex(2), name)
    try:
        yield server
    finally:
        clean_up(server)
        hostns.delete(name)


@pytest.fixture()
def visitor(tmp_path: Path) -> Iterator[RootServer]:
    server = RootServer(tmp_path / "visitor", "tvz" + secrets.token_hex(2))
    try:
        yield server
    finally:
        clean_up(server)


def test_a_root_test_flow_beside_a_running_up(resident: RootServer, visitor: RootServer) -> None:
    resident.start()
    with resident.inside():
        [resident_task] = run_sample_tasks(resident)
        resident_ip = task_ip(resident, resident_task)
        assert "Amazon ECS Sample App" in fetch(f"http://{resident_ip}/")
    resident_before = view(resident)
    assert resident_before["netns"] and resident_before["cgroups"]
    # a container's overlay root lives in its supervisor's own mount namespace (runtime/mountns.py)
    assert resident_before["mounts"] == []

    # the root test's flow, in this module's namespace
    before = snapshot()
    visitor.start()
    [visitor_task] = run_sample_tasks(visitor)
    assert "Amazon ECS Sample App" in fetch(f"http://{task_ip(visitor, visitor_task)}/")
    assert view(resident) == resident_before  # nothing of the visitor in the resident's world
    with resident.inside():
        assert "Amazon ECS Sample App" in fetch(f"http://{resident_ip}/")
    stop_up(visitor, signal.SIGTERM)
    result = down(visitor)
    assert result.returncode == 0, result.stderr
    assert f"prefix {visitor.prefix}: 1 task(s)" in result.stderr
    after = settled_equal(before)
    assert after == before, differences(before, after)

    # the resident: untouched, still serving, its task still RUNNING
    assert view(resident) == resident_before
    with resident.inside():
        assert "Amazon ECS Sample App" in fetch(f"http://{resident_ip}/")
        [task] = resident.client("ecs").describe_tasks(cluster="default", tasks=[resident_task])["tasks"]
    assert (task["lastStatus"], task["desiredStatus"]) == ("RUNNING", "RUNNING")
    assert "Traceback" not in resident.log_path.read_text()
