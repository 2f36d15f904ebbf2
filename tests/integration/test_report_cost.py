"""The agent's state reports do not recount every task of the instance and the cluster: each batch adds
the reported tasks' own changes to the usage and the counters, which stay those of the rows (in process,
SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from taskvpc.agentapi.reports import ContainerReport, TaskReport
from tests.integration.fake_agent import FakeAgent
from tests.integration.server import InProcessServer
from tests.integration.test_stop_task_cost import TASKS, Recounts, _counts, _same_as_recounted, host

__all__ = ["host"]  # the fixture, shared with the StopTask test


def test_reports_add_their_tasks_changes_without_a_recount(
    api: InProcessServer, host: tuple[FakeAgent, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, arns = host
    ecs = api.client("ecs")
    recounts = Recounts(monkeypatch)
    running = (ContainerReport("web", "RUNNING", "fake"),)
    agent.report(*(TaskReport(arn, "RUNNING", "ATTACHED", containers=running) for arn in arns[:4]))
    assert _counts(ecs, agent) == (4, TASKS - 4, 4, TASKS - 4)
    assert (recounts.usage, recounts.cluster) == (0, 0), "the reports recounted the instance or the cluster"
    _same_as_recounted(api, agent)  # (recounts, to check)
    recounts.usage = recounts.cluster = 0
    # one RUNNING and one pending task stop, one report is a repeat (no change), one is not this host's
    agent.report(
        TaskReport(arns[0], "STOPPED", "DETACHED"),
        TaskReport(arns[5], "STOPPED", "DETACHED"),
        TaskReport(arns[1], "RUNNING", "ATTACHED", containers=running),
        TaskReport(arns[0].rsplit("/", 1)[0] + "/0" * 16, "RUNNING", "ATTACHED", containers=running),
    )
    assert _counts(ecs, agent) == (3, TASKS - 5, 3, TASKS - 5)
    assert (recounts.usage, recounts.cluster) == (0, 0), "the reports recounted the instance or the cluster"
    _same_as_recounted(api, agent)
    described = ecs.describe_tasks(tasks=[arns[0], arns[5]])["tasks"]
    assert {t["lastStatus"] for t in described} == {"STOPPED"}
