"""The host supervisor's pure parts: its plan, the instance prefixes, and reading ecs.config user data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, strategies as st

from taskvpc.agent import netplan
from taskvpc.agent.instance_config import InstanceConfig
from taskvpc.cli.instances import instance_prefix, plan
from taskvpc.domain import ecs_config


def _doc(iid: str, state: str) -> dict[str, Any]:
    return {"InstanceId": iid, "State": {"Name": state}}


def test_plan_follows_each_state() -> None:
    docs = [
        _doc("i-pending", "pending"),
        _doc("i-running", "running"),
        _doc("i-stopping", "stopping"),
        _doc("i-going", "shutting-down"),
        _doc("i-gone", "terminated"),
    ]
    hosts = {"i-running", "i-stopping", "i-going", "i-gone", "i-stray"}
    steps = plan(docs, hosts, live_agents={"i-running"})
    assert [d["InstanceId"] for d in steps.ensure] == ["i-pending"]  # running with a live agent: untouched
    assert steps.started == ["i-pending"]
    assert sorted(steps.remove) == ["i-going", "i-gone", "i-stopping"]
    assert sorted(steps.finish) == [("i-going", "terminated"), ("i-stopping", "stopped")]
    assert steps.strays == ["i-stray"]


def test_a_dead_agent_is_started_again() -> None:
    steps = plan([_doc("i-running", "running")], {"i-running"}, live_agents=set())
    assert [d["InstanceId"] for d in steps.ensure] == ["i-running"] and steps.started == []


def test_a_running_instance_without_its_namespace_is_lost_after_the_window() -> None:
    docs = [_doc("i-lost", "running"), _doc("i-new", "pending")]
    first = plan(docs, set(), live_agents=set(), missing_since={}, now=100.0, window=5.0)
    assert first.missing == ["i-lost"] and first.lost == []  # seen missing now: not remade, not lost yet
    assert [d["InstanceId"] for d in first.ensure] == ["i-new"]  # a pending one still gets its host
    during = plan(docs, set(), set(), missing_since={"i-lost": 100.0}, now=104.9, window=5.0)
    assert during.lost == [] and during.ensure[0]["InstanceId"] == "i-new"
    after = plan(docs, set(), set(), missing_since={"i-lost": 100.0}, now=105.0, window=5.0)
    assert after.lost == ["i-lost"]
    back = plan(docs, {"i-lost"}, {"i-lost"}, missing_since={"i-lost": 100.0}, now=200.0, window=5.0)
    assert back.missing == [] and back.lost == []  # its namespace is there again: nothing lost


def test_a_running_instance_whose_host_was_never_seen_here_is_booted_not_lost() -> None:
    # after `taskvpc down` or a reboot: the next supervisor finds running instances without hosts
    docs = [_doc("i-back", "running"), _doc("i-held", "running"), _doc("i-gone", "terminated")]
    first = plan(docs, {"i-held"}, set(), {}, now=100.0, window=5.0, seen={"i-held"})
    assert [d["InstanceId"] for d in first.ensure] == ["i-back", "i-held"]  # booted; agent started
    assert first.missing == [] and first.lost == [] and first.started == []  # it stays running
    assert first.remove == [] and first.finish == []  # a terminated one stays terminated, with no host
    # once seen here, its host going is a loss again
    later = plan(docs, {"i-held"}, {"i-held"}, {"i-back": 100.0}, 105.0, 5.0, seen={"i-back", "i-held"})
    assert later.missing == ["i-back"] and later.lost == ["i-back"] and later.ensure == []


@given(
    st.floats(min_value=0, max_value=1e6),
    st.floats(min_value=0, max_value=100),
    st.floats(min_value=0.1, max_value=60),
)
def test_loss_is_declared_exactly_once_the_window_has_passed(
    since: float, elapsed: float, window: float
) -> None:
    steps = plan([_doc("i-x", "running")], set(), set(), {"i-x": since}, since + elapsed, window)
    assert steps.missing == ["i-x"] and steps.ensure == []
    assert (steps.lost == ["i-x"]) == (since + elapsed - since >= window)


@given(st.text(alphabet="abcdefghij0123456789", min_size=2, max_size=6), st.text(min_size=1, max_size=20))
def test_instance_prefixes_are_valid_prefixes(prefix: str, instance_id: str) -> None:
    name = instance_prefix("t" + prefix, instance_id)
    netplan.NetConfig(prefix=name)  # raises for a name that is no prefix
    assert not name.startswith("t")  # never inside the up's own prefix


def test_user_data_forms() -> None:
    script = (
        "#!/bin/bash\n"
        "echo ECS_CLUSTER=web >> /etc/ecs/ecs.config\n"
        'echo \'ECS_INSTANCE_ATTRIBUTES={"tier": "front"}\' >> /etc/ecs/ecs.config\n'
        'echo "ECS_RESERVED_MEMORY=256" >> /etc/ecs/ecs.config\n'
    )
    parsed = ecs_config.parse(script)
    assert parsed == {
        "ECS_CLUSTER": "web",
        "ECS_INSTANCE_ATTRIBUTES": '{"tier": "front"}',
        "ECS_RESERVED_MEMORY": "256",
    }
    assert ecs_config.parse("ECS_CLUSTER=web") == {"ECS_CLUSTER": "web"}
    assert ecs_config.cluster(ecs_config.parse("echo hello")) == "default"
    assert ecs_config.json_object({"ECS_INSTANCE_ATTRIBUTES": "[1]"}, "ECS_INSTANCE_ATTRIBUTES") == {}


def test_registration_from_the_launch() -> None:
    config = InstanceConfig(
        {"ECS_INSTANCE_ATTRIBUTES": '{"tier": "front"}', "ECS_RESERVED_MEMORY": "100"},
        "subnet-0123456789abcdef0",
        "WINDOWS_SERVER_2022_FULL",
    )
    body = config.apply({"attributes": {"ecs.os-type": "linux"}, "resources": {"MEMORY": 1000}})
    assert body["attributes"] == {
        "ecs.os-type": "windows",
        "ecs.os-family": "WINDOWS_SERVER_2022_FULL",
        "tier": "front",
    }
    assert body["subnetId"] == "subnet-0123456789abcdef0" and body["resources"]["MEMORY"] == 900


def test_relay_pipes_both_ways_over_real_sockets() -> None:
    import socket
    import threading

    from taskvpc.cli.instances import Relay

    upstream = socket.create_server(("127.0.0.1", 0))

    def echo() -> None:
        conn, _ = upstream.accept()
        with conn:
            while data := conn.recv(1024):
                conn.sendall(data.upper())

    threading.Thread(target=echo, daemon=True).start()
    listener = socket.create_server(("127.0.0.1", 0))
    relay = Relay(listener, upstream.getsockname())
    try:
        with socket.create_connection(listener.getsockname(), timeout=5) as client:
            client.sendall(b"register")
            client.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := client.recv(1024):
                received += chunk
        assert received == b"REGISTER"
    finally:
        relay.close()
        upstream.close()


def test_windows_instances_refuse_containers_and_linux_ones_do_not() -> None:
    assert InstanceConfig().container_refusal() is None
    assert InstanceConfig(os_family="LINUX").container_refusal() is None
    refusal = InstanceConfig(os_family="WINDOWS_SERVER_2019_FULL").container_refusal()
    assert refusal is not None and refusal.startswith("CannotStartContainerError: Windows containers")
    assert "WINDOWS_SERVER_2019_FULL" in refusal and "Linux kernel" in refusal


def test_an_instance_agent_gets_its_tasks_cgroup_inside_the_instance(tmp_path: Path) -> None:
    from taskvpc.agent import instance_config
    from taskvpc.cli.instances import agent_cgroup_path, cgroup_path, tasks_cgroup_path

    top = cgroup_path("tv", "i-0abc")
    assert agent_cgroup_path("tv", "i-0abc") == f"{top}/agent"
    assert tasks_cgroup_path("tv", "i-0abc") == f"{top}/ecs-tasks"
    config = tmp_path / "ecs.config"
    config.write_text("ECS_CLUSTER=web\n")
    loaded = instance_config.load(str(config), "subnet-1", "LINUX", tasks_cgroup_path("tv", "i-0abc"))
    assert loaded.cluster == "web" and loaded.cgroup_parent == f"{top}/ecs-tasks"
    assert instance_config.load(None, None, None).cgroup_parent is None


def test_a_supervisor_without_the_lead_does_nothing(tmp_path: Path) -> None:
    import threading

    from taskvpc.cli.config import Credentials
    from taskvpc.cli.instances import LEAD, InstanceHosts, Launch

    class Follower:
        def __init__(self) -> None:
            self.asked: list[str] = []
            self.released = False
            self.event = threading.Event()

        def leads(self, loop: str) -> bool:
            self.asked.append(loop)
            if len(self.asked) >= 3:
                self.event.set()
            return False

        def release(self) -> None:
            self.released = True

    touched: list[str] = []
    follower = Follower()
    launch = Launch(1, tmp_path, "tvx", Credentials("AKIA0000000000000000", "s"), "us-east-1", "process")
    supervisor = InstanceHosts(launch, touched.append, interval=0.01, leadership=follower)
    try:
        assert follower.event.wait(10)
    finally:
        supervisor.stop()
    assert set(follower.asked) == {LEAD} and touched == []  # never read the instances, never made a host
    assert follower.released  # another control plane's supervisor takes the lead at once
