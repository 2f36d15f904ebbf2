"""RegisterTaskDefinition rules for volumes: mount points name declared volumes; FSx is Windows-only."""

from __future__ import annotations

from typing import Any

import pytest

from taskvpc.domain.errors import ClientError
from taskvpc.domain.taskdef import validate_registration

FSX = {
    "fileSystemId": "fs-0123",
    "rootDirectory": "share",
    "authorizationConfig": {
        "credentialsParameter": "arn:aws:secretsmanager:us-east-1:1:secret:x",
        "domain": "corp.example.com",
    },
}
WINDOWS = {"operatingSystemFamily": "WINDOWS_SERVER_2019_CORE", "cpuArchitecture": "X86_64"}
LINUX = {"operatingSystemFamily": "LINUX", "cpuArchitecture": "X86_64"}


def request(
    mount_points: list[dict[str, Any]], volumes: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    web = {"name": "web", "image": "nginx", "memory": 128, "mountPoints": mount_points}
    return {"family": "fam", "containerDefinitions": [web], "volumes": volumes, **extra}


def refusal(req: dict[str, Any]) -> str:
    with pytest.raises(ClientError) as info:
        validate_registration(req)
    assert info.value.code == "ClientException"
    return info.value.message


def test_mount_points_must_name_a_declared_volume() -> None:
    declared: list[dict[str, Any]] = [{"name": "data", "host": {"sourcePath": "/srv"}}, {"name": "scratch"}]
    ok = request(
        [{"sourceVolume": "data", "containerPath": "/d"}, {"sourceVolume": "scratch", "containerPath": "/s"}],
        declared,
    )
    assert [v["name"] for v in validate_registration(ok)["volumes"]] == ["data", "scratch"]
    assert (
        refusal(request([{"sourceVolume": "nope", "containerPath": "/x"}], declared))
        == "Unknown volume 'nope'."
    )
    assert refusal(request([{"containerPath": "/x"}], declared)) == "Unknown volume 'null'."


def test_fsx_volumes_are_for_windows_task_definitions() -> None:
    volumes = [{"name": "v", "fsxWindowsFileServerVolumeConfiguration": FSX}]
    assert validate_registration(request([], volumes, runtimePlatform=WINDOWS))["volumes"] == volumes
    assert validate_registration(request([], volumes))["volumes"] == volumes  # no platform: may be Windows
    assert (
        refusal(request([], volumes, runtimePlatform=LINUX))
        == "The 'fsxWindowsFileServerVolumeConfiguration' parameter is not supported for Linux containers."
    )
