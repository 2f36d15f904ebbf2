"""The task endpoints' documents (taskmeta, pure) and the request routing of taskmeta_server.

The metadata's network fields must equal what DescribeTasks shows for the same ENI (the control plane's
``attachments`` details), so the test builds both from one EC2 document.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hypothesis import given, strategies as st

from taskvpc.agent import taskmeta
from taskvpc.agent.netplan import NetConfig
from taskvpc.agent.runtime import ContainerHandle
from taskvpc.agent.taskmeta_server import TaskEndpoints, endpoint_ruleset
from taskvpc.agent.taskplan import KnownContainer, KnownTask, Phase, TaskView
from taskvpc.agentapi.credentials import TaskCredentials
from taskvpc.agentapi.network import Eni
from taskvpc.agentapi.tasks import DesiredContainer, DesiredTask
from taskvpc.domain.lifecycle import DesiredStatus

ARN = "arn:aws:ecs:us-east-1:000000000000:task/prod/0123456789abcdef0123456789abcdef"
ROLE = "arn:aws:iam::000000000000:role/app"
ENI_DOC = {
    "NetworkInterfaceId": "eni-0a1b2c3d4e5f60718",
    "MacAddress": "0e:12:34:56:78:9a",
    "PrivateIpAddress": "10.0.2.106",
    "SubnetId": "subnet-1",
    "VpcId": "vpc-1",
    "PrivateDnsName": "ip-10-0-2-106.ec2.internal",
    "Groups": [{"GroupId": "sg-1"}],
}


def _task(**kw: Any) -> DesiredTask:
    eni = Eni.from_ec2(ENI_DOC, "10.0.2.0/24", "att-1")
    base: dict[str, Any] = {
        "arn": ARN,
        "desired_status": DesiredStatus.RUNNING,
        "containers": (
            DesiredContainer("web", image="busybox", cpu=256, memory=128),
            DesiredContainer("side", image="busybox"),
        ),
        "eni": eni,
        "family": "web",
        "revision": 3,
        "task_cpu": 512,
        "task_memory": 1024,
        "availability_zone": "us-east-1a",
        "task_role_arn": ROLE,
    }
    return DesiredTask(**(base | kw))


def _known() -> KnownTask:
    web = KnownContainer("web", Phase.RUNNING, True, runtime_id="rt-web", started_at=1_700_000_000.25)
    return KnownTask(ARN, {"web": web}, status=TaskView.RUNNING, pull_started_at=1_699_999_999.0)


def test_v4_network_fields_equal_what_describe_tasks_shows() -> None:
    task = _task()
    doc = taskmeta.task_doc(task, _known(), taskmeta.HostFacts())
    net = doc["Containers"][0]["Networks"][0]
    assert net == {
        "NetworkMode": "awsvpc",
        "IPv4Addresses": ["10.0.2.106"],
        "AttachmentIndex": 0,
        "MACAddress": "0e:12:34:56:78:9a",
        "IPv4SubnetCIDRBlock": "10.0.2.0/24",
        "PrivateDNSName": "ip-10-0-2-106.ec2.internal",
        "SubnetGatewayIpv4Address": "10.0.2.1/24",
    }
    # the EC2 document DescribeTasks' attachment details come from (the root test compares the real answers)
    assert (
        net["IPv4Addresses"] == [ENI_DOC["PrivateIpAddress"]] and net["MACAddress"] == ENI_DOC["MacAddress"]
    )
    assert net["PrivateDNSName"] == ENI_DOC["PrivateDnsName"]
    assert doc["VPCID"] == "vpc-1"


def test_task_document_fields() -> None:
    doc = taskmeta.task_doc(_task(), _known(), taskmeta.HostFacts())
    assert doc["Cluster"] == "arn:aws:ecs:us-east-1:000000000000:cluster/prod"
    assert (doc["TaskARN"], doc["Family"], doc["Revision"]) == (ARN, "web", "3")
    assert (doc["DesiredStatus"], doc["KnownStatus"], doc["LaunchType"]) == ("RUNNING", "RUNNING", "EC2")
    assert doc["Limits"] == {"CPU": 0.5, "Memory": 1024}
    assert doc["AvailabilityZone"] == "us-east-1a"
    assert doc["PullStartedAt"] == "2023-11-14T22:13:19.000000Z"
    web, side = doc["Containers"]
    assert (web["DockerId"], web["KnownStatus"], web["Limits"]) == (
        "rt-web",
        "RUNNING",
        {"CPU": 256, "Memory": 128},
    )
    assert web["StartedAt"] == "2023-11-14T22:13:20.250000Z"
    assert web["Labels"]["com.amazonaws.ecs.task-arn"] == ARN
    assert web["ContainerARN"].startswith("arn:aws:ecs:us-east-1:000000000000:container/prod/")
    assert "DockerId" not in side and side["KnownStatus"] == "NONE"
    json.dumps(doc)  # all of it is JSON


def test_v3_is_the_v2_shape_without_v4_fields() -> None:
    doc = taskmeta.task_doc(_task(), _known(), taskmeta.HostFacts(), v4=False)
    assert "VPCID" not in doc
    assert doc["Containers"][0]["Networks"] == [{"NetworkMode": "awsvpc", "IPv4Addresses": ["10.0.2.106"]}]
    assert "ContainerARN" not in doc["Containers"][0]


def test_environment_injection() -> None:
    task = _task()
    host = taskmeta.HostFacts(region="eu-west-1", api_port=4599)
    env = dict(taskmeta.container_env(task, "web", [("AWS_REGION", "mine")], host, "/v2/credentials/x"))
    cid = taskmeta.endpoint_id(ARN, "web")
    assert env["ECS_CONTAINER_METADATA_URI_V4"] == f"http://169.254.170.2/v4/{cid}"
    assert env["ECS_CONTAINER_METADATA_URI"] == f"http://169.254.170.2/v3/{cid}"
    assert env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"] == "/v2/credentials/x"
    assert env["AWS_REGION"] == "mine"  # the definition's value wins
    assert env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["AWS_ENDPOINT_URL"] == "http://169.254.170.2:4599"
    no_role = dict(taskmeta.container_env(_task(task_role_arn=None), "web", [], host, "/v2/credentials/x"))
    assert "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI" not in no_role
    assert taskmeta.container_env(_task(eni=None), "web", [("A", "1")], host, None) == [("A", "1")]


def test_net_dev_and_stats() -> None:
    text = (
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n"
        "    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n"
        "  eth0:    5000      40    1    2    0     0          0         0     3000      30    3    4    0     0       0          0\n"
    )
    counters = taskmeta.parse_net_dev(text)
    assert counters == {"eth0": taskmeta.InterfaceCounters(5000, 40, 1, 2, 3000, 30, 3, 4)}
    before = taskmeta.StatsSample(
        read_at=100.0, cpu_total_ns=1, networks={"eth0": taskmeta.InterfaceCounters()}
    )
    now = taskmeta.StatsSample(read_at=102.0, cpu_total_ns=5, memory_usage=7, pids=2, networks=counters)
    doc = taskmeta.stats_doc(now, before, "web", "rt-web")
    assert doc["cpu_stats"]["cpu_usage"]["total_usage"] == 5
    assert doc["precpu_stats"]["cpu_usage"]["total_usage"] == 1
    assert doc["networks"]["eth0"]["rx_bytes"] == 5000
    assert doc["network_rate_stats"] == {"rx_bytes_per_sec": 2500.0, "tx_bytes_per_sec": 1500.0}
    assert (doc["memory_stats"]["usage"], doc["pids_stats"]["current"]) == (7, 2)
    assert taskmeta.parse_flat_keyed("usage_usec 12\nuser_usec 7\nbad x\n") == {
        "usage_usec": 12,
        "user_usec": 7,
    }


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_ids_are_stable_and_distinct_per_task(a: str, b: str) -> None:
    assert taskmeta.endpoint_id(a, "c") == taskmeta.endpoint_id(a, "c")
    assert taskmeta.credentials_id(a, "s1") != taskmeta.credentials_id(a, "s2")
    if a != b:
        assert taskmeta.endpoint_id(a, "c") != taskmeta.endpoint_id(b, "c")
        assert taskmeta.credentials_id(a, "s") != taskmeta.credentials_id(b, "s")


# ---------------------------------------------------------------------------------------------- routing


def _endpoints(*workers: Any) -> TaskEndpoints:
    runtime = SimpleNamespace(status=lambda handle: SimpleNamespace(pid=None), state_dir=Path("/nonexistent"))
    engine: Any = SimpleNamespace(workers={w.desired.arn: w for w in workers}, runtime=runtime)
    return TaskEndpoints(engine, NetConfig(), secret="s3cret", region="us-east-1")


def _worker(task: DesiredTask) -> Any:
    return SimpleNamespace(
        desired=task,
        known=_known(),
        handles={"web": ContainerHandle(task.task_id, "web", "rt-web")},
        arn=task.arn,
    )


def test_routing_by_caller_and_path() -> None:
    other_task = _task(
        arn=ARN.replace("0123", "ffff"),
        eni=Eni.from_ec2(ENI_DOC | {"PrivateIpAddress": "10.0.2.7"}, "10.0.2.0/24", "att-2"),
    )
    me, other = _worker(_task()), _worker(other_task)
    ep = _endpoints(me, other)
    assert ep.caller("vpc-1", "10.0.2.106") is me
    assert ep.caller("vpc-2", "10.0.2.106") is None and ep.caller("vpc-1", "10.0.2.9") is None
    cid = taskmeta.endpoint_id(ARN, "web")
    status, body = ep.answer(me, "GET", f"/v4/{cid}")
    assert status is HTTPStatus.OK and body["Name"] == "web"
    status, body = ep.answer(me, "GET", f"/v4/{cid}/task")
    assert status is HTTPStatus.OK and body["TaskARN"] == ARN
    status, body = ep.answer(me, "GET", f"/v4/{cid}/taskWithTags")
    assert status is HTTPStatus.OK and body["TaskTags"] == {}
    status, body = ep.answer(me, "GET", f"/v4/{cid}/stats")
    assert status is HTTPStatus.OK and body is None  # not running here: null, as ECS answers
    # the other task's container id is not mine: 404, whoever knows it
    status, body = ep.answer(other, "GET", f"/v4/{cid}/task")
    assert status is HTTPStatus.NOT_FOUND and body.startswith("V4 container metadata handler")
    assert ep.answer(me, "POST", f"/v4/{cid}")[0] is HTTPStatus.METHOD_NOT_ALLOWED


def test_credentials_only_to_their_task() -> None:
    other_task = _task(
        arn=ARN.replace("0123", "ffff"),
        eni=Eni.from_ec2(ENI_DOC | {"PrivateIpAddress": "10.0.2.7"}, "10.0.2.0/24", "att-2"),
    )
    me, other = _worker(_task()), _worker(other_task)
    ep = _endpoints(me, other)
    uri = ep.credentials_uri(me.desired)
    assert ep.answer(me, "GET", uri)[0] is HTTPStatus.SERVICE_UNAVAILABLE  # none arrived yet
    creds = TaskCredentials(ARN, ROLE, "ASIAEXAMPLE", "secret", "token", "2026-12-05T13:00:00Z")
    ep.set_credentials((creds, TaskCredentials(ARN, ROLE, "ASIAEXEC", "x", "y", "z", "TaskExecution")))
    status, body = ep.answer(me, "GET", uri)
    assert status is HTTPStatus.OK
    assert body == {
        "RoleArn": ROLE,
        "AccessKeyId": "ASIAEXAMPLE",
        "SecretAccessKey": "secret",
        "Token": "token",
        "Expiration": "2026-12-05T13:00:00Z",
    }
    status, body = ep.answer(other, "GET", uri)
    assert status is HTTPStatus.BAD_REQUEST and body["code"] == "InvalidIdInRequest"
    status, body = ep.answer(me, "GET", "/v2/credentials/")
    assert status is HTTPStatus.BAD_REQUEST and body["code"] == "NoIdInRequest"
    cid = uri.rsplit("/", 1)[-1]
    assert ep.answer(me, "GET", f"/v1/credentials?id={cid}")[0] is HTTPStatus.OK


def test_endpoint_ruleset_names_the_ports() -> None:
    text = endpoint_ruleset("tvpc-host", 4599)
    assert 'ip daddr 169.254.170.2 iifname "tvpc-host" drop' in text
    assert "tcp dport { 80, 4599 } accept" in text
    assert "tcp dport { 80 } accept" in endpoint_ruleset("tvpc-host", None)
