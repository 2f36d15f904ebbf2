"""RunTask/StopTask/DescribeTasks/ListTasks against a real server, with a fake agent (docs/agent-api.md)
playing the container instance, on SQLite and PostgreSQL. Shapes are checked against the real outputs in
the reference spec section 3."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from taskvpc.control.ecs.tasks import NO_FARGATE_CAPACITY
from tests.integration.ecs_support import (
    WEB_CONTAINER,
    awsvpc,
    default_subnets,
    describe,
    error_of,
    instance,
    register_web,
    remaining,
)
from tests.integration.server import ACCOUNT_ID, REGION, Server

TASK_ARN_PREFIX = f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:task/default/"


def _available(ec2: Any, subnet_id: str) -> int:
    return int(ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]["AvailableIpAddressCount"])


def test_lifecycle_shapes_from_provisioning_to_stopped(api: Server, agents: Any) -> None:
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    agent = agents(instance_type="c5.large").start()
    subnet = default_subnets(ec2)["us-east-1a"]
    td = register_web(ecs)
    free_before = _available(ec2, subnet)
    before = remaining(instance(ecs, agent.arn))

    response = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnet), startedBy="me")
    assert response["failures"] == []
    [task] = response["tasks"]
    arn = task["taskArn"]
    task_id = arn.rsplit("/", 1)[-1]
    assert arn == TASK_ARN_PREFIX + task_id and len(task_id) == 32 and int(task_id, 16) >= 0

    # PROVISIONING: the ENI is reserved; the attachment is PRECREATED with only subnetId.
    assert set(task) == {
        "attachments", "attributes", "availabilityZone", "clusterArn", "containerInstanceArn", "containers",
        "cpu", "createdAt", "desiredStatus", "enableExecuteCommand", "group", "lastStatus", "launchType",
        "memory", "overrides", "startedBy", "tags", "taskArn", "taskDefinitionArn", "version",
    }  # fmt: skip
    assert task["lastStatus"] == "PROVISIONING" and task["desiredStatus"] == "RUNNING"
    assert task["version"] == 1
    [attachment] = task["attachments"]
    assert attachment["type"] == "ElasticNetworkInterface" and attachment["status"] == "PRECREATED"
    assert attachment["details"] == [{"name": "subnetId", "value": subnet}]
    [container] = task["containers"]
    assert container["lastStatus"] == "PENDING" and container["networkInterfaces"] == []
    assert container["name"] == "web" and container["cpu"] == "256" and container["memory"] == "512"
    assert container["containerArn"].startswith(
        f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:container/default/{task_id}/"
    )
    assert task["containerInstanceArn"] == agent.arn and task["availabilityZone"] == "us-east-1a"
    assert task["clusterArn"] == f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:cluster/default"
    assert task["taskDefinitionArn"] == td["taskDefinitionArn"]
    assert (task["cpu"], task["memory"], task["launchType"]) == ("256", "512", "EC2")
    assert task["group"] == "family:web" and task["startedBy"] == "me"
    assert task["enableExecuteCommand"] is False and task["tags"] == []
    assert task["attributes"] == [{"name": "ecs.cpu-architecture", "value": "x86_64"}]
    assert task["overrides"] == {"containerOverrides": [{"name": "web"}], "inferenceAcceleratorOverrides": []}
    assert describe(ecs, arn) == {k: v for k, v in task.items() if k != "tags"}

    # EC2 sees a requester-managed ENI holding an address of the subnet.
    eni_filter = [
        {
            "Name": "description",
            "Values": [f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:attachment/{attachment['id']}"],
        }
    ]
    [eni] = ec2.describe_network_interfaces(Filters=eni_filter)["NetworkInterfaces"]
    assert eni["Status"] == "available" and eni["RequesterManaged"] is True and eni["SubnetId"] == subnet
    assert [g["GroupName"] for g in eni["Groups"]] == ["default"]
    assert _available(ec2, subnet) == free_before - 1

    # The agent's desired state carries the task with its ENI.
    entry = agent.wait_for_task(arn)
    assert entry["eni"]["networkInterfaceId"] == eni["NetworkInterfaceId"]
    assert entry["eni"]["macAddress"] == eni["MacAddress"]
    assert entry["eni"]["privateIpv4Address"] == eni["PrivateIpAddress"]
    assert entry["eni"]["gateway"] == "172.31.0.1" and entry["eni"]["prefixLength"] == 20
    assert entry["containers"][0]["command"] == ["exec httpd -f -p 80"]

    # ATTACHED: PENDING, full attachment details, the containers' network interfaces.
    agent.attach(arn)
    pending = describe(ecs, arn)
    assert pending["lastStatus"] == "PENDING" and pending["version"] == 2
    [attachment] = pending["attachments"]
    assert attachment["status"] == "ATTACHED"
    assert attachment["details"] == [
        {"name": "subnetId", "value": subnet},
        {"name": "networkInterfaceId", "value": eni["NetworkInterfaceId"]},
        {"name": "macAddress", "value": eni["MacAddress"]},
        {"name": "privateDnsName", "value": eni["PrivateDnsName"]},
        {"name": "privateIPv4Address", "value": eni["PrivateIpAddress"]},
    ]
    assert pending["containers"][0]["networkInterfaces"] == [
        {"attachmentId": attachment["id"], "privateIpv4Address": eni["PrivateIpAddress"]}
    ]
    assert pending["connectivity"] == "CONNECTED" and "connectivityAt" in pending
    assert pending["healthStatus"] == "UNKNOWN"
    in_use = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni["NetworkInterfaceId"]])[
        "NetworkInterfaces"
    ][0]
    assert in_use["Status"] == "in-use" and in_use["Attachment"]["InstanceId"] == agent.instance_id

    # RUNNING: every essential container runs.
    agent.running(arn)
    running = describe(ecs, arn)
    assert running["lastStatus"] == "RUNNING" and running["version"] == 3
    assert {"startedAt", "pullStartedAt", "pullStoppedAt"} <= set(running)
    [container] = running["containers"]
    assert container["lastStatus"] == "RUNNING" and container["runtimeId"].startswith("fake-")
    assert container["healthStatus"] == "UNKNOWN" and container["networkBindings"] == []
    cluster = ecs.describe_clusters()["clusters"][0]
    assert (cluster["runningTasksCount"], cluster["pendingTasksCount"]) == (1, 0)
    busy = instance(ecs, agent.arn)
    assert remaining(busy) == {"CPU": before["CPU"] - 256, "MEMORY": before["MEMORY"] - 512}
    assert (busy["runningTasksCount"], busy["pendingTasksCount"]) == (1, 0)

    # StopTask: desired STOPPED, UserInitiated with ECS's default reason; DEACTIVATING until the agent acts.
    stopping = ecs.stop_task(task=arn)["task"]
    assert stopping["desiredStatus"] == "STOPPED" and stopping["lastStatus"] == "DEACTIVATING"
    assert stopping["stopCode"] == "UserInitiated" and stopping["stoppedReason"] == "Task stopped by user"
    assert "stoppingAt" in stopping and stopping["version"] == 4
    assert agent.wait_for_task(arn, "STOPPED")["stopReason"] == "Task stopped by user"

    # The agent stopped it: DEPROVISIONING -> ENI released -> STOPPED, attachment DELETED.
    agent.stopped(arn)
    stopped = describe(ecs, arn)
    assert stopped["lastStatus"] == "STOPPED" and stopped["desiredStatus"] == "STOPPED"
    assert stopped["attachments"][0]["status"] == "DELETED"
    assert {"executionStoppedAt", "stoppedAt", "stoppingAt"} <= set(stopped)
    assert stopped["containers"][0]["lastStatus"] == "STOPPED" and stopped["containers"][0]["exitCode"] == 143
    assert stopped["version"] == 5
    with pytest.raises(ClientError) as excinfo:
        ec2.describe_network_interfaces(NetworkInterfaceIds=[eni["NetworkInterfaceId"]])
    assert error_of(excinfo)[0] == "InvalidNetworkInterfaceID.NotFound"
    assert _available(ec2, subnet) == free_before
    assert remaining(instance(ecs, agent.arn)) == before
    cluster = ecs.describe_clusters()["clusters"][0]
    assert (cluster["runningTasksCount"], cluster["pendingTasksCount"]) == (0, 0)
    agent.wait_for(lambda d: all(t["taskArn"] != arn for t in d["tasks"]))
    assert ecs.list_tasks()["taskArns"] == []
    assert ecs.list_tasks(desiredStatus="STOPPED")["taskArns"] == [arn]


def test_stop_reason_and_stop_before_attachment(api: Server, agents: Any) -> None:
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    agent = agents().start()
    subnet = default_subnets(ec2)["us-east-1a"]
    register_web(ecs)
    free_before = _available(ec2, subnet)
    arn = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnet))["tasks"][0]["taskArn"]
    stopped = ecs.stop_task(task=arn.rsplit("/", 1)[-1], reason="no longer needed")["task"]
    assert stopped["stoppedReason"] == "no longer needed" and stopped["lastStatus"] == "DEPROVISIONING"
    assert ecs.stop_task(task=arn)["task"]["version"] == stopped["version"]  # a second stop changes nothing
    agent.wait_for_task(arn, "STOPPED")
    agent.stopped(arn)
    final = describe(ecs, arn)
    assert final["lastStatus"] == "STOPPED" and final["attachments"][0]["status"] == "DELETED"
    assert _available(ec2, subnet) == free_before
    with pytest.raises(ClientError) as excinfo:
        ecs.stop_task(task="0123456789abcdef0123456789abcdef")
    assert error_of(excinfo) == ("InvalidParameterException", "The referenced task was not found.")


def test_essential_container_exit_stops_the_task(api: Server, agents: Any) -> None:
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    agent = agents().start()
    subnet = default_subnets(ec2)["us-east-1a"]
    sidecar = {
        **WEB_CONTAINER,
        "name": "sidecar",
        "essential": False,
        "cpu": 0,
        "memory": 64,
        "portMappings": [],
    }
    register_web(ecs, memory="1024", containers=[dict(WEB_CONTAINER), sidecar])
    arn = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnet))["tasks"][0]["taskArn"]
    agent.wait_for_task(arn)
    agent.running(arn)
    agent.container_exited(arn, "sidecar", 0)
    task = describe(ecs, arn)
    assert task["lastStatus"] == "RUNNING" and task["desiredStatus"] == "RUNNING"
    assert [c["lastStatus"] for c in task["containers"]] == ["RUNNING", "STOPPED"]
    agent.container_exited(arn, "web", 1, reason="boom")
    task = describe(ecs, arn)
    assert task["desiredStatus"] == "STOPPED" and task["stopCode"] == "EssentialContainerExited"
    assert task["stoppedReason"] == "Essential container in task exited"
    assert task["containers"][0]["exitCode"] == 1 and task["containers"][0]["reason"] == "boom"
    assert agent.wait_for_task(arn, "STOPPED")["stopReason"] == "Essential container in task exited"
    agent.stopped(arn)
    task = describe(ecs, arn)
    assert task["lastStatus"] == "STOPPED" and task["containers"][0]["exitCode"] == 1


def test_agent_failure_to_start_is_task_failed_to_start(api: Server, agents: Any) -> None:
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    agent = agents().start()
    register_web(ecs)
    subnet = default_subnets(ec2)["us-east-1a"]
    arn = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnet))["tasks"][0]["taskArn"]
    agent.wait_for_task(arn)
    agent.stopped(arn, reason="CannotStartContainerError: no such image")
    task = describe(ecs, arn)
    assert task["lastStatus"] == "STOPPED" and task["stopCode"] == "TaskFailedToStart"
    assert task["stoppedReason"] == "CannotStartContainerError: no such image"


def test_waiters_of_the_real_cli(api: Server, agents: Any) -> None:
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    agent = agents().start()
    register_web(ecs)
    subnet = default_subnets(ec2)["us-east-1a"]
    arn = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnet))["tasks"][0]["taskArn"]
    agent.wait_for_task(arn)

    def later(action: Any) -> threading.Timer:
        timer = threading.Timer(1.0, action)
        timer.start()
        return timer

    later(lambda: (agent.attach(arn), agent.running(arn)))
    started = time.monotonic()
    api.aws("ecs", "wait", "tasks-running", "--cluster", "default", "--tasks", arn)
    assert time.monotonic() - started >= 1.0  # it had to poll again
    assert describe(ecs, arn)["lastStatus"] == "RUNNING"

    api.aws("ecs", "stop-task", "--task", arn)
    later(lambda: agent.stopped(arn))
    api.aws("ecs", "wait", "tasks-stopped", "--tasks", arn)
    assert describe(ecs, arn)["lastStatus"] == "STOPPED"


def test_run_task_with_the_cli_and_an_automatic_agent(api: Server, agents: Any) -> None:
    agent = agents().start(auto=True)
    register_web(api.client("ecs"))
    subnet = default_subnets(api.client("ec2"))["us-east-1a"]
    result = api.aws(
        "ecs", "run-task", "--task-definition", "web", "--count", "2", "--network-configuration",
        f"awsvpcConfiguration={{subnets=[{subnet}]}}", "--query", "tasks[].taskArn", "--output", "text",
    )  # fmt: skip
    arns = result.stdout.split()
    assert len(arns) == 2
    api.aws("ecs", "wait", "tasks-running", "--tasks", *arns)
    api.aws("ecs", "stop-task", "--task", arns[0])
    api.aws("ecs", "wait", "tasks-stopped", "--tasks", arns[0])
    assert agent.errors == []


def _web_and_subnets(api: Server) -> tuple[Any, Any, dict[str, str]]:
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    register_web(ecs)
    return ecs, ec2, default_subnets(ec2)


def _expect(ecs: Any, code: str, message: str, **request: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        ecs.run_task(**request)
    assert error_of(excinfo) == (code, message)


def test_run_task_network_configuration_errors(api: Server, agents: Any) -> None:
    agents().start()
    ecs, ec2, subnets = _web_and_subnets(api)
    a, b = subnets["us-east-1a"], subnets["us-east-1b"]
    register_web(ecs, "bridged", network_mode="bridge")
    bad = "InvalidParameterException"
    _expect(
        ecs,
        bad,
        "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
        taskDefinition="web",
    )
    _expect(
        ecs, bad, "Network Configuration is not valid for the given networkMode of this task definition.",
        taskDefinition="bridged", networkConfiguration=awsvpc(a),
    )  # fmt: skip
    _expect(ecs, bad, "subnets can not be empty.", taskDefinition="web", networkConfiguration=awsvpc())
    _expect(
        ecs, bad, "subnets can have at most 16 items.",
        taskDefinition="web", networkConfiguration=awsvpc(*[a] * 17),
    )  # fmt: skip
    vpc_id = ec2.describe_subnets(SubnetIds=[a])["Subnets"][0]["VpcId"]
    groups = [
        ec2.create_security_group(GroupName=f"g{i}", Description="x", VpcId=vpc_id)["GroupId"]
        for i in range(6)
    ]
    _expect(
        ecs, bad, "securityGroups can have at most 5 items.",
        taskDefinition="web", networkConfiguration=awsvpc(a, groups=groups),
    )  # fmt: skip
    _expect(
        ecs, bad, "Assign public IP is not supported for this launch type.",
        taskDefinition="web", networkConfiguration=awsvpc(a, public_ip="ENABLED"),
    )  # fmt: skip
    missing = "subnet-0123456789abcdef0"
    _expect(
        ecs, bad,
        f"Error retrieving subnet information for [{a}, {missing}]: The subnet ID '{missing}' does not exist "
        "(ErrorCode: InvalidSubnetID.NotFound)",
        taskDefinition="web", networkConfiguration=awsvpc(a, missing),
    )  # fmt: skip
    missing_group = "sg-0123456789abcdef0"
    _expect(
        ecs, bad,
        f"Error retrieving security group information for [{missing_group}]: The security group "
        f"'{missing_group}' does not exist (ErrorCode: InvalidGroup.NotFound)",
        taskDefinition="web", networkConfiguration=awsvpc(a, groups=[missing_group]),
    )  # fmt: skip
    other_vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    other_subnet = ec2.create_subnet(VpcId=other_vpc, CidrBlock="10.9.0.0/24", AvailabilityZone="us-east-1a")
    other_subnet_id = other_subnet["Subnet"]["SubnetId"]
    _expect(
        ecs, bad, "The subnets must all belong to the same VPC.",
        taskDefinition="web", networkConfiguration=awsvpc(a, other_subnet_id),
    )  # fmt: skip
    other_group = ec2.create_security_group(GroupName="elsewhere", Description="x", VpcId=other_vpc)[
        "GroupId"
    ]
    _expect(
        ecs, bad, f"Security group {other_group} and subnet {a} belong to different networks.",
        taskDefinition="web", networkConfiguration=awsvpc(a, groups=[other_group]),
    )  # fmt: skip
    assert ecs.list_tasks()["taskArns"] == []  # nothing was created on the way
    # the same group twice or the same subnet in two zones' list is fine
    ok = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(a, b, groups=[groups[0], groups[0]]))
    assert len(ok["tasks"]) == 1


def test_run_task_request_errors(api: Server, agents: Any) -> None:
    ecs, _ec2, subnets = _web_and_subnets(api)
    net = awsvpc(subnets["us-east-1a"])
    _expect(
        ecs, "ClusterNotFoundException", "Cluster not found.", taskDefinition="web", networkConfiguration=net
    )
    ecs.create_cluster()
    _expect(ecs, "InvalidParameterException", "No Container Instances were found in your cluster.",
            taskDefinition="web", networkConfiguration=net)  # fmt: skip
    agents().start()
    _expect(
        ecs, "ClientException", "TaskDefinition not found.", taskDefinition="nope", networkConfiguration=net
    )
    _expect(
        ecs, "ClientException", "TaskDefinition not found.", taskDefinition="web:9", networkConfiguration=net
    )
    _expect(ecs, "ClusterNotFoundException", "Cluster not found.", cluster="nope", taskDefinition="web")
    _expect(ecs, "InvalidParameterException", "count must be between 1 and 10.",
            taskDefinition="web", networkConfiguration=net, count=11)  # fmt: skip
    _expect(
        ecs, "InvalidParameterException",
        "Override for container named nope is not a container in the TaskDefinition.",
        taskDefinition="web", networkConfiguration=net, overrides={"containerOverrides": [{"name": "nope"}]},
    )  # fmt: skip
    _expect(ecs, "InvalidParameterException", NO_FARGATE_CAPACITY,  # no agent is Fargate capacity here
            taskDefinition="web", networkConfiguration=net, launchType="FARGATE")  # fmt: skip
    _expect(
        ecs, "InvalidParameterException", "distinctInstance expression should not be specified.",
        taskDefinition="web", networkConfiguration=net,
        placementConstraints=[{"type": "distinctInstance", "expression": "attribute:a == b"}],
    )  # fmt: skip
    assert ecs.list_tasks()["taskArns"] == []


def test_security_groups_default_and_given(api: Server, agents: Any) -> None:
    agent = agents().start()
    ecs, ec2, subnets = _web_and_subnets(api)
    subnet = subnets["us-east-1a"]
    vpc_id = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["VpcId"]
    web_sg = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc_id)["GroupId"]
    plain = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnet))["tasks"][0]["taskArn"]
    grouped = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnet, groups=[web_sg]))
    grouped_arn = grouped["tasks"][0]["taskArn"]
    default_sg = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"][0]["GroupId"]
    assert agent.wait_for_task(plain)["eni"]["securityGroupIds"] == [default_sg]
    assert agent.wait_for_task(grouped_arn)["eni"]["securityGroupIds"] == [web_sg]


def test_client_token_idempotency(api: Server, agents: Any) -> None:
    agents(max_task_enis=10).start()
    ecs, _ec2, subnets = _web_and_subnets(api)
    request = {"taskDefinition": "web", "networkConfiguration": awsvpc(subnets["us-east-1a"]), "count": 2}
    first = ecs.run_task(clientToken="token-1", **request)
    again = ecs.run_task(clientToken="token-1", **request)
    assert [t["taskArn"] for t in again["tasks"]] == [t["taskArn"] for t in first["tasks"]]
    assert len(ecs.list_tasks()["taskArns"]) == 2
    with pytest.raises(ClientError) as excinfo:
        ecs.run_task(clientToken="token-1", **{**request, "count": 1})
    assert error_of(excinfo)[0] == "ConflictException"
    other = ecs.run_task(clientToken="token-2", **request)  # another token: new tasks
    assert len(other["tasks"]) == 2 and len(ecs.list_tasks()["taskArns"]) == 4
    # boto3 sends a fresh token of its own when none is given: two calls, two tasks
    ecs.run_task(**{**request, "count": 1})
    ecs.run_task(**{**request, "count": 1})
    assert len(ecs.list_tasks()["taskArns"]) == 6


def test_overrides_reach_the_agent_and_describe(api: Server, agents: Any) -> None:
    agent = agents().start()
    ecs, _ec2, subnets = _web_and_subnets(api)
    overrides = {
        "containerOverrides": [
            {
                "name": "web",
                "command": ["echo", "hi"],
                "environment": [{"name": "A", "value": "1"}],
                "cpu": 128,
                "memory": 256,
            }
        ],
        "cpu": "512",
        "memory": "1024",
    }
    task = ecs.run_task(
        taskDefinition="web", networkConfiguration=awsvpc(subnets["us-east-1a"]), overrides=overrides
    )["tasks"][0]
    assert task["overrides"]["containerOverrides"] == overrides["containerOverrides"]
    assert (task["overrides"]["cpu"], task["overrides"]["memory"]) == ("512", "1024")
    assert (task["cpu"], task["memory"]) == ("512", "1024")
    assert task["containers"][0]["cpu"] == "128" and task["containers"][0]["memory"] == "256"
    entry = agent.wait_for_task(task["taskArn"])
    [container] = entry["containers"]
    assert container["command"] == ["echo", "hi"] and container["environment"] == [
        {"name": "A", "value": "1"}
    ]
    assert (container["cpu"], container["memory"], entry["cpu"], entry["memory"]) == (128, 256, 512, 1024)
    assert container["entryPoint"] == ["sh", "-c"] and container["essential"] is True


def test_describe_tasks_missing_tags_and_ids(api: Server, agents: Any) -> None:
    agents().start()
    ecs, _ec2, subnets = _web_and_subnets(api)
    task = ecs.run_task(
        taskDefinition="web",
        networkConfiguration=awsvpc(subnets["us-east-1a"]),
        tags=[{"key": "k", "value": "v"}],
    )["tasks"][0]
    assert task["tags"] == [{"key": "k", "value": "v"}]
    arn = task["taskArn"]
    task_id = arn.rsplit("/", 1)[-1]
    missing_id = "f" * 32
    found = ecs.describe_tasks(tasks=[task_id, missing_id], include=["TAGS"])
    assert [t["taskArn"] for t in found["tasks"]] == [arn]
    assert found["tasks"][0]["tags"] == [{"key": "k", "value": "v"}]
    assert found["failures"] == [{"arn": TASK_ARN_PREFIX + missing_id, "reason": "MISSING"}]
    assert "tags" not in describe(ecs, arn)
    assert ecs.list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "k", "value": "v"}]
    with pytest.raises(ClientError) as excinfo:
        ecs.describe_tasks(tasks=[task_id] * 101)
    assert error_of(excinfo) == ("InvalidParameterException", "taskIds can have at most 100 items.")
    with pytest.raises(ClientError) as excinfo:
        ecs.describe_tasks(cluster="nope", tasks=[task_id])
    assert error_of(excinfo) == ("ClusterNotFoundException", "Cluster not found.")


def test_list_tasks_filters_and_pagination(api: Server, agents: Any) -> None:
    first = agents(max_task_enis=10).start()
    second = agents(max_task_enis=10).start()
    ecs, _ec2, subnets = _web_and_subnets(api)
    register_web(ecs, "other")
    net = awsvpc(subnets["us-east-1a"])
    web = ecs.run_task(taskDefinition="web", networkConfiguration=net, count=5, startedBy="ci")["tasks"]
    other = ecs.run_task(taskDefinition="other", networkConfiguration=net, count=2)["tasks"]
    web_arns = sorted(t["taskArn"] for t in web)
    other_arns = sorted(t["taskArn"] for t in other)
    assert sorted(ecs.list_tasks()["taskArns"]) == sorted(web_arns + other_arns)
    assert sorted(ecs.list_tasks(family="web")["taskArns"]) == web_arns
    assert sorted(ecs.list_tasks(startedBy="ci")["taskArns"]) == web_arns
    on_first = sorted(t["taskArn"] for t in web + other if t["containerInstanceArn"] == first.arn)
    assert sorted(ecs.list_tasks(containerInstance=first.arn)["taskArns"]) == on_first
    on_second = sorted(t["taskArn"] for t in web + other if t["containerInstanceArn"] == second.arn)
    assert sorted(ecs.list_tasks(containerInstance=second.arn.rsplit("/", 1)[-1])["taskArns"]) == on_second
    assert ecs.list_tasks(launchType="FARGATE")["taskArns"] == []
    assert sorted(ecs.list_tasks(launchType="EC2")["taskArns"]) == sorted(web_arns + other_arns)
    ecs.stop_task(task=other_arns[0])
    assert ecs.list_tasks(desiredStatus="STOPPED")["taskArns"] == [other_arns[0]]
    assert sorted(ecs.list_tasks(family="other")["taskArns"]) == other_arns[1:]
    page = ecs.list_tasks(maxResults=2)
    assert len(page["taskArns"]) == 2 and "nextToken" in page
    pages = ecs.get_paginator("list_tasks").paginate(PaginationConfig={"PageSize": 2})
    listed = [arn for p in pages for arn in p["taskArns"]]
    assert listed == sorted(web_arns + other_arns[1:])
    with pytest.raises(ClientError) as excinfo:
        ecs.list_tasks(serviceName="svc")
    assert error_of(excinfo) == ("ServiceNotFoundException", "Service not found.")
    with pytest.raises(ClientError) as excinfo:
        ecs.list_tasks(nextToken="garbage")
    assert error_of(excinfo)[0] == "InvalidParameterException"


def test_long_poll_answers_within_a_second_of_run_and_stop(api: Server, agents: Any) -> None:
    agent = agents()
    agent.register()
    agent.poll()  # now at the current generation: the next poll waits
    ecs, _ec2, subnets = _web_and_subnets(api)
    answers: list[tuple[float, dict[str, Any]]] = []

    def long_poll() -> None:
        answers.append((0.0, agent.poll(wait=20)))
        answers[-1] = (time.monotonic(), answers[-1][1])

    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(0.3)  # the poll is waiting
    ran_at = time.monotonic()
    arn = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnets["us-east-1a"]))["tasks"][0][
        "taskArn"
    ]
    poller.join(timeout=10)
    answered_at, answer = answers[0]
    assert answer["changed"] is True and [t["taskArn"] for t in answer["tasks"]] == [arn]
    assert answered_at - ran_at < 1.0

    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(0.3)
    stopped_at = time.monotonic()
    ecs.stop_task(task=arn)
    poller.join(timeout=10)
    answered_at, answer = answers[-1]
    assert answer["tasks"][0]["desiredStatus"] == "STOPPED"
    assert answered_at - stopped_at < 1.0

    # nothing changes: the poll waits its time and answers with the same generation
    started = time.monotonic()
    quiet = agent.poll(wait=0.5)
    assert quiet["changed"] is False and quiet["generation"] == answer["generation"]
    assert time.monotonic() - started >= 0.5


def test_start_task_on_named_instances(api: Server, agents: Any) -> None:
    agent = agents().start()
    ecs, _ec2, subnets = _web_and_subnets(api)
    missing = "0" * 32
    result = ecs.start_task(
        taskDefinition="web",
        containerInstances=[agent.arn, missing],
        networkConfiguration=awsvpc(subnets["us-east-1a"]),
    )
    [task] = result["tasks"]
    assert task["containerInstanceArn"] == agent.arn and task["lastStatus"] == "PROVISIONING"
    assert result["failures"] == [
        {
            "arn": f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:container-instance/default/{missing}",
            "reason": "MISSING",
        }
    ]
    elsewhere = ecs.start_task(
        taskDefinition="web",
        containerInstances=[agent.arn],
        networkConfiguration=awsvpc(subnets["us-east-1b"]),
    )
    assert elsewhere["tasks"] == [] and elsewhere["failures"] == [{"arn": agent.arn, "reason": "LOCATION"}]
    assert agent.wait_for_task(task["taskArn"])


def test_full_subnet_fails_the_task_to_start(api: Server, agents: Any) -> None:
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    vpc_id = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.20.0.0/28", AvailabilityZone="us-east-1a")[
        "Subnet"
    ]["SubnetId"]
    agents(subnet_id=subnet).start()
    register_web(ecs)
    for _ in range(11):  # a /28 has 16 addresses, AWS keeps 5
        ec2.create_network_interface(SubnetId=subnet)
    task = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnet))["tasks"][0]
    assert task["lastStatus"] == "STOPPED" and task["stopCode"] == "TaskFailedToStart"
    assert task["stoppedReason"] == (
        f"Unexpected EC2 error while attempting to Create Network Interface in subnet '{subnet}': "
        "InsufficientFreeAddressesInSubnet"
    )
