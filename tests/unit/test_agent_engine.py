"""The real agent (client, engine, planner, process runtime) against a fake control plane.

The fake speaks docs/agent-api.md over real loopback HTTP (h11 on asyncio, SigV4 verified with the
project's verifier), like one end of h11's ``ConnectionPair``; the network driver is an in-memory fake
(no namespaces, so no root needed) and containers are real processes under the real shim.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import h11
import orjson
import pytest

from taskvpc.agent import instance_config, netplan, taskplan as tp
from taskvpc.agent.client import AgentApiError, AgentClient, AgentCredentials, Backoff
from taskvpc.agent.engine import Engine, Reporter
from taskvpc.agent.instance_config import InstanceConfig
from taskvpc.agent.main import CAPABILITY_ATTRIBUTES, run_agent
from taskvpc.agent.runtime import ContainerHandle, read_logs
from taskvpc.agent.runtime.process import ProcessRuntime
from taskvpc.agent.runtime.procs import alive, proc_start_time
from taskvpc.agent.state import load_state
from taskvpc.agentapi import PREFIX
from taskvpc.agentapi.answer import DesiredState, Instance
from taskvpc.agentapi.network import Eni, SecurityGroup, Subnet, Vpc
from taskvpc.agentapi.reports import Report, task_report_to_wire
from taskvpc.agentapi.tasks import DesiredTask
from taskvpc.domain.lifecycle import DesiredStatus
from taskvpc.netmodel.security_groups import Rule
from taskvpc.wire.http import HttpRequest
from taskvpc.wire.sigv4 import AuthFailure, verify

CREDS = AgentCredentials("AKIATESTTESTTESTTEST", "secret/key+for+tests")
CLUSTER_ARN = "arn:aws:ecs:us-east-1:000000000000:container-instance/default"
VPC = "vpc-0123456789abcdef0"
SUBNET = "subnet-0123456789abcdef0"

pytestmark = pytest.mark.timeout(120)

# sg-1, every task's group: like a VPC's default group (its members reach each other, egress to anywhere)
DEFAULT_GROUP = SecurityGroup(
    "sg-1",
    VPC,
    ingress=(Rule("ingress", "-1", None, None, group_id="sg-1"),),
    egress=(Rule("egress", "-1", None, None, cidr_ipv4="0.0.0.0/0"),),
)
THE_VPC = Vpc(VPC, ("172.31.0.0/16",), (Subnet.of(SUBNET, "172.31.0.0/20"),))


# ---------------------------------------------------------------------------------------------- fake server


@dataclass
class FakeControlPlane:
    """The control plane's half of the agent API, in memory."""

    generation: int = 1
    tasks: dict[str, DesiredTask] = field(default_factory=dict)
    registrations: list[dict[str, Any]] = field(default_factory=list)
    reports: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    report_batches: list[float] = field(default_factory=list)
    instance_status: str = "ACTIVE"
    refuse_auth: bool = False
    forget_instance: bool = False  # answer the next poll with 404, as a control plane that lost us

    def __post_init__(self) -> None:
        self.changed = asyncio.Condition()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self, port: int = 0) -> FakeControlPlane:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 1)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- what a test does --------------------------------------------------------------------------

    async def bump(self) -> None:
        async with self.changed:
            self.generation += 1
            self.changed.notify_all()

    async def run_task(self, task_id: str, containers: list[dict[str, Any]], eni_last: int = 5) -> str:
        arn = f"arn:aws:ecs:us-east-1:000000000000:task/default/{task_id}"
        self.tasks[arn] = DesiredTask.from_wire(
            {
                "taskArn": arn,
                "desiredStatus": "RUNNING",
                "family": "web",
                "revision": 1,
                "containers": containers,
            }
        )
        self.tasks[arn] = replace(
            self.tasks[arn],
            eni=Eni(
                attachment_id="att-" + task_id,
                network_interface_id=f"eni-{eni_last:017x}",
                mac_address=f"0e:00:00:00:00:{eni_last:02x}",
                private_ipv4_address=f"172.31.0.{eni_last}",
                prefix_length=20,
                gateway=THE_VPC.subnets[0].gateway,
                subnet_id=SUBNET,
                vpc_id=VPC,
                private_dns_name=f"ip-172-31-0-{eni_last}.ec2.internal",
                security_group_ids=("sg-1",),
            ),
        )
        await self.bump()
        return arn

    async def stop_task(self, arn: str) -> None:
        self.tasks[arn] = replace(
            self.tasks[arn], desired_status=DesiredStatus.STOPPED, stop_reason="Task stopped by user"
        )
        await self.bump()

    def latest(self, arn: str) -> dict[str, Any] | None:
        for _, report in reversed(self.reports):
            if report["taskArn"] == arn:
                return report
        return None

    async def wait_for(self, arn: str, status: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            report = self.latest(arn)
            if report is not None and report["knownStatus"] == status:
                return report
            await asyncio.sleep(0.005)
        raise AssertionError(f"{arn} never reported {status}; last: {self.latest(arn)}")

    # -- HTTP --------------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request: h11.Request | None = None
                body = b""
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await reader.read(65536)
                        conn.receive_data(data)
                        if not data and conn.their_state is not h11.SEND_BODY:
                            return
                        continue
                    if isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += bytes(event.data)
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    elif isinstance(event, h11.ConnectionClosed):
                        return
                assert request is not None
                status, doc = await self._handle(request, body)
                payload = orjson.dumps(doc)
                writer.write(
                    conn.send(
                        h11.Response(
                            status_code=status,
                            headers=[
                                ("content-type", "application/json"),
                                ("content-length", str(len(payload))),
                            ],
                        )
                    )
                    + conn.send(h11.Data(data=payload))
                    + conn.send(h11.EndOfMessage())
                )
                await writer.drain()
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (ConnectionError, h11.ProtocolError, asyncio.CancelledError):
            return
        finally:
            writer.close()

    async def _handle(self, request: h11.Request, body: bytes) -> tuple[int, Any]:
        target = request.target.decode()
        path, _, query = target.partition("?")
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        try:
            verify(
                HttpRequest(request.method.decode(), path, query, headers, body),
                lookup={CREDS.access_key_id: CREDS.secret_access_key}.get,
                now=datetime.now(UTC),
                service="ecs",
            )
        except AuthFailure as exc:
            return 403, {"message": str(exc)}
        if self.refuse_auth:
            return 403, {"message": "refused"}
        prefix = PREFIX.rstrip("/")
        assert path.startswith(prefix)
        route = path[len(prefix) :]
        doc = orjson.loads(body) if body else {}
        if route == "/register":
            self.registrations.append(doc)
            return 200, {
                "containerInstanceArn": f"{CLUSTER_ARN}/ci{doc['instanceId'][2:]}",
                "availabilityZone": "us-east-1a",
                "subnetId": SUBNET,
                "vpcId": VPC,
            }
        if route.endswith("/desired"):
            if self.forget_instance:
                self.forget_instance = False
                return 404, {"code": "NotFound", "message": "no such container instance"}
            args = parse_qs(query)
            after, wait = int(args["after"][0]), float(args["wait"][0])
            async with self.changed:
                if self.generation <= after:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.changed.wait_for(lambda: self.generation > after), wait)
            changed = self.generation > after
            state = DesiredState.of(self.generation, changed)
            if changed:
                state = DesiredState.of(
                    self.generation,
                    changed,
                    instance=Instance(self.instance_status),
                    vpcs=(THE_VPC,),
                    tasks=tuple(self.tasks.values()),
                    securityGroups=(DEFAULT_GROUP,),
                )
            answer = state.to_wire()
            return 200, answer
        if route.endswith("/report"):
            now = time.monotonic()
            self.report_batches.append(now)
            stopped = False
            for task in Report.from_wire(doc).tasks:
                self.reports.append((now, task_report_to_wire(task)))
                if task.known_status == "STOPPED" and task.task_arn in self.tasks:
                    del self.tasks[task.task_arn]  # tasks leave the list once reported STOPPED
                    stopped = True
            if stopped:
                await self.bump()
            return 200, {"generation": self.generation}
        if route.endswith("/deregister"):
            return 200, {}
        return 404, {"message": "no route"}


