"""The real agent engine paired with the real control plane, in one process, in milliseconds.

The control plane is the ASGI application on a throwaway SQLite database, called in process (no
socket); the agent side is the real engine, reporter and network reconciler with in-memory drivers
(RecordingRuntime, FakeNetwork, an nft loader that records); one mock clock drives both ends. Every
request goes through SigV4 and the agent API's JSON, as over HTTP.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from taskvpc.agent import netplan
from taskvpc.agent.dataplane import DataPlane
from taskvpc.agent.engine import Engine, Reporter
from taskvpc.agent.security import FirewallSync
from taskvpc.agentapi import PREFIX
from taskvpc.agentapi.answer import DesiredState
from taskvpc.agentapi.reports import Report
from taskvpc.api.app import ControlPlane, Settings
from taskvpc.api.asgi import Application
from taskvpc.store.db import Database, sqlite_url
from taskvpc.wire import sigv4
from taskvpc.wire.http import HttpRequest
from tests.integration.fake_agent import ECS_ATTRIBUTES as ATTRIBUTES  # what a Linux ECS agent registers
from tests.unit.test_agent_engine import FakeNetwork
from tests.unit.test_containerspec import RecordingRuntime
from tests.unit.test_firewall_sync import Loader

AKID, SECRET, ACCOUNT, REGION = (
    "AKIATESTPAIR00000001",
    "pair-secret-0000000000000000000000000000",
    "123456789012",
    "us-east-1",
)
ECS = "AmazonEC2ContainerServiceV20141113."


class MockClock:
    def __init__(self) -> None:
        self.now = 1_767_225_600.0  # 2026-01-01

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Pair:
    """The control plane's ASGI app and the agent's engine, wired in memory."""

    def __init__(self, app: Application, clock: MockClock, runtime: RecordingRuntime) -> None:
        self.app, self.clock, self.runtime = app, clock, runtime
        self.network = FakeNetwork()
        self.loader = Loader()
        self.instance_id = ""
        self.generation = -1

    async def http(
        self, method: str, path: str, body: bytes, service: str, extra: dict[str, str]
    ) -> tuple[int, bytes]:
        path, _, query = path.partition("?")
        request = HttpRequest(method, path, query, {"host": "taskvpc.local", **extra}, body)
        signed = sigv4.sign_headers(
            request,
            access_key_id=AKID,
            secret=SECRET,
            region=REGION,
            service=service,
            now=datetime.fromtimestamp(self.clock(), UTC),
        )
        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "headers": [(k.encode(), v.encode()) for k, v in signed.headers.items()],
        }
        sent: list[MutableMapping[str, Any]] = []
        pending = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return pending.pop(0) if pending else {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    async def ecs(self, operation: str, **params: Any) -> dict[str, Any]:
        headers = {"content-type": "application/x-amz-json-1.1", "x-amz-target": ECS + operation}
        status, body = await self.http("POST", "/", orjson.dumps(params), "ecs", headers)
        assert status == 200, body
        result: dict[str, Any] = orjson.loads(body)
        return result

    async def agent_api(
        self, method: str, route: str, payload: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        body = orjson.dumps(payload) if payload is not None else b""
        status, answer = await self.http(
            method, PREFIX + route, body, "ecs", {"content-type": "application/json"}
        )
        assert status == 200, answer
        result: dict[str, Any] = orjson.loads(answer)
        return result

    # -- the agent's side --------------------------------------------------------------------------

    async def send(self, report: Report) -> None:
        await self.agent_api("POST", f"instances/{self.instance_id}/report", report.to_wire())

    async def poll(self) -> DesiredState:
        doc = await self.agent_api(
            "GET", f"instances/{self.instance_id}/desired?after={self.generation}&wait=0"
        )
        state = DesiredState.from_wire(doc)
        self.generation = state.generation
        return state


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = Database(sqlite_url(tmp_path))  # SQLite in a temporary directory: milliseconds, like memory
    db.migrate()
    yield db
    db.dispose()


def test_a_task_runs_and_stops_end_to_end_in_memory(database: Database, tmp_path: Path) -> None:
    clock = MockClock()
    app = Application(ControlPlane(Settings(ACCOUNT, AKID, SECRET), database, clock=clock))

    async def main(pair: Pair) -> None:
        registered = await pair.agent_api(
            "POST",
            "register",
            {
                "cluster": "default",
                "instanceId": "i-0123456789abcdef0",
                "instanceType": "c5.large",
                "resources": {"CPU": 2048, "MEMORY": 3768},
                "attributes": ATTRIBUTES,
            },
        )
        pair.instance_id = registered["containerInstanceArn"].rsplit("/", 1)[-1]
        cfg = netplan.NetConfig()
        network = DataPlane(pair.network, cfg, netns_paths=False, firewall=FirewallSync(pair.loader, cfg))
        engine = Engine(pair.runtime, network, Reporter(pair.send, interval=0.001), clock=clock)
        engine.spawn(engine.reporter.run(), "reporter")
        await engine.adopt(await pair.poll())

        await pair.ecs(
            "RegisterTaskDefinition",
            family="web",
            networkMode="awsvpc",
            cpu="256",
            memory="512",
            containerDefinitions=[{"name": "app", "image": "busybox", "essential": True}],
        )
        run = await pair.ecs(
            "RunTask",
            taskDefinition="web",
            networkConfiguration={"awsvpcConfiguration": {"subnets": [registered["subnetId"]]}},
        )
        assert run["tasks"], run["failures"]
        arn = run["tasks"][0]["taskArn"]

        async def until(status: str) -> dict[str, Any]:
            for _ in range(500):
                clock.advance(0.01)
                engine.apply(await pair.poll())
                [task] = (await pair.ecs("DescribeTasks", tasks=[arn]))["tasks"]
                assert isinstance(task, dict)
                if task["lastStatus"] == status:
                    return task
                await asyncio.sleep(0.002)
            raise AssertionError(f"{arn} never {status}: {task['lastStatus']}")

        running = await until("RUNNING")
        details = {d["name"]: d["value"] for d in running["attachments"][0]["details"]}
        assert running["attachments"][0]["status"] == "ATTACHED"
        assert running["containers"][0]["runtimeId"] == "rt-app"
        assert pair.runtime.started["app"].image == "busybox"
        # the network the agent made is the one the control plane allocated, gateway included
        [(_, eni)] = pair.network.tasks.values()
        assert eni.ip == details["privateIPv4Address"] and eni.mac == details["macAddress"]
        vpcs = {v.vpc_id: v for v in engine.vpcs.values()}
        [subnet] = [s for v in vpcs.values() for s in v.subnets if s.subnet_id == registered["subnetId"]]
        assert eni.gateway == subnet.gateway
        assert (
            pair.loader.batches
            and netplan.eni_port(netplan.NetConfig(), eni.eni_id) in pair.loader.batches[-1][1]
        )

        await pair.ecs("StopTask", task=arn, reason="done")
        stopped = await until("STOPPED")
        assert stopped["stoppedReason"] == "done" and stopped["containers"][0]["exitCode"] == 0
        assert pair.network.tasks == {}  # its network is gone, and the answer no longer lists it
        pair.generation = -1  # the whole answer: the task left it once reported STOPPED
        assert (await pair.poll()).tasks == ()
        await engine.wait_idle(2)
        assert not engine.workers
        await engine.close()

    asyncio.run(
        main(
            Pair(
                app, clock, RecordingRuntime(__import__("pathlib").Path("/tmp") / f"pair-{uuid.uuid4().hex}")
            )
        )
    )
