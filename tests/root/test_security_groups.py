"""Security groups enforced end to end: `taskvpc up` as root, real tasks, the EC2 API changing their rules.

The seed's claim, checked with real connections: a task is reachable on its port only from where its groups
allow (the host's requests come from 169.254.100.1), independently of other tasks' groups; revoking a rule
cuts new connections but not established ones, authorizing restores them; an ENI's groups are a union; a
task cannot reach the host's services nor lift its own restrictions.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.root.upserver import REPO, RootServer, web_group

pytestmark = [
    pytest.mark.root,
]

HOST_SOURCE = "169.254.100.1"
PAGE = "Amazon ECS Sample App"


def host_connects(ip: str, port: int = 80, timeout: float = 0.5) -> bool:
    """A new TCP connection from the host (a dropped SYN shows as a timeout)."""
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def task_fetches(netns: str, url: str) -> bool:
    """An HTTP GET from inside a task's namespace."""
    proc = subprocess.run(
        # busybox 1.35's ``wget -T`` crashes: bound it with timeout(1) instead
        ["ip", "netns", "exec", netns, "timeout", "1", "busybox", "wget", "-q", "-O", "-", url],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return proc.returncode == 0


def eventually(check: Callable[[], bool], expected: bool, timeout: float = 5.0) -> float:
    """Seconds until ``check()`` returned ``expected`` (AssertionError after ``timeout``)."""
    started = time.monotonic()
    while check() != expected:
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{check} did not become {expected} within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - started


@contextmanager
def host_listener() -> Iterator[int]:
    """A TCP service of the host on the host access address (what a task must never reach)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((HOST_SOURCE, 0))
    server.listen()
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nhost secret\n")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        server.close()


def run_web(server: RootServer, groups: list[str], count: int = 1) -> list[dict[str, Any]]:
    ecs, ec2 = server.client("ecs"), server.client("ec2")
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    subnet = sorted(subnets, key=lambda s: s["AvailabilityZone"])[0]["SubnetId"]
    arns = [
        t["taskArn"]
        for t in ecs.run_task(
            cluster="default",
            taskDefinition="linux-simple-web",
            count=count,
            networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": groups}},
        )["tasks"]
    ]
    ecs.get_waiter("tasks_running").wait(cluster="default", tasks=arns, WaiterConfig={"Delay": 1})
    found = []
    for task in ecs.describe_tasks(cluster="default", tasks=arns)["tasks"]:
        details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
        task_id = task["taskArn"].rsplit("/", 1)[-1]
        found.append(
            {
                "arn": task["taskArn"],
                "ip": details["privateIPv4Address"],
                "eni": details["networkInterfaceId"],
                "netns": f"{server.prefix}-t-{task_id}",
            }
        )
    return found


PORT_80 = [{"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]


def test_tasks_are_reachable_only_as_their_groups_allow(root_server: RootServer) -> None:
    ecs, ec2 = root_server.client("ecs"), root_server.client("ec2")
    ecs.register_task_definition(**json.loads((REPO / "examples" / "linux-simple-web.json").read_text()))
    web = web_group(root_server)
    default = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
    (public,) = run_web(root_server, [web])
    (private,) = run_web(root_server, [default])

    # The host reaches the task whose group opens port 80, not the one in the default group alone.
    assert host_connects(public["ip"])
    assert not host_connects(private["ip"])
    # Task to task: the default group admits only its own members, so public cannot reach private...
    assert task_fetches(public["netns"], f"http://{public['ip']}/")  # (itself: always)
    assert not task_fetches(public["netns"], f"http://{private['ip']}/")
    # ...while private (egress open to all) reaches public through web's 0.0.0.0/0 ingress.
    assert task_fetches(private["netns"], f"http://{public['ip']}/")

    # A task ENI is ECS's (requester-managed): EC2 refuses to change its groups, as AWS does...
    with pytest.raises(ec2.exceptions.ClientError, match="AuthFailure"):
        ec2.modify_network_interface_attribute(NetworkInterfaceId=public["eni"], Groups=[web, default])
    assert not task_fetches(public["netns"], f"http://{private['ip']}/")
    # ...a task carrying both groups is a member of default (union of its groups): it reaches private.
    (both,) = run_web(root_server, [web, default])
    assert task_fetches(both["netns"], f"http://{private['ip']}/")
    assert host_connects(both["ip"])
    # A task cannot reach the host's own services, whatever its egress rules allow.
    with host_listener() as port:
        assert host_connects(HOST_SOURCE, port)  # the service is up for the host itself
        assert not task_fetches(public["netns"], f"http://{HOST_SOURCE}:{port}/")
        assert not task_fetches(private["netns"], f"http://{HOST_SOURCE}:{port}/")

    # Revoke: established connections keep working, new ones are cut; authorize restores them.
    established = socket.create_connection((public["ip"], 80), timeout=2)
    try:
        ec2.revoke_security_group_ingress(GroupId=web, IpPermissions=PORT_80)
        eventually(lambda: host_connects(public["ip"]), False)
        established.settimeout(5)
        established.sendall(b"GET / HTTP/1.0\r\n\r\n")
        reply = b""
        while chunk := established.recv(65536):
            reply += chunk
        assert PAGE in reply.decode(errors="replace")
    finally:
        established.close()
    ec2.authorize_security_group_ingress(GroupId=web, IpPermissions=PORT_80)
    eventually(lambda: host_connects(public["ip"]), True)

    # A task cannot lift its own restrictions: the rules are in the router, not in its namespace.
    subprocess.run(["ip", "netns", "exec", private["netns"], "nft", "flush", "ruleset"], check=True)
    assert not host_connects(private["ip"])
    for task in (public, private, both):
        ecs.stop_task(cluster="default", task=task["arn"])
    ecs.get_waiter("tasks_stopped").wait(
        cluster="default", tasks=[public["arn"], private["arn"], both["arn"]], WaiterConfig={"Delay": 1}
    )


def test_group_references_follow_tasks_as_they_start_and_stop(root_server: RootServer) -> None:
    """``clients`` may reach ``api`` on 80 by reference: members are the current tasks of the group."""
    ecs, ec2 = root_server.client("ecs"), root_server.client("ec2")
    ecs.register_task_definition(**json.loads((REPO / "examples" / "linux-simple-web.json").read_text()))
    clients = str(ec2.create_security_group(GroupName="clients", Description="callers")["GroupId"])
    api = str(ec2.create_security_group(GroupName="api", Description="callee")["GroupId"])
    ec2.authorize_security_group_ingress(
        GroupId=api,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "UserIdGroupPairs": [{"GroupId": clients}]}
        ],
    )
    (server,) = run_web(root_server, [api])
    (first,) = run_web(root_server, [clients])
    (outsider,) = run_web(root_server, [api])  # same group as the server, but not a client
    url = f"http://{server['ip']}/"
    assert task_fetches(first["netns"], url)
    assert not task_fetches(outsider["netns"], url)
    assert not host_connects(server["ip"])  # the host is in no group
    # A client task started later is a member at once; a stopped one's address leaves the group.
    (second,) = run_web(root_server, [clients])
    assert task_fetches(second["netns"], url)
    ecs.stop_task(cluster="default", task=first["arn"])
    ecs.get_waiter("tasks_stopped").wait(cluster="default", tasks=[first["arn"]], WaiterConfig={"Delay": 1})
    assert task_fetches(second["netns"], url)
    for task in (server, outsider, second):
        ecs.stop_task(cluster="default", task=task["arn"])
    ecs.get_waiter("tasks_stopped").wait(
        cluster="default", tasks=[server["arn"], outsider["arn"], second["arn"]], WaiterConfig={"Delay": 1}
    )
