"""The agent's side of flow logs over the agent API, on SQLite and PostgreSQL: the ``flowLogs`` section
names the instance's covered task ENIs (and a CreateFlowLogs answers waiting polls), and a
``flowRecords`` report entry lands in the flow log's group, in the ENI's stream, as AWS formats it."""

from __future__ import annotations

import time
from typing import Any

import pytest

from taskvpc.agentapi.flowlogs import FlowRecords, records_to_wire
from tests.integration.ecs_support import awsvpc, default_subnets, register_web
from tests.integration.fake_agent import AgentError
from tests.integration.server import ACCOUNT_ID, TaskvpcServer

ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/flow-logs"


def _task_eni(api: TaskvpcServer, agent: Any) -> tuple[str, str, str]:
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    register_web(ecs)
    subnet = default_subnets(ec2)["us-east-1a"]
    arn = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnet))["tasks"][0]["taskArn"]
    answer = agent.poll()
    [task] = [t for t in answer["tasks"] if t["taskArn"] == arn]
    return arn, task["eni"]["networkInterfaceId"], subnet


def test_flow_logs_section_and_records_land_in_the_group(api: TaskvpcServer, agents: Any) -> None:
    agent = agents().start()
    ec2, logs = api.client("ec2"), api.client("logs")
    arn, eni_id, subnet = _task_eni(api, agent)
    assert agent.poll()["flowLogs"] == []  # no flow log: nothing to collect

    generation = agent.generation
    started = time.monotonic()
    ec2.create_flow_logs(
        ResourceType="Subnet",
        ResourceIds=[subnet],
        TrafficType="REJECT",
        LogGroupName="task-flows",
        DeliverLogsPermissionArn=ROLE,
        MaxAggregationInterval=60,
    )
    ec2.create_flow_logs(
        ResourceType="NetworkInterface",
        ResourceIds=[eni_id],
        TrafficType="ACCEPT",
        LogGroupName="task-flows-accept",
        DeliverLogsPermissionArn=ROLE,
        LogFormat="${interface-id} ${srcaddr} ${dstport} ${packets} ${bytes} ${action} ${flow-direction}",
    )
    answer = agent.poll(after=generation, wait=5)  # the creation answers a waiting poll
    assert time.monotonic() - started < 4
    [watch] = answer["flowLogs"]
    assert watch["eniId"] == eni_id
    assert watch["aggregationInterval"] == 60  # the shorter of the two
    assert watch["trafficTypes"] == ["ACCEPT", "REJECT"]
    assert "flow-direction" in watch["fields"] and "log-status" in watch["fields"]

    now = int(time.time())
    accepted = {
        "srcaddr": "169.254.100.1",
        "dstaddr": "172.31.0.10",
        "srcport": 40000,
        "dstport": 80,
        "protocol": 6,
        "packets": 6,
        "bytes": 700,
        "start": now - 5,
        "end": now,
        "action": "ACCEPT",
        "log-status": "OK",
        "flow-direction": "ingress",
    }
    rejected = {**accepted, "dstport": 22, "packets": 4, "bytes": 240, "action": "REJECT"}
    entry = FlowRecords(eni_id, now - 60, now, (accepted, rejected))
    agent.request("POST", f"/instances/{agent.id}/report", records_to_wire((entry,)))

    def messages(group: str) -> list[str]:
        events = logs.get_log_events(logGroupName=group, logStreamName=eni_id, startFromHead=True)["events"]
        return [e["message"] for e in events]

    assert messages("task-flows-accept") == [f"{eni_id} 169.254.100.1 80 6 700 ACCEPT ingress"]
    [reject_line] = messages("task-flows")  # default v2 format, REJECT only
    assert reject_line == (
        f"2 {ACCOUNT_ID} {eni_id} 169.254.100.1 172.31.0.10 40000 22 6 4 240 {now - 5} {now} REJECT OK"
    )

    # NODATA goes to every flow log; a record for an ENI that is not this instance's is ignored
    nodata = FlowRecords(eni_id, now, now + 60, ({"start": now, "end": now + 60, "log-status": "NODATA"},))
    stranger = FlowRecords("eni-0123456789abcdef0", now, now + 60, (accepted,))
    agent.request("POST", f"/instances/{agent.id}/report", records_to_wire((nodata, stranger)))
    assert messages("task-flows")[-1] == f"2 {ACCOUNT_ID} {eni_id} - - - - - - - {now} {now + 60} - NODATA"
    assert len(messages("task-flows-accept")) == 2
    assert arn


@pytest.mark.parametrize(
    "entries",
    [
        "not a list",
        [{"window": [1, 2], "records": []}],
        [{"eniId": "eni-1", "window": [1], "records": []}],
        [{"eniId": "eni-1", "window": [1, 2], "records": [{"packets": [1]}]}],
        [{"eniId": "eni-1", "window": [1, 2], "records": [{"action": True}]}],
    ],
)
def test_malformed_flow_records_are_refused_whole(api: TaskvpcServer, agents: Any, entries: Any) -> None:
    agent = agents().start()
    with pytest.raises(AgentError) as refused:
        agent.request("POST", f"/instances/{agent.id}/report", {"tasks": [], "flowRecords": entries})
    assert refused.value.status == 400
