"""What an EC2 instance gives its container instance, and how losing it ends, through the API on both
backends: CreateTags/DeleteTags/DescribeTags on instance ids; ECS_CONTAINER_INSTANCE_TAGS and
ECS_CONTAINER_INSTANCE_PROPAGATE_TAGS_FROM on registration; awsvpcTrunking raising the task-ENI limit of
instances registered after it (with a trunk ENI, released on deregistration); a lost host's instance
terminated with its tasks stopped and ENIs freed. Fake agents register as the instances, sending what
the real agent sends (its registration body through ``InstanceConfig.apply``)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from taskvpc.agent.instance_config import InstanceConfig
from taskvpc.control.ec2 import instances_catalog, instances_state
from taskvpc.domain import ecs_config
from tests.integration.ecs_support import awsvpc, default_subnets, register_web
from tests.integration.server import REGION, InProcessServer, aws_error as error


def _ctx(api: InProcessServer) -> Any:
    assert api.control_plane is not None
    return api.control_plane.context(REGION, time.time())


def _run(ec2: Any, user_data: str = "ECS_CLUSTER=web", **extra: Any) -> dict[str, Any]:
    return ec2.run_instances(  # type: ignore[no-any-return]
        ImageId=instances_catalog.DEFAULT_LINUX.image_id, InstanceType="c5.large", MinCount=1, MaxCount=1,
        UserData=user_data, **extra,
    )["Instances"][0]  # fmt: skip


def _register(agents: Any, instance: dict[str, Any], user_data: str) -> Any:
    # CPU and memory enough for any ENI limit here: the ENI limit is what is measured
    agent = agents(
        cluster="web",
        instance_id=instance["InstanceId"],
        subnet_id=instance["SubnetId"],
        cpu=65536,
        memory=262144,
    )
    agent.registration = InstanceConfig(ecs_config.parse(user_data)).apply(agent.registration)
    agent.register()
    return agent


def test_instance_tags_through_create_delete_describe(ec2: Any) -> None:
    instance = _run(
        ec2, TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "team", "Value": "a"}]}]
    )
    iid = instance["InstanceId"]
    ec2.create_tags(Resources=[iid], Tags=[{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "b"}])

    def tags() -> dict[str, str]:
        doc = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
        return {t["Key"]: t["Value"] for t in doc["Tags"]}

    assert tags() == {"team": "b", "env": "prod", "taskvpc:kernel": "shared"}
    listed = ec2.describe_tags(Filters=[{"Name": "resource-type", "Values": ["instance"]}])["Tags"]
    assert {(t["ResourceId"], t["Key"], t["Value"]) for t in listed} == {
        (iid, "team", "b"), (iid, "env", "prod"), (iid, "taskvpc:kernel", "shared"),
    }  # fmt: skip
    ec2.delete_tags(Resources=[iid], Tags=[{"Key": "team", "Value": "not-its-value"}, {"Key": "env"}])
    assert tags() == {"team": "b", "taskvpc:kernel": "shared"}
    ec2.delete_tags(Resources=[iid])  # every tag but taskvpc's own
    assert tags() == {"taskvpc:kernel": "shared"}
    # bad ids are refused as EC2 refuses them, and change nothing
    with pytest.raises(Exception) as bad:
        ec2.create_tags(Resources=[iid, "i-nothex"], Tags=[{"Key": "x", "Value": "1"}])
    assert error(bad)[0] == "InvalidInstanceID.Malformed"
    with pytest.raises(Exception) as missing:
        ec2.create_tags(Resources=[iid, "i-0123456789abcdef0"], Tags=[{"Key": "x", "Value": "1"}])
    assert error(missing)[:2] == (
        "InvalidInstanceID.NotFound", "The instance ID 'i-0123456789abcdef0' does not exist",
    )  # fmt: skip
    assert tags() == {"taskvpc:kernel": "shared"}


def test_container_instance_tags_from_config_and_instance(ec2: Any, ecs: Any, agents: Any) -> None:
    ecs.create_cluster(clusterName="web")
    user_data = (
        "ECS_CLUSTER=web\n"
        'ECS_CONTAINER_INSTANCE_TAGS={"team": "config", "cost": "42"}\n'
        "ECS_CONTAINER_INSTANCE_PROPAGATE_TAGS_FROM=ec2_instance\n"
    )
    specs = [
        {"ResourceType": "instance", "Tags": [{"Key": "team", "Value": "ec2"}, {"Key": "Name", "Value": "w"}]}
    ]
    instance = _run(ec2, user_data, TagSpecifications=specs)
    agent = _register(agents, instance, user_data)
    found = ecs.describe_container_instances(cluster="web", containerInstances=[agent.arn], include=["TAGS"])
    tags = {t["key"]: t["value"] for t in found["containerInstances"][0]["tags"]}
    # the EC2 instance's tags, then ECS_CONTAINER_INSTANCE_TAGS over them
    assert tags == {"team": "config", "cost": "42", "Name": "w", "taskvpc:kernel": "shared"}
    assert ecs.list_tags_for_resource(resourceArn=agent.arn)["tags"] == found["containerInstances"][0]["tags"]

    plain = _run(
        ec2, 'ECS_CLUSTER=web\nECS_CONTAINER_INSTANCE_TAGS={"only": "config"}', TagSpecifications=specs
    )
    other = _register(agents, plain, 'ECS_CLUSTER=web\nECS_CONTAINER_INSTANCE_TAGS={"only": "config"}')
    assert ecs.list_tags_for_resource(resourceArn=other.arn)["tags"] == [{"key": "only", "value": "config"}]


def _eni_capacity(ecs: Any, arn: str) -> dict[str, Any]:
    found = ecs.describe_container_instances(cluster="web", containerInstances=[arn])["containerInstances"][0]
    return {a["name"]: a.get("value") for a in found["attributes"]}


def test_awsvpc_trunking_raises_the_limit_of_instances_registered_after_it(
    api: InProcessServer, ec2: Any, ecs: Any, agents: Any
) -> None:
    ecs.create_cluster(clusterName="web")
    task_def = register_web(ecs)
    before = _run(ec2)
    old = _register(agents, before, "ECS_CLUSTER=web")
    ecs.put_account_setting_default(name="awsvpcTrunking", value="enabled")
    after = _run(ec2, Placement={"AvailabilityZone": before["Placement"]["AvailabilityZone"]},
                 SubnetId=before["SubnetId"])  # fmt: skip
    new = _register(agents, after, "ECS_CLUSTER=web")
    assert "ecs.awsvpc-trunk-id" not in _eni_capacity(ecs, old.arn)
    trunk_id = _eni_capacity(ecs, new.arn)["ecs.awsvpc-trunk-id"]
    trunk = ec2.describe_network_interfaces(NetworkInterfaceIds=[trunk_id])["NetworkInterfaces"][0]
    assert trunk["InterfaceType"] == "trunk" and trunk["Attachment"]["InstanceId"] == after["InstanceId"]
    old.start(auto=True)
    new.start(auto=True)
    network = awsvpc(before["SubnetId"])

    def placed_on(arn: str) -> int:
        tasks = ecs.list_tasks(cluster="web", containerInstance=arn)["taskArns"]
        return len(tasks)

    # c5.large: 2 task ENIs without trunking, 10 with it (DG container-instance-eni.md)
    for _ in range(12):
        ecs.run_task(
            cluster="web", taskDefinition=task_def["taskDefinitionArn"], networkConfiguration=network
        )
    assert (placed_on(old.arn), placed_on(new.arn)) == (2, 10)
    refused = ecs.run_task(
        cluster="web", taskDefinition=task_def["taskDefinitionArn"], networkConfiguration=network
    )
    assert refused["tasks"] == [] and {f["reason"] for f in refused["failures"]} == {"RESOURCE:ENI"}
    # a re-registration keeps the trunk; deregistration deletes the trunk ENI
    new.register()
    assert _eni_capacity(ecs, new.arn)["ecs.awsvpc-trunk-id"] == trunk_id
    ecs.deregister_container_instance(cluster="web", containerInstance=new.arn, force=True)
    gone = ec2.describe_network_interfaces(Filters=[{"Name": "network-interface-id", "Values": [trunk_id]}])
    assert gone["NetworkInterfaces"] == []


def test_a_lost_host_terminates_its_instance_and_stops_its_tasks(
    api: InProcessServer, ec2: Any, ecs: Any, agents: Any
) -> None:
    ecs.create_cluster(clusterName="web")
    instance = _run(ec2)
    iid = instance["InstanceId"]
    instances_state.host_started(_ctx(api), iid)
    agent = _register(agents, instance, "ECS_CLUSTER=web").start(auto=True)
    task_def = register_web(ecs)
    zone = instance["Placement"]["AvailabilityZone"]
    task = ecs.run_task(
        cluster="web", taskDefinition=task_def["taskDefinitionArn"],
        networkConfiguration=awsvpc(default_subnets(ec2)[zone]),
    )["tasks"][0]  # fmt: skip
    agent.wait_for_task(task["taskArn"])
    deadline = time.monotonic() + 10
    while (running := ecs.describe_tasks(cluster="web", tasks=[task["taskArn"]])["tasks"][0])[
        "lastStatus"
    ] != "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.05)
    eni_id = next(
        d["value"] for d in running["attachments"][0]["details"] if d["name"] == "networkInterfaceId"
    )
    assert instances_state.host_lost(_ctx(api), iid) is not None
    assert instances_state.host_lost(_ctx(api), iid) is None  # once: it is terminated now
    doc = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert doc["State"]["Name"] == "terminated" and doc["StateReason"]["Code"] == "Server.InternalError"
    assert doc["NetworkInterfaces"] == []
    stopped = ecs.describe_tasks(cluster="web", tasks=[task["taskArn"]])["tasks"][0]
    assert stopped["desiredStatus"] == "STOPPED"
    assert stopped["stoppedReason"] == f"Host EC2 (instance {iid}) terminated."
    record = ecs.describe_container_instances(cluster="web", containerInstances=[agent.arn])[
        "containerInstances"
    ]
    assert record[0]["status"] == "INACTIVE" and record[0]["agentConnected"] is False
    # its agent, should it come back, hears that it is retired: it stops every task it still has
    # (run_agent's INACTIVE path, tests/unit/test_agent_engine.py::test_deregistered_instance_stops_everything)
    agent.stop()
    agent.poll(after=0)
    assert agent.state is not None and agent.state.instance_status == "INACTIVE"
    assert {t["desiredStatus"] for t in agent.desired["tasks"]} <= {"STOPPED"}
    assert (
        ec2.describe_network_interfaces(
            Filters=[
                {
                    "Name": "network-interface-id",
                    "Values": [eni_id, instance["NetworkInterfaces"][0]["NetworkInterfaceId"]],
                }
            ]
        )["NetworkInterfaces"]
        == []
    )
