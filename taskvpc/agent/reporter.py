"""Reports of known state to the control plane: the latest per task, in batches (see :class:`Reporter`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from taskvpc.agent import taskplan as tp
from taskvpc.agent.kvlog import kv
from taskvpc.agentapi.reports import Report

log = logging.getLogger(__name__)

REPORT_INTERVAL = 0.05


AckCallback = Callable[[tp.TaskReport], None]


class Reporter:
    """Latest report per task, sent in batches, one request in flight at a time.

    Routine changes (PENDING, a health change, a non-essential container's exit) go out at most once per
    ``interval`` (50 ms), and linger that long to join a batch, so the PENDING report of a task that runs
    20 ms later is usually never sent on its own. A task *reaching* RUNNING or STOPPED is news on the
    critical path (RunTask to RUNNING is measured): its batch goes out as soon as the previous request
    has completed, carrying everything else pending with it; under a burst the single in-flight request
    does the batching. A failed batch is retried with backoff, newer reports for its tasks winning.
    """

    def __init__(
        self,
        send: Callable[[Report], Awaitable[Any]],
        *,
        interval: float = REPORT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._interval = interval
        self._clock = clock
        self._pending: dict[str, tuple[tp.TaskReport, AckCallback | None]] = {}
        self._since: float | None = None  # when the oldest pending report came in
        self._sent_status: dict[str, str | None] = {}
        self._wake = asyncio.Event()
        self._last = -1e9
        self.batches = 0

    def submit(self, report: tp.TaskReport, on_ack: AckCallback | None = None) -> None:
        self._pending[report.task_arn] = (report, on_ack)
        if self._since is None:
            self._since = self._clock()
        self._wake.set()

    @property
    def idle(self) -> bool:
        return not self._pending

    def _urgent(self) -> bool:
        return any(
            r.known_status != tp.TaskView.PENDING.value and self._sent_status.get(arn) != r.known_status
            for arn, (r, _) in self._pending.items()
        )

    def _due(self) -> float:
        """Seconds until the pending batch goes out (at once when it carries news)."""
        if self._urgent():
            return 0.0
        allowed = self._last + self._interval
        if self._since is not None:
            allowed = max(allowed, self._since + self._interval)
        return allowed - self._clock()

    async def run(self) -> None:
        failures = 0
        while True:
            self._wake.clear()
            if not self._pending:
                await self._wake.wait()
                continue
            due = self._due()
            if due > 0:
                with contextlib.suppress(TimeoutError):  # an urgent report may bring it forward
                    async with asyncio.timeout(due):
                        await self._wake.wait()
                continue
            batch, self._pending, self._since = self._pending, {}, None
            self._last = self._clock()
            try:
                await self._send(Report.of([report for report, _ in batch.values()]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning("report failed %s", kv(tasks=len(batch), error=repr(exc)))
                for arn, item in batch.items():
                    self._pending.setdefault(arn, item)  # a newer report for the task wins
                self._since = self._since or self._clock()
                await asyncio.sleep(min(5.0, 0.1 * 2**failures))
                continue
            failures = 0
            self.batches += 1
            for arn, (report, on_ack) in batch.items():
                self._sent_status[arn] = report.known_status
                if report.known_status == tp.TaskView.STOPPED.value:
                    self._sent_status.pop(arn, None)
                if on_ack is not None:
                    on_ack(report)
