"""The control plane's reconcile loops: what each one lists, and what it does to one key.

* :class:`StoppedTaskPurge` - ECS keeps a stopped task visible for a while ("Currently, stopped tasks
  appear in the returned results for at least one hour", DescribeTasks and ListTasks API reference),
  then it is gone: DescribeTasks answers ``failures`` with reason ``MISSING`` for it. The task's row and
  its tags are deleted ``retention`` seconds after ``stoppedAt``.
* :class:`AgentSilence` - an agent that stops polling: its instance's ``agentConnected`` goes false
  (``version`` + 1: ECS counts a connection change as a container instance state change event, DG
  ``ecs_container_instance_events``). Its next poll sets it true again (``tasks_repo.set_heartbeat``).
* :class:`AttachmentTimeout` - a task ENI that no agent attached in time: the attachment fails, the task
  stops with ``TaskFailedToStart`` and "Timeout waiting for network interface provisioning to
  complete." (the text ECS's agent gives after its 3-minute wait; aws/amazon-ecs-agent#4825), the ENI is
  deleted and its address freed, and the agent hears of it through its long poll.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.ecs import task_state
from taskvpc.control.reconcile.runner import Key
from taskvpc.domain import tasks as taskdoc
from taskvpc.domain.lifecycle import ENI_PROVISIONING_TIMEOUT_REASON
from taskvpc.store import reconcile_repo, tasks_repo

BATCH = 500  # keys listed per pass at most; the rest wait for the next pass


@dataclass(frozen=True, slots=True)
class StoppedTaskPurge:
    retention: float
    period: float
    name: str = "stopped-task-purge"

    def pending(self, conn: Connection, now: float) -> Sequence[Key]:
        return [Key(*k) for k in reconcile_repo.stopped_tasks_due(conn, now - self.retention, BATCH)]

    def reconcile(self, conn: Connection, ctx: RequestContext, key: Key) -> bool:
        return reconcile_repo.delete_stopped_task(conn, key.id, ctx.now - self.retention)


@dataclass(frozen=True, slots=True)
class AgentSilence:
    timeout: float
    period: float
    name: str = "agent-connection"

    def pending(self, conn: Connection, now: float) -> Sequence[Key]:
        return [Key(*k) for k in reconcile_repo.silent_agents_due(conn, now - self.timeout, BATCH)]

    def reconcile(self, conn: Connection, ctx: RequestContext, key: Key) -> bool:
        return reconcile_repo.mark_disconnected(conn, key.id, ctx.now - self.timeout)


@dataclass(frozen=True, slots=True)
class AttachmentTimeout:
    timeout: float
    period: float
    name: str = "attachment-timeout"

    def pending(self, conn: Connection, now: float) -> Sequence[Key]:
        return [Key(*k) for k in reconcile_repo.unattached_tasks_due(conn, now - self.timeout, BATCH)]

    def reconcile(self, conn: Connection, ctx: RequestContext, key: Key) -> bool:
        found = tasks_repo.get_task(conn, key.id)
        if found is None:
            return False
        tasks_repo.lock_cluster(conn, ctx.region, found["cluster"])  # as every writer of the cluster does
        task = tasks_repo.get_task(conn, key.id)  # re-read under the lock
        if task is None or task["body"]["createdAt"] > ctx.now - self.timeout:
            return False
        before = task_state.snapshot(task)
        if not taskdoc.fail_unattached(task["body"], ENI_PROVISIONING_TIMEOUT_REASON, ctx.now):
            return False
        task_state.release(conn, ctx, task)  # ENI deleted, address free; the task STOPPED
        task_state.save(conn, ctx, task, before)
        instance = tasks_repo.get_instance(conn, task["container_instance_id"])
        if instance is not None:
            tasks_repo.refresh_usage(conn, instance)
            tasks_repo.bump_generation(conn, instance["id"])  # its agent drops the task, if it has it
            ctx.notify.add(instance["id"])
        task_state.refresh_cluster(conn, ctx, task["cluster"])
        return True
