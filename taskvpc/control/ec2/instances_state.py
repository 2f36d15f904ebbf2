"""EC2 instance state changes: Terminate/Stop/StartInstances, and the host supervisor's side of them.

The API moves an instance to a transitional state (``shutting-down``, ``stopping``, ``pending``); the
host supervisor of ``taskvpc up`` (``taskvpc/cli/instances.py``) does the work on the machine and then
calls :func:`host_started`, :func:`host_stopped` or :func:`host_terminated`, which finish the move.
Terminating stops the instance's ECS tasks with ECS's reason and deregisters its container instance;
the primary ENI and its address are released when the host is gone.

A host lost for good (its namespace and agent gone, seen by the supervisor for its detection window) is
:func:`host_lost`: the instance goes ``running`` -> ``terminated`` at once with a ``Server.`` state
reason, as EC2 reports an instance it lost, and the same retirement runs (its agent shown disconnected,
its tasks stopped with ECS's terminated-host reason, its ENIs and addresses released, deregistered).

Transitions (a missing key is a refused move: ``IncorrectInstanceState``)::

    terminate: pending|running|stopping|stopped -> shutting-down;  shutting-down|terminated: unchanged
    stop:      pending|running -> stopping;       stopping|stopped: unchanged
    start:     stopped -> pending;                pending|running: unchanged
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import describe, instances
from taskvpc.control.ecs import container_instances, task_state
from taskvpc.domain.errors import ClientError
from taskvpc.store import ec2_repo, instances_repo, tasks_repo

Doc = dict[str, Any]

TERMINATE = {
    "pending": "shutting-down",
    "running": "shutting-down",
    "stopping": "shutting-down",
    "stopped": "shutting-down",
    "shutting-down": "shutting-down",
    "terminated": "terminated",
}
STOP = {"pending": "stopping", "running": "stopping", "stopping": "stopping", "stopped": "stopped"}
START = {"stopped": "pending", "pending": "pending", "running": "running"}
_VERB = {"stop": "stopped", "start": "started"}


def incorrect_state(instance_id: str, verb: str) -> ClientError:
    # "The instance 'i-0123' is not in a state from which it can be stopped." (IncorrectInstanceState;
    # CLI output quoted in public repos); "... can be started." likewise
    return ClientError(
        "IncorrectInstanceState",
        f"The instance '{instance_id}' is not in a state from which it can be {_VERB[verb]}.",
    )


def terminated_reason(instance_id: str) -> str:
    # What ECS writes on the tasks of an instance that was terminated (stoppedReason in public reports)
    return f"Host EC2 (instance {instance_id}) terminated."


def _change(ctx: RequestContext, params: dict[str, Any], table: dict[str, str], verb: str, key: str) -> Doc:
    requested = list(params.get("InstanceIds") or [])
    if not requested:
        raise ClientError("MissingParameter", "The request must contain the parameter InstanceId")
    instances.check_ids(requested)
    changes = []
    with ctx.db.transaction() as conn:
        docs = instances_repo.lock_instances(conn, ctx.region, list(dict.fromkeys(requested)))
        instances.require_all(docs, requested)
        for doc in docs:
            if doc["State"]["Name"] not in table:
                raise incorrect_state(doc["InstanceId"], verb)
        describe.dry_run(params)
        by_id = {doc["InstanceId"]: doc for doc in docs}
        for instance_id in dict.fromkeys(requested):
            doc = by_id[instance_id]
            before = doc["State"]
            after = instances.state(table[before["Name"]])
            if after != before:
                doc["State"] = after
                if verb in ("terminate", "stop"):
                    stamp = instances.iso(ctx.now).replace("T", " ")[:19]
                    doc["StateTransitionReason"] = f"User initiated ({stamp} GMT)"
                    doc["StateReason"] = {
                        "Code": "Client.UserInitiatedShutdown",
                        "Message": "Client.UserInitiatedShutdown: User initiated shutdown",
                    }
                instances_repo.update_instance(conn, doc)
            changes.append({"InstanceId": instance_id, "CurrentState": after, "PreviousState": before})
    return {key: changes}


def terminate_instances(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return _change(ctx, params, TERMINATE, "terminate", "TerminatingInstances")


def stop_instances(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return _change(ctx, params, STOP, "stop", "StoppingInstances")


def start_instances(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return _change(ctx, params, START, "start", "StartingInstances")


# ---- the host supervisor's side -------------------------------------------------------------------


def all_instances(ctx: RequestContext) -> list[Doc]:
    """Every instance of every region, with taskvpc's own keys (region, user data, cluster, OS family)."""
    with ctx.db.read() as conn:
        return instances_repo.list_instances(conn, None)


