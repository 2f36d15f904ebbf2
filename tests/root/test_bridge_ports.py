"""Bridge-mode tasks for real: a Linux bridge of the instance, NAT port mappings, `none` with loopback only.

`taskvpc up` with a test-unique prefix; the sample web server (examples/linux-simple-web.json) in
``bridge`` mode. A static ``hostPort`` held by one task fails the second with ``RESOURCE:PORTS``; a
dynamic host port is in ``networkBindings`` and answers on 127.0.0.1 and, from another namespace standing for
another machine, on the instance's address (forwarded: ``ip_forward`` is turned on in the instance's
namespace only); ``taskvpc down`` then leaves the host as it was (bridge, NAT table, ip_forward and all).
"""

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

from tests.integration.server import VENV_BIN
from tests.root import hostcheck
from tests.root.test_teardown import differences, down, settled_equal, snapshot, stop_up
from tests.root.upserver import REPO, RootServer, kill_task_shims
from tests.support import hostns

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: real namespaces, links and processes"),
]


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[RootServer]:
    prefix = "tvb" + secrets.token_hex(2)
    up = RootServer(tmp_path / "state", prefix)
    try:
        yield up
    finally:
        up.stop()
        kill_task_shims(up.state_dir)
        hostcheck.unmount_under(up.state_dir)
        hostcheck.scrub(prefix)


def web_definition(family: str, mode: str, host_port: int | None) -> dict[str, Any]:
    td = json.loads((REPO / "examples" / "linux-simple-web.json").read_text())
    td["family"], td["networkMode"] = family, mode
    td["cpu"], td["memory"] = "128", "128"
    [container] = td["containerDefinitions"]
    container["cpu"], container["memory"] = 128, 128
    container["portMappings"] = [] if mode == "none" else [{"containerPort": 80, "protocol": "tcp"}]
    if host_port is not None:
        container["portMappings"][0]["hostPort"] = host_port
    return td


def fetch(url: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return str(response.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def forwarding() -> str:
    """net.ipv4.ip_forward of the namespace this thread is in (the module's throwaway host namespace)."""
    return Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()


@contextlib.contextmanager
def elsewhere(prefix: str) -> Iterator[tuple[str, str]]:
    """Another machine on a link to the instance: a namespace with a veth to the instance's namespace
    (instance side ``<prefix>o`` 10.253.0.1/30, there 10.253.0.2); (its name, the instance's address)."""
    name = hostns.create("tvo")
    try:
        link = f"{prefix}o"
        subprocess.run(
            ["ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", name], check=True
        )
        subprocess.run(["ip", "addr", "add", "10.253.0.1/30", "dev", link], check=True)
        subprocess.run(["ip", "link", "set", link, "up"], check=True)
        subprocess.run(["ip", "-n", name, "addr", "add", "10.253.0.2/30", "dev", "eth0"], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "eth0", "up"], check=True)
        with hostns.entered(name):  # a machine that does not forward (its copy of the root's may say 1)
            Path("/proc/sys/net/ipv4/ip_forward").write_text("0")
        yield name, "10.253.0.1"
    finally:
        hostns.delete(name)  # the veth goes with it


def test_bridge_port_mappings_answer_on_localhost_and_down_removes_them(server: RootServer) -> None:
    # a host that does not forward (a new namespace copies the root namespace's value, whatever it is)
    Path("/proc/sys/net/ipv4/ip_forward").write_text("0")
    before = snapshot()
    server.start()
    ecs = server.client("ecs")
    for family, mode, port in (
        ("static", "bridge", 8080),
        ("dynamic", "bridge", None),
        ("none", "none", None),
    ):
        ecs.register_task_definition(**web_definition(f"{server.prefix}-{family}", mode, port))

    first = ecs.run_task(cluster="default", taskDefinition=f"{server.prefix}-static")
    assert first["failures"] == []
    second = ecs.run_task(cluster="default", taskDefinition=f"{server.prefix}-static")
    assert second["tasks"] == [] and [f["reason"] for f in second["failures"]] == ["RESOURCE:PORTS"]
    dynamic = ecs.run_task(cluster="default", taskDefinition=f"{server.prefix}-dynamic")
    isolated = ecs.run_task(cluster="default", taskDefinition=f"{server.prefix}-none")
    arns = [r["tasks"][0]["taskArn"] for r in (first, dynamic, isolated)]
    ecs.get_waiter("tasks_running").wait(cluster="default", tasks=arns, WaiterConfig={"Delay": 1})

    [task] = ecs.describe_tasks(cluster="default", tasks=[arns[1]])["tasks"]
    [binding] = task["containers"][0]["networkBindings"]
    assert binding["containerPort"] == 80 and 49153 <= binding["hostPort"] <= 65535
    assert "Amazon ECS Sample App" in fetch(f"http://127.0.0.1:{binding['hostPort']}/")
    assert "Amazon ECS Sample App" in fetch("http://127.0.0.1:8080/")
    # from elsewhere, on the instance's address: DNAT, then forwarded onto the bridge (turned on for it)
    assert forwarding() == "1"
    with elsewhere(server.prefix) as (other, address), hostns.entered(other):
        assert "Amazon ECS Sample App" in fetch(f"http://{address}:{binding['hostPort']}/")
        assert "Amazon ECS Sample App" in fetch(f"http://{address}:8080/")
        assert forwarding() == "0"  # only the instance's namespace was changed

    # each bridge task in its own namespace with eth0 on the bridge; the `none` task has only lo
    names = {
        n: subprocess.run(["ip", "-n", n, "-br", "link"], capture_output=True, text=True).stdout
        for n in hostcheck.namespaces(server.prefix)
        if f"{server.prefix}-b-" in n
    }
    assert len(names) == 3
    assert sorted("eth0" in links for links in names.values()) == [False, True, True]
    assert all(links.startswith("lo") for links in names.values())
    nat = subprocess.run(
        ["nft", "list", "table", "ip", f"{server.prefix}_bridge"], capture_output=True, text=True, check=True
    ).stdout
    assert f"{binding['hostPort']} : " in nat and "8080 : " in nat

    ecs.stop_task(cluster="default", task=arns[0])
    ecs.get_waiter("tasks_stopped").wait(cluster="default", tasks=[arns[0]], WaiterConfig={"Delay": 1})
    deadline = time.monotonic() + 10
    while (
        "8080 : "
        in subprocess.run(
            ["nft", "list", "table", "ip", f"{server.prefix}_bridge"], capture_output=True, text=True
        ).stdout
    ):
        assert time.monotonic() < deadline, "the stopped task's mapping stays"
        time.sleep(0.2)

    stop_up(server, signal.SIGTERM)
    result = down(server)
    assert result.returncode == 0, result.stderr
    assert "taskvpc down: ip_forward back to 0" in result.stderr
    assert forwarding() == "0"
    after = settled_equal(before)
    assert after == before, differences(before, after)


def test_demo_compare_shows_bridge_conflict_then_awsvpc_side_by_side(server: RootServer) -> None:
    server.start()
    result = subprocess.run(
        [str(VENV_BIN / "taskvpc"), "demo", "--compare", "--state-dir", str(server.state_dir)],
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "second: not placed, RESOURCE:PORTS" in out
    assert "holds the instance's port 80 -> GET http://127.0.0.1/ served the sample page" in out
    assert out.count("served the sample page") == 3  # the bridge task on 127.0.0.1, two awsvpc tasks
    assert "stopped both tasks" in out
