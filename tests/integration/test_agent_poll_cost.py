"""What a delta poll reads on the control plane (in process, SQLite and PostgreSQL): nothing of the
instance's tasks when nothing changed, the changed row when one task changed, never every task row; and a
kept copy of the tasks that no longer adds up (rows gone without a trace) is read whole again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import text

from taskvpc.agentapi.answer import DesiredState
from taskvpc.agentapi.delta import DELTA, Delta, digests_of, encode_have, merge
from taskvpc.agentapi.reports import ContainerReport, TaskReport
from taskvpc.store import tasks_repo
from tests.integration.ecs_support import awsvpc, default_subnets, register_web
from tests.integration.fake_agent import FakeAgent
from tests.integration.server import InProcessServer

TASKS = 30


class Reads:
    """Counts what the answer reads of the tasks: whole-instance loads and task rows decoded."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.whole = self.rows = 0
        on_instance, decode = tasks_repo.tasks_on_instance, tasks_repo._task

        def counted_on_instance(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
            self.whole += 1
            return on_instance(*args, **kwargs)

        def counted_decode(row: Any) -> dict[str, Any]:
            self.rows += 1
            return decode(row)

        monkeypatch.setattr(tasks_repo, "tasks_on_instance", counted_on_instance)
        monkeypatch.setattr(tasks_repo, "_task", counted_decode)

    def during(self, call: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], int, int]:
        self.whole = self.rows = 0
        doc = call()
        return doc, self.whole, self.rows


def _poll(agent: FakeAgent, since: int | None = None, have: dict[str, str] | None = None) -> dict[str, Any]:
    query = "after=-1&wait=0"
    if since is not None:
        query = urlencode({"after": since, "wait": 0, "since": since, "have": encode_have(have or {})})
    return agent.request("GET", f"/instances/{agent.id}/desired", query=query)


def _same_state(merged: DesiredState, full: DesiredState) -> None:
    assert merged.generation == full.generation
    assert {t.arn: t for t in merged.tasks} == {t.arn: t for t in full.tasks}
    for key, value in full.sections.items():
        if key not in ("tasks", "credentials"):
            assert merged.sections[key] == value, key


@pytest.fixture()
def host(api: InProcessServer, agents: Callable[..., FakeAgent]) -> tuple[FakeAgent, list[str]]:
    if not isinstance(api, InProcessServer):
        pytest.skip("counts reads inside the control plane: in process only")
    agent = agents(max_task_enis=TASKS + 4, cpu=1 << 20, memory=1 << 24)
    agent.register()
    _poll(agent)  # connected: tasks are placed on it
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    register_web(ecs)
    subnet = default_subnets(ec2)["us-east-1a"]
    web = ec2.create_security_group(GroupName="web", Description="web")["GroupId"]
    arns: list[str] = []
    for _ in range(TASKS // 10):
        placed = ecs.run_task(
            taskDefinition="web", count=10, networkConfiguration=awsvpc(subnet, groups=[web])
        )
        arns += [t["taskArn"] for t in placed["tasks"]]
    running = (ContainerReport("web", "RUNNING", "fake"),)
    agent.report(*(TaskReport(arn, "RUNNING", "ATTACHED", containers=running) for arn in arns))
    return agent, arns


def test_a_poll_reads_what_changed_not_every_task(
    api: InProcessServer, host: tuple[FakeAgent, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, arns = host
    reads = Reads(monkeypatch)
    first, whole, rows = reads.during(lambda: _poll(agent))  # the full state reads every task, once
    assert DELTA not in first and len(first["tasks"]) == TASKS
    assert whole == 1 and rows == TASKS
    view, digests = DesiredState.from_wire(first), digests_of(first)

    quiet, whole, rows = reads.during(lambda: _poll(agent, view.generation, digests))
    assert quiet[DELTA] is True and quiet["tasks"] == [] and quiet["taskCount"] == TASKS
    assert not {"vpcs", "securityGroups", "instance"} & set(quiet)
    assert (whole, rows) == (0, 0), "nothing changed: no task row read"

    api.client("ecs").stop_task(task=arns[7], reason="one of thirty")
    one, whole, rows = reads.during(lambda: _poll(agent, view.generation, digests))
    assert [t["taskArn"] for t in one["tasks"]] == [arns[7]] and one["tasks"][0]["desiredStatus"] == "STOPPED"
    assert not {"vpcs", "securityGroups", "instance"} & set(one)
    assert (whole, rows) == (0, 1), "one task changed: its row only"
    merged = merge(view, Delta.from_wire(one))
    assert merged is not None
    _same_state(merged, DesiredState.from_wire(_poll(agent)))

    view, digests = merged, digests_of(one)
    agent.report(TaskReport(arns[7], "STOPPED", "DETACHED"))  # it leaves the list
    gone, whole, rows = reads.during(lambda: _poll(agent, view.generation, digests))
    assert gone["tasks"] == [] and gone["removedTasks"] == [arns[7]] and gone["taskCount"] == TASKS - 1
    assert (whole, rows) == (0, 1)


def test_a_kept_copy_that_does_not_add_up_is_read_whole(
    api: InProcessServer, host: tuple[FakeAgent, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, arns = host
    first = _poll(agent)
    view, digests = DesiredState.from_wire(first), digests_of(first)
    _poll(agent, view.generation, digests)  # the control plane keeps its copy as of this generation
    # One task stops and its row goes (a purge) before the agent polls again: no changed row tells of it.
    api.client("ecs").stop_task(task=arns[0])
    agent.report(TaskReport(arns[0], "STOPPED", "DETACHED"))
    assert api.control_plane is not None
    with api.control_plane.db.transaction() as conn:
        conn.execute(text("DELETE FROM tasks WHERE arn = :arn"), {"arn": arns[0]})
    reads = Reads(monkeypatch)
    answer, whole, _ = reads.during(lambda: _poll(agent, view.generation, digests))
    assert answer["taskCount"] == TASKS - 1 and whole == 1  # read whole: the count is the store's
    assert merge(view, Delta.from_wire(answer)) is None  # the agent then asks for the full state
    full = DesiredState.from_wire(_poll(agent))
    assert len(full.tasks) == TASKS - 1 and arns[0] not in {t.arn for t in full.tasks}
