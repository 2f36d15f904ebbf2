"""The ``overlay`` section of the agent API: a host with an underlay address hears, per VPC it has a
task in, the VPC's VNI and the task ENIs of that VPC on the other underlay hosts (with their current
groups); a task ENI attached on one host wakes the others; a host without an underlay hears nothing."""

from __future__ import annotations

from typing import Any

from taskvpc.agentapi.overlay import OVERLAY, UNDERLAY_ATTRIBUTE, assign_vnis
from tests.integration.ecs_support import awsvpc, default_subnets, register_web
from tests.integration.server import TaskvpcServer

A, B = "169.254.192.1", "169.254.192.2"


def _detail(task: dict[str, Any], name: str) -> str:
    return str(next(d["value"] for d in task["attachments"][0]["details"] if d["name"] == name))


def test_overlay_members_across_hosts(api: TaskvpcServer, agents: Any) -> None:
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    register_web(ecs)
    subnets = default_subnets(ec2)
    zone_a, zone_b, zone_c = sorted(subnets)[:3]
    one = agents(subnet_id=subnets[zone_a], attributes={UNDERLAY_ATTRIBUTE: A})
    two = agents(subnet_id=subnets[zone_b], attributes={UNDERLAY_ATTRIBUTE: B})
    plain = agents(subnet_id=subnets[zone_c])  # no underlay: not part of any overlay
    for agent in (one, two, plain):
        agent.register()
        agent.poll()  # connected: placeable
    group = ec2.create_security_group(GroupName="xh", Description="xh")["GroupId"]
    vpc_id = ec2.describe_subnets(SubnetIds=[subnets[zone_a]])["Subnets"][0]["VpcId"]

    def run(zone: str) -> dict[str, Any]:
        done = ecs.run_task(taskDefinition="web", networkConfiguration=awsvpc(subnets[zone], groups=[group]))
        assert done["failures"] == [], done["failures"]
        return dict(done["tasks"][0])

    first = run(zone_a)
    assert first["containerInstanceArn"] == one.arn
    one.poll()
    one.attach(first["taskArn"])
    one.poll()
    assert one.state is not None and one.state[OVERLAY][0].members == ()  # alone in its VPC so far
    before = one.generation
    second = run(zone_b)
    assert second["containerInstanceArn"] == two.arn
    two.poll()
    two.attach(second["taskArn"])  # the agent made its network: the other hosts hear of it
    after = one.poll()
    assert one.generation > before
    [section] = after["overlay"]
    assert section["vpcId"] == vpc_id
    assert section["vni"] == assign_vnis([v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]])[vpc_id]
    described = {
        t["taskArn"]: t for t in ecs.describe_tasks(tasks=[first["taskArn"], second["taskArn"]])["tasks"]
    }
    first, second = described[first["taskArn"]], described[second["taskArn"]]
    eni = _detail(second, "networkInterfaceId")
    assert section["members"] == [
        {"eniId": eni, "ip": _detail(second, "privateIPv4Address"), "host": B, "groupIds": [group]}
    ]
    [back] = two.poll()["overlay"]
    assert [(m["ip"], m["host"]) for m in back["members"]] == [(_detail(first, "privateIPv4Address"), A)]
    # a host with no underlay hears nothing, and its tasks are nobody's overlay members
    third = run(zone_c)
    assert third["containerInstanceArn"] == plain.arn
    plain.poll()
    plain.attach(third["taskArn"])
    assert plain.poll()["overlay"] == []
    assert [m["eniId"] for m in one.poll()["overlay"][0]["members"]] == [eni]
    # a host deregistered with its tasks: the others stop routing to them
    before = one.generation
    ecs.deregister_container_instance(containerInstance=two.arn, force=True)
    assert one.poll()["overlay"][0]["members"] == [] and one.generation > before
