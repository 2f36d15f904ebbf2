"""Which candidate takes the next task: the placement strategies' order over the candidates, kept up to
date as tasks are placed, so a task costs about the number of distinct spread values, not of candidates.

The rule (what ``place`` promises): each candidate has a key, one value per strategy up to the first
``random`` one (spread: how many tasks of the group the pool holds with the candidate's value of the
field; binpack: the candidate's remaining CPU or memory). The candidates with the least key are *tied*,
and one draw of the generator picks among them, uniformly, in candidate order: the ``k``-th with
``k = int(draw * len(tied))``. A ``random`` strategy is that same uniform pick among the candidates tied
on the strategies before it (strategies after it never decide anything); no strategy at all is a pick
among every candidate.

How it stays cheap (10,000 tasks over 1,000 instances: ``bench/hosts.py placement``): a key's parts are of
two kinds. A spread over an attribute (e.g. the AZ) is *shared*: every candidate with the same value has
the same count, and placing a task moves it for all of them at once. A spread over ``instanceId``/``host``
and a binpack are the candidate's *own*: they move only when the candidate itself takes a task. The
candidates are kept in *cells*, one per combination of shared values; inside a cell, in buckets of equal
own parts (candidate indices, sorted), with a heap over the buckets' own parts. The least key of a cell
is its shared counts interleaved with its least bucket; a task reads each cell once, and the tied
candidates are the least buckets of the cells with the least key, whose ``k``-th is found by bisection
without merging them.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from taskvpc.scheduler.model import CPU, MEMORY, InstanceSnapshot, PlacementStrategy
from taskvpc.scheduler.query import ATTRIBUTE_PREFIX

SPREAD_INSTANCE_FIELDS = frozenset({"instanceid", "host"})
BINPACK_FIELDS = {"cpu": CPU, "memory": MEMORY}

Value = str | None  # an instance's value of a spread field (None: the attribute has no value)
Key = tuple[int, ...]


class Rng(Protocol):
    """What placement needs of ``random.Random``: the caller owns the randomness (and tests seed it)."""

    def random(self) -> float: ...


def deciding(strategies: Sequence[PlacementStrategy]) -> tuple[PlacementStrategy, ...]:
    """The strategies that can decide anything: those before the first ``random`` one."""
    out: list[PlacementStrategy] = []
    for s in strategies:
        if s.type == "random":
            break
        out.append(s)
    return tuple(out)


def spread_value(field_name: str, instance: InstanceSnapshot) -> Value:
    """The value a spread over ``field_name`` counts ``instance`` under (its ARN for instanceId/host)."""
    if field_name.lower() in SPREAD_INSTANCE_FIELDS:
        return instance.arn
    return instance.attribute(field_name[len(ATTRIBUTE_PREFIX) :])[1]


def pick(tied_count: int, rng: Rng) -> int:
    """The index among ``tied_count`` tied candidates one draw picks (``random()`` < 1, but a product
    rounded up must not pick past the end)."""
    return min(int(rng.random() * tied_count), tied_count - 1)


def kth(buckets: Sequence[list[int]], k: int) -> int:
    """The ``k``-th smallest (from 0) of the union of sorted, disjoint ``buckets``."""
    if len(buckets) == 1:
        return buckets[0][k]
    low, high = min(b[0] for b in buckets), max(b[-1] for b in buckets)
    while low < high:  # the least index with more than k members at or below it
        middle = (low + high) // 2
        if sum(bisect.bisect_right(b, middle) for b in buckets) > k:
            high = middle
        else:
            low = middle + 1
    return low


@dataclass
class _Cell:
    """The candidates with one combination of shared values, bucketed by their own key parts."""

    buckets: dict[Key, list[int]] = field(default_factory=dict)  # own parts -> sorted candidate indices
    heap: list[Key] = field(default_factory=list)  # own parts of buckets (stale entries popped lazily)

    def add(self, own: Key, n: int) -> None:
        bucket = self.buckets.get(own)
        if bucket is None:
            self.buckets[own] = [n]
            heapq.heappush(self.heap, own)
        else:
            bisect.insort(bucket, n)

    def discard(self, own: Key, n: int) -> None:
        bucket = self.buckets[own]
        del bucket[bisect.bisect_left(bucket, n)]
        if not bucket:
            del self.buckets[own]

    def least(self) -> Key:
        heap = self.heap
        while heap[0] not in self.buckets:
            heapq.heappop(heap)
        return heap[0]


@dataclass(frozen=True, slots=True)
class _Part:
    """One strategy's part of a key: where its value comes from."""

    field: str  # the spread field (counts' key) or the binpack resource
    shared: bool  # a spread over an attribute: read from the candidate's cell
    slot: int  # index into the cell's values (shared) or the own parts (not shared)
    spread: bool


