"""Volumes and the container fields from RegisterTaskDefinition + RunTask (overrides) to the agent's
desired state and on to the runtime's ContainerSpec; the volume errors ECS gives; pull times."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from taskvpc.agent import taskplan as tp
from taskvpc.agent.containerspec import to_container_spec
from taskvpc.agent.runtime import Mount, Tmpfs, Ulimit
from tests.integration.ecs_support import (
    WEB_CONTAINER,
    awsvpc,
    default_subnets,
    describe,
    error_of,
    register_web,
)
from tests.integration.server import Server

# what a runc agent registers for these features (docker-plugin.local: dockerVolumeConfiguration;
# env-files.s3: environmentFiles; the private registry one: repositoryCredentials)
RUNC_ATTRIBUTES: dict[str, str | None] = {
    "ecs.capability.docker-plugin.local": None,
    "ecs.capability.env-files.s3": None,
    "ecs.capability.private-registry-authentication.secretsmanager": None,
}
VOLUMES: list[dict[str, Any]] = [
    {"name": "data", "host": {"sourcePath": "/srv/data"}},
    {"name": "scratch"},
    {
        "name": "cache",
        "dockerVolumeConfiguration": {"scope": "shared", "autoprovision": True, "driver": "local"},
    },
]
APP: dict[str, Any] = {
    **WEB_CONTAINER,
    "memoryReservation": 256,
    "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}],
    "readonlyRootFilesystem": True,
    "linuxParameters": {
        "capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]},
        "initProcessEnabled": True,
        "tmpfs": [{"containerPath": "/run", "size": 64}],
        "sharedMemorySize": 128,
    },
    "mountPoints": [
        {"sourceVolume": "data", "containerPath": "/data", "readOnly": True},
        {"sourceVolume": "scratch", "containerPath": "/scratch"},
    ],
    "environmentFiles": [{"value": "arn:aws:s3:::bucket/app.env", "type": "s3"}],
    "repositoryCredentials": {
        "credentialsParameter": "arn:aws:secretsmanager:us-east-1:000000000000:secret:r"
    },
}
SIDECAR: dict[str, Any] = {
    "name": "sidecar",
    "image": "busybox",
    "memory": 64,
    "essential": False,
    "volumesFrom": [{"sourceContainer": "web", "readOnly": True}],
    "mountPoints": [{"sourceVolume": "cache", "containerPath": "/cache"}],
}
EXECUTION_ROLE = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"
ECS_TASKS_TRUST = (
    '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",'
    ' "Principal": {"Service": "ecs-tasks.amazonaws.com"}}]}'
)  # ECS refuses a launch with a role it could not assume


def test_desired_state_carries_volumes_limits_and_container_fields(api: Server, agents: Any) -> None:
    agent = agents(attributes=RUNC_ATTRIBUTES).start()
    ecs = api.client("ecs")
    api.client("iam").create_role(RoleName="ecsTaskExecutionRole", AssumeRolePolicyDocument=ECS_TASKS_TRUST)
    register_web(ecs, containers=[APP, SIDECAR], volumes=VOLUMES, executionRoleArn=EXECUTION_ROLE)
    subnet = default_subnets(api.client("ec2"))["us-east-1a"]
    extra_file = {"value": "/etc/taskvpc/extra.env", "type": "s3"}
    overrides: dict[str, Any] = {
        "cpu": "2 vCPU",
        "memory": "3GB",
        "containerOverrides": [
            {
                "name": "web",
                "memoryReservation": 128,
                "environment": [{"name": "MODE", "value": "test"}],
                "environmentFiles": [extra_file],
            }
        ],
    }
    task = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnet), overrides=overrides)[
        "tasks"
    ][0]
    entry = agent.wait_for_task(task["taskArn"])

    assert entry["volumes"] == VOLUMES
    assert entry["limits"] == {"cpu": 2048, "memory": 3072}
    web, sidecar = entry["containers"]
    for member in (
        "ulimits",
        "readonlyRootFilesystem",
        "linuxParameters",
        "mountPoints",
        "repositoryCredentials",
    ):
        assert web[member] == APP[member], member
    assert web["memoryReservation"] == 128 and web["environment"] == [{"name": "MODE", "value": "test"}]
    assert web["environmentFiles"] == [*APP["environmentFiles"], extra_file]  # the override's come after
    assert sidecar["volumesFrom"] == SIDECAR["volumesFrom"]

    # ... and the agent turns it into what the runtime gets
    desired = tp.DesiredTask.from_wire(entry)
    assert (desired.task_cpu, desired.task_memory) == (2048, 3072)
    spec = to_container_spec(desired, "web", (Mount("/srv/data", "/data", True),))
    assert (spec.cpu, spec.memory, spec.memory_reservation) == (256, 512, 128)
    assert spec.ulimits == (Ulimit("nofile", 1024, 4096),) and spec.readonly_root_filesystem
    assert (spec.capabilities_add, spec.capabilities_drop, spec.init_process_enabled) == (
        ("NET_ADMIN",),
        ("MKNOD",),
        True,
    )
    assert spec.tmpfs == (Tmpfs("/run", 64),) and spec.shared_memory_size == 128
    assert spec.repository_credentials == APP["repositoryCredentials"]["credentialsParameter"]
    assert [f.value for f in desired.containers[0].environment_files] == [
        "arn:aws:s3:::bucket/app.env",
        "/etc/taskvpc/extra.env",
    ]


def test_limits_are_null_without_task_level_cpu_and_memory(api: Server, agents: Any) -> None:
    agent = agents().start()
    ecs = api.client("ecs")
    register_web(ecs, cpu=None, memory=None)
    subnet = default_subnets(api.client("ec2"))["us-east-1a"]
    task = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnet))["tasks"][0]
    entry = agent.wait_for_task(task["taskArn"])
    assert entry["limits"] == {"cpu": None, "memory": None} and entry["volumes"] == []
    assert (entry["cpu"], entry["memory"]) == (256, 512)  # what it reserves: the containers' sum
    desired = tp.DesiredTask.from_wire(entry)
    assert (desired.task_cpu, desired.task_memory) == (None, None)


def test_volume_errors_at_registration(api: Server) -> None:
    ecs = api.client("ecs")
    undeclared = {**WEB_CONTAINER, "mountPoints": [{"sourceVolume": "nope", "containerPath": "/x"}]}
    with pytest.raises(ClientError) as excinfo:
        register_web(ecs, containers=[undeclared], volumes=VOLUMES)
    assert error_of(excinfo) == ("ClientException", "Unknown volume 'nope'.")

    fsx = [
        {
            "name": "share",
            "fsxWindowsFileServerVolumeConfiguration": {
                "fileSystemId": "fs-0123456789abcdef0",
                "rootDirectory": "share",
                "authorizationConfig": {
                    "credentialsParameter": "arn:aws:secretsmanager:us-east-1:000000000000:secret:fsx",
                    "domain": "corp.example.com",
                },
            },
        }
    ]
    linux = {"operatingSystemFamily": "LINUX", "cpuArchitecture": "X86_64"}
    with pytest.raises(ClientError) as excinfo:
        register_web(ecs, "linux-fsx", volumes=fsx, runtimePlatform=linux)
    assert error_of(excinfo) == (
        "ClientException",
        "The 'fsxWindowsFileServerVolumeConfiguration' parameter is not supported for Linux containers.",
    )
    windows = {"operatingSystemFamily": "WINDOWS_SERVER_2022_CORE", "cpuArchitecture": "X86_64"}
    td = register_web(ecs, "windows-fsx", cpu=None, memory=None, volumes=fsx, runtimePlatform=windows)
    assert td["volumes"] == fsx
    assert {"name": "ecs.capability.fsxWindowsFileServer"} in td["requiresAttributes"]


def test_pull_times_are_the_first_start_and_the_latest_end(api: Server, agents: Any) -> None:
    agent = agents().start()
    ecs = api.client("ecs")
    register_web(ecs)
    subnet = default_subnets(api.client("ec2"))["us-east-1a"]
    arn = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnet))["tasks"][0]["taskArn"]
    agent.wait_for_task(arn)
    base = 1_800_000_000.0
    agent.report(
        {
            "taskArn": arn,
            "knownStatus": "PENDING",
            "attachmentStatus": "ATTACHED",
            "pullStartedAt": base,
            "pullStoppedAt": base + 1,
        }
    )
    agent.report(
        {"taskArn": arn, "knownStatus": "PENDING", "pullStartedAt": base + 2, "pullStoppedAt": base + 5}
    )
    agent.report(
        {"taskArn": arn, "knownStatus": "PENDING", "pullStartedAt": base + 3, "pullStoppedAt": base + 4}
    )
    task = describe(ecs, arn)
    assert (task["pullStartedAt"].timestamp(), task["pullStoppedAt"].timestamp()) == (base, base + 5)
