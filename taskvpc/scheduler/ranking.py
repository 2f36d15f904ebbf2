"""Which candidate takes the next task: the placement strategies' order over the candidates, kept up to
date as tasks are placed, so a task costs about the number of tied spread values, not of candidates.

The rule (what ``place`` promises): each candidate has a key, one value per strategy up to the first
``random`` one (spread: how many tasks of the group the pool holds with the candidate's value of the
field; binpack: the candidate's remaining CPU or memory). The candidates with the least key are *tied*,
and one draw of the generator picks among them, uniformly: the ``k``-th with ``k = int(draw *
len(tied))``, the tied being ordered by *cell* (below; cells are numbered in the order of their first
candidate) and then by candidate order. A ``random`` strategy is that same uniform pick among the
candidates tied on the strategies before it (strategies after it never decide anything); no strategy at
all is a pick among every candidate.

How it stays cheap (10,000 tasks over 1,000 instances: ``bench/hosts.py placement``): a key's parts are of
two kinds. A spread over an attribute (e.g. the AZ) is *shared*: every candidate with the same value has
the same count, and placing a task moves it for all of them at once. A spread over ``instanceId``/``host``
and a binpack are the candidate's *own*: they move only when the candidate itself takes a task. The
candidates are kept in *cells*, one per combination of shared values; inside a cell, in buckets of equal
own parts (candidate indices, sorted), with a heap over the buckets' own parts. A cell's least key (its
shared counts interleaved with its least bucket's own parts) and that bucket's size are kept, and the
cells are grouped by least key, with a heap over the groups: the tied candidates are the least buckets
of the least group's cells. A task changes the keys of its own cell and of the cells sharing one of its
values only (with one attribute spread: its cell alone), and the pick walks the tied cells.
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


@dataclass
class _Group:
    """The cells whose least key is the same: their ids (in cell order) and how many candidates their
    least buckets hold."""

    cells: list[int] = field(default_factory=list)
    total: int = 0


class Ranking:
    """The candidates (in candidate order; indices never move) that can still take a task, ranked.

    ``counts`` holds, per spread field, the group's tasks per value over the whole pool (instances that
    are not candidates count too); the ranking updates them itself in :meth:`charged`. Cells are
    numbered in the order of their first candidate; each cell's least key and least bucket's size are
    kept, and the cells are grouped by that key (a heap over the keys), so the tied cells are one group.
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
        self.own_of = [self._own(n) for n in range(len(candidates))]
        ids: dict[tuple[Value, ...], int] = {}
        self.cell_of: list[int] = []  # candidate -> its cell's id
        self.values: list[tuple[Value, ...]] = []  # cell id -> its shared values
        self.cells: list[_Cell] = []
        for n in range(len(candidates)):
            values = tuple(self.columns[f][n] for f in shared_fields)
            if values not in ids:
                ids[values] = len(self.values)
                self.values.append(values)
                self.cells.append(_Cell())
            self.cell_of.append(ids[values])
            self.cells[ids[values]].add(self.own_of[n], n)
        # shared slot -> value -> the cells with it: a count moving moves these cells' keys
        self.sharing: list[dict[Value, list[int]]] = [{} for _ in shared_fields]
        for c, values in enumerate(self.values):
            for slot, value in enumerate(values):
                self.sharing[slot].setdefault(value, []).append(c)
        self.cell_key: list[Key | None] = [None] * len(self.cells)  # None: the cell is empty
        self.cell_size: list[int] = [0] * len(self.cells)  # how many candidates its least bucket holds
        self.groups: dict[Key, _Group] = {}
        self.group_heap: list[Key] = []
        for c in range(len(self.cells)):
            self._refresh(c)

    def _own(self, n: int) -> Key:
        out = []
        for p in self.own_parts:
            if p.spread:
                out.append(self.counts[p.field][self.columns[p.field][n]])
            else:
                out.append(self.candidates[n].remaining.get(p.field, 0))  # binpack: least remaining first
        return tuple(out)

    def _refresh(self, c: int) -> None:
        """Cell ``c``'s least key and its bucket's size again, and its place among the groups."""
        cell = self.cells[c]
        key: Key | None = None
        size = 0
        if cell.buckets:
            own = cell.least()
            values, counts = self.values[c], self.counts
            key = tuple(counts[p.field][values[p.slot]] if p.shared else own[p.slot] for p in self.parts)
            size = len(cell.buckets[own])
        old_key, old_size = self.cell_key[c], self.cell_size[c]
        self.cell_key[c], self.cell_size[c] = key, size
        if old_key is not None:
            group = self.groups[old_key]
            group.total -= old_size
            if key != old_key:
                del group.cells[bisect.bisect_left(group.cells, c)]
                if not group.cells:
                    del self.groups[old_key]
        if key is not None:
            joined = self.groups.get(key)
            if joined is None:
                joined = self.groups[key] = _Group()
                heapq.heappush(self.group_heap, key)
            if key != old_key:
                bisect.insort(joined.cells, c)
            joined.total += size

    def choose(self, rng: Rng) -> int:
        """The index of the candidate the next task goes to (one draw of ``rng``): the ``k``-th of the
        tied, in cell order and then candidate order."""
        heap = self.group_heap
        while heap[0] not in self.groups:
            heapq.heappop(heap)
        group = self.groups[heap[0]]
        k = pick(group.total, rng)
        sizes = self.cell_size
        for c in group.cells:
            if k < sizes[c]:
                cell = self.cells[c]
                return cell.buckets[cell.least()][k]
            k -= sizes[c]
        raise AssertionError("a group's total is the sum of its cells' sizes")

    def charged(self, n: int) -> None:
        """Candidate ``n`` took a task (its snapshot is charged already): one more of the group for each
        of its spread values, and its own parts moved."""
        for name, counts in self.counts.items():
            value = self.columns[name][n]
            counts[value] = counts.get(value, 0) + 1
        c = self.cell_of[n]
        own = self._own(n)
        if own != self.own_of[n]:
            cell = self.cells[c]
            cell.discard(self.own_of[n], n)
            cell.add(own, n)
            self.own_of[n] = own
        moved = {c}
        for slot, value in enumerate(self.values[c]):
            moved.update(self.sharing[slot][value])
        for other in sorted(moved):
            self._refresh(other)

    def remove(self, n: int) -> None:
        """Candidate ``n`` can take no more tasks of this call."""
        c = self.cell_of[n]
        self.cells[c].discard(self.own_of[n], n)
        self._refresh(c)
        self.alive -= 1
