"""What the hosts' data planes must hear about EC2 changes.

Security groups are enforced by the agents (in each VPC router's nftables table), from the rules and ENI
memberships the desired-state answer carries. A change to either must reach every agent at once: the
change bumps the desired-state generation of the region's live instances, which answers their waiting
long polls as soon as the transaction has committed (``RequestContext.notify``).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.store import tasks_repo


def security_changed(conn: Connection, ctx: RequestContext, eni_ids: Sequence[str] = ()) -> None:
    """Rules or an ENI's groups changed in ``ctx.region``: wake the agents that may enforce them.
    ``eni_ids``: ENIs whose groups changed (their tasks' desired-state entries show them)."""
    tasks_repo.mark_eni_tasks_changed(conn, eni_ids)
    ctx.notify.update(tasks_repo.bump_region_generations(conn, ctx.region))
