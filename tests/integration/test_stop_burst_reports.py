"""A report of many stopped tasks costs one of each per-report write, not one per task: the other overlay
hosts are woken once (one generation), and still hear every member gone; every stopped task's ENI is
deleted and its address free (in process, SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

from taskvpc.agentapi.overlay import OVERLAY, UNDERLAY_ATTRIBUTE
from taskvpc.agentapi.reports import TaskReport
from tests.integration.ecs_support import awsvpc, default_subnets, register_web
from tests.integration.server import InProcessServer

TASKS = 4


def _eni_of(task: dict[str, Any]) -> str:
    details = task["attachments"][0]["details"]
    return next(d["value"] for d in details if d["name"] == "networkInterfaceId")


def test_a_report_of_many_stopped_tasks_wakes_the_other_hosts_once(api: InProcessServer, agents: Any) -> None:
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    register_web(ecs)
    subnets = default_subnets(ec2)
    zone_a, zone_b = sorted(subnets)[:2]
    watcher = agents(subnet_id=subnets[zone_a], attributes={UNDERLAY_ATTRIBUTE: "10.200.0.1"})
    busy = agents(subnet_id=subnets[zone_b], attributes={UNDERLAY_ATTRIBUTE: "10.200.0.2"}, max_task_enis=8)
    for agent in (watcher, busy):
        agent.register()
        agent.poll()  # connected: placeable
    lone = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnets[zone_a]))["tasks"][0]
    assert lone["containerInstanceArn"] == watcher.arn
    watcher.poll()
    watcher.attach(lone["taskArn"])  # the watcher has a task in the VPC: it is part of its overlay
    placed = ecs.run_task(taskDefinition="web", count=TASKS, networkConfiguration=awsvpc(subnets[zone_b]))
    assert placed["failures"] == [] and {t["containerInstanceArn"] for t in placed["tasks"]} == {busy.arn}
    arns = [t["taskArn"] for t in placed["tasks"]]
    busy.poll()
    for arn in arns:
        busy.attach(arn)
    watcher.poll()
    assert watcher.state is not None
    assert len(watcher.state[OVERLAY][0].members) == TASKS
    described = ecs.describe_tasks(tasks=arns)["tasks"]
    enis = sorted(_eni_of(t) for t in described)
    before = watcher.generation

    for arn in arns:
        ecs.stop_task(task=arn)
    busy.report(*(TaskReport(arn, "STOPPED", "DETACHED") for arn in arns))  # one report of them all

    after = watcher.poll()
    assert watcher.generation == before + 1, "one wake for the whole report, not one per task"
    assert after["overlay"][0]["members"] == []
    assert {t["lastStatus"] for t in ecs.describe_tasks(tasks=arns)["tasks"]} == {"STOPPED"}
    left = ec2.describe_network_interfaces(Filters=[{"Name": "network-interface-id", "Values": enis}])
    assert left["NetworkInterfaces"] == []  # deleted with their tags and addresses
    again = ecs.run_task(taskDefinition="web", count=TASKS, networkConfiguration=awsvpc(subnets[zone_b]))
    assert again["failures"] == []  # the host's ENI slots are free again
