"""A new task's start phases: the pure bookkeeping, and the real engine logging them once per task."""

from __future__ import annotations

import asyncio
import logging

from taskvpc.agent import starttiming
from taskvpc.agent.runtime import process
from taskvpc.agent.starttiming import StartTiming
from tests.unit.test_agent_engine import Harness, container, harness_test


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_phases_are_measured_from_mark_to_mark() -> None:
    clock = Clock()
    timing = StartTiming.begin(clock)
    clock.now += 0.120
    timing.network_ready()
    clock.now += 0.010
    timing.network_ready()  # a second ensure (a retry) does not move the mark
    timing.container_started("web", 0.050)
    timing.container_started("side", 0.070)
    clock.now += 0.080
    timing.running_reported()
    clock.now += 0.025
    assert timing.phases(clock()) == {
        "network_ms": "120.0",
        "containers_ms": "90.0",
        "runtime_start_ms": "70.0",
        "report_ms": "25.0",
        "total_ms": "235.0",
    }


def test_a_mark_never_made_counts_as_zero_long() -> None:
    clock = Clock()
    timing = StartTiming.begin(clock)  # e.g. a task without a network of its own
    clock.now += 0.5
    timing.running_reported()
    phases = timing.phases(clock.now + 0.1)
    assert phases["network_ms"] == "0.0" and phases["containers_ms"] == "500.0"
    assert phases["runtime_start_ms"] == "0.0" and phases["total_ms"] == "600.0"


def test_parse_reads_the_logged_line_back() -> None:
    line = (
        "2026-12-06 02:16:26,477 INFO taskvpc.agent.starttiming start phases task_arn=arn:x/1 "
        "seen_at=1796.5 network_ms=1.0 containers_ms=2.0 runtime_start_ms=2.0 report_ms=3.0 total_ms=6.0"
    )
    fields = starttiming.parse(line)
    assert fields is not None and fields["task_arn"] == "arn:x/1" and fields["total_ms"] == "6.0"
    assert starttiming.parse("2026-12-06 INFO taskvpc.agent.engine started task_arn=arn:x/1") is None


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@harness_test
async def test_the_engine_logs_a_new_tasks_phases_once_it_is_running(h: Harness) -> None:
    lines, runtime_parts = Lines(), Lines()
    logger = logging.getLogger(starttiming.__name__)
    logger.addHandler(lines)
    level = logger.level
    logger.setLevel(logging.INFO)
    runtime_logger = logging.getLogger(process.__name__)  # each container start's own parts
    runtime_logger.addHandler(runtime_parts)
    runtime_level = runtime_logger.level
    runtime_logger.setLevel(logging.INFO)
    try:
        await h.start_agent()
        arn = await h.server.run_task(
            "5" * 32, [container("web", "exec sleep 60"), container("side", "exec sleep 60")]
        )
        await h.server.wait_for(arn, "RUNNING")
        for _ in range(100):  # the acknowledgement's callback runs after the server answered
            if lines.lines:
                break
            await asyncio.sleep(0.02)
        await h.server.stop_task(arn)
        await h.server.wait_for(arn, "STOPPED")
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
        runtime_logger.removeHandler(runtime_parts)
        runtime_logger.setLevel(runtime_level)
    parsed = [starttiming.parse(line) for line in lines.lines]
    assert len(parsed) == 1, lines.lines  # one line per start, none for the stop
    fields = parsed[0]
    assert fields is not None and fields["task_arn"] == arn
    phases = {k: float(v) for k, v in fields.items() if k.endswith("_ms")}
    # every container ran under the real process runtime: its start took some time, inside the phase
    assert 0 < phases["runtime_start_ms"] <= phases["containers_ms"]
    parts = phases["network_ms"] + phases["containers_ms"] + phases["report_ms"]
    assert abs(parts - phases["total_ms"]) < 0.5 and phases["total_ms"] < 5000
    starts = [line for line in runtime_parts.lines if line.startswith("container start ")]
    assert sorted(line.split("container=")[1].split()[0].rsplit("/", 1)[1] for line in starts) == [
        "side",
        "web",
    ]
    for line in starts:
        fields = dict(p.split("=", 1) for p in line.split() if "=" in p)
        spawn, ready = float(fields["spawn_ms"]), float(fields["ready_ms"])
        assert spawn > 0 and ready > 0 and spawn + ready <= phases["runtime_start_ms"] + 1
