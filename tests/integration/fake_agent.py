"""A stand-in for the taskvpc agent that speaks docs/agent-api.md over signed HTTP, for tests.

It registers a container instance, long-polls its desired state in a background thread and reports what
a test tells it to (``attach``, ``running``, ``stopped``) - or, with ``auto=True``, plays a well-behaved
agent on its own: every new task is attached and running at once, every task to stop is reported
stopped. It touches nothing on the host.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from taskvpc.agentapi import PREFIX as AGENT_PREFIX
from taskvpc.agentapi.answer import DesiredState
from taskvpc.agentapi.reports import ContainerReport, Report, TaskReport
from tests.integration.server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, TaskvpcServer

PREFIX = AGENT_PREFIX.rstrip("/")

# What a Linux ECS agent registers (trimmed from real DescribeContainerInstances outputs), so the
# requiresAttributes ECS derives for task definitions are met.
ECS_ATTRIBUTES: dict[str, str | None] = {
    "ecs.os-type": "linux",
    "ecs.os-family": "LINUX",
    "ecs.cpu-architecture": "x86_64",
    "ecs.capability.task-eni": None,
    "ecs.capability.container-health-check": None,
    "ecs.capability.container-ordering": None,
    "ecs.capability.task-cpu-mem-limit": None,
    "ecs.capability.execution-role-awslogs": None,
    "ecs.capability.execution-role-ecr-pull": None,
    "com.amazonaws.ecs.capability.task-iam-role": None,
    "com.amazonaws.ecs.capability.ecr-auth": None,
    "com.amazonaws.ecs.capability.logging-driver.awslogs": None,
    **{f"com.amazonaws.ecs.capability.docker-remote-api.1.{n}": None for n in range(17, 45)},
}


class AgentError(Exception):
    def __init__(self, status: int, payload: dict[str, Any]) -> None:
        super().__init__(f"{status}: {payload}")
        self.status = status
        self.payload = payload


class FakeAgent:
    def __init__(
        self,
        server: TaskvpcServer,
        *,
        cluster: str = "default",
        instance_type: str | None = "c5.large",
        max_task_enis: int | None = None,
        subnet_id: str | None = None,
        cpu: int = 2048,
        memory: int = 3768,
        attributes: dict[str, str | None] | None = None,
        region: str = REGION,
        instance_id: str | None = None,
    ) -> None:
        self.server = server
        self.region = region
        self.cluster = cluster
        self.instance_id = instance_id or "i-" + uuid.uuid4().hex[:17]
        self.registration: dict[str, Any] = {
            "cluster": cluster,
            "instanceId": self.instance_id,
            "hostname": "fake-" + self.instance_id,
            "resources": {
                "CPU": cpu,
                "MEMORY": memory,
                "PORTS": [22, 2375, 2376, 51678, 51679],
                "PORTS_UDP": [],
            },
            "attributes": {**ECS_ATTRIBUTES, **(attributes or {})},
            "agentVersion": "taskvpc-fake-0.1",
            "capabilities": ["runtime:fake"],
        }
        if instance_type is not None:
            self.registration["instanceType"] = instance_type
        if max_task_enis is not None:
            self.registration["maxTaskEnis"] = max_task_enis
        if subnet_id is not None:
            self.registration["subnetId"] = subnet_id
        self.arn = ""
        self.id = ""
        self.generation = 0
        self.desired: dict[str, Any] = {}  # the last answer as sent
        self.state: DesiredState | None = None  # the same, read as the agent reads it
        self.answers: list[tuple[float, dict[str, Any]]] = []  # (monotonic time, answer) of each poll
        self.auto = False
        self._handled: dict[str, str] = {}  # task ARN -> what auto mode reported last
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[BaseException] = []

    # ---- HTTP -------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        query: str = "",
        timeout: float = 15,
    ) -> dict[str, Any]:
        url = f"{self.server.endpoint}{PREFIX}{path}" + (f"?{query}" if query else "")
        data = json.dumps(payload).encode() if payload is not None else b""
        headers = {"content-type": "application/json"} if payload is not None else {}
        signed = AWSRequest(method=method, url=url, data=data, headers=headers)
        SigV4Auth(Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY), "ecs", self.region).add_auth(signed)
        prepared = signed.prepare()
        raw = urllib.request.Request(
            prepared.url,
            data=data if method != "GET" else None,
            method=method,
            headers=dict(prepared.headers),
        )
        try:
            with urllib.request.urlopen(raw, timeout=timeout) as response:
                result: dict[str, Any] = json.loads(response.read())
                return result
        except urllib.error.HTTPError as error:
            raise AgentError(error.code, json.loads(error.read() or b"{}")) from None

    # ---- the API ----------------------------------------------------------------------------------

    def register(self) -> dict[str, Any]:
        answer = self.request("POST", "/register", self.registration)
        self.arn = answer["containerInstanceArn"]
        self.id = self.arn.rsplit("/", 1)[-1]
        return answer

    def poll(self, after: int | None = None, wait: float = 0.0) -> dict[str, Any]:
        after = self.generation if after is None else after
        answer = self.request(
            "GET", f"/instances/{self.id}/desired", query=f"after={after}&wait={wait}", timeout=wait + 15
        )
        state = DesiredState.from_wire(answer)  # the contract's reader: an unreadable answer fails here
        with self._changed:
            self.generation = state.generation
            self.desired = answer
            self.state = state
            self.answers.append((time.monotonic(), answer))
            self._changed.notify_all()
        return answer

    def report(self, *tasks: TaskReport | dict[str, Any]) -> dict[str, Any]:
        """Reports as the contract writes them; a dict goes as it is (a test sending a malformed one)."""
        items = [t if isinstance(t, dict) else Report.of([t]).to_wire()["tasks"][0] for t in tasks]
        return self.request("POST", f"/instances/{self.id}/report", {"tasks": items})

    def deregister(self) -> dict[str, Any]:
        return self.request("POST", f"/instances/{self.id}/deregister", {})

    # ---- reports a test asks for ------------------------------------------------------------------

    def containers_of(self, task_arn: str) -> list[str]:
        entry = self.task(task_arn)
        assert entry is not None, f"{task_arn} is not in the desired state"
        return [c["name"] for c in entry["containers"]]

    def attach(self, task_arn: str) -> dict[str, Any]:
        return self.report(TaskReport(task_arn, "PENDING", "ATTACHED"))

    def running(self, task_arn: str, health: str | None = None) -> dict[str, Any]:
        containers = tuple(
            ContainerReport(name, "RUNNING", f"fake-{uuid.uuid4().hex[:12]}", health_status=health)
            for name in self.containers_of(task_arn)
        )
        return self.report(
            TaskReport(
                task_arn,
                "RUNNING",
                "ATTACHED",
                pull_started_at=time.time() - 0.002,
                pull_stopped_at=time.time() - 0.001,
                containers=containers,
            )
        )

    def container_exited(
        self, task_arn: str, name: str, exit_code: int, reason: str | None = None
    ) -> dict[str, Any]:
        container = ContainerReport(name, "STOPPED", exit_code=exit_code, reason=reason)
        return self.report(TaskReport(task_arn, "RUNNING", containers=(container,)))

    def stopped(self, task_arn: str, exit_code: int = 143, reason: str | None = None) -> dict[str, Any]:
        entry = self.task(task_arn)
        names = [c["name"] for c in entry["containers"]] if entry else []
        containers = tuple(ContainerReport(n, "STOPPED", exit_code=exit_code) for n in names)
        return self.report(TaskReport(task_arn, "STOPPED", "DETACHED", reason=reason, containers=containers))

    # ---- the background poller --------------------------------------------------------------------

    def task(self, task_arn: str) -> dict[str, Any] | None:
        return next((t for t in self.desired.get("tasks", []) if t["taskArn"] == task_arn), None)

    def start(self, auto: bool = False, wait: float = 5.0) -> FakeAgent:
        """Register (if not yet) and keep long-polling in a thread."""
        if not self.arn:
            self.register()
        self.auto = auto
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, args=(wait,), daemon=True)
        self._thread.start()
        self.wait_for(lambda d: bool(d), timeout=10)
        return self

    def stop(self, timeout: float = 0.2) -> None:
        """Stop polling; a poll under way ends on its own (its instance is gone after the next reset)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def _loop(self, wait: float) -> None:
        while not self._stop.is_set():
            try:
                answer = self.poll(wait=wait)
                if self.auto:
                    self._react(answer)
            except AgentError as error:
                if error.status == 404:
                    return  # the instance is gone (the server was reset)
                self.errors.append(error)
                time.sleep(0.2)
            except OSError as error:
                self.errors.append(error)
                time.sleep(0.2)

    def _react(self, answer: dict[str, Any]) -> None:
        for entry in answer.get("tasks", []):
            arn = entry["taskArn"]
            if entry["desiredStatus"] == "RUNNING" and arn not in self._handled:
                self._handled[arn] = "RUNNING"
                self.running(arn)
            elif entry["desiredStatus"] == "STOPPED" and self._handled.get(arn) != "STOPPED":
                self._handled[arn] = "STOPPED"
                self.stopped(arn)

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self.desired):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"desired state never matched; last: {self.desired}")
                self._changed.wait(remaining)
            return self.desired

    def wait_for_task(self, task_arn: str, desired: str = "RUNNING", timeout: float = 10.0) -> dict[str, Any]:
        self.wait_for(
            lambda d: any(
                t["taskArn"] == task_arn and t["desiredStatus"] == desired for t in d.get("tasks", [])
            ),
            timeout,
        )
        entry = self.task(task_arn)
        assert entry is not None
        return entry
