"""What the desired-state answer's whole sections read of an instance's live tasks, kept between polls.

Every section but ``tasks`` (VPCs, security groups, flow logs, the overlay, credentials) reads the same few
facts of the instance's live tasks: each task's ENI with its current groups, and the role of each task the
agent should run. Reading them afresh meant loading and parsing every task row of the instance on every
poll (at 5,000 tasks about half a second, even when nothing had changed). They are kept here instead, per
instance, as of a generation, and brought up to date from the rows the delta reads anyway: the tasks
whose entry changed after that generation (``tasks_repo.tasks_changed_since``; every write that changes an
ENI's groups, a desired status or ends a task marks its row, and the generation bump stamps it). So a
poll reads what changed, not the instance.

Why that is safe: a task's entry in the store is the whole truth about it, so re-applying a changed row
is harmless (a delta from an older generation than the one kept is a superset, applied as well); a kept
copy whose task count differs from the store's (rows purged, a store replaced) is dropped and read whole;
a copy from a generation ahead of the store's is never used. The copy only saves reading rows: the
sections are still built from it on every poll, with their own reads (rules, subnets, flow logs, load
balancers, credentials near expiry), as before.

Copies are per store (a process may serve several in tests) and per instance, at most ``MAX_INSTANCES``
of them (least recently used first out).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from taskvpc.agentapi.network import Eni
from taskvpc.domain import tasks as taskdoc
from taskvpc.store.db import Database

Row = dict[str, Any]
MAX_INSTANCES = 4096


@dataclass(frozen=True)
class TaskInputs:
    """The instance's live tasks as the whole sections see them, as of ``generation``. Not mutated once
    made (polls on several threads share it); :meth:`updated` makes the next one, in time proportional to
    the rows changed (plus copying the maps, a C-level copy)."""

    generation: int
    live: Mapping[str, None]  # every live task's ARN (ordered as the store lists them)
    enis: Mapping[str, Eni]  # task ARN -> its ENI with its current groups
    roles: Mapping[str, str]  # task ARN -> its task role, for tasks the agent should run
    vpc_counts: Mapping[str, int]  # VPC -> how many of the ENIs are in it
    group_counts: Mapping[tuple[str, str], int]  # (group, its VPC) -> how many of the ENIs carry it

    @classmethod
    def of(cls, generation: int, rows: Iterable[Row], enis: Mapping[str, Eni]) -> TaskInputs:
        """From every live task row of the instance (``enis``: their ENIs with current groups, by ARN)."""
        return cls(generation, {}, {}, {}, {}, {}).updated(generation, rows, enis, ())

    def updated(
        self, generation: int, changed: Iterable[Row], enis: Mapping[str, Eni], removed: Iterable[str]
    ) -> TaskInputs:
        """This copy with ``changed`` live task rows (``enis``: their ENIs) and ``removed`` ARNs applied."""
        live, by_arn, roles = dict(self.live), dict(self.enis), dict(self.roles)
        vpcs, groups = dict(self.vpc_counts), dict(self.group_counts)

        def count(eni: Eni | None, step: int) -> None:
            if eni is not None:
                _add(vpcs, eni.vpc_id, step)
                for group in set(eni.security_group_ids):
                    _add(groups, (group, eni.vpc_id), step)

        for arn in removed:
            live.pop(arn, None)
            count(by_arn.pop(arn, None), -1)
            roles.pop(arn, None)
        for row in changed:
            arn = row["arn"]
            live[arn] = None
            count(by_arn.pop(arn, None), -1)
            eni = enis.get(arn)
            if eni is not None:
                by_arn[arn] = eni
                count(eni, 1)
            role = row["spec"].get("taskRoleArn")
            if role and taskdoc.agent_desired_status(row["body"]) == "RUNNING":
                roles[arn] = role
            else:
                roles.pop(arn, None)
        return TaskInputs(generation, live, by_arn, roles, vpcs, groups)

    @property
    def vpc_ids(self) -> tuple[str, ...]:
        """The VPCs the ENIs are in."""
        return tuple(self.vpc_counts)

    @property
    def carried_groups(self) -> Mapping[str, str]:
        """Every group an ENI carries -> its VPC."""
        return {group: vpc for group, vpc in self.group_counts}


def _add(counts: dict[Any, int], key: Any, step: int) -> None:
    left = counts.get(key, 0) + step
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


class _Copies:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_instance: OrderedDict[str, TaskInputs] = OrderedDict()

    def get(self, instance_id: str) -> TaskInputs | None:
        with self._lock:
            found = self._by_instance.get(instance_id)
            if found is not None:
                self._by_instance.move_to_end(instance_id)
            return found

    def put(self, instance_id: str, inputs: TaskInputs) -> None:
        with self._lock:
            held = self._by_instance.get(instance_id)
            if held is None or held.generation <= inputs.generation:
                self._by_instance[instance_id] = inputs
                self._by_instance.move_to_end(instance_id)
            while len(self._by_instance) > MAX_INSTANCES:
                self._by_instance.popitem(last=False)

    def drop(self, instance_id: str) -> None:
        with self._lock:
            self._by_instance.pop(instance_id, None)


_COPIES: weakref.WeakKeyDictionary[Database, _Copies] = weakref.WeakKeyDictionary()
_COPIES_LOCK = threading.Lock()


def copies(db: Database) -> _Copies:
    """The kept copies of one store."""
    with _COPIES_LOCK:
        found = _COPIES.get(db)
        if found is None:
            found = _COPIES[db] = _Copies()
        return found
