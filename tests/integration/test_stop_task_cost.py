"""StopTask does not recount every task of the instance and the cluster when the stop request changes
nothing they count (a RUNNING task only gets desired STOPPED), yet the counters stay those of the rows
and the agent's next poll carries the stop (in process, SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from taskvpc.agentapi.reports import ContainerReport, TaskReport
from taskvpc.store import ecs_repo, tasks_repo
from tests.integration.ecs_support import awsvpc, default_subnets, register_web
from tests.integration.fake_agent import FakeAgent
from tests.integration.server import InProcessServer

TASKS = 6


class Recounts:
    """Counts the whole-instance usage and whole-cluster counter recomputations."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.usage = self.cluster = 0
        usage, cluster = tasks_repo.refresh_usage, tasks_repo.cluster_counts

        def counted_usage(*args: Any, **kwargs: Any) -> bool:
            self.usage += 1
            return usage(*args, **kwargs)

        def counted_cluster(*args: Any, **kwargs: Any) -> tuple[int, int, int]:
            self.cluster += 1
            return cluster(*args, **kwargs)

        monkeypatch.setattr(tasks_repo, "refresh_usage", counted_usage)
        monkeypatch.setattr(tasks_repo, "cluster_counts", counted_cluster)


def _poll(agent: FakeAgent) -> dict[str, Any]:
    return agent.request("GET", f"/instances/{agent.id}/desired", query="after=-1&wait=0")


def _counts(ecs: Any, agent: FakeAgent) -> tuple[int, int, int, int]:
    cluster = ecs.describe_clusters(clusters=["default"])["clusters"][0]
    instance = ecs.describe_container_instances(containerInstances=[agent.id])["containerInstances"][0]
    return (
        cluster["runningTasksCount"],
        cluster["pendingTasksCount"],
        instance["runningTasksCount"],
        instance["pendingTasksCount"],
    )


def _same_as_recounted(api: InProcessServer, agent: FakeAgent) -> None:
    """The stored usage and counters are what a recount of every row gives."""
    assert api.control_plane is not None
    with api.control_plane.db.read() as conn:
        instance = tasks_repo.get_instance(conn, agent.id)
        assert instance is not None
        stored = {name: instance[name] for name in tasks_repo.USAGE_COLUMNS}
        cluster = ecs_repo.get_cluster(conn, instance["region"], "default")
        assert cluster is not None
        counts = tasks_repo.cluster_counts(conn, instance["region"], "default")
    recounted = dict(instance)
    with api.control_plane.db.transaction() as conn:
        assert not tasks_repo.refresh_usage(conn, recounted), "a recount changed the usage"
    assert stored == {name: recounted[name] for name in tasks_repo.USAGE_COLUMNS}
    assert (cluster["runningTasksCount"], cluster["pendingTasksCount"]) == counts[1:]


@pytest.fixture()
def host(api: InProcessServer, agents: Callable[..., FakeAgent]) -> tuple[FakeAgent, list[str]]:
    agent = agents(max_task_enis=TASKS + 2, cpu=1 << 20, memory=1 << 24)
    agent.register()
    _poll(agent)  # connected: tasks are placed on it
    ecs, ec2 = api.client("ecs"), api.client("ec2")
    register_web(ecs)
    subnet = default_subnets(ec2)["us-east-1a"]
    placed = ecs.run_task(taskDefinition="web", count=TASKS, networkConfiguration=awsvpc(subnet))
    assert not placed["failures"]
    return agent, [t["taskArn"] for t in placed["tasks"]]


def test_stopping_a_running_task_recounts_nothing_and_the_counters_stay_right(
    api: InProcessServer, host: tuple[FakeAgent, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    agent, arns = host
    ecs = api.client("ecs")
    running = (ContainerReport("web", "RUNNING", "fake"),)
    agent.report(*(TaskReport(arn, "RUNNING", "ATTACHED", containers=running) for arn in arns[:4]))
    assert _counts(ecs, agent) == (4, 2, 4, 2)
    generation = _poll(agent)["generation"]

    recounts = Recounts(monkeypatch)
    stopped = ecs.stop_task(task=arns[0], reason="done with it")["task"]
    assert stopped["desiredStatus"] == "STOPPED" and stopped["lastStatus"] == "DEACTIVATING"
    assert stopped["stoppedReason"] == "done with it"
    assert (recounts.usage, recounts.cluster) == (0, 0), "one task's share, no recount"
    assert _counts(ecs, agent) == (3, 2, 3, 2)  # DEACTIVATING: neither running nor pending
    _same_as_recounted(api, agent)

    answer = _poll(agent)  # the agent learns of it: a new generation with the task desired STOPPED
    assert answer["generation"] > generation
    entry = next(t for t in answer["tasks"] if t["taskArn"] == arns[0])
    assert entry["desiredStatus"] == "STOPPED"

    again = ecs.stop_task(task=arns[0])["task"]  # a second request changes nothing
    assert again["desiredStatus"] == "STOPPED" and _poll(agent)["generation"] == answer["generation"]

    agent.report(TaskReport(arns[0], "STOPPED", "DETACHED"))
    assert _counts(ecs, agent) == (3, 2, 3, 2)
    _same_as_recounted(api, agent)
    assert ecs.describe_tasks(tasks=[arns[0]])["tasks"][0]["lastStatus"] == "STOPPED"


def test_stopping_a_task_not_yet_running_keeps_the_counters_those_of_the_rows(
    api: InProcessServer, host: tuple[FakeAgent, list[str]]
) -> None:
    agent, arns = host
    ecs = api.client("ecs")
    before = ecs.describe_tasks(tasks=[arns[5]])["tasks"][0]["lastStatus"]
    assert before in ("PROVISIONING", "PENDING")
    assert _counts(ecs, agent) == (0, TASKS, 0, TASKS)
    for arn in arns[4:]:
        ecs.stop_task(task=arn)
    described = {t["taskArn"]: t for t in ecs.describe_tasks(tasks=arns)["tasks"]}
    pending = sum(described[a]["lastStatus"] in ("PROVISIONING", "PENDING", "ACTIVATING") for a in arns)
    running = sum(described[a]["lastStatus"] == "RUNNING" for a in arns)
    assert _counts(ecs, agent) == (running, pending, running, pending)
    _same_as_recounted(api, agent)
    agent.report(*(TaskReport(arn, "STOPPED", "DETACHED") for arn in arns[4:]))
    assert _counts(ecs, agent) == (0, TASKS - 2, 0, TASKS - 2)
