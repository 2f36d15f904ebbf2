"""Runs the service scheduler in the server process: every ``period`` seconds, one reconcile pass of
every live service. A stand-in until the control plane's reconcile runner drives ``SERVICE_LOOP``.

``SERVICE_LOOP`` is the loop's description in the shape a keyed runner takes: a name, a function that
lists the keys, the function that reconciles one key, and the period. :func:`with_service_loop` wraps
the ASGI application so the loop starts and stops with the server (``taskvpc up``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from taskvpc.control.context import RequestContext
from taskvpc.control.ecs.service_scheduler import ServiceKey, busy_services, live_services, reconcile_service

log = logging.getLogger("taskvpc.services")

PERIOD = float(os.environ.get("TASKVPC_SERVICE_PERIOD", "0.5"))


def _reconcile(ctx: RequestContext, key: ServiceKey) -> bool:
    return reconcile_service(ctx, key.service_id)


SERVICE_LOOP: tuple[str, Callable[[RequestContext], list[ServiceKey]], Callable[..., bool], float] = (
    "ecs-services",
    live_services,
    _reconcile,
    PERIOD,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


class ServiceLoop:
    """``control_plane`` gives contexts (``context(region, now)``), wakes agents (``notifier.wake``) and
    says whether store calls may run on the event loop (``inline``: SQLite)."""

    def __init__(self, control_plane: Any, period: float = PERIOD, region: str = "us-east-1") -> None:
        self.control_plane = control_plane
        self.period = period
        self.region = region
        self._task: asyncio.Task[None] | None = None

    def pass_once(self) -> set[str]:
        """Reconcile every live service once; the container instances whose agents should wake."""
        notify: set[str] = set()
        now = self.control_plane.context(self.region, time.time())
        for key in busy_services(now, live_services(now)):
            ctx = self.control_plane.context(key.region, time.time())
            try:
                reconcile_service(ctx, key.service_id)
            except Exception:
                log.exception("service reconcile failed", extra={"service_id": key.service_id})
            notify |= ctx.notify
        return notify

    async def run(self) -> None:
        while True:
            try:
                if self.control_plane.inline:
                    notify = self.pass_once()
                else:
                    notify = await asyncio.to_thread(self.pass_once)
                self.control_plane.notifier.wake(notify)
            except Exception:
                log.exception("service loop pass failed")
            await asyncio.sleep(self.period)

    def wrap(self, app: Asgi) -> Asgi:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "lifespan":
                await app(scope, receive, send)
                return

            async def watched_receive() -> Message:
                message = await receive()
                if message["type"] == "lifespan.startup" and self._task is None:
                    self._task = asyncio.get_running_loop().create_task(self.run())
                elif message["type"] == "lifespan.shutdown" and self._task is not None:
                    self._task.cancel()
                    self._task = None
                return message

            await app(scope, watched_receive, send)

        return wrapped


def with_service_loop(app: Asgi, control_plane: Any) -> Asgi:
    return ServiceLoop(control_plane).wrap(app)