def _finish(
    ctx: RequestContext, instance_id: str, expected: str, after: str, reason: Doc | None = None
) -> Doc | None:
    with ctx.db.transaction() as conn:
        docs = instances_repo.lock_instances(conn, ctx.region, [instance_id])
        if not docs or docs[0]["State"]["Name"] != expected:
            return None  # someone moved it meanwhile: the next pass sees the new state
        doc = docs[0]
        doc["State"] = instances.state(after)
        if reason is not None:
            stamp = instances.iso(ctx.now).replace("T", " ")[:19]
            doc["StateTransitionReason"] = f"Server.InternalError ({stamp} GMT)"
            doc["StateReason"] = reason
        if after in ("stopped", "terminated"):
            _retire_container_instance(conn, ctx, doc, deregister=after == "terminated")
        if after == "terminated":
            ec2_repo.delete_eni(conn, doc["_PrimaryEni"])  # its address is free again at once
            doc["NetworkInterfaces"] = []
            doc.pop("PrivateIpAddress", None)
            doc["PrivateDnsName"] = ""
        if after == "running":
            doc.pop("StateReason", None)
            doc["StateTransitionReason"] = ""
        instances_repo.update_instance(conn, doc)
        return doc


def _retire_container_instance(conn: Connection, ctx: RequestContext, doc: Doc, deregister: bool) -> None:
    """Stop the instance's ECS tasks with ECS's reason; deregister its container instance when it is
    terminated (a stopped one stays registered, disconnected, for its agent to come back to)."""
    row = tasks_repo.find_by_ec2_instance(conn, ctx.region, doc["_Cluster"], doc["InstanceId"])
    if row is None or row["status"] == "INACTIVE":
        return
    task_state.lock(conn, ctx, row["cluster"])
    iid = doc["InstanceId"]
    reason = terminated_reason(iid) if deregister else f"Host EC2 (instance {iid}) stopped."
    if row["agent_connected"]:  # its agent is gone with the host (a stopped instance's comes back)
        tasks_repo.update_instance(conn, row["id"], agent_connected=False)
    task_state.force_stop_all(conn, ctx, row, reason)
    if deregister:
        container_instances.deregister(conn, ctx, row, force=True)


def host_started(ctx: RequestContext, instance_id: str) -> Doc | None:
    return _finish(ctx, instance_id, "pending", "running")


def host_stopped(ctx: RequestContext, instance_id: str) -> Doc | None:
    return _finish(ctx, instance_id, "stopping", "stopped")


def host_terminated(ctx: RequestContext, instance_id: str) -> Doc | None:
    return _finish(ctx, instance_id, "shutting-down", "terminated")


# EC2's state reason for an instance that ended without a request (its code family is "Server."; the
# message is taskvpc's own: here the host is a namespace whose agent and namespace went away)
HOST_LOST_REASON = {
    "Code": "Server.InternalError",
    "Message": "Server.InternalError: The instance's host was lost (its namespace and agent are gone).",
}


def host_lost(ctx: RequestContext, instance_id: str) -> Doc | None:
    """A running instance whose host is gone for good: terminated, its tasks stopped, its ENIs freed."""
    return _finish(ctx, instance_id, "running", "terminated", HOST_LOST_REASON)
