"""The awslogs shipper against real files and an in-memory control plane that keeps the same cursor as
the real one (control/logs/delivery.py): rotation loses nothing, a restart at any point neither loses nor
duplicates, non-blocking mode drops (and counts) beyond its buffer only while the control plane is away."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from taskvpc.agent import logshipper
from taskvpc.agent.logreader import PositionedReader
from taskvpc.agent.logshipper import ContainerShipper, LogDriverError, LogShipper
from taskvpc.agent.runtime.shim import RotatingLog
from taskvpc.agentapi.logdriver import AwslogsOptions, LogAck, LogDelivery
from taskvpc.agentapi.tasks import DesiredContainer, DesiredTask
from taskvpc.domain.lifecycle import DesiredStatus


class Plane:
    """Stores events past its cursor and answers the cursor, as the control plane does."""

    def __init__(self) -> None:
        self.stored: list[str] = []
        self.next = 0
        self.down = False
        self.lose_next_ack = False  # commit, then fail before the agent hears of it
        self.deliveries = 0

    async def deliver(self, deliveries: Sequence[LogDelivery]) -> list[LogAck]:
        await asyncio.sleep(0)
        if self.down:
            raise ConnectionError("control plane unreachable")
        acks = []
        for d in deliveries:
            self.stored += [m for _, m in d.events[max(0, self.next - d.first) :]]
            self.next = max(self.next, d.first + len(d.events))
            acks.append(LogAck(d.task_arn, d.container, self.next))
        self.deliveries += 1
        if self.lose_next_ack:
            self.lose_next_ack = False
            raise ConnectionError("connection lost after the commit")
        return acks


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logshipper, "RETRY", 0.01)
    monkeypatch.setattr(logshipper, "POLL", 0.005)


def shipper(directory: Path, plane: Plane, **options: object) -> ContainerShipper:
    opts = AwslogsOptions(group="g", **options)  # type: ignore[arg-type]
    return ContainerShipper("arn:t", "web", directory, opts, "ecs/web/t", plane.deliver)


async def until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def test_the_reader_follows_rotations_and_resumes_from_a_position(tmp_path: Path) -> None:
    writer = RotatingLog(str(tmp_path / "log"), 300, 5)
    reader = PositionedReader(tmp_path)
    got: list[tuple[str, tuple[int, int]]] = []
    for i in range(400):
        writer.write((f"line {i:04d} " + "x" * (i % 13) + "\n").encode())
        if i % 20 == 0:
            got += reader.read_lines()
    got += reader.read_lines()
    assert [text.split()[1] for text, _ in got] == [f"{i:04d}" for i in range(400)]
    # from the position past line 390 (in whichever file holds it now), a new reader reads the rest
    again = PositionedReader(tmp_path, got[390][1])
    assert [text for text, _ in again.rest()] == [text for text, _ in got[391:]]
    assert not again.lost
    writer.close()


def test_a_partial_last_line_is_read_at_the_end(tmp_path: Path) -> None:
    (tmp_path / "log").write_bytes(b"one\ntwo")
    reader = PositionedReader(tmp_path)
    assert [t for t, _ in reader.read_lines()] == ["one"]
    assert [t for t, _ in reader.rest()] == ["two"]


def test_restarts_at_any_point_lose_nothing_and_duplicate_nothing(tmp_path: Path) -> None:
    plane = Plane()
    total = 3000

    async def main() -> None:
        writer = RotatingLog(str(tmp_path / "log"), 4096, 5)
        first = shipper(tmp_path, plane)
        first.start()
        for i in range(total // 2):
            writer.write(f"event {i}\n".encode())
            if i % 100 == 0:
                await asyncio.sleep(0.01)
        await until(lambda: plane.next > 500)
        plane.lose_next_ack = True  # the control plane stores a batch; the agent dies before the ack
        await until(lambda: not plane.lose_next_ack)
        await first.stop()
        for i in range(total // 2, total):
            writer.write(f"event {i}\n".encode())
        second = shipper(tmp_path, plane)  # the restarted agent: from the saved cursor
        assert second.acked < plane.next  # it does not know about the last stored batch
        second.start()
        (tmp_path / "exit_code").write_text("0\n")
        writer.close()
        await second.drain()

    asyncio.run(main())
    assert plane.stored == [f"event {i}" for i in range(total)]


def test_non_blocking_drops_and_counts_only_beyond_its_buffer(tmp_path: Path) -> None:
    plane = Plane()
    plane.down = True

    async def main() -> ContainerShipper:
        writer = RotatingLog(str(tmp_path / "log"), 1 << 20, 5)
        ship = shipper(tmp_path, plane, max_buffer_size=2000)
        ship.start()
        for i in range(500):
            writer.write(f"line {i:03d}\n".encode())
        await until(lambda: ship.dropped + len(ship.pending) == 500)  # everything read: kept or dropped
        assert ship.pending_bytes <= 2000
        plane.down = False
        await until(lambda: not ship.pending)
        writer.write(b"after\n")
        await until(lambda: plane.stored[-1:] == ["after"])
        await ship.stop()
        writer.close()
        return ship

    ship = asyncio.run(main())
    kept = plane.stored[:-1]
    assert kept == sorted(kept) and len(set(kept)) == len(kept)  # in order, no duplicates
    assert len(kept) + ship.dropped == 500
    assert ship.dropped > 0


def test_blocking_mode_waits_instead_of_dropping(tmp_path: Path) -> None:
    plane = Plane()
    plane.down = True

    async def main() -> ContainerShipper:
        writer = RotatingLog(str(tmp_path / "log"), 1 << 20, 5)
        ship = shipper(tmp_path, plane, blocking=True)
        ship.start()
        for i in range(2000):
            writer.write(f"line {i:04d}\n".encode())
        await asyncio.sleep(0.1)
        plane.down = False
        await until(lambda: len(plane.stored) == 2000)
        await ship.stop()
        writer.close()
        return ship

    ship = asyncio.run(main())
    assert ship.dropped == 0
    assert plane.stored == [f"line {i:04d}" for i in range(2000)]


def test_multiline_events_ship_whole(tmp_path: Path) -> None:
    plane = Plane()
    (tmp_path / "log").write_text("INFO a\n  at x\n  at y\nINFO b\n")

    async def main() -> None:
        ship = shipper(tmp_path, plane, starts_event="^INFO")
        ship.start()
        (tmp_path / "exit_code").write_text("0\n")
        await ship.drain()

    asyncio.run(main())
    assert plane.stored == ["INFO a\n  at x\n  at y\n", "INFO b\n"]


def task_with(options: dict[str, str]) -> DesiredTask:
    container = DesiredContainer.from_wire(
        {"name": "web", "logConfiguration": {"logDriver": "awslogs", "options": options}}
    )
    return DesiredTask(
        arn="arn:aws:ecs:us-east-1:0:task/default/abc",
        desired_status=DesiredStatus.RUNNING,
        containers=(container,),
    )


def test_the_driver_refuses_what_docker_refuses_and_reports_the_control_plane_s_refusal(
    tmp_path: Path,
) -> None:
    async def refuse(deliveries: Sequence[LogDelivery]) -> list[LogAck]:
        return [
            LogAck(
                d.task_arn,
                d.container,
                0,
                "ResourceNotFoundException",
                "The specified log group does not exist.",
            )
            for d in deliveries
        ]

    logs = LogShipper(tmp_path, refuse)
    with pytest.raises(LogDriverError, match="must specify a value for log opt 'awslogs-group'"):
        asyncio.run(logs.open(task_with({"awslogs-stream-prefix": "ecs"})))
    logs = LogShipper(tmp_path, refuse)
    with pytest.raises(LogDriverError) as info:
        asyncio.run(logs.open(task_with({"awslogs-group": "g", "awslogs-stream-prefix": "ecs"})))
    assert str(info.value) == (
        "CannotStartContainerError: failed to initialize logging driver: failed to create Cloudwatch log "
        "stream: ResourceNotFoundException: The specified log group does not exist."
    )
    assert [s.stream for s in logs.tasks["abc"]] == ["ecs/web/abc"]
    assert os.path.isdir(tmp_path / "tasks" / "abc" / "web")
