"""A task's AWS calls through the agent's relay (``taskvpc.agent.apirelay``) survive the loss of a control
plane: two ``taskvpc up --no-agent`` on one PostgreSQL, an agent client given both (registered and
long-polling, as an agent does) with the relay the agent serves its tasks at ``169.254.170.2`` (here on
127.0.0.1: the relay itself needs no namespace), and boto3 as the task's SDK pointed at it, with no
retries of its own. The first control plane is killed with SIGKILL: the next call still succeeds, and the
agent and the relay agree on the survivor."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import Future
from typing import Any

import boto3
from botocore.config import Config

from taskvpc.agent.apirelay import ApiRelay
from taskvpc.agent.client import AgentClient, AgentCredentials, Backoff
from tests.integration.fake_agent import ECS_ATTRIBUTES
from tests.integration.server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, TaskvpcServer


class AgentWithRelay:
    """An agent's client (registered, long-polling) and its tasks' API relay, on one loop in a thread."""

    def __init__(self, endpoints: list[str]) -> None:
        self.endpoints = endpoints
        self.client: AgentClient | None = None
        self.polls = 0
        self._port: Future[int] = Future()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()

    @property
    def relay_port(self) -> int:
        return self._port.result(timeout=20)

    async def _run(self) -> None:
        client = self.client = AgentClient(
            self.endpoints,
            AgentCredentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY),
            REGION,
            backoff=Backoff(initial=0.02, maximum=0.5),
        )
        relay = ApiRelay(client)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await relay.serve(reader, writer)
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        try:
            registration = {
                "cluster": "relay",
                "instanceId": "i-" + uuid.uuid4().hex[:17],
                "resources": {"CPU": 2048, "MEMORY": 4096, "PORTS": [], "PORTS_UDP": []},
                "attributes": ECS_ATTRIBUTES,
                "instanceType": "c5.large",
                "agentVersion": "taskvpc-test",
            }
            instance = (await client.register(registration)).instance_id
            self._port.set_result(int(server.sockets[0].getsockname()[1]))
            generation = 0
            while not self._stop.is_set():
                answer = await client.desired(instance, generation, 0.5)
                generation = int(answer.get("generation", generation))
                self.polls += 1
        except BaseException as exc:
            if not self._port.done():
                self._port.set_exception(exc)
            raise
        finally:
            server.close()
            await client.close()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=10)


def _task_sdk(port: int) -> Any:
    """What a task's SDK builds from ``AWS_ENDPOINT_URL``: one attempt, so a success is the relay's."""
    return boto3.client(
        "ecs",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=10),
    )


def test_a_relayed_call_survives_the_first_control_plane(planes: tuple[TaskvpcServer, TaskvpcServer]) -> None:
    first, second = planes
    first.client("ecs").create_cluster(clusterName="relay")
    agent = AgentWithRelay([first.endpoint, second.endpoint])
    try:
        port = agent.relay_port
        assert agent.client is not None
        assert agent.client.endpoint.port == first.port
        before = _task_sdk(port).describe_clusters(clusters=["relay"])["clusters"]
        assert [c["status"] for c in before] == ["ACTIVE"]

        first.kill()  # SIGKILL; the agent has not noticed yet (its poll is under way)
        after = _task_sdk(port).describe_clusters(clusters=["relay"])["clusters"]
        assert [c["clusterName"] for c in after] == ["relay"]
        assert [c["registeredContainerInstancesCount"] for c in after] == [1]  # the same state
        made = _task_sdk(port).create_cluster(clusterName="relay-after")["cluster"]
        assert made["status"] == "ACTIVE"
        assert second.client("ecs").describe_clusters(clusters=["relay-after"])["clusters"][0]["status"] == (
            "ACTIVE"
        )

        # the agent is on the survivor too, and still polling there
        assert agent.client.endpoint.port == second.port
        polls = agent.polls
        deadline = time.monotonic() + 10
        while agent.polls < polls + 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert agent.polls >= polls + 2
    finally:
        agent.stop()
