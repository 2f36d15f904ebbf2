"""The seed's walkthrough for real: `taskvpc up` as root with its local agent, the plain `aws` CLI, two
awsvpc tasks on one instance both serving port 80 on their own IPs, and a clean host afterwards."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.server import VENV_BIN
from tests.root import hostcheck
from tests.root.upserver import (
    REPO,
    RootServer,
    container_pids,
    container_processes,
    fetch,
    is_our_shim,
    web_group,
)

pytestmark = [
    pytest.mark.root,
]


def test_two_tasks_on_one_instance_both_serve_port_80(root_server: RootServer) -> None:
    aws = root_server.aws
    example = REPO / "examples" / "linux-simple-web.json"
    aws("ecs", "register-task-definition", "--cli-input-json", f"file://{example}")
    subnets = json.loads(
        aws("ec2", "describe-subnets", "--filters", "Name=default-for-az,Values=true").stdout
    )["Subnets"]
    subnet = sorted(subnets, key=lambda s: s["AvailabilityZone"])[0]
    group = json.loads(
        aws("ec2", "create-security-group", "--group-name", "web", "--description", "sample page").stdout
    )["GroupId"]
    aws(
        "ec2",
        "authorize-security-group-ingress",
        "--group-id",
        group,
        "--protocol",
        "tcp",
        "--port",
        "80",
        "--cidr",
        "0.0.0.0/0",
    )
    run = json.loads(
        aws(
            "ecs",
            "run-task",
            "--cluster",
            "default",
            "--task-definition",
            "linux-simple-web",
            "--count",
            "2",
            "--network-configuration",
            f"awsvpcConfiguration={{subnets=[{subnet['SubnetId']}],securityGroups=[{group}]}}",
        ).stdout
    )
    assert run["failures"] == []
    arns = [t["taskArn"] for t in run["tasks"]]
    assert [t["lastStatus"] for t in run["tasks"]] == ["PROVISIONING", "PROVISIONING"]
    aws("ecs", "wait", "tasks-running", "--cluster", "default", "--tasks", *arns)

    tasks = json.loads(aws("ecs", "describe-tasks", "--cluster", "default", "--tasks", *arns).stdout)["tasks"]
    instances = {t["containerInstanceArn"] for t in tasks}
    assert len(instances) == 1, "both tasks on the one local instance"
    addresses = []
    for task in tasks:
        assert task["lastStatus"] == "RUNNING"
        attachment = task["attachments"][0]
        assert attachment["status"] == "ATTACHED"
        details = {d["name"]: d["value"] for d in attachment["details"]}
        address = details["privateIPv4Address"]
        assert details["subnetId"] == subnet["SubnetId"]
        assert task["containers"][0]["networkInterfaces"][0]["privateIpv4Address"] == address
        page = fetch(f"http://{address}/")
        assert "Amazon ECS Sample App" in page
        addresses.append(address)
    assert len(set(addresses)) == 2

    namespaces = hostcheck.namespaces(root_server.prefix)
    assert len([n for n in namespaces if "-t-" in n]) == 2
    # Served from real containers (runc is the default where installed): each its own root file system
    # (the busybox image, not the host's) and its own PID namespace.
    pids = container_pids(root_server.state_dir)
    assert len(pids) == 2
    for pid in pids:
        assert os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
        assert os.stat(f"/proc/{pid}/root/bin/busybox").st_ino != os.stat("/bin/busybox").st_ino
        assert not Path(f"/proc/{pid}/root/usr/lib/os-release").exists()  # no host files in there

    aws("ecs", "stop-task", "--cluster", "default", "--task", arns[0])
    aws("ecs", "stop-task", "--cluster", "default", "--task", arns[1])
    aws("ecs", "wait", "tasks-stopped", "--cluster", "default", "--tasks", *arns)
    stopped = json.loads(aws("ecs", "describe-tasks", "--cluster", "default", "--tasks", *arns).stdout)[
        "tasks"
    ]
    assert {t["stopCode"] for t in stopped} == {"UserInitiated"}
    enis = json.loads(aws("ec2", "describe-network-interfaces").stdout)["NetworkInterfaces"]
    assert [e for e in enis if e.get("PrivateIpAddress") in addresses] == []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and [n for n in hostcheck.namespaces(root_server.prefix) if "-t-" in n]:
        time.sleep(0.1)
    assert [n for n in hostcheck.namespaces(root_server.prefix) if "-t-" in n] == []


def agent_pids(server: RootServer) -> list[int]:
    assert server.process is not None
    children = [
        child
        for thread in Path(f"/proc/{server.process.pid}/task").iterdir()
        for child in (thread / "children").read_text().split()
    ]
    pids = []
    for child in children:
        try:
            if b"taskvpc.agent.main" in Path(f"/proc/{child}/cmdline").read_bytes():
                pids.append(int(child))
        except OSError:
            continue
    return pids


def shims_alive(state_dir: Path) -> list[int]:
    return [shim for shim, _ in container_processes(state_dir) if is_our_shim(shim)]


def run_one(server: RootServer) -> tuple[str, str]:
    ecs, ec2 = server.client("ecs"), server.client("ec2")
    ecs.register_task_definition(**json.loads((REPO / "examples" / "linux-simple-web.json").read_text()))
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    subnet = sorted(subnets, key=lambda s: s["AvailabilityZone"])[0]["SubnetId"]
    arn = ecs.run_task(
        cluster="default",
        taskDefinition="linux-simple-web",
        networkConfiguration={
            "awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [web_group(server)]}
        },
    )["tasks"][0]["taskArn"]
    ecs.get_waiter("tasks_running").wait(cluster="default", tasks=[arn], WaiterConfig={"Delay": 1})
    task = ecs.describe_tasks(cluster="default", tasks=[arn])["tasks"][0]
    details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
    return arn, details["privateIPv4Address"]


def wait_for(condition, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def test_agent_and_control_plane_restarts_adopt_running_tasks(root_server: RootServer) -> None:
    arn, address = run_one(root_server)
    assert "Amazon ECS Sample App" in fetch(f"http://{address}/")
    shims = shims_alive(root_server.state_dir)
    assert len(shims) == 1

    # kill -9 the agent: `taskvpc up` starts a new one, which adopts the task rather than restarting it,
    # and reloads the router's firewall table whole: a connection established before keeps working.
    established = socket.create_connection((address, 80), timeout=5)
    [old_agent] = agent_pids(root_server)
    os.kill(old_agent, signal.SIGKILL)
    wait_for(lambda: agent_pids(root_server) not in ([], [old_agent]))
    ecs = root_server.client("ecs")
    time.sleep(1.0)
    assert ecs.describe_tasks(cluster="default", tasks=[arn])["tasks"][0]["lastStatus"] == "RUNNING"
    assert shims_alive(root_server.state_dir) == shims
    assert "Amazon ECS Sample App" in fetch(f"http://{address}/")
    with established:
        established.sendall(b"GET / HTTP/1.0\r\n\r\n")
        reply = b""
        while chunk := established.recv(65536):
            reply += chunk
    assert b"Amazon ECS Sample App" in reply
    routers = [n for n in hostcheck.namespaces(root_server.prefix) if "-r-" in n]
    tables = subprocess.run(
        ["ip", "netns", "exec", routers[0], "nft", "list", "tables"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "table inet taskvpc" in tables

    # kill -9 the control plane itself: its agent goes with it, the task stays; a new `up` adopts it.
    root_server.kill(signal.SIGKILL)
    wait_for(lambda: not agent_pids_of_state(root_server.state_dir))
    assert shims_alive(root_server.state_dir) == shims
    root_server.start()
    ecs = root_server.client("ecs")
    assert ecs.describe_tasks(cluster="default", tasks=[arn])["tasks"][0]["lastStatus"] == "RUNNING"
    assert "Amazon ECS Sample App" in fetch(f"http://{address}/")
    assert shims_alive(root_server.state_dir) == shims

    ecs.stop_task(cluster="default", task=arn)
    ecs.get_waiter("tasks_stopped").wait(cluster="default", tasks=[arn], WaiterConfig={"Delay": 1})
    wait_for(lambda: not shims_alive(root_server.state_dir))
    wait_for(lambda: not [n for n in hostcheck.namespaces(root_server.prefix) if "-t-" in n])


def agent_pids_of_state(state_dir: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"taskvpc.agent.main" in cmdline and str(state_dir).encode() in cmdline:
            pids.append(int(proc.name))
    return pids


def test_demo_command(root_server: RootServer) -> None:
    result = subprocess.run(
        [str(VENV_BIN / "taskvpc"), "demo", "--state-dir", str(root_server.state_dir)],
        env=root_server.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("served the sample page") == 2
    assert "stopped both tasks" in result.stdout
    wait_for(lambda: not shims_alive(root_server.state_dir))


def test_logs_command_prints_container_output(root_server: RootServer) -> None:
    ecs, ec2 = root_server.client("ecs"), root_server.client("ec2")
    ecs.register_task_definition(
        family="talker",
        networkMode="awsvpc",
        containerDefinitions=[
            {
                "name": "talker",
                "image": "busybox",
                "memory": 16,
                "essential": True,
                "entryPoint": ["sh", "-c"],
                "command": ["echo hello from $GREETED; echo to-stderr >&2; exec sleep 60"],
                # sleep as a container's PID 1 would ignore SIGTERM (and be killed after stopTimeout)
                "linuxParameters": {"initProcessEnabled": True},
                "environment": [{"name": "GREETED", "value": "the task"}],
            }
        ],
    )
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    subnet = sorted(subnets, key=lambda s: s["AvailabilityZone"])[0]["SubnetId"]
    arn = ecs.run_task(
        cluster="default",
        taskDefinition="talker",
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet]}},
    )["tasks"][0]["taskArn"]
    ecs.get_waiter("tasks_running").wait(cluster="default", tasks=[arn], WaiterConfig={"Delay": 1})

    def logs() -> str:
        return subprocess.run(
            [str(VENV_BIN / "taskvpc"), "logs", arn, "talker", "--state-dir", str(root_server.state_dir)],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout

    wait_for(lambda: "hello from the task" in logs() and "to-stderr" in logs())
    follow = subprocess.Popen(
        [str(VENV_BIN / "taskvpc"), "logs", "--follow", arn, "--state-dir", str(root_server.state_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ecs.stop_task(cluster="default", task=arn)
        ecs.get_waiter("tasks_stopped").wait(cluster="default", tasks=[arn], WaiterConfig={"Delay": 1})
        followed, _ = follow.communicate(timeout=20)  # --follow ends once the container has ended
    finally:
        if follow.poll() is None:
            follow.kill()
    assert follow.returncode == 0
    assert "talker | hello from the task\n" in followed and "talker | to-stderr\n" in followed
    stopped = ecs.describe_tasks(cluster="default", tasks=[arn])["tasks"][0]
    assert stopped["containers"][0]["exitCode"] == 143  # SIGTERM, as Docker reports it
    assert "hello from the task" in logs()  # kept after the task stopped
