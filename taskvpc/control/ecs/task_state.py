"""Writing task changes to the store: the ENI hooks, version bumps, usage and cluster counters.

Shared by the ECS use cases (RunTask, StopTask, DeregisterContainerInstance, ...) and the agent API. Every
function runs inside the caller's transaction, after the caller took the cluster's lock
(:func:`lock`), so counters recomputed here see every write of the cluster.
"""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import overlay
from taskvpc.control.ec2.task_enis import attach_task_eni, release_task_eni
from taskvpc.domain import tasks as taskdoc
from taskvpc.domain.errors import cluster_not_found
from taskvpc.domain.lifecycle import StopCode
from taskvpc.store import ecs_repo, tasks_repo

Row = dict[str, Any]


def require_cluster(conn: Connection, ctx: RequestContext, cluster: str) -> dict[str, Any]:
    """The ACTIVE cluster, or ClusterNotFoundException."""
    found = ecs_repo.get_cluster(conn, ctx.region, cluster)
    if found is None or found["status"] != "ACTIVE":
        raise cluster_not_found()
    return found


def lock(conn: Connection, ctx: RequestContext, cluster: str) -> dict[str, Any]:
    """Take the cluster's write lock and return it (ACTIVE), or ClusterNotFoundException."""
    tasks_repo.lock_cluster(conn, ctx.region, cluster)
    return require_cluster(conn, ctx, cluster)


def refresh_cluster(conn: Connection, ctx: RequestContext, cluster: str) -> None:
    """Recompute the cluster's instance and task counters from the rows."""
    found = ecs_repo.get_cluster(conn, ctx.region, cluster)
    if found is None:
        return
    registered, running, pending = tasks_repo.cluster_counts(conn, ctx.region, cluster)
    counters = {
        "registeredContainerInstancesCount": registered,
        "runningTasksCount": running,
        "pendingTasksCount": pending,
    }
    if any(found.get(k) != v for k, v in counters.items()):
        ecs_repo.put_cluster(conn, ctx.region, {**found, **counters}, ctx.now)


_PENDING = ("PROVISIONING", "PENDING", "ACTIVATING")


def counted(task: Row) -> tuple[int, int, int, int, int]:
    """What ``task`` adds to its instance's usage (``tasks_repo.USAGE_COLUMNS``, as ``refresh_usage``
    sums them) and, in its last two, to the cluster's running and pending counts (``cluster_counts``)."""
    status = task["body"]["lastStatus"]
    if status == "STOPPED":
        return (0, 0, 0, 0, 0)
    return (
        int(task["cpu"] or 0),
        int(task["memory"] or 0),
        1 if task["eni_id"] else 0,
        int(status == "RUNNING"),
        int(status in _PENDING),
    )


def count_change(
    conn: Connection, ctx: RequestContext, cluster: str, task: Row, before: tuple[int, ...]
) -> None:
    """Apply one task's change (``before`` is :func:`counted` of it before) to its instance's usage and
    the cluster's counters. Recounting them instead reads every live task of the instance and of the
    cluster: 40 % of a StopTask's time at 5,000 running. Exact as long as the stored values were (every
    writer holds the cluster's lock and keeps them so)."""
    apply_counts(conn, ctx, cluster, task.get("container_instance_id"), change_of(task, before))


def change_of(task: Row, before: tuple[int, ...]) -> list[int]:
    """What ``task``'s change adds to the counts of :func:`counted` (``before`` is that of it before)."""
    return [now - then for now, then in zip(counted(task), before, strict=True)]


def apply_counts(
    conn: Connection, ctx: RequestContext, cluster: str, instance_id: str | None, delta: list[int]
) -> None:
    """Add ``delta`` (a sum of :func:`change_of`, tasks of one instance) to the instance's usage and the
    cluster's counters: one write each for a whole batch of changes."""
    if not any(delta):
        return
    if instance_id:
        tasks_repo.add_usage(conn, instance_id, delta)
    if delta[3] or delta[4]:
        found = ecs_repo.get_cluster(conn, ctx.region, cluster)
        if found is not None:
            counters = {
                "runningTasksCount": int(found.get("runningTasksCount") or 0) + delta[3],
                "pendingTasksCount": int(found.get("pendingTasksCount") or 0) + delta[4],
            }
            ecs_repo.put_cluster(conn, ctx.region, {**found, **counters}, ctx.now)


def eni_details(spec: dict[str, Any]) -> taskdoc.EniDetails | None:
    eni = spec.get("eni")
    if not eni:
        return None
    return taskdoc.EniDetails(
        network_interface_id=eni["networkInterfaceId"],
        mac_address=eni["macAddress"],
        private_dns_name=eni["privateDnsName"],
        private_ipv4_address=eni["privateIpv4Address"],
    )


def snapshot(task: Row) -> dict[str, Any]:
    """A deep copy of the task's document, to compare against after a change."""
    return copy.deepcopy(task["body"])


def save(conn: Connection, ctx: RequestContext, task: Row, before: dict[str, Any]) -> bool:
    """Write the task if its document changed (``version`` + 1); True if it did."""
    task["body"] = taskdoc.sort_task(task["body"])
    if not taskdoc.bump_version(before, task["body"]):
        return False
    tasks_repo.update_task(conn, task, ctx.now)
    return True


def attach(conn: Connection, ctx: RequestContext, task: Row, instance: Row) -> None:
    """The agent attached the task's ENI: EC2 shows it in-use on the instance."""
    if task["eni_id"]:
        attach_task_eni(conn, ctx, task["eni_id"], instance["ec2_instance_id"])
        overlay.members_changed(conn, ctx, instance["id"])  # hosts sharing its VPC route to it


def release(conn: Connection, ctx: RequestContext, task: Row, *, announce: bool = True) -> None:
    """Delete the task's ENI (its address is free at once) and finish the task: STOPPED. ``announce``
    False leaves telling the other overlay hosts (``overlay.members_changed``) to the caller: once for a
    whole report of the instance's tasks, not once per task."""
    if task["eni_id"]:
        release_task_eni(conn, ctx, task["eni_id"])
        if announce:
            overlay.members_changed(conn, ctx, task.get("container_instance_id"))
    task["eni_id"] = None
    taskdoc.finish(task["body"], ctx.now)


def force_stop_all(conn: Connection, ctx: RequestContext, instance: Row, reason: str) -> list[Row]:
    """Stop every live task of ``instance`` without its agent (forced deregistration); ENIs released."""
    stopped = []
    for task in tasks_repo.tasks_on_instance(conn, instance["id"]):
        before = snapshot(task)
        taskdoc.force_stop(task["body"], StopCode.USER_INITIATED, reason, ctx.now)
        release(conn, ctx, task)
        save(conn, ctx, task, before)
        stopped.append(task)
    return stopped
