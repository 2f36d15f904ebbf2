"""The ECS service scheduler as a reconcile loop (issue #14): keys are services a pass would change.

The decision is pure (:mod:`taskvpc.scheduler.services`); reading, applying and the bulk listing are
:mod:`taskvpc.control.ecs.service_scheduler`'s. A service changes on requests (CreateService,
UpdateService, ...) and on agents' reports; the loop notices either within one period.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.ecs.service_scheduler import busy_services, reconcile_in
from taskvpc.control.reconcile.runner import Key

SERVICE_PERIOD = 0.5  # seconds; ECS's own scheduler reacts within seconds to a stopped task


@dataclass(frozen=True, slots=True)
class ServiceScheduler:
    period: float = SERVICE_PERIOD
    name: str = "ecs-services"

    def pending(self, conn: Connection, now: float) -> Sequence[Key]:
        return [Key(region, service_id) for region, service_id in busy_services(conn, now)]

    def reconcile(self, conn: Connection, ctx: RequestContext, key: Key) -> bool:
        return reconcile_in(conn, ctx, key.id)
