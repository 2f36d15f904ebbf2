"""Real containers end to end: `taskvpc up` as root (runc), the ECS API, and what DescribeTasks reports.

A missing image fails the task as ECS does (CannotPullContainerError, TaskFailedToStart, pull times set);
an exceeded memory limit shows as ECS shows it (OutOfMemoryError, 137); containers of one task share
localhost and a task-scoped volume, but not their root file systems or PID namespaces.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.root.upserver import RootServer

pytestmark = [
    pytest.mark.root,
]


def run_and_wait_stopped(server: RootServer, definition: dict[str, Any]) -> dict[str, Any]:
    ecs, ec2 = server.client("ecs"), server.client("ec2")
    ecs.register_task_definition(**definition)
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    subnet = sorted(subnets, key=lambda s: s["AvailabilityZone"])[0]["SubnetId"]
    run = ecs.run_task(
        cluster="default",
        taskDefinition=definition["family"],
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet]}},
    )
    assert run["tasks"], run["failures"]
    arn = run["tasks"][0]["taskArn"]
    ecs.get_waiter("tasks_stopped").wait(cluster="default", tasks=[arn], WaiterConfig={"Delay": 1})
    return dict(ecs.describe_tasks(cluster="default", tasks=[arn])["tasks"][0])


def one_container(family: str, **container: Any) -> dict[str, Any]:
    return {
        "family": family,
        "networkMode": "awsvpc",
        "containerDefinitions": [{"name": "app", "essential": True, "memory": 32, **container}],
    }


def test_missing_image_fails_the_task_as_ecs_does(root_server: RootServer) -> None:
    task = run_and_wait_stopped(
        root_server, one_container("nosuch", image="nosuch-image:1.0", command=["true"])
    )
    assert task["stopCode"] == "TaskFailedToStart"
    [container] = task["containers"]
    assert container["reason"].startswith("CannotPullContainerError: "), container
    assert "nosuch-image:1.0" in container["reason"]
    assert "CannotPullContainerError" in task["stoppedReason"]
    assert task["pullStartedAt"] <= task["pullStoppedAt"]
    assert "exitCode" not in container


def test_exceeding_the_memory_limit_is_reported_as_ecs_reports_it(root_server: RootServer) -> None:
    # dd allocates its 64 MiB block at once: far over the container's 16 MiB hard limit
    task = run_and_wait_stopped(
        root_server,
        one_container(
            "hog",
            image="busybox",
            memory=16,
            entryPoint=["sh", "-c"],
            command=["exec dd if=/dev/zero of=/dev/null bs=64M count=4"],
        ),
    )
    [container] = task["containers"]
    assert container["exitCode"] == 137
    assert container["reason"] == "OutOfMemoryError: Container killed due to memory usage"
    assert task["stopCode"] == "EssentialContainerExited"


def test_containers_of_a_task_share_localhost_and_a_volume_but_nothing_else(root_server: RootServer) -> None:
    definition = {
        "family": "pair",
        "networkMode": "awsvpc",
        "volumes": [{"name": "shared"}],
        "containerDefinitions": [
            {
                "name": "server",
                "image": "busybox",
                "memory": 32,
                "essential": False,
                "entryPoint": ["sh", "-c"],
                "command": [
                    "echo from-server > /data/note; mkdir -p /www; echo hi > /www/i; "
                    "exec httpd -f -p 127.0.0.1:8080 -h /www"
                ],
                "mountPoints": [{"sourceVolume": "shared", "containerPath": "/data"}],
                "linuxParameters": {"initProcessEnabled": True},
            },
            {
                "name": "client",
                "image": "busybox",
                "memory": 32,
                "essential": True,
                "dependsOn": [{"containerName": "server", "condition": "START"}],
                "entryPoint": ["sh", "-c"],
                # localhost is shared (one netns); /www is not (separate root file systems); the volume is
                "command": [
                    "for i in $(seq 50); do wget -q -O /dev/null http://127.0.0.1:8080/i && break; sleep 0.1; done; "
                    "wget -q -O - http://127.0.0.1:8080/i | grep -qx hi || exit 11; "
                    "test -e /www && exit 12; "
                    "grep -qx from-server /data/note || exit 13; "
                    "ps -o comm | grep -qx httpd && exit 14; exit 0"
                ],
                "mountPoints": [{"sourceVolume": "shared", "containerPath": "/data", "readOnly": True}],
            },
        ],
    }
    task = run_and_wait_stopped(root_server, definition)
    codes = {c["name"]: c.get("exitCode") for c in task["containers"]}
    assert codes["client"] == 0, task["containers"]
    assert task["stopCode"] == "EssentialContainerExited"
