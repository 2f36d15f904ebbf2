"""Desired-state deltas: a poll that says what it holds is answered with what changed since then.

An agent that sends ``since=<generation>`` (the generation of the state it holds) and ``have=<digests>``
(the digest of each whole section it holds, as the last answer gave them) gets a *delta* answer
(``"delta": true``):

* ``tasks``: only the tasks whose entry changed after ``since`` (whole entries; the agent replaces its
  entry by ARN), and ``removedTasks``: the ARNs of tasks that left the list after ``since``;
* ``taskCount``: how many tasks the full list has; an agent whose merged list has another count asks for
  the full state (``since`` left out) instead of acting on it;
* every other section (``instance``, ``vpcs``, ``securityGroups``, ``credentials``, ``flowLogs``,
  ``loadBalancers``, and any section registered later) is sent whole, and only when its digest differs
  from the one the agent sent in ``have``; a section left out of a delta is unchanged;
* ``digests``: every whole section's digest, in full answers too; the agent keeps them for its next poll;
* ``updates`` (only to an agent that sent ``keyed=<section keys>``): ``{section key: [entries]}``, the
  changed entries of a whole section that registered a keyed merge (:func:`register_keyed_merge`; the
  load balancers do, ``agentapi/loadbalancers.py``), merged into the copy by key instead of sent whole.

A full answer (no ``since``, or a ``since`` the control plane cannot answer from: ahead of its generation)
has no ``delta`` member and replaces the agent's view. Agents that never send ``since`` get full answers,
as before.

Why only ``tasks`` is keyed: its size grows with the work on the host (a few KiB per task); the other
sections grow with the groups, VPCs and load balancers the host's tasks use, change rarely, and are cheap
to compute and compare whole. A new section needs nothing to work with deltas: sent whole when changed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from taskvpc.agentapi import read
from taskvpc.agentapi.answer import SECTIONS, TASKS, DesiredState
from taskvpc.agentapi.tasks import DesiredTask

DELTA = "delta"
REMOVED_TASKS = "removedTasks"
TASK_COUNT = "taskCount"
DIGESTS = "digests"
UPDATES = "updates"
MEMBERS = frozenset({DELTA, REMOVED_TASKS, TASK_COUNT, DIGESTS, UPDATES})

# Whole sections whose changed entries a delta may carry alone, under ``updates`` (``{section key: [entries]}``),
# to an agent that merges them (``keyed=<section keys>`` in its poll): each registers how to merge its entries
# into the copy held (None: they do not fit it; the agent then asks for the full state).
KEYED_MERGES: dict[str, Callable[[Any, Any], Any | None]] = {}


def register_keyed_merge(key: str, merge_entries: Callable[[Any, Any], Any | None]) -> None:
    KEYED_MERGES[key] = merge_entries


_HAVE_ENTRY = re.compile(r"([A-Za-z][A-Za-z0-9]{0,63}):([0-9a-f]{1,32})")
MAX_HAVE = 64


def digest(wire_value: Any) -> str:
    """A short digest of a section's wire value (equal values, equal digests)."""
    text = json.dumps(wire_value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def encode_have(digests: Mapping[str, str]) -> str:
    """The ``have`` query value: ``key:digest`` pairs, comma-separated."""
    return ",".join(f"{k}:{v}" for k, v in sorted(digests.items()) if _HAVE_ENTRY.fullmatch(f"{k}:{v}"))


def decode_have(text: str) -> dict[str, str]:
    """``have`` read leniently: a malformed pair is ignored (its section is then sent whole)."""
    out: dict[str, str] = {}
    for item in text.split(",")[:MAX_HAVE]:
        match = _HAVE_ENTRY.fullmatch(item.strip())
        if match is not None:
            out[match.group(1)] = match.group(2)
    return out


def write_answer(
    generation: int,
    changed: bool,
    whole: Mapping[str, Any],
    *,
    tasks: list[Any],
    since: int | None = None,
    removed: list[str] | None = None,
    task_count: int = 0,
    have: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The answer's wire document. ``whole``: the wire value of every section but ``tasks``; ``tasks``:
    every task entry (full answer, ``since`` None) or those changed after ``since`` (delta)."""
    digests = {key: digest(value) for key, value in whole.items()}
    doc: dict[str, Any] = {"generation": generation, "changed": changed}
    if since is None:
        doc.update(whole)
        doc[TASKS.key] = tasks
    else:
        have = have or {}
        doc[DELTA] = True
        doc.update({key: value for key, value in whole.items() if have.get(key) != digests[key]})
        doc[TASKS.key] = tasks
        doc[REMOVED_TASKS] = removed or []
        doc[TASK_COUNT] = task_count
    doc[DIGESTS] = digests
    return doc


def write_updates(
    generation: int,
    changed: bool,
    updates: Mapping[str, list[Any]],
    *,
    task_count: int,
    digests: Mapping[str, str],
) -> dict[str, Any]:
    """A delta carrying no task change and only the changed entries of keyed sections (``updates``);
    ``digests`` are every whole section's after the merge, as in any answer."""
    return {
        "generation": generation,
        "changed": changed,
        DELTA: True,
        TASKS.key: [],
        REMOVED_TASKS: [],
        TASK_COUNT: task_count,
        UPDATES: {key: list(entries) for key, entries in updates.items()},
        DIGESTS: dict(digests),
    }


def digests_of(doc: Mapping[str, Any]) -> dict[str, str]:
    """The ``digests`` of an answer, read leniently."""
    found = read.mapping(doc.get(DIGESTS))
    return {str(k): v for k, v in found.items() if isinstance(v, str)}


@dataclass(frozen=True, slots=True)
class Delta:
    """A delta answer as read by the agent."""

    generation: int
    changed: bool
    tasks: tuple[DesiredTask, ...]
    removed: tuple[str, ...]
    task_count: int
    sections: Mapping[str, Any] = field(default_factory=dict)  # the whole sections it carries
    digests: Mapping[str, str] = field(default_factory=dict)
    updates: Mapping[str, Any] = field(default_factory=dict)  # keyed sections' changed entries, as sent

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> Delta:
        """Raises on what cannot be read (as ``DesiredState.from_wire`` does): the agent then asks again."""
        generation = doc.get("generation")
        count = doc.get(TASK_COUNT)
        for name, value in (("generation", generation), (TASK_COUNT, count)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} is an integer")
        assert isinstance(generation, int) and isinstance(count, int)
        sections = {
            key: section.from_wire(doc[key])
            for key, section in SECTIONS.items()
            if key != TASKS.key and key in doc
        }
        removed = tuple(str(arn) for arn in read.as_list(doc.get(REMOVED_TASKS)) if isinstance(arn, str))
        return cls(
            generation,
            read.flag(doc.get("changed"), True),
            TASKS.from_wire(doc.get(TASKS.key)),
            removed,
            count,
            sections,
            digests_of(doc),
            read.mapping(doc.get(UPDATES)),
        )

    @property
    def changed_arns(self) -> frozenset[str]:
        return frozenset(t.arn for t in self.tasks)


def merge(
    view: DesiredState, delta: Delta, by_arn: dict[str, DesiredTask] | None = None
) -> DesiredState | None:
    """``view`` with ``delta`` applied; None when the result cannot be the control plane's state (its task
    count differs: the agent then asks for the full state). Unchanged task entries stay the same objects,
    so the engine can tell an untouched task by identity. ``by_arn``: ``view``'s tasks by ARN, kept by the
    caller and updated here (a pass over every task per delta, otherwise; not to be used after a None)."""
    tasks = {t.arn: t for t in view.tasks} if by_arn is None else by_arn
    for arn in delta.removed:
        tasks.pop(arn, None)
    for task in delta.tasks:
        tasks[task.arn] = task
    if len(tasks) != delta.task_count:
        return None
    sections = dict(view.sections)
    sections.update(delta.sections)
    for key, entries in delta.updates.items():
        merge_entries = KEYED_MERGES.get(key)
        held = view.sections.get(key)
        merged = None if merge_entries is None or key in delta.sections else merge_entries(held, entries)
        if merged is None:
            return None
        sections[key] = merged
    sections[TASKS.key] = tuple(tasks.values())
    return DesiredState(delta.generation, delta.changed, sections)
