"""Shared pieces of the ECS task and container-instance integration tests."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.server import aws_error

WEB_CONTAINER: dict[str, Any] = {
    "name": "web",
    "image": "public.ecr.aws/docker/library/busybox:stable",
    "cpu": 256,
    "memory": 512,
    "essential": True,
    "entryPoint": ["sh", "-c"],
    "command": ["exec httpd -f -p 80"],
    "portMappings": [{"containerPort": 80, "protocol": "tcp"}],
}


def register_web(
    ecs: Any,
    family: str = "web",
    *,
    network_mode: str = "awsvpc",
    cpu: str | None = "256",
    memory: str | None = "512",
    containers: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "family": family,
        "networkMode": network_mode,
        "containerDefinitions": containers or [dict(WEB_CONTAINER)],
        **extra,
    }
    if cpu is not None:
        request["cpu"] = cpu
    if memory is not None:
        request["memory"] = memory
    result: dict[str, Any] = ecs.register_task_definition(**request)["taskDefinition"]
    return result


def default_subnets(ec2: Any) -> dict[str, str]:
    """Availability zone -> the default VPC's default subnet there."""
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    return {s["AvailabilityZone"]: s["SubnetId"] for s in subnets}


def awsvpc(*subnets: str, groups: list[str] | None = None, public_ip: str | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {"subnets": list(subnets)}
    if groups is not None:
        config["securityGroups"] = groups
    if public_ip is not None:
        config["assignPublicIp"] = public_ip
    return {"awsvpcConfiguration": config}


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    code, message, _status = aws_error(excinfo)
    return code, message


def describe(ecs: Any, arn: str, **options: Any) -> dict[str, Any]:
    task: dict[str, Any] = ecs.describe_tasks(tasks=[arn], **options)["tasks"][0]
    return task


def instance(ecs: Any, arn: str, cluster: str = "default") -> dict[str, Any]:
    found: dict[str, Any] = ecs.describe_container_instances(cluster=cluster, containerInstances=[arn])[
        "containerInstances"
    ][0]
    return found


def remaining(container_instance: dict[str, Any]) -> dict[str, int]:
    return {
        r["name"]: r["integerValue"]
        for r in container_instance["remainingResources"]
        if r["name"] in ("CPU", "MEMORY")
    }
