"""Two control planes on one PostgreSQL: two ``taskvpc up --no-agent`` serve the same state; one is killed
with SIGKILL in the middle of a burst of RunTask calls. Clients retry a call that got no answer against
the other endpoint with the same ``clientToken`` (as an SDK given two endpoints would), and an agent
(the real ``AgentClient`` given both endpoints) fails over on its own. Every acknowledged task exists
exactly once, and no task is stopped by the failover: the agent reports them all RUNNING through the
survivor."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError as BotoClientError

from taskvpc.agent.client import AgentClient, AgentCredentials, Backoff
from taskvpc.agentapi.reports import ContainerReport, Report, TaskReport
from tests.integration.fake_agent import ECS_ATTRIBUTES
from tests.integration.server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, TaskvpcServer

CALLS = 60
KILL_AFTER = 15  # acknowledged calls before the first control plane dies
TASK_DEFINITION = {
    "family": "burst",
    "networkMode": "bridge",
    "containerDefinitions": [{"name": "app", "image": "busybox", "memory": 4, "cpu": 1}],
}


class Agent:
    """A minimal agent on the real AgentClient: registers, long-polls, reports each new task RUNNING."""

    def __init__(self, endpoints: list[str]) -> None:
        self.endpoints = endpoints
        self.running: set[str] = set()
        self.client: AgentClient | None = None
        self.ready = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()

    async def _run(self) -> None:
        client = self.client = AgentClient(
            self.endpoints,
            AgentCredentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY),
            REGION,
            backoff=Backoff(initial=0.02, maximum=0.5),
        )
        registration = {
            "cluster": "burst",
            "instanceId": "i-" + uuid.uuid4().hex[:17],
            "resources": {"CPU": 65536, "MEMORY": 262144, "PORTS": [], "PORTS_UDP": []},
            "attributes": ECS_ATTRIBUTES,
            "instanceType": "c5.large",
            "agentVersion": "taskvpc-test",
        }
        instance = (await client.register(registration)).instance_id
        generation = 0
        try:
            while not self._stop.is_set():
                answer = await client.desired(instance, generation, 1.0)
                generation = int(answer.get("generation", generation))
                self.ready.set()
                reports = [
                    TaskReport(
                        task["taskArn"],
                        "RUNNING",
                        containers=tuple(
                            ContainerReport(c["name"], "RUNNING", f"c-{uuid.uuid4().hex[:8]}")
                            for c in task["containers"]
                        ),
                    )
                    for task in answer.get("tasks", [])
                    if task["desiredStatus"] == "RUNNING" and task["taskArn"] not in self.running
                ]
                if reports:
                    await client.report(instance, Report.of(reports))
                    self.running.update(r.task_arn for r in reports)
        finally:
            await client.close()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=10)


def _run_task(clients: list[Any], index: int, retried: list[int]) -> list[str]:
    """RunTask with a clientToken at the first endpoint; on no answer, the same call at the next one (what
    a client given two endpoints does). Returns the acknowledged task ARNs."""
    params = {
        "cluster": "burst",
        "taskDefinition": "burst",
        "startedBy": f"burst-{index}",
        "clientToken": f"token-{index}",
    }
    attempt = 0
    while True:
        client = clients[attempt % 2]
        try:
            answer = client.run_task(**params)
            assert answer["failures"] == [], answer["failures"]
            return [t["taskArn"] for t in answer["tasks"]]
        except BotoClientError:
            raise
        except Exception:  # no answer (connection refused or cut): try the other control plane
            attempt += 1
            retried.append(index)
            time.sleep(0.05)
            if attempt > 40:
                raise


def test_kill_one_control_plane_during_a_run_task_burst(planes: tuple[TaskvpcServer, TaskvpcServer]) -> None:
    first, second = planes
    ecs_first = first.client("ecs", connect_timeout=2, read_timeout=10)
    ecs_second = second.client("ecs", connect_timeout=2, read_timeout=10)
    ecs_first.create_cluster(clusterName="burst")
    ecs_second.register_task_definition(**TASK_DEFINITION)  # the same state through either
    agent = Agent([first.endpoint, second.endpoint])
    try:
        assert agent.ready.wait(20)
        dead = threading.Event()
        acknowledged: dict[int, list[str]] = {}
        lock = threading.Lock()
        retried: list[int] = []

        def call(index: int) -> None:
            arns = _run_task([ecs_first, ecs_second], index, retried)
            with lock:
                acknowledged[index] = arns
                if len(acknowledged) == KILL_AFTER and not dead.is_set():
                    first.kill()  # SIGKILL, with calls under way on it
                    dead.set()

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(call, range(CALLS)))
        assert dead.is_set() and first.process is not None and first.process.poll() is not None
        assert sorted(acknowledged) == list(range(CALLS))
        assert len(set(retried)) >= CALLS - KILL_AFTER - 4  # every call after the kill went to the other

        # every acknowledged task exists exactly once (a retried call got the same task back)
        for index, arns in acknowledged.items():
            assert len(arns) == 1
            found = ecs_second.list_tasks(cluster="burst", startedBy=f"burst-{index}")["taskArns"]
            assert found == arns, (index, found, arns)
        every = ecs_second.list_tasks(cluster="burst", maxResults=100)["taskArns"]
        assert len(every) == CALLS

        # the agent failed over and runs them all; the failover stopped none
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(agent.running) < CALLS:
            time.sleep(0.1)
        assert agent.client is not None and agent.client.endpoint.port == second.port
        described = []
        for start in range(0, CALLS, 100):
            described += ecs_second.describe_tasks(cluster="burst", tasks=every[start : start + 100])["tasks"]
        assert {t["lastStatus"] for t in described} == {"RUNNING"}
        assert {t["desiredStatus"] for t in described} == {"RUNNING"}
        assert ecs_second.list_tasks(cluster="burst", desiredStatus="STOPPED")["taskArns"] == []
    finally:
        agent.stop()
