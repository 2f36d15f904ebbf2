"""The FARGATE launch type on an agent registered as Fargate capacity, and capacity providers."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from taskvpc.domain.capacity import MIXED, NOT_ASSOCIATED
from tests.integration.ecs_support import awsvpc, default_subnets, error_of, register_web
from tests.integration.server import TaskvpcServer

FARGATE_AGENT = {"taskvpc.fargate-capacity": None}
WAIT = {"Delay": 1, "MaxAttempts": 60}


def test_fargate_tasks_run_on_fargate_capacity(api: TaskvpcServer, agents: Any) -> None:
    agent = agents(max_task_enis=10, attributes=FARGATE_AGENT).start(auto=True)
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    register_web(ecs)
    net = awsvpc(*default_subnets(ec2).values(), public_ip="ENABLED")
    tasks = ecs.run_task(taskDefinition="web", launchType="FARGATE", count=2, networkConfiguration=net)[
        "tasks"
    ]
    assert len(tasks) == 2
    task = tasks[0]
    assert "containerInstanceArn" not in task
    assert task["launchType"] == "FARGATE"
    assert task["capacityProviderName"] == "FARGATE"
    assert task["platformVersion"] == "1.4.0" and task["platformFamily"] == "Linux"
    assert task["ephemeralStorage"] == {"sizeInGiB": 20}
    ecs.get_waiter("tasks_running").wait(tasks=[t["taskArn"] for t in tasks], WaiterConfig=WAIT)
    running = ecs.describe_tasks(tasks=[task["taskArn"]])["tasks"][0]
    assert running["attachments"][0]["status"] == "ATTACHED"
    assert "containerInstanceArn" not in running
    assert sorted(ecs.list_tasks(launchType="FARGATE")["taskArns"]) == sorted(t["taskArn"] for t in tasks)
    assert ecs.list_tasks(launchType="EC2")["taskArns"] == []
    latest = ecs.run_task(
        taskDefinition="web", launchType="FARGATE", platformVersion="LATEST", networkConfiguration=net
    )
    assert latest["tasks"][0]["platformVersion"] == "1.4.0"

    def refused(**request: Any) -> tuple[str, str]:
        with pytest.raises(ClientError) as excinfo:
            ecs.run_task(taskDefinition="web", networkConfiguration=net, **request)
        return error_of(excinfo)

    assert refused(launchType="EC2", platformVersion="1.4.0") == (
        "InvalidParameterException",
        "The platform version must be null when specifying an EC2 launch type.",
    )
    assert refused(launchType="FARGATE", overrides={"cpu": "256", "memory": "4096"}) == (
        "InvalidParameterException",
        "No Fargate configuration exists for given values: 256 CPU, 4096 memory. "
        "See the Amazon ECS documentation for the valid values.",
    )
    register_web(ecs, family="bridged", network_mode="bridge")
    with pytest.raises(ClientError) as excinfo:
        ecs.run_task(taskDefinition="bridged", launchType="FARGATE")
    assert error_of(excinfo) == (
        "InvalidParameterException",
        "Task definition does not support launch_type FARGATE.",
    )
    assert agent.errors == []


def test_a_fargate_service_through_the_cluster_default_strategy(api: TaskvpcServer, agents: Any) -> None:
    agents(max_task_enis=10, attributes=FARGATE_AGENT).start(auto=True)
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    register_web(ecs)
    names = [p["name"] for p in ecs.describe_capacity_providers()["capacityProviders"]]
    assert names == ["FARGATE", "FARGATE_SPOT"]
    strategy = [
        {"capacityProvider": "FARGATE", "weight": 1},
        {"capacityProvider": "FARGATE_SPOT", "weight": 1},
    ]
    cluster = ecs.put_cluster_capacity_providers(
        cluster="default",
        capacityProviders=["FARGATE", "FARGATE_SPOT"],
        defaultCapacityProviderStrategy=strategy,
    )["cluster"]
    assert cluster["defaultCapacityProviderStrategy"] == [{**s, "base": 0} for s in strategy]
    subnets = list(default_subnets(ec2).values())
    ecs.create_service(
        serviceName="web", taskDefinition="web", desiredCount=4, networkConfiguration=awsvpc(*subnets)
    )
    ecs.get_waiter("services_stable").wait(services=["web"], WaiterConfig=WAIT)
    arns = ecs.list_tasks(serviceName="web")["taskArns"]
    described = ecs.describe_tasks(tasks=arns)["tasks"]
    assert sorted(t["capacityProviderName"] for t in described) == [
        "FARGATE",
        "FARGATE",
        "FARGATE_SPOT",
        "FARGATE_SPOT",
    ]
    assert {t["launchType"] for t in described} == {"FARGATE"}


def test_capacity_provider_lifecycle_and_errors(api: TaskvpcServer, agents: Any) -> None:
    agents(max_task_enis=10).start(auto=True)
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    register_web(ecs)
    asg = "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:1:autoScalingGroupName/web"
    created = ecs.create_capacity_provider(
        name="web-asg", autoScalingGroupProvider={"autoScalingGroupArn": asg}
    )
    provider = created["capacityProvider"]
    assert provider["status"] == "ACTIVE"
    assert provider["capacityProviderArn"] == "arn:aws:ecs:us-east-1:123456789012:capacity-provider/web-asg"
    with pytest.raises(ClientError) as excinfo:
        ecs.create_capacity_provider(name="ecs-mine", autoScalingGroupProvider={"autoScalingGroupArn": asg})
    assert error_of(excinfo)[0] == "InvalidParameterException"
    net = awsvpc(*default_subnets(ec2).values())
    with pytest.raises(ClientError) as excinfo:
        ecs.run_task(taskDefinition="web", networkConfiguration=net,
                     capacityProviderStrategy=[{"capacityProvider": "web-asg", "weight": 1}])  # fmt: skip
    assert error_of(excinfo) == ("InvalidParameterException", NOT_ASSOCIATED)
    with pytest.raises(ClientError) as excinfo:
        ecs.put_cluster_capacity_providers(
            cluster="default", capacityProviders=["web-asg", "FARGATE"],
            defaultCapacityProviderStrategy=[{"capacityProvider": "web-asg", "weight": 1},
                                             {"capacityProvider": "FARGATE", "weight": 1}],
        )  # fmt: skip
    assert error_of(excinfo) == ("InvalidParameterException", MIXED)
    ecs.put_cluster_capacity_providers(
        cluster="default", capacityProviders=["web-asg"], defaultCapacityProviderStrategy=[]
    )
    task = ecs.run_task(taskDefinition="web", networkConfiguration=net,
                        capacityProviderStrategy=[{"capacityProvider": "web-asg", "weight": 1}])["tasks"][0]  # fmt: skip
    assert task["capacityProviderName"] == "web-asg" and task["launchType"] == "EC2"
    assert "containerInstanceArn" in task
    with pytest.raises(ClientError) as excinfo:
        ecs.delete_capacity_provider(capacityProvider="web-asg")
    assert error_of(excinfo)[0] == "ResourceInUseException"
    ecs.put_cluster_capacity_providers(
        cluster="default", capacityProviders=[], defaultCapacityProviderStrategy=[]
    )
    deleted = ecs.delete_capacity_provider(capacityProvider="web-asg")["capacityProvider"]
    assert deleted["status"] == "INACTIVE"
    found = ecs.describe_capacity_providers(capacityProviders=["web-asg"])
    assert found["failures"] == [
        {"arn": "arn:aws:ecs:us-east-1:123456789012:capacity-provider/web-asg", "reason": "MISSING"}
    ]
