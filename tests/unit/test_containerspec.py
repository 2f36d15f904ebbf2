"""From the desired state to the runtime's ContainerSpec: the mapping, and through the real engine
(a recording runtime stands in for runc) volumes, environment files, failures and pull times."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskvpc.agent import taskplan as tp
from taskvpc.agent.containerspec import build_container_spec, to_container_spec
from taskvpc.agent.engine import DesiredState, Engine, Reporter
from taskvpc.agent.runtime import (
    ContainerHandle,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
    Mount,
    StartError,
    Tmpfs,
    Ulimit,
    task_dir,
)
from taskvpc.agentapi.reports import Report

TASK_ID = "0123456789abcdef0123456789abcdef"
ARN = f"arn:aws:ecs:us-east-1:000000000000:task/default/{TASK_ID}"


def wire_task(containers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "taskArn": ARN,
        "desiredStatus": "RUNNING",
        "family": "web",
        "revision": 1,
        "containers": containers,
        **extra,
    }


FULL: dict[str, Any] = {
    "name": "app",
    "image": "busybox:stable",
    "entryPoint": ["sh", "-c"],
    "command": ["env"],
    "environment": [{"name": "A", "value": "1"}],
    "workingDirectory": "/srv",
    "user": "1000:1000",
    "cpu": 128,
    "memory": 256,
    "memoryReservation": 64,
    "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}],
    "readonlyRootFilesystem": True,
    "privileged": True,
    "linuxParameters": {
        "capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]},
        "initProcessEnabled": True,
        "tmpfs": [{"containerPath": "/run", "size": 64, "mountOptions": ["noexec"]}],
        "sharedMemorySize": 128,
    },
    "hostname": "ignored",
    "repositoryCredentials": {"credentialsParameter": "arn:aws:secretsmanager:us-east-1:0:secret:x"},
}


def test_every_field_maps_to_the_container_spec() -> None:
    task = tp.DesiredTask.from_wire(wire_task([FULL], limits={"cpu": "1 vCPU", "memory": 2048}))
    mounts = (Mount("/srv/data", "/data", True),)
    spec = to_container_spec(task, "app", mounts, [("A", "1"), ("B", "2")])
    assert spec == ContainerSpec(
        task_id=TASK_ID,
        name="app",
        image="busybox:stable",
        entry_point=("sh", "-c"),
        command=("env",),
        environment=(("A", "1"), ("B", "2")),
        working_directory="/srv",
        user="1000:1000",
        task_arn=ARN,
        cpu=128,
        memory=256,
        memory_reservation=64,
        task_cpu=1024,
        task_memory=2048,
        ulimits=(Ulimit("nofile", 1024, 4096),),
        readonly_root_filesystem=True,
        privileged=True,
        capabilities_add=("NET_ADMIN",),
        capabilities_drop=("MKNOD",),
        init_process_enabled=True,
        tmpfs=(Tmpfs("/run", 64, ("noexec",)),),
        shared_memory_size=128,
        mounts=mounts,
        hostname=None,  # refused under awsvpc at registration: never set here
        repository_credentials="arn:aws:secretsmanager:us-east-1:0:secret:x",
    )
    assert to_container_spec(task, "app").environment == (("A", "1"),)  # the definition's own


def test_build_makes_volume_directories_and_merges_env_files(tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("A=from-file\nB=from-file\n")
    app = {
        **FULL,
        "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/scratch"}],
        "environmentFiles": [{"value": str(env_file), "type": "s3"}],
    }
    task = tp.DesiredTask.from_wire(wire_task([app], volumes=[{"name": "scratch"}]))
    spec = build_container_spec(task, "app", tmp_path / "state")
    volume = tmp_path / "state" / "tasks" / TASK_ID / ".volumes" / "scratch"
    assert spec.mounts == (Mount(str(volume), "/scratch", False),) and volume.is_dir()
    assert spec.environment == (("A", "1"), ("B", "from-file"))


def test_build_turns_what_cannot_be_provided_into_a_start_error(tmp_path: Path) -> None:
    app = {**FULL, "environmentFiles": [{"value": "arn:aws:s3:::bucket/app.env", "type": "s3"}]}
    task = tp.DesiredTask.from_wire(wire_task([app]))
    try:
        build_container_spec(task, "app", tmp_path)
    except StartError as error:
        assert error.reason.startswith("ResourceInitializationError: failed to download env files: ")
    else:
        raise AssertionError("an S3 environment file must fail the start")


# ---------------------------------------------------------------------------------------------- engine


@dataclass
class RecordingRuntime:
    """A runtime that records what it is asked to start and 'pulls' for 10 ms (like runc will report)."""

    state_dir: Path
    name: str = "recording"
    started: dict[str, ContainerSpec] = field(default_factory=dict)
    purged: list[str] = field(default_factory=list)

    async def start(self, spec: ContainerSpec, netns_path: str | None, log_path: str) -> ContainerHandle:
        if spec.image == "missing":
            raise StartError("CannotPullContainerError: pull image manifest has been retried 1 time(s): …")
        self.started[spec.name] = spec
        return ContainerHandle(spec.task_id, spec.name, f"rt-{spec.name}")

    async def stop(self, handle: ContainerHandle, timeout: float) -> int | None:
        return 0

    def status(self, handle: ContainerHandle) -> ContainerState:
        if handle.name not in self.started:  # its pull failed (as runc keeps pull.json for a failed pull)
            return ContainerState(ContainerStatus.FAILED, pull_started_at=980.0, pull_stopped_at=985.0)
        return ContainerState(
            ContainerStatus.RUNNING, started_at=1000.0, pull_started_at=990.0, pull_stopped_at=999.0
        )

    async def wait(self, handle: ContainerHandle) -> ContainerState:
        await asyncio.Event().wait()
        raise AssertionError

    def list_ours(self) -> list[ContainerHandle]:
        return []

    async def remove(self, handle: ContainerHandle) -> None:
        pass

    async def exec(self, handle: ContainerHandle, argv: Sequence[str], timeout: float) -> int | None:
        return 0

    def purge_task(self, task_id: str) -> None:
        self.purged.append(task_id)  # keeps everything: the engine must still remove the task's volumes


def run_engine(state_dir: Path, task: dict[str, Any]) -> tuple[RecordingRuntime, list[dict[str, Any]]]:
    runtime = RecordingRuntime(state_dir)
    reports: list[dict[str, Any]] = []

    async def send(batch: Report) -> None:
        reports.extend(batch.to_wire()["tasks"])

    async def main() -> None:
        engine = Engine(runtime, None, Reporter(send, interval=0.001))
        engine.spawn(engine.reporter.run(), "reporter")
        await engine.adopt(DesiredState.from_wire({"generation": 1, "tasks": [task]}))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(r["knownStatus"] != "PENDING" for r in reports):
            await asyncio.sleep(0.01)
        await engine.close()

    asyncio.run(main())
    return runtime, reports


def test_the_engine_starts_containers_with_their_volumes_and_reports_pull_times(tmp_path: Path) -> None:
    shared_file = tmp_path / "host-config"
    shared_file.write_text("x")
    task = wire_task(
        [
            {
                "name": "db",
                "image": "db",
                "mountPoints": [{"sourceVolume": "data", "containerPath": "/data"}],
            },
            {
                "name": "app",
                "image": "app",
                "volumesFrom": [{"sourceContainer": "db", "readOnly": True}],
                "mountPoints": [
                    {"sourceVolume": "config", "containerPath": "/etc/app.conf", "readOnly": True}
                ],
            },
        ],
        volumes=[{"name": "data"}, {"name": "config", "host": {"sourcePath": str(shared_file)}}],
        limits={"cpu": 512, "memory": 1024},
    )
    runtime, reports = run_engine(tmp_path / "state", task)
    data = str(tmp_path / "state" / "tasks" / TASK_ID / ".volumes" / "data")
    assert runtime.started["db"].mounts == (Mount(data, "/data", False),)
    assert set(runtime.started["app"].mounts) == {
        Mount(data, "/data", True),
        Mount(str(shared_file), "/etc/app.conf", True),
    }
    assert (runtime.started["app"].task_cpu, runtime.started["app"].task_memory) == (512, 1024)
    running = next(r for r in reports if r["knownStatus"] == "RUNNING")
    assert (running["pullStartedAt"], running["pullStoppedAt"]) == (990.0, 999.0)

    engine = Engine(runtime, None, Reporter(lambda batch: asyncio.sleep(0)))
    assert engine.prune_logs(now=time.time() + 10 * 3600) == [TASK_ID]
    assert runtime.purged == [TASK_ID] and not (tmp_path / "state" / "tasks" / TASK_ID / ".volumes").exists()
    assert task_dir(tmp_path / "state", TASK_ID).exists()  # the rest is the runtime's to purge


def test_an_s3_environment_file_stops_the_task_honestly(tmp_path: Path) -> None:
    task = wire_task([{"name": "app", "environmentFiles": [{"value": "arn:aws:s3:::b/k.env", "type": "s3"}]}])
    runtime, reports = run_engine(tmp_path / "state", task)
    assert runtime.started == {}
    [app] = [c for r in reports for c in r["containers"] if c["status"] == "STOPPED"][:1]
    assert app["reason"].startswith(
        "ResourceInitializationError: failed to download env files: arn:aws:s3:::b/k.env"
    )
    assert app["exitCode"] is None


def test_a_failed_pull_still_reports_its_pull_times(tmp_path: Path) -> None:
    _, reports = run_engine(tmp_path / "state", wire_task([{"name": "app", "image": "missing"}]))
    failed = next(r for r in reports if r["containers"][0]["status"] == "STOPPED")
    assert failed["containers"][0]["reason"].startswith("CannotPullContainerError: ")
    assert (failed["pullStartedAt"], failed["pullStoppedAt"]) == (980.0, 985.0)
