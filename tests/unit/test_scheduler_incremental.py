"""``place`` keeps each instance's verdict and the spread counts between tasks instead of recomputing
them for every task (10,000 tasks over 1,000 instances: bench/hosts.py). It must choose exactly what
the straightforward algorithm chooses for the same random draws: checked here against that algorithm,
written out as the reference, over generated clusters and requests."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from hypothesis import given, settings, strategies as st

from taskvpc.domain.errors import ClientError
from taskvpc.scheduler import (
    InstanceSnapshot,
    Placement,
    PlacementConstraint,
    PlacementFailure,
    PlacementStrategy,
    TaskRequest,
    place,
)
from taskvpc.scheduler.placement import (
    BINPACK_FIELDS,
    _Ledger,
    _spread_counts,
    _spread_value,
    compile_request,
    failure_detail,
    first_failure,
)
from tests.unit.test_scheduler_properties import instances, requests


def reference(request: TaskRequest, cluster: list[InstanceSnapshot], rng: Any) -> Placement:
    """Every instance checked and every key computed again for each task."""
    compiled = compile_request(request)
    pool = sorted((i.copy() for i in cluster), key=lambda i: i.arn)
    active = [i for i in pool if i.status == "ACTIVE"]
    ledger = _Ledger(request.group)
    assignments: list[str] = []
    failures: list[PlacementFailure] = []
    for _ in range(request.count):
        candidates, reasons = [], []
        for instance in active:
            reason = first_failure(compiled, instance, ledger)
            if reason is None:
                candidates.append(instance)
            else:
                reasons.append(
                    PlacementFailure(instance.arn, reason, failure_detail(compiled, instance, reason))
                )
        if not candidates:
            failures = reasons
            break
        counts = {
            s.field or "": _spread_counts(s.field or "", pool, ledger)
            for s in compiled.strategies
            if s.type == "spread"
        }
        ranked = []
        for instance in candidates:
            key: list[float] = []
            for s in compiled.strategies:
                if s.type == "random":
                    key.append(rng.random())
                elif s.type == "spread":
                    key.append(counts[s.field or ""][_spread_value(s.field or "", instance)])
                else:
                    key.append(instance.remaining.get(BINPACK_FIELDS[(s.field or "").lower()], 0))
            key.append(rng.random())
            ranked.append((tuple(key), instance))
        chosen = min(ranked, key=lambda pair: pair[0])[1]
        ledger.charge(chosen, request)
        assignments.append(chosen.arn)
    return Placement(tuple(assignments), tuple(failures))


@settings(max_examples=300, deadline=None)
@given(instances(), requests(), st.integers(min_value=0, max_value=2**32), st.booleans())
def test_the_same_choices_as_recomputing_everything(
    cluster: list[InstanceSnapshot], request: TaskRequest, seed: int, no_group: bool
) -> None:
    if no_group:
        request = replace(request, group=None)
    if not any(i.status == "ACTIVE" for i in cluster):
        try:
            place(request, cluster, random.Random(seed))
        except ClientError:
            return
        raise AssertionError("no active instance must be refused")
    try:
        expected = reference(request, cluster, random.Random(seed))
    except ClientError:  # an invalid request is refused by both
        try:
            place(request, cluster, random.Random(seed))
        except ClientError:
            return
        raise AssertionError("refused by the reference only") from None
    assert place(request, cluster, random.Random(seed)) == expected


@st.composite
def roomy(draw: st.DrawFn) -> tuple[list[InstanceSnapshot], TaskRequest]:
    """Clusters with room for many tasks, so that the choices (not the refusals) are compared."""
    cluster = [
        InstanceSnapshot(
            arn=f"arn:aws:ecs:us-east-1:123456789012:container-instance/c/{k:02d}",
            instance_id=f"i-{k:02d}",
            availability_zone=draw(st.sampled_from(["us-east-1a", "us-east-1b", "us-east-1c"])),
            remaining={"CPU": draw(st.integers(1024, 8192)), "MEMORY": draw(st.integers(1024, 8192))},
            task_eni_free=draw(st.integers(0, 12)),
            task_groups={"g": draw(st.integers(0, 3))},
        )
        for k in range(draw(st.integers(1, 8)))
    ]
    pool = [
        PlacementStrategy("spread", "attribute:ecs.availability-zone"),
        PlacementStrategy("spread", "instanceId"),
        PlacementStrategy("binpack", "cpu"),
        PlacementStrategy("binpack", "memory"),
        PlacementStrategy("random"),
    ]
    request = TaskRequest(
        cpu=draw(st.integers(0, 512)),
        memory=draw(st.integers(0, 512)),
        needs_eni=draw(st.booleans()),
        placement_strategy=tuple(draw(st.lists(st.sampled_from(pool), max_size=3))),
        placement_constraints=(PlacementConstraint("distinctInstance"),) if draw(st.booleans()) else (),
        group=draw(st.sampled_from(["g", None])),
        count=draw(st.integers(2, 40)),
    )
    return cluster, request


@settings(max_examples=300, deadline=None)
@given(roomy(), st.integers(min_value=0, max_value=2**32))
def test_the_same_choices_over_many_tasks(
    case: tuple[list[InstanceSnapshot], TaskRequest], seed: int
) -> None:
    cluster, request = case
    assert place(request, cluster, random.Random(seed)) == reference(request, cluster, random.Random(seed))
