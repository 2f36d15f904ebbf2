"""Reachability probes on the control plane: which probes each instance's agent should run, and the
latest result of each (source task, address, port).

Held in this process's memory, not the store: a probe is a question asked for an open console page, its
answer is worth seconds, and a restart may forget both. :func:`ask` records probes for the instances whose
tasks are the sources, bumps those instances' generations (their long polls answer at once with the
``probes`` section, ``taskvpc/agentapi/probes.py``) and names them in ``ctx.notify``; the agent reports
each result (``report`` in ``control/agent.py`` calls :func:`record`) and the probe leaves the section.
A probe no agent answered within :data:`GIVE_UP` seconds is dropped, so a dead agent does not keep it in
its answers forever.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from taskvpc.agentapi.probes import Probe, ProbeResult
from taskvpc.control.context import RequestContext
from taskvpc.store import tasks_repo

GIVE_UP = 30.0  # seconds a probe waits for its agent
KEEP = 2_000  # results kept (the newest); a page shows a few dozen


@dataclass(frozen=True, slots=True)
class Asked:
    instance_id: str
    probe: Probe
    at: float


@dataclass(frozen=True, slots=True)
class Answered:
    probe: Probe
    result: ProbeResult
    at: float  # when the control plane got it


PairKey = tuple[str, str, int]  # (source task ARN, address, port)


class ProbeBook:
    """Pending probes per instance and the newest result per pair; safe from the API's worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[str, Asked] = {}  # by probe id
        self._latest: dict[PairKey, Answered] = {}

    def add(self, instance_id: str, task_arn: str, address: str, port: int, now: float) -> Probe:
        with self._lock:
            probe = Probe(f"p{next(self._ids)}", task_arn, address, port)
            self._pending[probe.probe_id] = Asked(instance_id, probe, now)
            return probe

    def pending_for(self, instance_id: str, now: float) -> tuple[Probe, ...]:
        with self._lock:
            for key in [k for k, a in self._pending.items() if now - a.at > GIVE_UP]:
                del self._pending[key]
            return tuple(a.probe for a in self._pending.values() if a.instance_id == instance_id)

    def record(self, instance_id: str, results: Iterable[ProbeResult], now: float) -> int:
        """Keep the results of this instance's pending probes (others' ids, and unknown ones, are ignored)."""
        kept = 0
        with self._lock:
            for result in results:
                asked = self._pending.get(result.probe_id)
                if asked is None or asked.instance_id != instance_id:
                    continue
                del self._pending[result.probe_id]
                probe = asked.probe
                self._latest.pop((probe.task_arn, probe.address, probe.port), None)  # newest last
                self._latest[(probe.task_arn, probe.address, probe.port)] = Answered(probe, result, now)
                kept += 1
            while len(self._latest) > KEEP:
                del self._latest[next(iter(self._latest))]
        return kept

    def latest(self, task_arn: str, address: str, port: int) -> Answered | None:
        with self._lock:
            return self._latest.get((task_arn, address, port))

    def waiting(self, probe_ids: Iterable[str]) -> int:
        """How many of ``probe_ids`` are still unanswered."""
        with self._lock:
            return sum(1 for p in probe_ids if p in self._pending)


BOOK = ProbeBook()


def ask(ctx: RequestContext, wanted: Iterable[tuple[str, str, str, int]]) -> list[Probe]:
    """Probes (instance id, source task ARN, address, port) for the agents to run: recorded, and the
    instances' generations bumped so their polls answer now (the caller wakes ``ctx.notify``)."""
    wanted = list(wanted)
    probes = [BOOK.add(instance, task, address, port, ctx.now) for instance, task, address, port in wanted]
    instances = sorted({instance for instance, _, _, _ in wanted})
    if instances:
        with ctx.db.transaction() as conn:
            for instance_id in instances:
                tasks_repo.bump_generation(conn, instance_id)
        ctx.notify.update(instances)
    return probes
