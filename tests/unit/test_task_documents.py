"""The task document and its events (taskvpc.domain.tasks), without a server."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from taskvpc.domain import tasks as taskdoc
from taskvpc.domain.errors import ClientError
from taskvpc.domain.lifecycle import StopCode, TaskEvent

TD: dict[str, Any] = {
    "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/web:1",
    "family": "web",
    "containerDefinitions": [
        {"name": "web", "image": "busybox", "cpu": 256, "memory": 512, "essential": True},
        {"name": "side", "image": "busybox", "memoryReservation": 64, "essential": False},
    ],
}
ENI = taskdoc.EniDetails("eni-0123456789abcdef0", "0e:00:00:00:00:01", "ip-10-0-0-5.ec2.internal", "10.0.0.5")
ESSENTIAL = {"web": True, "side": False}


def _new(awsvpc: bool = True) -> dict[str, Any]:
    containers = taskdoc.effective_containers(TD, {})
    return taskdoc.new_task(
        taskdoc.NewTask(
            task_arn="arn:aws:ecs:us-east-1:123456789012:task/default/" + "a" * 32,
            cluster_arn="arn:aws:ecs:us-east-1:123456789012:cluster/default",
            task_definition=TD,
            overrides={},
            containers=containers,
            container_arns=["c1", "c2"],
            container_instance_arn="ci",
            availability_zone="us-east-1a",
            cpu=256,
            memory=576,
            group="family:web",
            created_at=100.0,
            attachment_id="att-1" if awsvpc else None,
            subnet_id="subnet-1" if awsvpc else None,
        )
    )


def _report(doc: dict[str, Any], now: float, **fields: Any) -> taskdoc.Effects:
    before = copy.deepcopy(doc)
    effects = taskdoc.apply_report(
        doc, taskdoc.TaskReport(task_arn="t", **fields), now, essential=ESSENTIAL, eni=ENI
    )
    taskdoc.bump_version(before, doc)
    return effects


def _running(doc: dict[str, Any], now: float = 2.0) -> None:
    _report(
        doc,
        now,
        known_status="RUNNING",
        attachment_status="ATTACHED",
        containers=(
            taskdoc.ContainerReport("web", "RUNNING", "r1"),
            taskdoc.ContainerReport("side", "RUNNING", "r2"),
        ),
    )


def test_new_awsvpc_task_is_provisioning_with_a_precreated_attachment() -> None:
    doc = _new()
    assert doc["lastStatus"] == "PROVISIONING" and doc["version"] == 1
    assert doc["attachments"] == [
        {
            "id": "att-1",
            "type": "ElasticNetworkInterface",
            "status": "PRECREATED",
            "details": [{"name": "subnetId", "value": "subnet-1"}],
        }
    ]
    assert [c["networkInterfaces"] for c in doc["containers"]] == [[], []]
    assert doc["containers"][1] == {
        "containerArn": "c2", "taskArn": doc["taskArn"], "name": "side", "image": "busybox",
        "lastStatus": "PENDING", "networkInterfaces": [], "cpu": "0", "memoryReservation": "64",
    }  # fmt: skip
    assert list(doc) == sorted(doc)
    assert _new(awsvpc=False)["lastStatus"] == "PENDING"


def test_attach_then_run_then_stop_then_release() -> None:
    doc = _new()
    effects = _report(doc, 1.0, known_status="PENDING", attachment_status="ATTACHED")
    assert effects.attach_eni and doc["lastStatus"] == "PENDING" and doc["version"] == 2
    assert doc["attachments"][0]["status"] == "ATTACHED"
    assert [d["name"] for d in doc["attachments"][0]["details"]] == [
        "subnetId", "networkInterfaceId", "macAddress", "privateDnsName", "privateIPv4Address",
    ]  # fmt: skip
    assert doc["containers"][0]["networkInterfaces"] == [
        {"attachmentId": "att-1", "privateIpv4Address": "10.0.0.5"}
    ]
    assert (doc["connectivity"], doc["connectivityAt"]) == ("CONNECTED", 1.0)
    _running(doc)
    assert doc["lastStatus"] == "RUNNING" and doc["startedAt"] == 2.0 and doc["version"] == 3
    before = copy.deepcopy(doc)
    assert taskdoc.request_stop(doc, TaskEvent.STOP_REQUESTED, StopCode.USER_INITIATED, None, 3.0)
    taskdoc.bump_version(before, doc)
    assert (doc["lastStatus"], doc["desiredStatus"], doc["stopCode"]) == (
        "DEACTIVATING",
        "STOPPED",
        "UserInitiated",
    )
    assert doc["stoppedReason"] == "Task stopped by user" and doc["stoppingAt"] == 3.0
    assert not taskdoc.request_stop(doc, TaskEvent.STOP_REQUESTED, StopCode.USER_INITIATED, "again", 3.5)
    _report(doc, 4.0, known_status="RUNNING")  # the agent has it: nothing to deregister
    assert doc["lastStatus"] == "STOPPING"
    effects = _report(
        doc,
        5.0,
        known_status="STOPPED",
        containers=(taskdoc.ContainerReport("web", "STOPPED", exit_code=143),),
    )
    assert effects.release_eni and doc["lastStatus"] == "DEPROVISIONING" and doc["executionStoppedAt"] == 5.0
    assert [c["lastStatus"] for c in doc["containers"]] == ["STOPPED", "STOPPED"]
    taskdoc.finish(doc, 6.0)
    assert doc["lastStatus"] == "STOPPED" and doc["stoppedAt"] == 6.0
    assert doc["attachments"][0]["status"] == "DELETED"
    assert _report(doc, 7.0, known_status="RUNNING") == taskdoc.Effects()  # nothing moves a stopped task


def test_backward_reports_are_ignored() -> None:
    doc = _new()
    _running(doc)
    version = doc["version"]
    _report(doc, 3.0, known_status="PENDING", containers=(taskdoc.ContainerReport("web", "PENDING"),))
    assert doc["lastStatus"] == "RUNNING" and doc["containers"][0]["lastStatus"] == "RUNNING"
    assert doc["version"] == version


def test_non_essential_exit_keeps_running_essential_exit_stops() -> None:
    doc = _new()
    _running(doc)
    _report(
        doc,
        3.0,
        known_status="RUNNING",
        containers=(taskdoc.ContainerReport("side", "STOPPED", exit_code=0),),
    )
    assert doc["lastStatus"] == "RUNNING" and doc["desiredStatus"] == "RUNNING"
    effects = _report(
        doc, 4.0, known_status="RUNNING", containers=(taskdoc.ContainerReport("web", "STOPPED", exit_code=2),)
    )
    assert effects.desired_changed
    assert (doc["desiredStatus"], doc["stopCode"], doc["stoppedReason"]) == (
        "STOPPED", "EssentialContainerExited", "Essential container in task exited",
    )  # fmt: skip
    assert doc["lastStatus"] == "DEACTIVATING" and doc["containers"][0]["exitCode"] == 2


def test_failures_before_running_are_task_failed_to_start() -> None:
    doc = _new()
    effects = _report(doc, 1.0, known_status="STOPPED", reason="CannotCreateNetwork: no")
    assert effects.release_eni and effects.desired_changed
    assert (doc["lastStatus"], doc["stopCode"], doc["stoppedReason"]) == (
        "DEPROVISIONING", "TaskFailedToStart", "CannotCreateNetwork: no",
    )  # fmt: skip
    assert doc["attachments"][0]["status"] == "PRECREATED"
    taskdoc.finish(doc, 2.0)
    assert doc["attachments"][0]["status"] == "DELETED" and doc["lastStatus"] == "STOPPED"

    pending = _new()
    _report(pending, 1.0, attachment_status="ATTACHED", known_status="PENDING")
    _report(
        pending,
        2.0,
        known_status="PENDING",
        containers=(taskdoc.ContainerReport("web", "STOPPED", reason="CannotPullContainerError"),),
    )
    assert (pending["stopCode"], pending["stoppedReason"], pending["lastStatus"]) == (
        "TaskFailedToStart", "CannotPullContainerError", "STOPPING",
    )  # fmt: skip


def test_force_stop_walks_every_state_down() -> None:
    for setup in (lambda d: None, lambda d: _report(d, 1.0, attachment_status="ATTACHED"), _running):
        doc = _new()
        setup(doc)
        taskdoc.force_stop(doc, StopCode.USER_INITIATED, "gone", 5.0)
        assert doc["lastStatus"] == "DEPROVISIONING" and doc["stoppedReason"] == "gone"
        taskdoc.finish(doc, 6.0)
        assert doc["lastStatus"] == "STOPPED"
        assert all(c["lastStatus"] == "STOPPED" for c in doc["containers"])


def test_overrides_and_resources() -> None:
    overrides = {
        "containerOverrides": [{"name": "web", "environment": [{"name": "A", "value": "2"}], "memory": 1024}],
        "cpu": "1 vCPU",
    }
    td = {
        **TD,
        "containerDefinitions": [
            {
                **TD["containerDefinitions"][0],
                "environment": [{"name": "A", "value": "1"}, {"name": "B", "value": "1"}],
            }
        ],
    }
    containers = taskdoc.effective_containers(td, overrides)
    assert containers[0]["environment"] == [{"name": "A", "value": "2"}, {"name": "B", "value": "1"}]
    assert taskdoc.task_resources(td, overrides, containers) == (1024, 1024)
    assert taskdoc.task_resources(TD, {}, taskdoc.effective_containers(TD, {})) == (256, 576)
    with pytest.raises(ClientError) as excinfo:
        taskdoc.check_overrides(TD, {"containerOverrides": [{"name": "x"}]})
    assert excinfo.value.message == "Override for container named x is not a container in the TaskDefinition."
    assert taskdoc.overrides_view(TD, overrides)["containerOverrides"][1] == {"name": "side"}
