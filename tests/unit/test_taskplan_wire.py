"""Parsing the agent API's task entries into the planner's types: every new field, and odd input."""

from __future__ import annotations

from typing import Any

import pytest

from taskvpc.agent import taskplan as tp
from taskvpc.agent.runtime import Tmpfs, Ulimit
from taskvpc.agentapi.reports import task_report_to_wire

ARN = "arn:aws:ecs:us-east-1:000000000000:task/default/0123456789abcdef0123456789abcdef"


def entry(**extra: Any) -> dict[str, Any]:
    return {"taskArn": ARN, "desiredStatus": "RUNNING", "containers": [{"name": "app"}], **extra}


FULL_CONTAINER: dict[str, Any] = {
    "name": "app",
    "image": "busybox",
    "cpu": 128,
    "memory": 256,
    "memoryReservation": 64,
    "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}],
    "readonlyRootFilesystem": True,
    "privileged": True,
    "linuxParameters": {
        "capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD", "CHOWN"]},
        "initProcessEnabled": True,
        "tmpfs": [{"containerPath": "/run", "size": 64, "mountOptions": ["noexec", "nosuid"]}],
        "sharedMemorySize": 128,
    },
    "mountPoints": [{"sourceVolume": "data", "containerPath": "/data", "readOnly": True}],
    "volumesFrom": [{"sourceContainer": "db", "readOnly": True}],
    "environmentFiles": [{"value": "arn:aws:s3:::bucket/app.env", "type": "s3"}],
    "repositoryCredentials": {"credentialsParameter": "arn:aws:secretsmanager:us-east-1:0:secret:x"},
}


def test_every_new_container_field_is_parsed() -> None:
    task = tp.DesiredTask.from_wire(entry(containers=[FULL_CONTAINER]))
    [app] = task.containers
    assert (app.cpu, app.memory, app.memory_reservation) == (128, 256, 64)
    assert app.ulimits == (Ulimit("nofile", 1024, 4096),)
    assert app.readonly_root_filesystem and app.privileged
    assert app.linux_parameters == tp.LinuxParameters(
        capabilities_add=("NET_ADMIN",),
        capabilities_drop=("MKNOD", "CHOWN"),
        init_process_enabled=True,
        tmpfs=(Tmpfs("/run", 64, ("noexec", "nosuid")),),
        shared_memory_size=128,
    )
    assert app.mount_points == (tp.MountPoint("data", "/data", True),)
    assert app.volumes_from == (tp.VolumeFrom("db", True),)
    assert app.environment_files == (tp.EnvironmentFile("arn:aws:s3:::bucket/app.env", "s3"),)
    assert app.repository_credentials == "arn:aws:secretsmanager:us-east-1:0:secret:x"


def test_a_bare_container_has_the_defaults() -> None:
    [app] = tp.DesiredTask.from_wire(entry()).containers
    assert app == tp.DesiredContainer("app")
    assert (app.cpu, app.memory, app.ulimits, app.mount_points) == (0, None, (), ())
    assert app.linux_parameters == tp.LinuxParameters()


def test_volumes_of_every_kind() -> None:
    task = tp.DesiredTask.from_wire(
        entry(
            volumes=[
                {"name": "host", "host": {"sourcePath": "/srv/data"}},
                {"name": "empty"},
                {"name": "empty-host", "host": {}},
                {
                    "name": "cache",
                    "dockerVolumeConfiguration": {
                        "scope": "shared",
                        "autoprovision": True,
                        "driver": "local",
                        "driverOpts": {"type": "tmpfs"},
                        "labels": {"team": "a"},
                    },
                },
                {"name": "scratch", "dockerVolumeConfiguration": {}},
                {"name": "efs", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}},
                {"name": "ebs", "configuredAtLaunch": True},
            ]
        )
    )
    volumes = {v.name: v for v in task.volumes}
    assert volumes["host"] == tp.Volume("host", source_path="/srv/data")
    assert volumes["empty"] == tp.Volume("empty") == tp.Volume("empty", None, None, None)
    assert volumes["empty-host"].source_path is None and volumes["empty-host"].docker is None
    assert volumes["cache"].docker == tp.DockerVolumeConfig(
        tp.VolumeScope.SHARED, True, "local", (("type", "tmpfs"),), (("team", "a"),)
    )
    assert volumes["scratch"].docker == tp.DockerVolumeConfig()  # task scope, local driver
    assert volumes["efs"].unsupported == "efsVolumeConfiguration"
    assert volumes["ebs"].unsupported == "configuredAtLaunch"


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ({"cpu": 1024, "memory": 2048}, (1024, 2048)),
        ({"cpu": "1 vCPU", "memory": "0.5 GB"}, (1024, 512)),
        ({"cpu": "512", "memory": "2GB"}, (512, 2048)),
        ({"cpu": None, "memory": None}, (None, None)),
        ({"cpu": "lots", "memory": -5}, (None, None)),
        (None, (None, None)),  # a row from before limits existed
        ("garbage", (None, None)),
    ],
)
def test_task_limits(limits: Any, expected: tuple[int | None, int | None]) -> None:
    doc = entry() if limits is None else entry(limits=limits)
    task = tp.DesiredTask.from_wire(doc)
    assert (task.task_cpu, task.task_memory) == expected


