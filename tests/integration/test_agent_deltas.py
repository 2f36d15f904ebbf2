"""Desired-state deltas over real HTTP (a ``taskvpc up`` process; SQLite and PostgreSQL): after one task
change the answer carries that change, not the whole instance; merged into the agent's copy it is the full
state; an agent without ``since``, a ``since`` the server cannot answer from, and a server restart give
the full state or a delta that still adds up."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest

from taskvpc.agentapi.answer import DesiredState
from taskvpc.agentapi.delta import DELTA, Delta, digests_of, encode_have, merge
from taskvpc.agentapi.reports import TaskReport
from tests.integration.ecs_support import awsvpc, default_subnets, register_web
from tests.integration.fake_agent import AgentError, FakeAgent
from tests.integration.server import TaskvpcServer

TASKS = 6


def _poll(agent: FakeAgent, since: int | None = None, have: dict[str, str] | None = None) -> dict[str, Any]:
    query = "after=-1&wait=0"
    if since is not None:  # as the agent polls: after and since are the generation it holds
        query = urlencode({"after": since, "wait": 0, "since": since, "have": encode_have(have or {})})
    return agent.request("GET", f"/instances/{agent.id}/desired", query=query)


def _size(doc: dict[str, Any]) -> int:
    return len(json.dumps(doc, separators=(",", ":")))


def _tasks(state: DesiredState) -> dict[str, Any]:
    return {t.arn: t for t in state.tasks}


def _same_state(merged: DesiredState, full: DesiredState) -> None:
    assert merged.generation == full.generation
    assert _tasks(merged) == _tasks(full)
    for key, value in full.sections.items():
        if key not in ("tasks", "credentials"):
            assert merged.sections[key] == value, key


def test_one_task_change_is_answered_with_that_change(live_api: TaskvpcServer) -> None:
    agent = FakeAgent(live_api, max_task_enis=16)
    agent.register()
    _poll(agent)  # connected: tasks are placed on it
    ecs, ec2 = live_api.client("ecs"), live_api.client("ec2")
    register_web(ecs)
    subnet = default_subnets(ec2)["us-east-1a"]
    web = ec2.create_security_group(GroupName="web", Description="web")["GroupId"]
    arns = [
        t["taskArn"]
        for t in ecs.run_task(
            taskDefinition="web", count=TASKS, networkConfiguration=awsvpc(subnet, groups=[web])
        )["tasks"]
    ]
    first = _poll(agent)  # an agent that does not say what it holds: the full state, as before
    assert DELTA not in first and len(first["tasks"]) == TASKS
    view = DesiredState.from_wire(first)
    digests = digests_of(first)
    assert set(digests) >= {"instance", "vpcs", "securityGroups"}

    unchanged = _poll(agent, view.generation, digests)  # nothing happened: nothing but the counts
    assert unchanged[DELTA] is True and unchanged["changed"] is False
    assert unchanged["tasks"] == [] and unchanged["removedTasks"] == [] and unchanged["taskCount"] == TASKS
    assert "securityGroups" not in unchanged and "vpcs" not in unchanged

    ecs.stop_task(task=arns[2], reason="one of six")
    stopping = _poll(agent, view.generation, digests)
    assert stopping[DELTA] is True and stopping["changed"] is True
    assert [t["taskArn"] for t in stopping["tasks"]] == [arns[2]]
    assert stopping["tasks"][0]["desiredStatus"] == "STOPPED"
    assert "securityGroups" not in stopping and "vpcs" not in stopping and "instance" not in stopping
    assert _size(stopping) * 3 < _size(first)
    delta = Delta.from_wire(stopping)
    merged = merge(view, delta)
    assert merged is not None
    _same_state(merged, DesiredState.from_wire(_poll(agent)))
    view, digests = merged, dict(delta.digests)

    agent.report(TaskReport(arns[2], "STOPPED", "DETACHED"))  # it leaves the list
    gone = _poll(agent, view.generation, digests)
    assert gone["tasks"] == [] and gone["removedTasks"] == [arns[2]] and gone["taskCount"] == TASKS - 1
    delta = Delta.from_wire(gone)
    merged = merge(view, delta)
    assert merged is not None and arns[2] not in _tasks(merged)
    _same_state(merged, DesiredState.from_wire(_poll(agent)))
    view, digests = merged, dict(delta.digests)

    # A rule change: the groups section whole, and no task.
    ec2.authorize_security_group_ingress(
        GroupId=web,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        ],
    )
    ruled = _poll(agent, view.generation, digests)
    assert ruled["changed"] is True and ruled["tasks"] == [] and ruled["removedTasks"] == []
    assert {g["groupId"] for g in ruled["securityGroups"]} == {web}
    assert "vpcs" not in ruled and "instance" not in ruled
    merged = merge(view, Delta.from_wire(ruled))
    assert merged is not None
    _same_state(merged, DesiredState.from_wire(_poll(agent)))

    # A copy that lost a task (a tombstone it never saw) does not add up: the agent asks for the full state.
    stale = DesiredState(view.generation, True, {**view.sections, "tasks": view.tasks[1:]})
    assert merge(stale, Delta.from_wire(_poll(agent, view.generation, digests))) is None


def test_a_since_the_server_cannot_answer_from_gets_the_full_state(live_api: TaskvpcServer) -> None:
    agent = FakeAgent(live_api, max_task_enis=16)
    agent.register()
    _poll(agent)  # connected: tasks are placed on it
    ecs, ec2 = live_api.client("ecs"), live_api.client("ec2")
    register_web(ecs)
    subnet = default_subnets(ec2)["us-east-1a"]
    ecs.run_task(taskDefinition="web", count=2, networkConfiguration=awsvpc(subnet))
    full = _poll(agent)
    ahead = _poll(agent, full["generation"] + 1000, digests_of(full))  # the store was replaced under it
    assert DELTA not in ahead and len(ahead["tasks"]) == 2 and "securityGroups" in ahead
    with pytest.raises(AgentError) as refused:
        agent.request("GET", f"/instances/{agent.id}/desired", query="after=0&since=x")
    assert refused.value.status == 400 and refused.value.payload["code"] == "BadRequest"


def test_deltas_survive_a_server_restart(live_server: TaskvpcServer) -> None:
    live_server.reset()
    agent = FakeAgent(live_server, max_task_enis=16)
    agent.register()
    _poll(agent)  # connected: tasks are placed on it
    ecs, ec2 = live_server.client("ecs"), live_server.client("ec2")
    register_web(ecs)
    subnet = default_subnets(ec2)["us-east-1a"]
    arns = [
        t["taskArn"]
        for t in ecs.run_task(taskDefinition="web", count=3, networkConfiguration=awsvpc(subnet))["tasks"]
    ]
    first = _poll(agent)
    view, digests = DesiredState.from_wire(first), digests_of(first)
    live_server.stop()
    live_server.start()  # same store: generations and per-task stamps are kept
    ecs = live_server.client("ecs")
    ecs.stop_task(task=arns[0])
    after = _poll(agent, view.generation, digests)
    assert after[DELTA] is True and [t["taskArn"] for t in after["tasks"]] == [arns[0]]
    merged = merge(view, Delta.from_wire(after))
    assert merged is not None
    _same_state(merged, DesiredState.from_wire(_poll(agent)))
