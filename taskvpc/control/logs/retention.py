"""The log retention loop: events older than their group's ``retentionInDays`` are deleted.

CloudWatch Logs deletes expired events some time after they expire (the UG says within 72 hours); here
a pass each minute lists the groups that hold an expired event and deletes them group by group, one
transaction each. A group's retention is re-read inside its transaction, so a retention changed or
removed between listing and deleting is honoured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.reconcile.runner import Key
from taskvpc.store import logs_repo

BATCH = 500
PERIOD = 60.0


@dataclass(frozen=True, slots=True)
class LogRetention:
    period: float = PERIOD
    name: str = "log-retention"

    def pending(self, conn: Connection, now: float) -> Sequence[Key]:
        return [Key(*k) for k in logs_repo.groups_past_retention(conn, int(now * 1000), BATCH)]

    def reconcile(self, conn: Connection, ctx: RequestContext, key: Key) -> bool:
        return logs_repo.delete_expired(conn, int(key.id), int(ctx.now * 1000)) > 0
