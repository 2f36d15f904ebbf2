"""Task definition operations through boto3 against a real server, on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.server import ACCOUNT_ID, REGION


def td_arn(family: str, revision: int) -> str:
    return f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:task-definition/{family}:{revision}"


def web(family: str = "web", **extra: Any) -> dict[str, Any]:
    return {
        "family": family,
        "networkMode": "awsvpc",
        "containerDefinitions": [
            {
                "name": "app",
                "image": "public.ecr.aws/docker/library/busybox:latest",
                "memory": 128,
                "essential": True,
                "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
            }
        ],
        **extra,
    }


def code_of(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    return str(excinfo.value.response["Error"]["Code"])


def test_register_persists_and_derives(ecs) -> None:  # type: ignore[no-untyped-def]
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    response = ecs.register_task_definition(
        **web(cpu="256", memory="512", taskRoleArn="arn:aws:iam::123456789012:role/app"),
        tags=[{"key": "k", "value": "v"}],
    )
    td = response["taskDefinition"]
    assert td["taskDefinitionArn"] == td_arn("web", 1)
    assert td["revision"] == 1 and td["status"] == "ACTIVE"
    assert td["registeredAt"] >= before
    assert td["registeredBy"] == f"arn:aws:iam::{ACCOUNT_ID}:root"
    assert td["taskRoleArn"] == "arn:aws:iam::123456789012:role/app"
    mapping = td["containerDefinitions"][0]["portMappings"][0]
    assert mapping["hostPort"] == mapping["containerPort"] == 8080
    assert {"name": "ecs.capability.task-eni"} in td["requiresAttributes"]
    assert "EC2" in td["compatibilities"]
    assert response["tags"] == [{"key": "k", "value": "v"}]

    second = ecs.register_task_definition(**web())["taskDefinition"]
    assert second["revision"] == 2
    described = ecs.describe_task_definition(taskDefinition="web", include=["TAGS"])
    assert described["taskDefinition"]["revision"] == 2
    assert described["tags"] == []
    first = ecs.describe_task_definition(taskDefinition="web:1", include=["TAGS"])
    assert first["taskDefinition"] == td
    assert first["tags"] == [{"key": "k", "value": "v"}]
    assert ecs.describe_task_definition(taskDefinition=td_arn("web", 1))["taskDefinition"] == td


def test_every_model_member_round_trips(ecs) -> None:  # type: ignore[no-untyped-def]
    container = {
        "name": "app",
        "image": "busybox",
        "cpu": 128,
        "memory": 256,
        "memoryReservation": 128,
        "essential": True,
        "entryPoint": ["sh", "-c"],
        "command": ["echo hi"],
        "environment": [{"name": "A", "value": "1"}],
        "environmentFiles": [{"value": "arn:aws:s3:::bucket/file.env", "type": "s3"}],
        "workingDirectory": "/srv",
        "user": "1000",
        "readonlyRootFilesystem": True,
        "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}],
        "dockerLabels": {"x": "y"},
        "linuxParameters": {"initProcessEnabled": True, "capabilities": {"add": ["NET_ADMIN"]}},
        "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 10, "timeout": 5, "retries": 3},
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {"awslogs-group": "g", "awslogs-region": "us-east-1", "awslogs-stream-prefix": "p"},
        },
        "stopTimeout": 20,
        "startTimeout": 30,
        "systemControls": [{"namespace": "net.core.somaxconn", "value": "1024"}],
        "secrets": [{"name": "S", "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/s"}],
    }
    response = ecs.register_task_definition(
        family="full",
        networkMode="awsvpc",
        containerDefinitions=[container],
        volumes=[{"name": "scratch", "host": {"sourcePath": "/tmp"}}],
        placementConstraints=[{"type": "memberOf", "expression": "attribute:ecs.instance-type =~ t3.*"}],
        executionRoleArn="arn:aws:iam::123456789012:role/exec",
        runtimePlatform={"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
        ephemeralStorage={"sizeInGiB": 30},
    )
    td = response["taskDefinition"]
    stored = td["containerDefinitions"][0]
    for key, value in container.items():
        assert stored[key] == value, key
    assert td["volumes"][0]["host"] == {"sourcePath": "/tmp"}
    assert td["placementConstraints"][0]["expression"] == "attribute:ecs.instance-type =~ t3.*"
    assert td["runtimePlatform"] == {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"}
    assert ecs.describe_task_definition(taskDefinition="full:1")["taskDefinition"] == td


def test_awsvpc_host_port_must_match(ecs) -> None:  # type: ignore[no-untyped-def]
    request = web()
    request["containerDefinitions"][0]["portMappings"] = [{"containerPort": 80, "hostPort": 8080}]
    with pytest.raises(ClientError) as excinfo:
        ecs.register_task_definition(**request)
    assert code_of(excinfo) == "ClientException"
    assert "host ports and container ports in port mappings must match" in str(excinfo.value)
    assert ecs.list_task_definitions()["taskDefinitionArns"] == []


def test_list_sort_status_and_pagination(ecs) -> None:  # type: ignore[no-untyped-def]
    for family in ("b", "a", "b", "c", "a"):
        ecs.register_task_definition(**web(family))
    asc = ecs.list_task_definitions()["taskDefinitionArns"]
    assert asc == [td_arn("a", 1), td_arn("a", 2), td_arn("b", 1), td_arn("b", 2), td_arn("c", 1)]
    assert ecs.list_task_definitions(sort="DESC")["taskDefinitionArns"] == list(reversed(asc))
    assert ecs.list_task_definitions(familyPrefix="b")["taskDefinitionArns"] == [
        td_arn("b", 1),
        td_arn("b", 2),
    ]

    pages = list(ecs.get_paginator("list_task_definitions").paginate(PaginationConfig={"PageSize": 2}))
    assert [len(p["taskDefinitionArns"]) for p in pages] == [2, 2, 1]
    assert [a for p in pages for a in p["taskDefinitionArns"]] == asc

    ecs.deregister_task_definition(taskDefinition="a:1")
    assert ecs.list_task_definitions(status="INACTIVE")["taskDefinitionArns"] == [td_arn("a", 1)]
    assert td_arn("a", 1) not in ecs.list_task_definitions()["taskDefinitionArns"]
    assert ecs.describe_task_definition(taskDefinition="a:1")["taskDefinition"]["status"] == "INACTIVE"
    assert ecs.describe_task_definition(taskDefinition="a")["taskDefinition"]["revision"] == 2


def test_families(ecs) -> None:  # type: ignore[no-untyped-def]
    for family in ("svc-a", "svc-b", "other"):
        ecs.register_task_definition(**web(family))
    ecs.deregister_task_definition(taskDefinition="svc-b:1")
    assert ecs.list_task_definition_families()["families"] == ["other", "svc-a", "svc-b"]
    assert ecs.list_task_definition_families(familyPrefix="svc")["families"] == ["svc-a", "svc-b"]
    assert ecs.list_task_definition_families(status="ACTIVE")["families"] == ["other", "svc-a"]
    assert ecs.list_task_definition_families(status="INACTIVE")["families"] == ["svc-b"]
    page = ecs.list_task_definition_families(maxResults=1)
    assert page["families"] == ["other"] and "nextToken" in page
    assert ecs.list_task_definition_families(maxResults=1, nextToken=page["nextToken"])["families"] == [
        "svc-a"
    ]


def test_deregister_then_delete(ecs) -> None:  # type: ignore[no-untyped-def]
    ecs.register_task_definition(**web("gone"))
    result = ecs.delete_task_definitions(taskDefinitions=["gone:1"])
    assert result["taskDefinitions"] == [] and len(result["failures"]) == 1
    ecs.deregister_task_definition(taskDefinition="gone:1")
    result = ecs.delete_task_definitions(taskDefinitions=["gone:1"])
    assert [t["status"] for t in result["taskDefinitions"]] == ["DELETE_IN_PROGRESS"]
    with pytest.raises(ClientError) as excinfo:
        ecs.describe_task_definition(taskDefinition="gone:1")
    assert code_of(excinfo) == "ClientException"
    # Revisions are never reused, even after deletion.
    assert ecs.register_task_definition(**web("gone"))["taskDefinition"]["revision"] == 2


def test_unknown_task_definition(ecs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as excinfo:
        ecs.describe_task_definition(taskDefinition="nothing:1")
    assert excinfo.value.response["Error"] == {
        "Code": "ClientException",
        "Message": "Unable to describe task definition.",
    }


def test_account_settings(ecs) -> None:  # type: ignore[no-untyped-def]
    root = f"arn:aws:iam::{ACCOUNT_ID}:root"
    put = ecs.put_account_setting(name="awsvpcTrunking", value="enabled")["setting"]
    assert put["name"] == "awsvpcTrunking" and put["value"] == "enabled" and put["principalArn"] == root
    listed = ecs.list_account_settings(name="awsvpcTrunking")["settings"]
    assert [(s["name"], s["value"]) for s in listed] == [("awsvpcTrunking", "enabled")]
    effective = {
        s["name"]: s["value"]
        for page in ecs.get_paginator("list_account_settings").paginate(effectiveSettings=True)
        for s in page["settings"]
    }
    assert effective["awsvpcTrunking"] == "enabled"
    assert effective["containerInsights"] == "disabled"
    ecs.put_account_setting_default(name="containerInsights", value="enhanced")
    effective = {
        s["name"]: s["value"]
        for page in ecs.get_paginator("list_account_settings").paginate(effectiveSettings=True)
        for s in page["settings"]
    }
    assert effective["containerInsights"] == "enhanced"
    with pytest.raises(ClientError) as excinfo:
        ecs.put_account_setting(name="awsvpcTrunking", value="ENABLED")
    assert excinfo.value.response["Error"]["Message"] == "Invalid setting 'value'"
    deleted = ecs.delete_account_setting(name="awsvpcTrunking")["setting"]
    assert deleted["value"] == "enabled"
    assert ecs.list_account_settings(name="awsvpcTrunking")["settings"] == []
