"""Container instances through the agent API and the ECS API: registration, describe/list, resources,
DRAINING, deregistration, attributes; the agent API's authentication and errors."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from taskvpc.agentapi import PREFIX
from tests.integration.ecs_support import (
    awsvpc,
    default_subnets,
    describe,
    error_of,
    instance,
    register_web,
    remaining,
)
from tests.integration.fake_agent import AgentError, FakeAgent
from tests.integration.server import ACCOUNT_ID, REGION, Server, TaskvpcServer
from tests.support.pgserver import ThrowawayPostgres

INSTANCE_ARN_PREFIX = f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:container-instance/default/"


def test_registration_through_the_agent_api(api: Server, agents: Any) -> None:
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    agent = agents(instance_type="c5.large", cpu=2048, memory=3768)
    answer = agent.register()
    subnets = default_subnets(ec2)
    assert answer["containerInstanceArn"].startswith(INSTANCE_ARN_PREFIX)
    assert len(answer["containerInstanceArn"].rsplit("/", 1)[-1]) == 32
    assert answer["availabilityZone"] == "us-east-1a" and answer["subnetId"] == subnets["us-east-1a"]
    assert answer["vpcId"] == ec2.describe_subnets(SubnetIds=[answer["subnetId"]])["Subnets"][0]["VpcId"]
    cluster = ecs.describe_clusters()["clusters"][0]  # `default` was created on first use
    assert cluster["clusterName"] == "default" and cluster["registeredContainerInstancesCount"] == 1

    described = instance(ecs, agent.arn)
    assert list(described) == [
        "containerInstanceArn", "ec2InstanceId", "version", "versionInfo", "remainingResources",
        "registeredResources", "status", "agentConnected", "runningTasksCount", "pendingTasksCount",
        "attributes", "registeredAt", "attachments",
    ]  # fmt: skip
    assert described["ec2InstanceId"] == agent.instance_id and described["status"] == "ACTIVE"
    assert described["agentConnected"] is False  # registered, but no poll yet
    assert described["versionInfo"] == {"agentVersion": "taskvpc-fake-0.1"}
    assert described["registeredResources"] == [
        {"name": "CPU", "type": "INTEGER", "doubleValue": 0.0, "longValue": 0, "integerValue": 2048},
        {"name": "MEMORY", "type": "INTEGER", "doubleValue": 0.0, "longValue": 0, "integerValue": 3768},
        {
            "name": "PORTS", "type": "STRINGSET", "doubleValue": 0.0, "longValue": 0, "integerValue": 0,
            "stringSetValue": ["22", "2375", "2376", "51678", "51679"],
        },
        {"name": "PORTS_UDP", "type": "STRINGSET", "doubleValue": 0.0, "longValue": 0, "integerValue": 0, "stringSetValue": []},
    ]  # fmt: skip
    assert described["remainingResources"] == described["registeredResources"]
    assert (described["runningTasksCount"], described["pendingTasksCount"], described["attachments"]) == (
        0,
        0,
        [],
    )
    attributes = {a["name"]: a.get("value") for a in described["attributes"]}
    assert attributes["ecs.availability-zone"] == "us-east-1a"
    assert attributes["ecs.subnet-id"] == answer["subnetId"] and attributes["ecs.vpc-id"] == answer["vpcId"]
    assert attributes["ecs.instance-type"] == "c5.large" and attributes["ecs.os-type"] == "linux"
    assert "ecs.capability.task-eni" in attributes and attributes["ecs.capability.task-eni"] is None

    agent.start()
    assert instance(ecs, agent.arn)["agentConnected"] is True
    health = ecs.describe_container_instances(
        containerInstances=[agent.arn], include=["CONTAINER_INSTANCE_HEALTH", "TAGS"]
    )
    shown = health["containerInstances"][0]
    assert shown["healthStatus"]["overallStatus"] == "OK" and shown["tags"] == []

    # the agent restarting registers again: the same container instance
    again = FakeAgent(api, instance_id=agent.instance_id).register()
    assert again["containerInstanceArn"] == agent.arn
    assert ecs.describe_clusters()["clusters"][0]["registeredContainerInstancesCount"] == 1
    assert ecs.list_container_instances()["containerInstanceArns"] == [agent.arn]


def test_describe_missing_and_errors(api: Server, agents: Any) -> None:
    ecs = api.client("ecs")
    agent = agents()
    agent.register()
    missing = "0" * 32
    result = ecs.describe_container_instances(containerInstances=[agent.arn, missing])
    assert [c["containerInstanceArn"] for c in result["containerInstances"]] == [agent.arn]
    assert result["failures"] == [{"arn": INSTANCE_ARN_PREFIX + missing, "reason": "MISSING"}]
    with pytest.raises(ClientError) as excinfo:
        ecs.describe_container_instances(cluster="nope", containerInstances=[agent.arn])
    assert error_of(excinfo) == ("ClusterNotFoundException", "Cluster not found.")


def test_list_container_instances_filters_status_and_pages(api: Server, agents: Any) -> None:
    ecs = api.client("ecs")
    c5 = agents(instance_type="c5.large").start()
    m5 = agents(instance_type="m5.xlarge", cpu=4096, memory=15000).start()
    idle = agents(instance_type="c5.large")
    idle.register()
    everyone = sorted([c5.arn, m5.arn, idle.arn])
    assert sorted(ecs.list_container_instances()["containerInstanceArns"]) == everyone
    assert ecs.list_container_instances(filter="attribute:ecs.instance-type == m5.xlarge")[
        "containerInstanceArns"
    ] == [m5.arn]
    assert sorted(
        ecs.list_container_instances(filter="agentConnected == true")["containerInstanceArns"]
    ) == sorted([c5.arn, m5.arn])
    assert ecs.list_container_instances(filter=f"ec2InstanceId in [{idle.instance_id}]")[
        "containerInstanceArns"
    ] == [idle.arn]
    ecs.update_container_instances_state(containerInstances=[idle.arn], status="DRAINING")
    assert ecs.list_container_instances(status="DRAINING")["containerInstanceArns"] == [idle.arn]
    assert sorted(ecs.list_container_instances(status="ACTIVE")["containerInstanceArns"]) == sorted(
        [c5.arn, m5.arn]
    )
    pages = ecs.get_paginator("list_container_instances").paginate(PaginationConfig={"PageSize": 2})
    assert [arn for page in pages for arn in page["containerInstanceArns"]] == everyone
    with pytest.raises(ClientError) as excinfo:
        ecs.list_container_instances(filter="attribute:x ==")
    assert error_of(excinfo)[0] == "InvalidParameterException"
    ecs.deregister_container_instance(containerInstance=idle.arn)
    assert idle.arn not in ecs.list_container_instances()["containerInstanceArns"]


def test_resources_go_down_and_back_up(api: Server, agents: Any) -> None:
    ecs = api.client("ecs")
    agent = agents(max_task_enis=4).start()
    register_web(ecs, cpu="512", memory="1024")
    subnet = default_subnets(api.client("ec2"))["us-east-1a"]
    full = remaining(instance(ecs, agent.arn))
    arns = [
        t["taskArn"]
        for t in ecs.run_task(taskDefinition="web", count=2, networkConfiguration=awsvpc(subnet))["tasks"]
    ]
    busy = instance(ecs, agent.arn)
    assert remaining(busy) == {"CPU": full["CPU"] - 1024, "MEMORY": full["MEMORY"] - 2048}
    assert (busy["pendingTasksCount"], busy["runningTasksCount"]) == (2, 0)
    assert ecs.describe_clusters()["clusters"][0]["pendingTasksCount"] == 2
    for arn in arns:
        agent.wait_for_task(arn)
        agent.running(arn)
    busy = instance(ecs, agent.arn)
    assert (busy["pendingTasksCount"], busy["runningTasksCount"]) == (0, 2)
    ecs.stop_task(task=arns[0])
    agent.wait_for_task(arns[0], "STOPPED")
    agent.stopped(arns[0])
    assert remaining(instance(ecs, agent.arn)) == {"CPU": full["CPU"] - 512, "MEMORY": full["MEMORY"] - 1024}
    ecs.stop_task(task=arns[1])
    agent.wait_for_task(arns[1], "STOPPED")
    agent.stopped(arns[1])
    done = instance(ecs, agent.arn)
    assert remaining(done) == full and (done["pendingTasksCount"], done["runningTasksCount"]) == (0, 0)


def test_deregister_without_and_with_force(api: Server, agents: Any) -> None:
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    agent = agents().start()
    register_web(ecs)
    subnet = default_subnets(ec2)["us-east-1a"]
    free = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["AvailableIpAddressCount"]
    arn = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnet))["tasks"][0]["taskArn"]
    agent.wait_for_task(arn)
    agent.running(arn)
    with pytest.raises(ClientError) as excinfo:
        ecs.deregister_container_instance(containerInstance=agent.arn)
    assert error_of(excinfo) == ("InvalidParameterException", "Found running tasks on the instance.")
    with pytest.raises(ClientError) as excinfo:
        ecs.delete_cluster(cluster="default")
    assert error_of(excinfo)[0] == "ClusterContainsContainerInstancesException"

    gone = ecs.deregister_container_instance(containerInstance=agent.arn, force=True)["containerInstance"]
    assert gone["status"] == "INACTIVE" and gone["agentConnected"] is False
    assert gone["remainingResources"] == gone["registeredResources"] and gone["runningTasksCount"] == 0
    task = describe(ecs, arn)
    assert task["lastStatus"] == "STOPPED" and task["desiredStatus"] == "STOPPED"
    assert task["attachments"][0]["status"] == "DELETED"
    assert ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["AvailableIpAddressCount"] == free
    assert agent.wait_for(lambda d: d["instance"]["status"] == "INACTIVE")["tasks"] == []
    assert instance(ecs, agent.arn)["status"] == "INACTIVE"  # still described
    assert ecs.list_container_instances()["containerInstanceArns"] == []
    cluster = ecs.describe_clusters()["clusters"][0]
    assert (cluster["registeredContainerInstancesCount"], cluster["runningTasksCount"]) == (0, 0)
    ecs.delete_cluster(cluster="default")

    with pytest.raises(ClientError) as excinfo:
        ecs.deregister_container_instance(cluster="nope", containerInstance=agent.arn)
    assert error_of(excinfo)[0] == "ClusterNotFoundException"


def test_agent_deregisters_itself_and_registers_anew(api: Server, agents: Any) -> None:
    ecs = api.client("ecs")
    agent = agents()
    agent.register()
    first_arn = agent.arn
    assert agent.deregister()["status"] == "INACTIVE"
    assert instance(ecs, first_arn)["status"] == "INACTIVE"
    agent.register()  # the same EC2 instance, registered again after a deregistration: a new instance
    assert agent.arn != first_arn
    assert ecs.list_container_instances()["containerInstanceArns"] == [agent.arn]


def test_update_container_instances_state_errors(api: Server, agents: Any) -> None:
    ecs = api.client("ecs")
    agent = agents()
    agent.register()
    with pytest.raises(ClientError) as excinfo:
        ecs.update_container_instances_state(containerInstances=[agent.arn], status="REGISTERING")
    assert error_of(excinfo)[0] == "InvalidParameterException"
    missing = "1" * 32
    result = ecs.update_container_instances_state(containerInstances=[agent.arn, missing], status="DRAINING")
    assert [c["status"] for c in result["containerInstances"]] == ["DRAINING"]
    assert result["failures"] == [{"arn": INSTANCE_ARN_PREFIX + missing, "reason": "MISSING"}]
    again = ecs.update_container_instances_state(containerInstances=[agent.arn], status="ACTIVE")
    assert again["containerInstances"][0]["status"] == "ACTIVE"


def test_attributes_api(api: Server, agents: Any) -> None:
    ecs = api.client("ecs")
    first, second = agents(), agents()
    first.register()
    second.register()
    put = ecs.put_attributes(
        attributes=[
            {"name": "stack", "value": "prod", "targetId": first.arn},
            {"name": "stack", "value": "test", "targetId": second.arn.rsplit("/", 1)[-1]},
            {"name": "gpu", "targetId": first.arn, "targetType": "container-instance"},
        ]
    )["attributes"]
    assert put[0] == {"name": "stack", "value": "prod", "targetId": first.arn}
    stacks = ecs.list_attributes(targetType="container-instance", attributeName="stack")["attributes"]
    assert sorted((a["targetId"], a["value"]) for a in stacks) == sorted(
        [(first.arn, "prod"), (second.arn, "test")]
    )
    assert all(a["targetType"] == "container-instance" for a in stacks)
    prod = ecs.list_attributes(targetType="container-instance", attributeName="stack", attributeValue="prod")
    assert [a["targetId"] for a in prod["attributes"]] == [first.arn]
    everything = ecs.get_paginator("list_attributes").paginate(
        targetType="container-instance", PaginationConfig={"PageSize": 7}
    )
    names = [a["name"] for page in everything for a in page["attributes"]]
    assert names.count("stack") == 2 and names.count("gpu") == 1 and "ecs.os-type" in names
    attributes = {a["name"]: a.get("value") for a in instance(ecs, first.arn)["attributes"]}
    assert attributes["stack"] == "prod" and "gpu" in attributes and attributes["gpu"] is None
    assert ecs.list_container_instances(filter="attribute:stack == prod")["containerInstanceArns"] == [
        first.arn
    ]
    assert ecs.list_container_instances(filter="attribute:gpu exists")["containerInstanceArns"] == [first.arn]

    ecs.delete_attributes(attributes=[{"name": "stack", "targetId": first.arn}])
    left = ecs.list_attributes(targetType="container-instance", attributeName="stack")["attributes"]
    assert [a["targetId"] for a in left] == [second.arn]

    with pytest.raises(ClientError) as excinfo:
        ecs.put_attributes(attributes=[{"name": "x", "value": "y", "targetId": "0" * 32}])
    assert error_of(excinfo)[0] == "TargetNotFoundException"
    with pytest.raises(ClientError) as excinfo:
        ecs.put_attributes(attributes=[{"name": "bad name!", "value": "y", "targetId": first.arn}])
    assert error_of(excinfo)[0] == "InvalidParameterException"
    ecs.put_attributes(attributes=[{"name": f"a{i}", "value": "v", "targetId": first.arn} for i in range(9)])
    with pytest.raises(ClientError) as excinfo:
        ecs.put_attributes(
            attributes=[
                {"name": "a9", "value": "v", "targetId": first.arn},
                {"name": "a10", "targetId": first.arn},
            ]
        )
    assert error_of(excinfo) == (
        "AttributeLimitExceededException",
        "You can apply up to 10 custom attributes for each resource.",
    )
    # custom attributes survive the agent registering again
    first.register()
    assert "a3" in {a["name"] for a in instance(ecs, first.arn)["attributes"]}


def test_public_register_container_instance(api: Server) -> None:
    ecs = api.client("ecs")
    ecs.create_cluster(clusterName="prod")
    document = json.dumps(
        {
            "instanceId": "i-0123456789abcdef0",
            "availabilityZone": "us-east-1b",
            "instanceType": "m5.large",
            "region": REGION,
        }
    )
    registered = ecs.register_container_instance(
        cluster="prod",
        instanceIdentityDocument=document,
        instanceIdentityDocumentSignature="not checked",
        attributes=[{"name": "ecs.capability.task-eni"}],
        versionInfo={"agentVersion": "1.80.0", "agentHash": "abc", "dockerVersion": "DockerVersion: 24"},
    )["containerInstance"]
    assert registered["containerInstanceArn"].startswith(
        f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:container-instance/prod/"
    )
    assert registered["ec2InstanceId"] == "i-0123456789abcdef0"
    assert remaining(registered) == {"CPU": 2048, "MEMORY": 8192}  # from the instance type
    attributes = {a["name"]: a.get("value") for a in registered["attributes"]}
    assert (
        attributes["ecs.availability-zone"] == "us-east-1b" and attributes["ecs.instance-type"] == "m5.large"
    )
    assert registered["versionInfo"]["agentVersion"] == "1.80.0"
    with pytest.raises(ClientError) as excinfo:
        ecs.register_container_instance(cluster="prod")
    assert error_of(excinfo)[0] == "InvalidParameterException"
    ecs.deregister_container_instance(cluster="prod", containerInstance=registered["containerInstanceArn"])
    with pytest.raises(ClientError) as excinfo:
        ecs.register_container_instance(
            cluster="prod",
            instanceIdentityDocument=document,
            containerInstanceArn=registered["containerInstanceArn"],
        )
    instance_id = registered["containerInstanceArn"].rsplit("/", 1)[-1]
    assert error_of(excinfo) == (
        "ClientException",
        f"Referenced container instance {instance_id} not registered.",
    )


def _raw(
    api: Server,
    path: str,
    method: str = "POST",
    body: bytes = b"{}",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"{api.endpoint}{PREFIX.rstrip('/')}{path}",
        data=body if method != "GET" else None,
        method=method,
        headers=headers or {},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_agent_api_authentication_and_errors(api: Server, agents: Any) -> None:
    status, payload = _raw(api, "/register")
    assert status == 403 and "message" in payload
    status, _ = _raw(
        api,
        "/register",
        headers={
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAWRONG/20260101/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=00"
        },
    )
    assert status == 403
    agent = agents()
    with pytest.raises(AgentError) as excinfo:
        agent.request("GET", f"/instances/{'a' * 32}/desired")
    assert excinfo.value.status == 404
    with pytest.raises(AgentError) as excinfo:
        agent.request("POST", "/register", {"cluster": "default"})
    assert excinfo.value.status == 400 and excinfo.value.payload["code"] == "BadRequest"
    with pytest.raises(AgentError) as excinfo:
        FakeAgent(api, cluster="nope").register()
    assert (excinfo.value.status, excinfo.value.payload["code"]) == (400, "ClusterNotFoundException")
    with pytest.raises(AgentError) as excinfo:
        FakeAgent(api, instance_type="x9.huge").register()
    assert excinfo.value.status == 400
    assert FakeAgent(api, instance_type=None, max_task_enis=3).register()["availabilityZone"] == "us-east-1a"
    with pytest.raises(AgentError) as excinfo:
        agent.request("GET", "/nowhere")
    assert excinfo.value.status == 404
    agent.register()
    with pytest.raises(AgentError) as excinfo:
        agent.report({"taskArn": 5})
    assert excinfo.value.status == 400
    # a report about a task that is not this instance's is ignored
    assert agent.report(
        {"taskArn": f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:task/default/{'b' * 32}", "knownStatus": "RUNNING"}
    ) == {"generation": agent.poll()["generation"]}


def test_reset_wipes_instances_and_tasks(api: Server, agents: Any) -> None:
    ecs = api.client("ecs")
    agent = agents().start()
    register_web(ecs)
    subnet = default_subnets(api.client("ec2"))["us-east-1a"]
    ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnet))
    ecs.put_attributes(attributes=[{"name": "stack", "value": "prod", "targetId": agent.arn}])
    api.reset()
    with pytest.raises(AgentError) as excinfo:
        agent.poll()
    assert excinfo.value.status == 404
    ecs.create_cluster()
    assert ecs.list_container_instances()["containerInstanceArns"] == []
    assert ecs.list_tasks()["taskArns"] == []
    assert ecs.list_attributes(targetType="container-instance")["attributes"] == []


@pytest.mark.postgres
def test_long_poll_sees_a_change_made_by_another_server_process(
    postgres: ThrowawayPostgres | None, tmp_path: Path
) -> None:
    """Two servers on one PostgreSQL: a poll waiting on one sees RunTask on the other (re-read each second)."""
    if postgres is None:
        pytest.skip("TASKVPC_TEST_POSTGRES=0")
    url = postgres.create_database()
    one = TaskvpcServer(tmp_path / "one", url).start()
    two = TaskvpcServer(tmp_path / "two", url).start()
    try:
        agent = FakeAgent(one)
        agent.register()
        agent.poll()
        ecs = two.client("ecs")
        register_web(ecs)
        subnet = default_subnets(two.client("ec2"))["us-east-1a"]
        answered: list[float] = []
        poller = threading.Thread(target=lambda: (agent.poll(wait=20), answered.append(time.monotonic())))
        poller.start()
        time.sleep(0.3)
        ran_at = time.monotonic()
        arn = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnet))["tasks"][0]["taskArn"]
        poller.join(timeout=10)
        assert answered and answered[0] - ran_at < 2.0
        assert [t["taskArn"] for t in agent.desired["tasks"]] == [arn]
    finally:
        one.stop()
        two.stop()
