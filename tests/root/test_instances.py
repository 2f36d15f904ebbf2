"""EC2 instances as hosts on this machine, for real: `aws ec2 run-instances --count 3 --instance-type
c5.large --user-data 'ECS_CLUSTER=web'` against a `taskvpc up` gives three real agents, each in a network
namespace of its own holding its primary ENI's address, registered in `web` across two AZs; an awsvpc service of 6 tasks is placed at most
2 per instance (c5.large: 3 ENIs, the primary counts), each reaches RUNNING with its cgroup inside its
instance's (under the type's limits) and serves the sample page to its instance's namespace, a seventh
task fails with RESOURCE:ENI; after `taskvpc up` stops and `taskvpc down`, the next `up` boots the
instances that were running (a terminated one stays so) and they run tasks again; terminating them
leaves no namespace, cgroup or agent process behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from taskvpc.cli import instances as hosts
from taskvpc.cli.down import STOP_REASON
from taskvpc.control.ec2 import instances_catalog
from tests.integration.server import VENV_BIN
from tests.root import hostcheck
from tests.root.upserver import REPO, RootServer, web_group

# GET a URL from inside a network namespace (``ip netns exec``), retrying while the server comes up
_GET = (
    "import sys, time, urllib.request\n"
    "for _ in range(40):\n"
    "    try:\n"
    "        print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode()); break\n"
    "    except OSError:\n"
    "        time.sleep(0.25)\n"
)


def _get_in(namespace: str, url: str) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", _GET, url],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return done.stdout


pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: real namespaces, links and processes"),
]


def _wait(predicate, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError("timed out")


def _pids_alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def test_run_instances_place_and_terminate(root_server: RootServer) -> None:
    server = root_server
    ecs, ec2 = server.client("ecs"), server.client("ec2")
    ecs.create_cluster(clusterName="web")
    run = server.aws(
        "ec2", "run-instances", "--count", "3", "--instance-type", "c5.large",
        "--image-id", instances_catalog.DEFAULT_LINUX.image_id, "--user-data", "ECS_CLUSTER=web",
    )  # fmt: skip
    assert '"InstanceId"' in run.stdout
    ids = sorted(i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"])
    assert len(ids) == 3

    def registered() -> list[dict]:  # type: ignore[type-arg]
        arns = ecs.list_container_instances(cluster="web")["containerInstanceArns"]
        if len(arns) < 3:
            return []
        return ecs.describe_container_instances(cluster="web", containerInstances=arns)["containerInstances"]

    described = _wait(registered, 90)
    assert sorted(c["ec2InstanceId"] for c in described) == ids
    zones = {
        next(a["value"] for a in c["attributes"] if a["name"] == "ecs.availability-zone") for c in described
    }
    assert len(zones) >= 2
    states = {
        i["InstanceId"]: i["State"]["Name"]
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
    }
    assert set(states.values()) == {"running"}
    primary = {
        i["InstanceId"]: i["PrivateIpAddress"]
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
    }
    for iid in ids:  # each agent is a real process whose network namespace is the instance's own
        assert (hosts.NETNS_DIR / hosts.netns_name(server.prefix, iid)).exists()
        # holding the primary ENI's address (alone, /32) as DescribeInstances reports it
        shown = subprocess.run(
            ["ip", "-n", hosts.netns_name(server.prefix, iid), "-4", "-o", "addr", "show", "dev", "eth0"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert f" {primary[iid]}/32 " in shown, (iid, primary[iid], shown)
    agent_pids = [int(line) for iid in ids
                  for d in hosts.cgroups.existing(hosts.agent_cgroup_path(server.prefix, iid))[:1]
                  for line in (d / "cgroup.procs").read_text().split()]  # fmt: skip
    assert agent_pids
    instance_ns = {os.readlink(f"/proc/{pid}/ns/net") for pid in agent_pids}
    assert os.readlink("/proc/self/ns/net") not in instance_ns

    ecs.register_task_definition(**json.loads((REPO / "examples" / "linux-simple-web.json").read_text()))
    subnets = [
        s["SubnetId"]
        for s in ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    ]
    network = {"awsvpcConfiguration": {"subnets": subnets, "securityGroups": [web_group(server)]}}
    ecs.create_service(
        cluster="web",
        serviceName="hold",
        taskDefinition="linux-simple-web",
        desiredCount=6,
        networkConfiguration=network,
    )

    def placed() -> list[dict]:  # type: ignore[type-arg]
        arns = ecs.list_tasks(cluster="web")["taskArns"]
        return ecs.describe_tasks(cluster="web", tasks=arns)["tasks"] if len(arns) == 6 else []

    tasks = _wait(placed, 60)
    per_instance = Counter(t["containerInstanceArn"] for t in tasks)
    assert len(per_instance) == 3 and max(per_instance.values()) <= 2

    def running() -> list[dict]:  # type: ignore[type-arg]
        found = ecs.describe_tasks(cluster="web", tasks=[t["taskArn"] for t in tasks])["tasks"]
        return found if all(t["lastStatus"] == "RUNNING" for t in found) else []

    try:  # each instance's own agent starts its tasks: ENIs in its namespace, containers under runc
        tasks = _wait(running, 120)
    except AssertionError:
        found = ecs.describe_tasks(cluster="web", tasks=[t["taskArn"] for t in tasks])["tasks"]
        raise AssertionError(
            [
                (t["lastStatus"], t.get("stoppedReason"), [c.get("reason") for c in t["containers"]])
                for t in found
            ]
        ) from None
    instance_of = {c["containerInstanceArn"]: c["ec2InstanceId"] for c in described}
    for task in tasks:  # its cgroup is inside its instance's, so the type's vCPU/memory limits bound it
        iid, task_id = instance_of[task["containerInstanceArn"]], task["taskArn"].rsplit("/", 1)[1]
        task_cgroup = f"{hosts.tasks_cgroup_path(server.prefix, iid)}/{task_id}"
        task_dirs = hosts.cgroups.existing(task_cgroup)
        assert task_dirs and all(
            any(p.read_text().split() for p in d.rglob("cgroup.procs")) for d in task_dirs
        )
        assert not hosts.cgroups.existing(f"taskvpc-{hosts.instance_prefix(server.prefix, iid)}")
        details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
        page = _get_in(hosts.netns_name(server.prefix, iid), f"http://{details['privateIPv4Address']}/")
        assert "Amazon ECS Sample App" in page, (iid, details["privateIPv4Address"], page)
    seventh = ecs.run_task(cluster="web", taskDefinition="linux-simple-web", networkConfiguration=network)
    assert seventh["tasks"] == [] and any(f["reason"] == "RESOURCE:ENI" for f in seventh["failures"])

    _down_and_up_again(server, ids, instance_of)
    ecs.update_service(cluster="web", service="hold", desiredCount=0)
    ec2.terminate_instances(InstanceIds=ids)

    def terminated() -> bool:
        found = [i["State"]["Name"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
        return found == ["terminated"] * 3

    _wait(terminated, 90)
    assert ecs.list_container_instances(cluster="web")["containerInstanceArns"] == []
    stopped = ecs.describe_tasks(cluster="web", tasks=[t["taskArn"] for t in tasks])["tasks"]
    assert all(t["lastStatus"] == "STOPPED" or t["desiredStatus"] == "STOPPED" for t in stopped)
    assert hosts.hosts_present(server.prefix) == set()
    assert _wait(lambda: not _pids_alive(agent_pids), 15)  # the first up's (the second's died with it)
    assert not hosts.cgroups.existing(hosts.cgroup_path(server.prefix))
    for iid in ids:
        prefix = hosts.instance_prefix(server.prefix, iid)
        assert not [p for p in hosts.NETNS_DIR.iterdir() if p.name.startswith(prefix + "-")]


def _down_and_up_again(server: RootServer, ids: list[str], instance_of: dict[str, str]) -> None:
    """`taskvpc up` stopped, `taskvpc down`, `taskvpc up`: the instances that were running are booted
    again (same instance, same container instance, ACTIVE and connected), a terminated one stays
    terminated, the tasks `down` stopped stay stopped, and the service places its tasks on the booted
    instances, which run them."""
    ecs, ec2 = server.client("ecs"), server.client("ec2")
    ecs.update_service(cluster="web", service="hold", desiredCount=1)

    def one_left() -> list[dict]:  # type: ignore[type-arg]
        arns = ecs.list_tasks(cluster="web")["taskArns"]  # desired RUNNING: the one the service keeps
        found = ecs.describe_tasks(cluster="web", tasks=arns)["tasks"] if arns else []
        return found if len(found) == 1 and found[0]["lastStatus"] == "RUNNING" else []

    [kept_task] = _wait(one_left, 60)
    before = {kept_task["taskArn"]}
    gone = next(iid for iid in ids if iid != instance_of[kept_task["containerInstanceArn"]])
    kept = [iid for iid in ids if iid != gone]
    ec2.terminate_instances(InstanceIds=[gone])
    _wait(lambda: hosts.hosts_present(server.prefix) == set(kept), 60)

    server.stop()
    down = subprocess.run(
        [str(VENV_BIN / "taskvpc"), "down", "--state-dir", str(server.state_dir), "--net-prefix", server.prefix],
        capture_output=True, text=True, timeout=120, env=server.env(),
    )  # fmt: skip
    assert down.returncode == 0, down.stderr
    assert hostcheck.wait_clean(server.prefix) == []  # instance hosts, the underlay and its namespace too
    server.start()

    states = {
        i["InstanceId"]: i["State"]["Name"]
        for r in ec2.describe_instances()["Reservations"]
        for i in r["Instances"]
    }
    assert states == {gone: "terminated", **dict.fromkeys(kept, "running")}, states

    def booted() -> list[dict]:  # type: ignore[type-arg]
        arns = ecs.list_container_instances(cluster="web")["containerInstanceArns"]
        found = ecs.describe_container_instances(cluster="web", containerInstances=arns)["containerInstances"]
        fine = len(found) == len(kept) and all(c["agentConnected"] and c["status"] == "ACTIVE" for c in found)
        return found if fine else []

    back = _wait(booted, 90)
    assert {c["containerInstanceArn"]: c["ec2InstanceId"] for c in back} == {
        arn: iid for arn, iid in instance_of.items() if iid in kept
    }  # the same container instances, registered again by the booted hosts' agents
    assert hosts.hosts_present(server.prefix) == set(kept)
    old = ecs.describe_tasks(cluster="web", tasks=sorted(before))["tasks"]
    assert {(t["lastStatus"], t["stoppedReason"]) for t in old} == {("STOPPED", STOP_REASON)}
    replaced = _wait(
        lambda: (found := _service_tasks(ecs)) and all(t["lastStatus"] == "RUNNING" for t in found) and found,
        120,
    )
    assert {t["taskArn"] for t in replaced}.isdisjoint(before)
    assert {instance_of[t["containerInstanceArn"]] for t in replaced} <= set(kept)


def _service_tasks(ecs: Any) -> list[dict[str, Any]]:
    arns = ecs.list_tasks(cluster="web", serviceName="hold", desiredStatus="RUNNING")["taskArns"]
    return ecs.describe_tasks(cluster="web", tasks=arns)["tasks"] if arns else []