def test_malformed_input_never_raises_and_reads_as_absent() -> None:
    odd_container: dict[str, Any] = {
        "name": "app",
        "cpu": "many",
        "memory": True,
        "memoryReservation": -1,
        "essential": "no",
        "ulimits": [{"name": "nofile", "softLimit": "x", "hardLimit": 1}, "junk", {"softLimit": 1}],
        "readonlyRootFilesystem": "yes",
        "linuxParameters": {
            "capabilities": ["NET_ADMIN"],
            "tmpfs": [{"containerPath": "/run"}, {"size": 5}, 7, {"containerPath": "/t", "size": "x"}],
            "sharedMemorySize": "big",
            "initProcessEnabled": 1,
        },
        "mountPoints": [{"sourceVolume": "v"}, None, {"containerPath": "/a"}],
        "volumesFrom": ["db", {"readOnly": True}],
        "environmentFiles": [{"type": "s3"}, "file.env", {"value": ""}],
        "environment": [{"value": "no-name"}, "A=1", {"name": "OK", "value": 2}],
        "repositoryCredentials": "arn:…",
        "healthCheck": {"command": "not-a-list", "retries": "x"},
        "dependsOn": [{"containerName": "db"}, "db", {"containerName": "db", "condition": "SOMETIMES"}],
        "command": "echo hi",
        "stopTimeout": "soon",
    }
    doc = entry(
        containers=[odd_container, {"image": "nameless"}, "junk", {"name": ""}],
        volumes=[
            {"host": {"sourcePath": "/x"}},
            "v",
            {"name": "d", "dockerVolumeConfiguration": {"scope": "x"}},
        ],
        eni={"prefixLength": "wide", "securityGroupIds": "sg-1"},
        revision="three",
        stopReason=42,
    )
    task = tp.DesiredTask.from_wire(doc)
    [app] = task.containers
    assert (app.cpu, app.memory, app.memory_reservation, app.essential) == (0, None, None, True)
    assert app.ulimits == () and not app.readonly_root_filesystem
    assert app.linux_parameters == tp.LinuxParameters()
    assert app.mount_points == (tp.MountPoint("", "/a", False),)  # no volume name: refused when resolved
    assert app.volumes_from == () and app.environment_files == ()
    assert app.environment == (("OK", "2"),)
    assert app.repository_credentials is None and app.health_check is None and app.depends_on == ()
    assert app.command == () and app.stop_timeout is None
    assert [v.name for v in task.volumes] == ["d"]
    assert task.volumes[0].docker == tp.DockerVolumeConfig()  # an unknown scope reads as task
    assert task.eni is not None and task.eni.prefix_length == 32 and task.eni.security_group_ids == ()
    assert (task.revision, task.stop_reason) == (0, None)


def test_pull_times_keep_the_first_start_and_the_latest_end() -> None:
    known = tp.KnownTask(ARN)
    known = tp.image_pulled(known, 10.0, 12.0)
    known = tp.image_pulled(known, 11.0, 15.0)  # a second container's pull
    known = tp.image_pulled(known, None, None)  # a runtime that does not pull
    known = tp.image_pulled(known, 9.0, 11.0)  # reported out of order
    assert (known.pull_started_at, known.pull_stopped_at) == (9.0, 15.0)
    desired = tp.DesiredTask.from_wire(entry())
    wire = task_report_to_wire(tp.report_for(desired, known))
    assert (wire["pullStartedAt"], wire["pullStoppedAt"]) == (9.0, 15.0)
    bare = task_report_to_wire(tp.report_for(desired, tp.KnownTask(ARN)))
    assert "pullStartedAt" not in bare and "pullStoppedAt" not in bare