# ---------------------------------------------------------------------------------------------- fake network


class FakeNetwork:
    """``netplan.NetworkDriver`` in memory: what is ensured is what ``observe`` sees."""

    def __init__(self) -> None:
        self.cfg = netplan.NetConfig()
        self.routers: dict[str, tuple[Subnet, ...]] = {}
        self.tasks: dict[str, tuple[str, netplan.TaskEni]] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail_ensure = 0

    def observe(self) -> netplan.ObservedNetwork:
        routers = {}
        for vpc_id, subnets in self.routers.items():
            ports = {}
            for key, (v, eni) in self.tasks.items():
                if v == vpc_id:
                    port = netplan.eni_port(self.cfg, eni.eni_id)
                    ports[port] = netplan.ObservedPort(
                        port, hash(key) % 1000 + 2, eni.eni_id, True, frozenset({eni.ip})
                    )
            routers[vpc_id] = netplan.ObservedRouter(
                vpc_id,
                netplan.router_netns(self.cfg, vpc_id),
                True,
                frozenset(s.gateway for s in subnets),
                frozenset(s.cidr_block for s in subnets),
                ports,
            )
        tasks = {
            key: netplan.ObservedTask(
                key,
                netplan.task_netns(self.cfg, key),
                eni.mac,
                frozenset({eni.address}),
                eni.gateway,
                True,
                hash(key) % 1000 + 2,
                vpc_id,
                netplan.eni_port(self.cfg, eni.eni_id),
            )
            for key, (vpc_id, eni) in self.tasks.items()
        }
        return netplan.ObservedNetwork(routers, tasks)

    def ensure_vpc_router(self, vpc_id: str, subnets: Sequence[Subnet]) -> None:
        self.calls.append(("ensure_vpc_router", vpc_id))
        self.routers[vpc_id] = tuple(subnets)

    def remove_vpc_router(self, vpc_id: str) -> bool:
        self.calls.append(("remove_vpc_router", vpc_id))
        return self.routers.pop(vpc_id, None) is not None

    def ensure_host_access(self, vpc_id: str, cidrs: Sequence[str]) -> None:
        self.calls.append(("ensure_host_access", vpc_id))

    def remove_host_access(self, vpc_id: str) -> bool:
        return False

    def ensure_task_network(self, vpc_id: str, eni: netplan.TaskEni) -> None:
        self.calls.append(("ensure_task_network", eni.task_key))
        if self.fail_ensure:
            self.fail_ensure -= 1
            raise OSError("no luck")
        assert vpc_id in self.routers, "router first"
        self.tasks[eni.task_key] = (vpc_id, eni)

    def remove_task_network(
        self, task_key: str, vpc_id: str | None = None, port: str | None = None, ip: str | None = None
    ) -> bool:
        self.calls.append(("remove_task_network", task_key))
        return self.tasks.pop(task_key, None) is not None

    def remove_stray(self, stray: netplan.Stray) -> bool:
        return False


