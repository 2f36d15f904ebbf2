"""Container health checks, Docker's rules, for any runtime (the command runs through ``Runtime.exec``).

* The first probe runs ``interval`` seconds after the container started, then one every ``interval``.
* A probe passes when the command exits 0 within ``timeout``; a timeout is a failure.
* A pass makes the container HEALTHY and resets the failure streak.
* ``retries`` consecutive failures make it UNHEALTHY, except that failures during ``startPeriod`` (from
  the container's start) do not count; a pass during it still makes it HEALTHY.
* Until the first verdict the status is UNKNOWN (ECS's ``healthStatus`` when no check ran yet).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from taskvpc.agent.runtime import ContainerHandle, HealthCheckSpec, HealthStatus, Runtime

log = logging.getLogger(__name__)

Probe = Callable[[list[str], float], Awaitable[int | None]]


class HealthMonitor:
    """Probes one container until cancelled; calls ``on_change`` with each new status."""

    def __init__(
        self,
        check: HealthCheckSpec,
        probe: Probe,
        on_change: Callable[[HealthStatus], None],
        *,
        started_at: float | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.check = check
        self.status = HealthStatus.UNKNOWN
        self.failures = 0
        self._probe = probe
        self._on_change = on_change
        self._clock = clock
        self._sleep = sleep
        self._started_at = started_at if started_at is not None else clock()

    @classmethod
    def for_container(
        cls,
        runtime: Runtime,
        handle: ContainerHandle,
        check: HealthCheckSpec,
        on_change: Callable[[HealthStatus], None],
        *,
        started_at: float | None = None,
    ) -> HealthMonitor:
        async def probe(argv: list[str], timeout: float) -> int | None:
            return await runtime.exec(handle, argv, timeout)

        return cls(check, probe, on_change, started_at=started_at)

    def _set(self, status: HealthStatus) -> None:
        if status != self.status:
            self.status = status
            self._on_change(status)

    async def probe_once(self) -> HealthStatus:
        argv = self.check.argv()
        if argv is None:
            return self.status
        try:
            code = await self._probe(argv, self.check.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a probe that cannot even run is a failed probe
            log.debug("health probe failed to run: %s", exc)
            code = None
        in_start_period = self._clock() - self._started_at < self.check.start_period
        if code == 0:
            self.failures = 0
            self._set(HealthStatus.HEALTHY)
        elif not in_start_period:
            self.failures += 1
            if self.failures >= self.check.retries:
                self._set(HealthStatus.UNHEALTHY)
        return self.status

    async def run(self) -> None:
        if self.check.argv() is None:
            return
        elapsed = self._clock() - self._started_at
        # an adopted container resumes on its interval grid; a new one waits one interval
        first = self.check.interval - (elapsed % self.check.interval) if elapsed > 0 else self.check.interval
        await self._sleep(first)
        while True:
            began = self._clock()
            await self.probe_once()
            await self._sleep(max(0.0, self.check.interval - (self._clock() - began)))
