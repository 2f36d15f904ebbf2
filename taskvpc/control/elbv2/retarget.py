"""A target change reaches the one agent running the load balancer, answered with that load balancer alone.

RegisterTargets and DeregisterTargets are what users wait on ("deregistration → no new requests",
docs/elbv2.md), and they change one thing: the targets of the load balancers forwarding to one group.
So, rather than the region-wide wake-up of the other ELBv2 writes (``agent_section.changed``):

1. **Only the owners wake** (:func:`wake_owners`, in the write's own transaction): the generation of each
   instance recorded as running one of those load balancers is bumped, and only its poll is woken. A
   load balancer with no live recorded owner (just created, its agent gone) falls back to the region's
   bump, where placement happens; a group no listener forwards to wakes nobody (no agent's answer
   carries it).
2. **The answer is that change** (:func:`answer`): after the commit each bumped generation is journaled
   (:class:`Journal`) with the load balancers it changed. A poll holding generation ``since`` whose every
   later generation is journaled, with no task changed since, and whose section digests are the ones of
   the last answer this process gave that instance (:func:`remember`), is answered with the changed load
   balancers' entries alone (``updates``, ``agentapi/delta.py``) and the digests after the merge. Since
   only targets changed in those generations, each entry is the one held with its groups' targets read
   again (one query), nothing else read or built. Anything else (a generation another write or another server process
   made, a cache this process does not hold, an agent that does not merge keyed entries) gets the usual
   answer, so the journal and the cache are only ever a shortcut, never a source of truth.

What the shortcut leaves to the next usual answer: changes that bump nothing (the control plane's own
health view of the other load balancers' targets, a drain ending by the clock), exactly as a delta of
the usual kind would leave them to the next poll that builds the section.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from taskvpc.agentapi import delta
from taskvpc.agentapi.loadbalancers import LOAD_BALANCERS
from taskvpc.control.context import RequestContext
from taskvpc.control.elbv2 import agent_section, target_groups
from taskvpc.store import elbv2_repo, tasks_repo

Doc = dict[str, Any]
KEY = LOAD_BALANCERS.key

# (instance id, the generation a target change made, the load balancers whose entries it changed)
Woken = tuple[str, int, frozenset[str]]


class Journal:
    """Per instance, the generations made by target changes (and the load balancers each changed); only
    the most recent ones: a poll further behind gets the usual answer."""

    def __init__(self, depth: int = 32) -> None:
        self._depth = depth
        self._made: dict[str, deque[tuple[int, frozenset[str]]]] = {}
        self._lock = threading.Lock()

    def record(self, woken: Iterable[Woken]) -> None:
        """After the commit (a generation journaled but never committed could name another change)."""
        with self._lock:
            for instance_id, generation, lbs in woken:
                self._made.setdefault(instance_id, deque(maxlen=self._depth)).append((generation, lbs))

    def made(self, instance_id: str, generation: int) -> bool:
        with self._lock:
            return any(g == generation for g, _ in self._made.get(instance_id, ()))

    def covering(self, instance_id: str, since: int, current: int) -> frozenset[str] | None:
        """The load balancers changed by generations ``since`` + 1 … ``current``, when every one of them is
        a journaled target change; else None."""
        with self._lock:
            made = dict(self._made.get(instance_id, ()))
        changed: set[str] = set()
        for generation in range(since + 1, current + 1):
            if generation not in made:
                return None
            changed |= made[generation]
        return frozenset(changed)


@dataclass(frozen=True, slots=True)
class _Held:
    """The last answer this process gave an instance, as far as the shortcut needs it."""

    generation: int
    digests: Mapping[str, str]
    lbs: tuple[Doc, ...]  # the loadBalancers section's entries, as sent (wire)
    task_count: int


JOURNAL = Journal()
_held: dict[str, _Held] = {}
_held_lock = threading.Lock()


def wake_owners(conn: Connection, ctx: RequestContext, tg_arns: Iterable[str]) -> list[Woken] | None:
    """In a target change's transaction: bump and wake the agents running the load balancers that forward
    to ``tg_arns``; what to :meth:`Journal.record` after the commit. None when some such load balancer has
    no live recorded owner: the region's instances were bumped instead (``agent_section.changed``)."""
    wanted = set(tg_arns)
    lb_arns = sorted({lb for tg, lbs in target_groups.usage(conn, ctx).items() if tg in wanted for lb in lbs})
    if not lb_arns:
        return []
    live = {i["id"] for i in elbv2_repo.live_instances(conn, ctx.region)}
    by_owner: dict[str, set[str]] = {}
    for lb in elbv2_repo.list_docs(conn, "load_balancer", ctx.region, arn=lb_arns):
        owner = lb.get(agent_section.OWNER)
        if owner not in live:
            agent_section.changed(conn, ctx)
            return None
        by_owner.setdefault(str(owner), set()).add(lb["LoadBalancerArn"])
    woken = []
    for instance_id, lbs in sorted(by_owner.items()):
        tasks_repo.bump_generation(conn, instance_id)
        found = tasks_repo.generation_of(conn, instance_id)
        assert found is not None
        woken.append((instance_id, found[0], frozenset(lbs)))
        ctx.notify.add(instance_id)
    return woken


