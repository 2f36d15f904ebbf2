"""Where a task's start spends its time, one log line per task (``start phases``).

A new task's worker marks each step of its start on a monotonic clock: the worker is made (the desired
state named the task), its resources are ready (network namespace, veth ENI, firewall rules, the
169.254.170.2 endpoint), every container is started (the shim ran ``runc create``/``start``), and the
control plane acknowledged the RUNNING report. When the acknowledgement comes the phases are logged on
the ``taskvpc.agent.starttiming`` logger (INFO); ``bench/density.py`` reads them from the log to show
which phase grows as the host fills. Adopted tasks (already started by an earlier agent) are not timed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from taskvpc.agent.kvlog import kv

log = logging.getLogger(__name__)

MESSAGE = "start phases"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


@dataclass
class StartTiming:
    """The marks of one task's start (monotonic seconds); see the module docstring."""

    seen: float
    seen_wall: float  # the same moment as epoch seconds: a benchmark lines it up with its RunTask call
    network: float | None = None
    running: float | None = None  # the RUNNING report was handed to the reporter
    container_start: dict[str, float] = field(default_factory=dict)  # name -> runtime.start's seconds
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def begin(cls, clock: Callable[[], float] = time.monotonic) -> StartTiming:
        return cls(clock(), time.time(), clock=clock)

    def network_ready(self) -> None:
        if self.network is None:
            self.network = self.clock()

    def container_started(self, name: str, seconds: float) -> None:
        self.container_start[name] = seconds

    def running_reported(self) -> None:
        if self.running is None:
            self.running = self.clock()

    def phases(self, acked: float) -> dict[str, str]:
        """Milliseconds per phase, each from the previous mark (a mark never made counts as zero long)."""
        network = self.network if self.network is not None else self.seen
        running = self.running if self.running is not None else network
        return {
            "network_ms": _ms(network - self.seen),
            "containers_ms": _ms(running - network),
            "runtime_start_ms": _ms(max(self.container_start.values(), default=0.0)),
            "report_ms": _ms(acked - running),
            "total_ms": _ms(acked - self.seen),
        }

    def log_acked(self, task_arn: str) -> None:
        """The control plane has the RUNNING report: the start is over, log its phases."""
        log.info(
            "%s %s",
            MESSAGE,
            kv(task_arn=task_arn, seen_at=f"{self.seen_wall:.3f}", **self.phases(self.clock())),
        )


def parse(line: str) -> dict[str, str] | None:
    """The fields of a ``start phases`` log line (``task_arn``, ``seen_at``, ``*_ms``), None for others."""
    _, found, rest = line.partition(MESSAGE + " ")
    if not found:
        return None
    return dict(part.split("=", 1) for part in rest.split() if "=" in part)
