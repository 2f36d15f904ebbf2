"""EC2 instances through the API on both backends: RunInstances, DescribeInstances, state changes,
DescribeImages/DescribeInstanceTypes, errors and ClientToken idempotency. The host supervisor's side is
driven here by calling its control-plane functions (what ``taskvpc up``'s supervisor calls); fake agents
register as the instances, as the real ones do (tests/root/test_instances.py runs the real thing)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from taskvpc.control.ec2 import instances_catalog, instances_state
from tests.integration.ecs_support import awsvpc, default_subnets, register_web
from tests.integration.server import REGION, InProcessServer, aws_error as error

WINDOWS = next(i for i in instances_catalog.IMAGES if i.windows)
LINUX = instances_catalog.DEFAULT_LINUX


def _ctx(api: InProcessServer) -> Any:
    assert api.control_plane is not None
    return api.control_plane.context(REGION, time.time())


def _run(ec2: Any, count: int = 1, **extra: Any) -> list[dict[str, Any]]:
    request = {"ImageId": LINUX.image_id, "InstanceType": "c5.large", "MinCount": count, "MaxCount": count}
    instances: list[dict[str, Any]] = ec2.run_instances(**{**request, **extra})["Instances"]
    return instances


def _states(ec2: Any) -> dict[str, str]:
    reservations = ec2.describe_instances()["Reservations"]
    return {i["InstanceId"]: i["State"]["Name"] for r in reservations for i in r["Instances"]}


def test_run_describe_spread_and_shape(ec2: Any) -> None:
    launched = _run(ec2, 3, UserData="ECS_CLUSTER=web")
    assert [i["State"] for i in launched] == [{"Code": 0, "Name": "pending"}] * 3
    zones = {i["Placement"]["AvailabilityZone"] for i in launched}
    assert len(zones) >= 2  # spread over the default subnets
    first = launched[0]
    eni = first["NetworkInterfaces"][0]
    assert eni["Attachment"]["DeviceIndex"] == 0 and eni["PrivateIpAddress"] == first["PrivateIpAddress"]
    assert {"Key": "taskvpc:kernel", "Value": "shared"} in first["Tags"]
    assert not any(key.startswith("_") for key in first)
    described = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni["NetworkInterfaceId"]])
    assert described["NetworkInterfaces"][0]["Status"] == "in-use"
    assert described["NetworkInterfaces"][0]["Attachment"]["InstanceId"] == first["InstanceId"]
    by_filter = ec2.describe_instances(Filters=[{"Name": "subnet-id", "Values": [first["SubnetId"]]}])
    found = [i["InstanceId"] for r in by_filter["Reservations"] for i in r["Instances"]]
    assert first["InstanceId"] in found and len(found) < 3
    paged = ec2.describe_instances(MaxResults=5)
    assert sum(len(r["Instances"]) for r in paged["Reservations"]) == 3 and "NextToken" not in paged
    pages = ec2.get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 5})
    assert sum(len(r["Instances"]) for page in pages for r in page["Reservations"]) == 3


def test_client_token_is_idempotent(ec2: Any) -> None:
    one = ec2.run_instances(ImageId=LINUX.image_id, MinCount=2, MaxCount=2, ClientToken="tok-1")
    two = ec2.run_instances(ImageId=LINUX.image_id, MinCount=2, MaxCount=2, ClientToken="tok-1")
    assert one["ReservationId"] == two["ReservationId"]
    assert [i["InstanceId"] for i in one["Instances"]] == [i["InstanceId"] for i in two["Instances"]]
    assert len(_states(ec2)) == 2


def test_errors_change_nothing(ec2: Any) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"ImageId": "ami-12345678901234567"}, "InvalidAMIID.NotFound"),
        ({"ImageId": "ami-xyz"}, "InvalidAMIID.Malformed"),
        ({"InstanceType": "c5.huge"}, "InvalidParameterValue"),
        ({"SubnetId": "subnet-nope"}, "InvalidSubnetID.Malformed"),
        ({"SubnetId": "subnet-0123456789abcdef0"}, "InvalidSubnetID.NotFound"),
        ({"MinCount": 3, "MaxCount": 2}, "InvalidParameterValue"),
    ]
    for extra, code in cases:
        request = {"ImageId": LINUX.image_id, "MinCount": 1, "MaxCount": 1, **extra}
        with pytest.raises(ClientError) as excinfo:
            ec2.run_instances(**request)
        assert error(excinfo)[0] == code, extra
    assert _states(ec2) == {}
    with pytest.raises(ClientError) as excinfo:
        ec2.describe_instances(InstanceIds=["i-0123456789abcdef0"])
    assert error(excinfo)[:2] == (
        "InvalidInstanceID.NotFound",
        "The instance ID 'i-0123456789abcdef0' does not exist",
    )
    with pytest.raises(ClientError) as excinfo:
        ec2.terminate_instances(InstanceIds=["i-bad"])
    assert error(excinfo)[0] == "InvalidInstanceID.Malformed"
    with pytest.raises(ClientError) as excinfo:
        ec2.describe_instances(Filters=[{"Name": "subnetid", "Values": ["x"]}])
    assert error(excinfo)[0] == "InvalidParameterValue"


def test_state_transitions(api: InProcessServer, ec2: Any) -> None:
    [instance] = _run(ec2)
    iid = instance["InstanceId"]
    started = ec2.start_instances(InstanceIds=[iid])["StartingInstances"][0]  # pending: not refused
    assert started["CurrentState"]["Name"] == "pending"
    instances_state.host_started(_ctx(api), iid)
    assert _states(ec2) == {iid: "running"}
    stopping = ec2.stop_instances(InstanceIds=[iid])["StoppingInstances"][0]
    assert (stopping["PreviousState"]["Name"], stopping["CurrentState"]["Name"]) == ("running", "stopping")
    with pytest.raises(ClientError) as excinfo:
        ec2.start_instances(InstanceIds=[iid])
    assert error(excinfo)[0] == "IncorrectInstanceState"
    instances_state.host_stopped(_ctx(api), iid)
    assert ec2.start_instances(InstanceIds=[iid])["StartingInstances"][0]["CurrentState"]["Name"] == "pending"
    instances_state.host_started(_ctx(api), iid)
    terminating = ec2.terminate_instances(InstanceIds=[iid])["TerminatingInstances"][0]
    assert terminating["CurrentState"] == {"Code": 32, "Name": "shutting-down"}
    instances_state.host_terminated(_ctx(api), iid)
    assert _states(ec2) == {iid: "terminated"}
    again = ec2.terminate_instances(InstanceIds=[iid])["TerminatingInstances"][0]
    assert again["PreviousState"]["Name"] == again["CurrentState"]["Name"] == "terminated"
    with pytest.raises(ClientError) as excinfo:
        ec2.stop_instances(InstanceIds=[iid])
    assert error(excinfo)[0] == "IncorrectInstanceState"
    eni_id = instance["NetworkInterfaces"][0]["NetworkInterfaceId"]
    with pytest.raises(ClientError) as excinfo:  # the primary ENI went with the instance
        ec2.describe_network_interfaces(NetworkInterfaceIds=[eni_id])
    assert error(excinfo)[0] == "InvalidNetworkInterfaceID.NotFound"


def test_terminate_stops_tasks_and_deregisters(api: InProcessServer, ec2: Any, ecs: Any, agents: Any) -> None:
    ecs.create_cluster(clusterName="web")
    [instance] = _run(ec2, UserData="#!/bin/bash\necho ECS_CLUSTER=web >> /etc/ecs/ecs.config")
    iid = instance["InstanceId"]
    agent = agents(cluster="web", instance_id=iid, subnet_id=instance["SubnetId"]).start(auto=True)
    task_def = register_web(ecs)
    zone = instance["Placement"]["AvailabilityZone"]
    task = ecs.run_task(
        cluster="web",
        taskDefinition=task_def["taskDefinitionArn"],
        networkConfiguration=awsvpc(default_subnets(ec2)[zone]),
    )["tasks"][0]
    agent.wait_for_task(task["taskArn"])
    ec2.terminate_instances(InstanceIds=[iid])
    instances_state.host_terminated(_ctx(api), iid)
    stopped = ecs.describe_tasks(cluster="web", tasks=[task["taskArn"]])["tasks"][0]
    assert stopped["desiredStatus"] == "STOPPED"
    assert stopped["stoppedReason"] == f"Host EC2 (instance {iid}) terminated."
    listed = ecs.list_container_instances(cluster="web")["containerInstanceArns"]
    assert listed == []


def test_images_and_types(ec2: Any) -> None:
    images = ec2.describe_images(Owners=["amazon"])["Images"]
    names = {i["Name"] for i in images}
    assert any(n.startswith("al2023-ami-ecs-hvm-") for n in names)
    assert any(n.startswith("Windows_Server-2022-English-Full-ECS_Optimized-") for n in names)
    windows = ec2.describe_images(ImageIds=[WINDOWS.image_id])["Images"][0]
    assert windows["Platform"] == "windows" and windows["ImageId"] == WINDOWS.image_id
    linux_only = ec2.describe_images(Filters=[{"Name": "name", "Values": ["al2023-ami-ecs-*"]}])["Images"]
    assert linux_only and all("Platform" not in i for i in linux_only)
    for bad, code in (
        ("ami-nope", "InvalidAMIID.Malformed"),
        ("ami-0123456789abcdef0", "InvalidAMIID.NotFound"),
    ):
        with pytest.raises(ClientError) as excinfo:
            ec2.describe_images(ImageIds=[bad])
        assert error(excinfo)[0] == code
    c5 = ec2.describe_instance_types(InstanceTypes=["c5.large"])["InstanceTypes"][0]
    assert c5["VCpuInfo"]["DefaultVCpus"] == 2 and c5["MemoryInfo"]["SizeInMiB"] == 4096
    assert c5["NetworkInfo"]["MaximumNetworkInterfaces"] == 3
    with pytest.raises(ClientError) as excinfo:
        ec2.describe_instance_types(InstanceTypes=["c5.metal"])  # a type taskvpc has no limits for
    assert error(excinfo)[0] == "InvalidInstanceType"
    [windows_instance] = _run(ec2, ImageId=WINDOWS.image_id)
    assert windows_instance["Platform"] == "windows"