class Ranking:
    """The candidates (in candidate order; indices never move) that can still take a task, ranked.

    ``counts`` holds, per spread field, the group's tasks per value over the whole pool (instances that
    are not candidates count too); the ranking updates them itself in :meth:`charged`.
    """

    def __init__(
        self,
        strategies: Sequence[PlacementStrategy],
        candidates: Sequence[InstanceSnapshot],
        counts: Mapping[str, dict[Value, int]],
    ) -> None:
        self.candidates = candidates
        self.counts = counts
        self.alive = len(candidates)
        self.columns = {f: [spread_value(f, i) for i in candidates] for f in counts}
        parts: list[_Part] = []
        shared_fields: list[str] = []
        own = 0
        for s in deciding(strategies):
            name = s.field or ""
            if s.type == "spread" and name.lower() not in SPREAD_INSTANCE_FIELDS:
                parts.append(_Part(name, True, len(shared_fields), True))
                shared_fields.append(name)
            elif s.type == "spread":
                parts.append(_Part(name, False, own, True))
                own += 1
            else:
                parts.append(_Part(BINPACK_FIELDS[name.lower()], False, own, False))
                own += 1
        self.parts = tuple(parts)
        self.own_parts = tuple(p for p in parts if not p.shared)
        self.cell_of = [tuple(self.columns[f][n] for f in shared_fields) for n in range(len(candidates))]
        self.own_of = [self._own(n) for n in range(len(candidates))]
        self.cells: dict[tuple[Value, ...], _Cell] = {}
        for n in range(len(candidates)):
            self.cells.setdefault(self.cell_of[n], _Cell()).add(self.own_of[n], n)

    def _own(self, n: int) -> Key:
        out = []
        for p in self.own_parts:
            if p.spread:
                out.append(self.counts[p.field][self.columns[p.field][n]])
            else:
                out.append(self.candidates[n].remaining.get(p.field, 0))  # binpack: least remaining first
        return tuple(out)

    def _key(self, values: tuple[Value, ...], own: Key) -> Key:
        counts = self.counts
        return tuple(counts[p.field][values[p.slot]] if p.shared else own[p.slot] for p in self.parts)

    def choose(self, rng: Rng) -> int:
        """The index of the candidate the next task goes to (one draw of ``rng``)."""
        best: Key | None = None
        tied: list[list[int]] = []
        for values, cell in self.cells.items():
            own = cell.least()
            key = self._key(values, own)
            if best is None or key < best:
                best, tied = key, [cell.buckets[own]]
            elif key == best:
                tied.append(cell.buckets[own])
        return kth(tied, pick(sum(len(b) for b in tied), rng))

    def charged(self, n: int) -> None:
        """Candidate ``n`` took a task (its snapshot is charged already): one more of the group for each
        of its spread values, and its own parts moved."""
        for name, counts in self.counts.items():
            value = self.columns[name][n]
            counts[value] = counts.get(value, 0) + 1
        own = self._own(n)
        if own != self.own_of[n]:
            cell = self.cells[self.cell_of[n]]
            cell.discard(self.own_of[n], n)
            cell.add(own, n)
            self.own_of[n] = own

    def remove(self, n: int) -> None:
        """Candidate ``n`` can take no more tasks of this call."""
        values = self.cell_of[n]
        cell = self.cells[values]
        cell.discard(self.own_of[n], n)
        if not cell.buckets:
            del self.cells[values]
        self.alive -= 1
