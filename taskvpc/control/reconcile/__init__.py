"""Control-plane reconcilers: keyed, level-triggered loops over the store, one process leading each.

    runner = build_runner(db, control_plane.context, Settings(stopped_task_retention=3600))
    runner.start(wake)   # a thread; the ASGI lifespan does this (taskvpc.api.asgi)
    runner.stop()

:mod:`.runner` runs loops (list the keys needing work, reconcile each in its own transaction, back off
on errors); :mod:`.leadership` decides which process runs a loop (PostgreSQL advisory locks, or the one
SQLite process); :mod:`.loops` holds the loops themselves. A new loop is a class with ``name``,
``period``, ``pending`` and ``reconcile``, added to :func:`build_runner`'s list.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from taskvpc.control.ecs.container_instances import AGENT_TIMEOUT
from taskvpc.control.iam.session_purge import ExpiredSessionPurge
from taskvpc.control.logs.retention import LogRetention
from taskvpc.control.reconcile.leadership import AdvisoryLocks, Leadership, SoleProcess, lock_key
from taskvpc.control.reconcile.loops import AgentSilence, AttachmentTimeout, StoppedTaskPurge
from taskvpc.control.reconcile.runner import Backoff, Key, Loop, MakeContext, PassResult, Runner, Wake
from taskvpc.control.reconcile.services import ServiceScheduler
from taskvpc.store.db import Database

__all__ = [
    "AdvisoryLocks",
    "AgentSilence",
    "AttachmentTimeout",
    "Backoff",
    "Key",
    "Leadership",
    "Loop",
    "MakeContext",
    "PassResult",
    "Runner",
    "ServiceScheduler",
    "Settings",
    "SoleProcess",
    "StoppedTaskPurge",
    "Wake",
    "build_runner",
    "lock_key",
    "period_for",
]

STOPPED_TASK_RETENTION = 3600.0  # ECS: "at least one hour" (DescribeTasks API reference)
# ECS's agent waits 3 minutes for a task ENI before it fails the task (aws/amazon-ecs-agent#4825); the
# control plane gives an agent that never acknowledges the attachment the same time # unconfirmed
ATTACHMENT_TIMEOUT = 180.0


@dataclass(frozen=True, slots=True)
class Settings:
    stopped_task_retention: float = STOPPED_TASK_RETENTION
    agent_timeout: float = AGENT_TIMEOUT  # must exceed the agents' long-poll wait (30 s)
    attachment_timeout: float = ATTACHMENT_TIMEOUT


def period_for(window: float) -> float:
    """How often a loop looks for work that falls due ``window`` seconds after some moment: ten times
    per window, at least every 10 s and at most every 0.2 s."""
    return min(max(window / 10.0, 0.2), 10.0)


def build_runner(
    db: Database,
    make_context: MakeContext,
    settings: Settings = Settings(),
    *,
    clock: Callable[[], float] = time.time,
    leadership: Leadership | None = None,
) -> Runner:
    """The control plane's runner: every loop, led by advisory locks on PostgreSQL."""
    if leadership is None:
        leadership = SoleProcess() if db.is_sqlite else AdvisoryLocks(db.url)
    loops: list[Loop] = [
        StoppedTaskPurge(settings.stopped_task_retention, period_for(settings.stopped_task_retention)),
        AgentSilence(settings.agent_timeout, period_for(settings.agent_timeout)),
        AttachmentTimeout(settings.attachment_timeout, period_for(settings.attachment_timeout)),
        ServiceScheduler(),
        LogRetention(),
        ExpiredSessionPurge(),
    ]
    return Runner(db, loops, make_context, clock=clock, leadership=leadership)