def remember(instance_id: str, doc: Mapping[str, Any]) -> None:
    """After any answer of the usual kind: what the agent now holds, for :func:`answer`."""
    digests = delta.digests_of(doc)
    generation = doc.get("generation")
    with _held_lock:
        before = _held.pop(instance_id, None)
        if not isinstance(generation, int) or KEY not in digests:
            return
        if isinstance(doc.get(KEY), list):
            lbs = tuple(doc[KEY])
        elif before is not None and before.digests.get(KEY) == digests[KEY]:
            lbs = before.lbs  # a delta without the section: the agent keeps what it had
        else:
            return
        count = doc.get(delta.TASK_COUNT) if doc.get(delta.DELTA) else len(doc.get("tasks") or [])
        if isinstance(count, int):
            _held[instance_id] = _Held(generation, digests, lbs, count)


def answer(
    ctx: RequestContext,
    instance_id: str,
    after: int,
    since: int | None,
    have: Mapping[str, str] | None,
    keyed: frozenset[str],
) -> dict[str, Any] | None:
    """The poll answered with the changed load balancers alone, or None: answer it the usual way."""
    if since is None or KEY not in keyed or not JOURNAL.made(instance_id, since + 1):
        return None  # (no read for a poll that a target change did not wake)
    with _held_lock:
        held = _held.get(instance_id)
    if held is None or held.generation != since or dict(held.digests) != dict(have or {}):
        return None
    with ctx.db.read() as conn:
        found = tasks_repo.generation_of(conn, instance_id)
        if found is None or found[2] != ctx.region or found[0] <= since:
            return None
        current = found[0]
        changed = JOURNAL.covering(instance_id, since, current)
        if changed is None:
            return None
        tasks, removed = tasks_repo.tasks_changed_since(conn, instance_id, since)
        if tasks or removed:
            return None
        owners = {
            lb["LoadBalancerArn"]: lb.get(agent_section.OWNER)
            for lb in elbv2_repo.list_docs(conn, "load_balancer", ctx.region, arn=sorted(changed))
        }
        before = {e.get("loadBalancerArn"): e for e in held.lbs if e.get("loadBalancerArn") in changed}
        if set(before) != changed or any(owners.get(arn) != instance_id for arn in changed):
            return None  # deleted or placed elsewhere: those bump the region, so this is a race
        # Only targets changed in these generations (anything else bumps the region): the entries held,
        # with their groups' targets read again.
        groups = [str(g["targetGroupArn"]) for e in before.values() for g in e.get("targetGroups") or []]
        targets = agent_section.targets_by_group(conn, ctx, sorted(set(groups)))
    entries = {
        arn: {
            **entry,
            "targetGroups": [
                {**g, "targets": [t.to_wire() for t in targets.get(str(g["targetGroupArn"]), ())]}
                for g in entry.get("targetGroups") or []
            ],
        }
        for arn, entry in before.items()
    }
    lbs = tuple(entries.get(e["loadBalancerArn"], e) for e in held.lbs)
    digests = {**held.digests, KEY: delta.digest(list(lbs))}
    with _held_lock:
        _held[instance_id] = _Held(current, digests, lbs, held.task_count)
    return delta.write_updates(
        current, current > after, {KEY: list(entries.values())}, task_count=held.task_count, digests=digests
    )
