"""`taskvpc down`'s record of the stopped tasks in the control plane's database (its host part runs as
root in tests/root/test_teardown.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from taskvpc.cli.down import STOP_REASON, record_stopped
from tests.integration.fake_agent import FakeAgent
from tests.integration.server import TaskvpcServer


def test_down_records_the_local_instances_tasks_stopped(tmp_path: Path) -> None:
    state = tmp_path / "state"
    server = TaskvpcServer(state).start()
    try:
        agent = FakeAgent(server).start(auto=True)
        ecs: Any = server.client("ecs")
        ecs.register_task_definition(
            family="web",
            networkMode="bridge",
            containerDefinitions=[{"name": "web", "image": "busybox", "memory": 64}],
        )
        arn = ecs.run_task(taskDefinition="web")["tasks"][0]["taskArn"]
        agent.wait_for_task(arn, "RUNNING")
        agent.stop()
    finally:
        server.stop()
    assert record_stopped(state, None).startswith("no local container instance on record")
    (state / "agent").mkdir()
    (state / "agent" / "agent.json").write_text(
        json.dumps({"instance_id": agent.instance_id, "container_instance_arn": agent.arn})
    )
    assert record_stopped(state, None) == f"1 task(s) recorded STOPPED on {agent.arn}"
    assert record_stopped(state, None) == f"0 task(s) recorded STOPPED on {agent.arn}"

    server = TaskvpcServer(state).start()
    try:
        ecs = server.client("ecs")
        [task] = ecs.describe_tasks(tasks=[arn])["tasks"]
        assert (task["lastStatus"], task["desiredStatus"], task["stoppedReason"]) == (
            "STOPPED",
            "STOPPED",
            STOP_REASON,
        )
        [instance] = ecs.describe_container_instances(containerInstances=[agent.arn])["containerInstances"]
        assert instance["agentConnected"] is False
        assert instance["runningTasksCount"] == 0
    finally:
        server.stop()