# ---------------------------------------------------------------------------------------------- harness


@dataclass
class Harness:
    server: FakeControlPlane
    network: FakeNetwork
    state_dir: Path
    agent: asyncio.Task[None] | None = None
    engine: Engine | None = None

    async def start_agent(self) -> Engine:
        ready: asyncio.Future[Engine] = asyncio.get_running_loop().create_future()
        self.agent = asyncio.ensure_future(
            run_agent(
                self.server.endpoint,
                "default",
                self.state_dir,
                CREDS,
                instance_type="c5.large",
                runtime="process",
                network_driver=self.network,
                netns_paths=False,
                ready=ready.set_result,
            )
        )
        done, _ = await asyncio.wait({ready, self.agent}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        if self.agent in done:
            self.agent.result()
        self.engine = await ready
        return self.engine

    async def kill_agent(self) -> None:
        """The agent goes away (as after kill -9, its containers keep running)."""
        assert self.agent is not None
        self.agent.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.agent
        self.agent = None

    def runtime(self) -> ProcessRuntime:
        return ProcessRuntime(self.state_dir)


def pids_of(runtime: ProcessRuntime, task_id: str) -> list[tuple[int, int | None]]:
    found = []
    for handle in runtime.list_ours():
        if handle.task_id != task_id:
            continue
        info = (runtime.state_dir / "tasks" / task_id / handle.name / "pid").read_text()
        doc = orjson.loads(info)
        found += [(doc["shimPid"], doc["shimStart"]), (doc["pid"], doc["start"])]
    return found


def harness_test(fn: Callable[[Harness], Awaitable[None]]) -> Callable[[Path], None]:
    def test(tmp_path: Path) -> None:
        async def main() -> None:
            server = await FakeControlPlane().start()
            harness = Harness(server, FakeNetwork(), tmp_path / "agent")
            try:
                await asyncio.wait_for(fn(harness), 90)
            finally:
                if harness.agent is not None:
                    await harness.kill_agent()
                await server.close()
                # nothing of ours may outlive a test: kill whatever a failed test left behind
                runtime = harness.runtime()
                leftovers = []
                for handle in runtime.list_ours():
                    if runtime.status(handle).possibly_running:
                        leftovers.append(handle)
                        await runtime.stop(handle, 0)
                assert not leftovers, f"processes left running: {leftovers}"

        try:
            asyncio.run(main())
        finally:
            _reap_zombies()

    test.__name__ = fn.__name__
    return test


def _reap_zombies() -> None:
    """Shims the in-process "agent" started and a "kill -9" left unreaped (init would reap them)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def container(name: str, command: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "essential": True, "image": "busybox", "command": ["sh", "-c", command], **extra}


# ---------------------------------------------------------------------------------------------- tests


@harness_test
async def test_run_task_then_stop_task_with_sigterm_then_sigkill(h: Harness) -> None:
    engine = await h.start_agent()
    reg = h.server.registrations[-1]
    assert reg["cluster"] == "default" and reg["instanceType"] == "c5.large"
    assert reg["attributes"]["ecs.availability-zone"] == "us-east-1a"
    assert reg["attributes"]["ecs.os-type"] == "linux" and reg["attributes"]["ecs.os-family"] == "LINUX"
    assert reg["attributes"]["ecs.cpu-architecture"] in ("x86_64", "arm64")
    assert set(CAPABILITY_ATTRIBUTES) <= set(reg["attributes"])
    assert reg["resources"]["CPU"] == (os.cpu_count() or 1) * 1024 and reg["resources"]["MEMORY"] > 0
    assert reg["resources"]["PORTS"] == [22, 2375, 2376, 51678, 51679]

    task_id = "a" * 32
    began = time.monotonic()
    arn = await h.server.run_task(
        task_id,
        [
            container(
                "web", "echo hello $GREETING; exec sleep 60", environment=[{"name": "GREETING", "value": "x"}]
            ),
            container("stubborn", "trap '' TERM; echo ready; while :; do sleep 0.05; done", stopTimeout=1),
        ],
    )
    running = await h.server.wait_for(arn, "RUNNING")
    latency = time.monotonic() - began
    assert latency < 2.0, f"RunTask to RUNNING took {latency:.3f}s"
    assert running["attachmentStatus"] == "ATTACHED"
    assert {c["name"]: c["status"] for c in running["containers"]} == {
        "web": "RUNNING",
        "stubborn": "RUNNING",
    }
    assert all(len(c["runtimeId"]) == 64 for c in running["containers"])
    assert ("ensure_vpc_router", VPC) in h.network.calls and (
        "ensure_task_network",
        task_id,
    ) in h.network.calls
    pids = pids_of(h.runtime(), task_id)
    assert all(alive(p, s) for p, s in pids)

    await h.server.stop_task(arn)
    began = time.monotonic()
    stopped = await h.server.wait_for(arn, "STOPPED")
    took = time.monotonic() - began
    assert 0.9 < took < 10, took  # the stubborn one waited its stopTimeout (1 s), then SIGKILL
    assert stopped["attachmentStatus"] == "DETACHED"
    assert {c["name"]: (c["status"], c["exitCode"]) for c in stopped["containers"]} == {
        "web": ("STOPPED", 143),  # SIGTERM
        "stubborn": ("STOPPED", 137),  # SIGKILL after stopTimeout
    }
    assert ("remove_task_network", task_id) in h.network.calls and task_id not in h.network.tasks
    assert not any(alive(p, s) for p, s in pids)
    await engine.wait_idle(5)
    assert not engine.workers and arn not in h.server.tasks
    assert "hello x" in read_logs(h.state_dir, task_id, "web")
    assert h.runtime().list_ours() == []  # state forgotten, logs kept


@harness_test
async def test_essential_exit_stops_the_task(h: Harness) -> None:
    await h.start_agent()
    arn = await h.server.run_task(
        "b" * 32,
        [
            container("main", "sleep 0.3; exit 3"),
            container("side", "exec sleep 60", essential=False),
            container("helper", "exit 0", essential=False),
        ],
    )
    stopped = await h.server.wait_for(arn, "STOPPED")
    assert stopped["reason"] == "Essential container in task exited"
    codes = {c["name"]: c["exitCode"] for c in stopped["containers"]}
    assert codes == {"main": 3, "side": 143, "helper": 0}
    seen = [r["knownStatus"] for _, r in h.server.reports if r["taskArn"] == arn]
    assert seen.index("RUNNING") < seen.index("STOPPED")  # the helper's exit did not stop the task


@harness_test
async def test_depends_on_success_and_healthy(h: Harness) -> None:
    await h.start_agent()
    check = {"command": ["CMD-SHELL", "test -f ready"], "interval": 0.2, "timeout": 1, "retries": 3}
    arn = await h.server.run_task(
        "c" * 32,
        [
            container("init", "echo init > init.done", essential=False),
            container("db", "touch ready; exec sleep 60", healthCheck=check),
            container(
                "app",
                "cat init.done; exec sleep 60",
                dependsOn=[
                    {"containerName": "init", "condition": "SUCCESS"},
                    {"containerName": "db", "condition": "HEALTHY"},
                ],
            ),
        ],
    )
    running = await h.server.wait_for(arn, "RUNNING")
    by_name = {c["name"]: c for c in running["containers"]}
    assert by_name["db"]["healthStatus"] == "HEALTHY"
    assert by_name["init"]["status"] == "STOPPED" and by_name["init"]["exitCode"] == 0
    deadline = time.monotonic() + 5  # RUNNING means started, not that it has printed yet
    while "init" not in read_logs(h.state_dir, "c" * 32, "app"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    await h.server.stop_task(arn)
    await h.server.wait_for(arn, "STOPPED")


@harness_test
async def test_unsatisfiable_dependency_stops_the_task_with_ecs_reason(h: Harness) -> None:
    await h.start_agent()
    arn = await h.server.run_task(
        "d" * 32,
        [
            container("init", "exit 1", essential=False),
            container("app", "exec sleep 60", dependsOn=[{"containerName": "init", "condition": "SUCCESS"}]),
        ],
    )
    stopped = await h.server.wait_for(arn, "STOPPED")
    app = next(c for c in stopped["containers"] if c["name"] == "app")
    assert app["exitCode"] == 143
    assert "as dependency did not exit successfully." in app["reason"]
    assert stopped["reason"] == "Essential container in task exited"


@harness_test
async def test_start_failure_is_reported_with_docker_wording(h: Harness) -> None:
    await h.start_agent()
    arn = await h.server.run_task(
        "e" * 32, [{"name": "app", "essential": True, "command": ["no-such-binary-x"]}]
    )
    stopped = await h.server.wait_for(arn, "STOPPED")
    app = stopped["containers"][0]
    assert app["exitCode"] is None
    assert (
        app["reason"]
        == 'CannotStartContainerError: exec: "no-such-binary-x": executable file not found in $PATH'
    )


@harness_test
async def test_a_start_failing_with_an_exception_without_text_still_gives_a_reason(h: Harness) -> None:
    # (``str(TimeoutError())`` is "": at ~3,000 tasks that reached ECS as a bare "CannotStartContainerError:")
    engine = await h.start_agent()

    async def failing_start(*_args: Any) -> ContainerHandle:
        raise TimeoutError

    engine.runtime.start = failing_start  # type: ignore[method-assign]
    arn = await h.server.run_task("f" * 32, [container("app", "sleep 30")])
    stopped = await h.server.wait_for(arn, "STOPPED")
    reason = stopped["containers"][0]["reason"]
    assert reason.startswith("CannotStartContainerError: TimeoutError (")


@harness_test
async def test_a_windows_instance_registers_as_windows_and_refuses_containers(h: Harness) -> None:
    # what `taskvpc up` starts for an instance of a Windows AMI (--os-family WINDOWS_SERVER_2022_CORE)
    saved = instance_config.CURRENT
    instance_config.CURRENT = InstanceConfig(os_family="WINDOWS_SERVER_2022_CORE")
    try:
        await h.start_agent()
        attributes = h.server.registrations[-1]["attributes"]
        assert attributes["ecs.os-type"] == "windows"
        assert attributes["ecs.os-family"] == "WINDOWS_SERVER_2022_CORE"
        arn = await h.server.run_task("9" * 32, [container("app", "exec sleep 60")])
        stopped = await h.server.wait_for(arn, "STOPPED")
    finally:
        instance_config.CURRENT = saved
    app = stopped["containers"][0]
    assert app["exitCode"] is None
    assert app["reason"].startswith(
        "CannotStartContainerError: Windows containers (WINDOWS_SERVER_2022_CORE)"
    )
    assert "Linux kernel" in app["reason"]
    assert stopped["reason"] == "Essential container in task exited"
    assert not [hd for hd in h.runtime().list_ours() if h.runtime().status(hd).possibly_running]


@harness_test
async def test_agent_restart_adopts_running_tasks_and_removes_undesired_ones(h: Harness) -> None:
    await h.start_agent()
    keep = await h.server.run_task("f" * 32, [container("app", "exec sleep 60", stopTimeout=2)], eni_last=6)
    drop = await h.server.run_task("0" * 32, [container("app", "exec sleep 60")], eni_last=7)
    exits = await h.server.run_task("1" * 32, [container("app", "exec sleep 60")], eni_last=8)
    for arn in (keep, drop, exits):
        await h.server.wait_for(arn, "RUNNING")
    runtime = h.runtime()
    before = {t: pids_of(runtime, t) for t in ("f" * 32, "0" * 32, "1" * 32)}
    ids_before = {h.task_id: h.runtime_id for h in runtime.list_ours()}
    instance_id = load_state(h.state_dir).instance_id

    await h.kill_agent()
    # while the agent is away: one task is forgotten by the control plane, one container exits with 7
    del h.server.tasks[drop]
    await h.server.bump()
    shim_pid, shim_start = before["1" * 32][0]
    child_pid, _ = before["1" * 32][1]
    os.kill(child_pid, signal.SIGTERM)
    while alive(shim_pid, shim_start):
        await asyncio.sleep(0.01)
    assert all(alive(p, s) for p, s in before["f" * 32])  # survived the agent
    reports_before = len(h.server.reports)

    engine = await h.start_agent()
    assert load_state(h.state_dir).instance_id == instance_id
    assert h.server.registrations[-1]["instanceId"] == instance_id
    # the kept task: same processes, same runtime id, never started twice
    await h.server.wait_for(keep, "RUNNING")
    assert all(alive(p, s) for p, s in before["f" * 32])
    assert {hd.task_id: hd.runtime_id for hd in h.runtime().list_ours()}["f" * 32] == ids_before["f" * 32]
    # the task whose essential container exited meanwhile stops, with the real exit code
    stopped = await h.server.wait_for(exits, "STOPPED")
    assert stopped["containers"][0]["exitCode"] == 143
    assert stopped["reason"] == "Essential container in task exited"
    # the forgotten task is stopped and its network removed, without a report
    deadline = time.monotonic() + 15
    while any(alive(p, s) for p, s in before["0" * 32]) or "0" * 32 in h.network.tasks:
        assert time.monotonic() < deadline, "undesired task not removed"
        await asyncio.sleep(0.02)
    assert all(r["taskArn"] != drop for _, r in h.server.reports[reports_before:])
    assert ("remove_task_network", "f" * 32) not in h.network.calls  # adopted: its network stays too
    assert h.network.calls.count(("ensure_task_network", "f" * 32)) == 1  # ... and was not made again

    await h.server.stop_task(keep)
    stopped = await h.server.wait_for(keep, "STOPPED")
    assert stopped["containers"][0]["exitCode"] == 143
    await engine.wait_idle(5)
    assert not engine.workers


@harness_test
async def test_stop_before_the_network_is_ready(h: Harness) -> None:
    h.network.fail_ensure = 1  # the first attempt fails, the retry would succeed
    await h.start_agent()
    arn = await h.server.run_task("2" * 32, [container("app", "exec sleep 60")])
    await h.server.stop_task(arn)
    stopped = await h.server.wait_for(arn, "STOPPED")
    assert stopped["containers"][0]["status"] == "STOPPED" and stopped["containers"][0]["exitCode"] is None
    assert "2" * 32 not in h.network.tasks


@harness_test
async def test_reports_are_batched(h: Harness) -> None:
    await h.start_agent()
    arns = [
        await h.server.run_task(f"{i:032x}", [container("app", "exec sleep 60")], eni_last=10 + i)
        for i in range(8)
    ]
    for arn in arns:
        await h.server.wait_for(arn, "RUNNING")
    assert len(h.server.report_batches) < len(h.server.reports)  # several tasks per request
    for arn in arns:
        await h.server.stop_task(arn)
    for arn in arns:
        await h.server.wait_for(arn, "STOPPED")


@harness_test
async def test_deregistered_instance_stops_everything(h: Harness) -> None:
    await h.start_agent()
    arn = await h.server.run_task("3" * 32, [container("app", "exec sleep 60")])
    await h.server.wait_for(arn, "RUNNING")
    h.server.instance_status = "INACTIVE"
    await h.server.bump()
    assert h.agent is not None
    await asyncio.wait_for(asyncio.shield(h.agent), 20)  # run_agent returns once all is stopped
    h.agent = None
    report = h.server.latest(arn)
    assert report is not None and report["knownStatus"] == "STOPPED"


# ---------------------------------------------------------------------------------------------- client


def test_client_retries_until_the_control_plane_answers(tmp_path: Path) -> None:
    async def main() -> None:
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        client = AgentClient(f"http://127.0.0.1:{port}", CREDS, backoff=Backoff(0.01, 0.05))
        call = asyncio.ensure_future(client.register({"cluster": "default", "instanceId": "i-0"}))
        await asyncio.sleep(0.2)
        assert not call.done()  # connection refused, retrying
        server = await FakeControlPlane().start(port)
        try:
            answer = await asyncio.wait_for(call, 5)
            assert answer.availability_zone == "us-east-1a" and answer.instance_id.startswith("ci")
            server.refuse_auth = True
            with pytest.raises(AgentApiError) as info:
                await client.desired(answer.instance_id, 0, 0)
            assert info.value.status == 403
        finally:
            await client.close()
            await server.close()

    asyncio.run(main())


def test_client_signature_is_checked(tmp_path: Path) -> None:
    async def main() -> None:
        server = await FakeControlPlane().start()
        client = AgentClient(server.endpoint, AgentCredentials(CREDS.access_key_id, "wrong"))
        try:
            with pytest.raises(AgentApiError) as info:
                await client.register({"cluster": "default", "instanceId": "i-0"})
            assert info.value.status == 403
        finally:
            await client.close()
            await server.close()

    asyncio.run(main())


def test_reporter_keeps_the_latest_report_per_task_and_retries() -> None:
    async def main() -> None:
        sent: list[list[dict[str, Any]]] = []
        fail = [True]

        async def send(report: Report) -> None:
            if fail[0]:
                fail[0] = False
                raise OSError("down")
            sent.append(report.to_wire()["tasks"])

        acked: list[str] = []
        reporter = Reporter(send, interval=0.01)
        runner = asyncio.ensure_future(reporter.run())
        try:
            for status in ("PENDING", "RUNNING"):
                reporter.submit(tp.TaskReport("t1", status), lambda r: acked.append(r.known_status))
            reporter.submit(tp.TaskReport("t2", "PENDING"))
            for _ in range(200):
                if sent:
                    break
                await asyncio.sleep(0.01)
            assert sent == [
                [
                    {"taskArn": "t1", "knownStatus": "RUNNING", "reason": None, "containers": []},
                    {"taskArn": "t2", "knownStatus": "PENDING", "reason": None, "containers": []},
                ]
            ]
            assert acked == ["RUNNING"]
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    asyncio.run(main())


def test_reporter_batches_routine_reports_and_sends_news_at_once() -> None:
    async def main() -> None:
        sent: list[tuple[float, list[str]]] = []
        gate = asyncio.Event()
        gate.set()

        async def send(report: Report) -> None:
            await gate.wait()
            sent.append((time.monotonic(), [f"{t.task_arn}:{t.known_status}" for t in report.tasks]))

        reporter = Reporter(send, interval=0.2)
        runner = asyncio.ensure_future(reporter.run())

        def report(arn: str, status: str) -> None:
            reporter.submit(tp.TaskReport(arn, status))

        async def until(count: int) -> None:
            for _ in range(500):
                if len(sent) >= count:
                    return
                await asyncio.sleep(0.002)
            raise AssertionError(sent)

        try:
            began = time.monotonic()
            report("a", "PENDING")
            await asyncio.sleep(0.05)
            assert sent == []  # routine: lingers
            report("a", "RUNNING")  # news: at once, with whatever is pending
            await until(1)
            assert sent[0][1] == ["a:RUNNING"] and sent[0][0] - began < 0.15
            report("b", "PENDING")
            await until(2)
            assert sent[1][0] - sent[0][0] >= 0.19  # routine: one batch per interval at most
            gate.clear()  # the control plane is slow: one request in flight, the rest accumulates
            report("c", "RUNNING")
            await asyncio.sleep(0.01)
            for arn in "defg":
                report(arn, "STOPPED")
            gate.set()
            await until(4)
            assert sent[2][1] == ["c:RUNNING"]
            assert sent[3][1] == ["d:STOPPED", "e:STOPPED", "f:STOPPED", "g:STOPPED"]
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    asyncio.run(main())


def test_runtime_handle_roundtrip(tmp_path: Path) -> None:
    runtime = ProcessRuntime(tmp_path)
    assert runtime.list_ours() == []
    assert not runtime.status(ContainerHandle("x", "y")).possibly_running
    assert proc_start_time(os.getpid()) is not None


def test_logs_of_stopped_tasks_are_pruned_after_the_retention(tmp_path: Path) -> None:
    async def main() -> None:
        runtime = ProcessRuntime(tmp_path)
        engine = Engine(runtime, None, Reporter(lambda tasks: asyncio.sleep(0)))
        for task_id, age in (("old", 7200.0), ("new", 60.0)):
            log = tmp_path / "tasks" / task_id / "app" / "log"
            log.parent.mkdir(parents=True)
            log.write_text("output\n")
            stamp = time.time() - age
            for path in (log, log.parent, log.parent.parent):
                os.utime(path, (stamp, stamp))
        assert engine.prune_logs() == ["old"]
        assert read_logs(tmp_path, "new", "app") == "output\n"
        assert not (tmp_path / "tasks" / "old").exists()

    asyncio.run(main())


@harness_test
async def test_dependency_start_timeout_fires_without_any_other_event(h: Harness) -> None:
    await h.start_agent()
    arn = await h.server.run_task(
        "4" * 32,
        [
            container("slow", "exec sleep 60", essential=False, startTimeout=0.3),
            container("app", "exec sleep 60", dependsOn=[{"containerName": "slow", "condition": "COMPLETE"}]),
        ],
    )
    stopped = await h.server.wait_for(arn, "STOPPED")
    app = next(c for c in stopped["containers"] if c["name"] == "app")
    assert app["reason"].endswith("has timed out.") and app["exitCode"] == 143


@harness_test
async def test_agent_registers_again_when_the_control_plane_forgot_it(h: Harness) -> None:
    await h.start_agent()
    before = len(h.server.registrations)  # twice at start: the second time with the zone it learned
    h.server.forget_instance = True
    await h.server.bump()  # wake the long poll; the next one gets the 404
    deadline = time.monotonic() + 10
    while len(h.server.registrations) <= before:
        assert time.monotonic() < deadline, "never registered again"
        await asyncio.sleep(0.02)
    assert h.server.registrations[-1]["instanceId"] == h.server.registrations[0]["instanceId"]
    arn = await h.server.run_task("5" * 32, [container("app", "exec sleep 60")])
    await h.server.wait_for(arn, "RUNNING")
    await h.server.stop_task(arn)
    await h.server.wait_for(arn, "STOPPED")
