"""Properties of placement over generated clusters and requests (hypothesis)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import assume, given, settings, strategies as st

from taskvpc.domain.errors import ClientError
from taskvpc.scheduler import (
    InstanceSnapshot,
    PlacementConstraint,
    PlacementStrategy,
    RequiredAttribute,
    TaskRequest,
    place,
)
from taskvpc.scheduler.placement import (
    REASON_DISTINCT,
    REASON_MEMBER_OF,
    CompiledRequest,
    compile_request,
    first_failure,
)
from taskvpc.scheduler.query import parse

AZS = ["us-east-1a", "us-east-1b", "us-east-1c"]
TYPES = ["t2.small", "c5.large", "m5.xlarge"]
GROUP = "family:web"
EXPRESSIONS = [
    "attribute:ecs.instance-type == c5.large",
    "attribute:ecs.instance-type in [t2.small, m5.xlarge]",
    "attribute:ecs.instance-type =~ t2.*",
    "not(attribute:ecs.availability-zone == us-east-1a)",
    "attribute:stack exists and attribute:ecs.availability-zone != us-east-1c",
    "attribute:stack == prod or attribute:ecs.instance-type == m5.xlarge",
]
REASONS = {
    "AGENT",
    "ATTRIBUTE",
    "LOCATION",
    "RESOURCE:CPU",
    "RESOURCE:MEMORY",
    "RESOURCE:ENI",
    REASON_MEMBER_OF,
    REASON_DISTINCT,
}


@st.composite
def instances(draw: st.DrawFn) -> list[InstanceSnapshot]:
    n = draw(st.integers(min_value=1, max_value=6))
    out = []
    for k in range(n):
        attributes: dict[str, str | None] = {"ecs.instance-type": draw(st.sampled_from(TYPES))}
        if draw(st.booleans()):
            attributes["ecs.capability.task-eni"] = None
        if draw(st.booleans()):
            attributes["stack"] = draw(st.sampled_from(["prod", "dev"]))
        out.append(
            InstanceSnapshot(
                arn=f"arn:aws:ecs:us-east-1:123456789012:container-instance/c/{k:02d}",
                instance_id=f"i-{k:02d}",
                availability_zone=draw(st.sampled_from(AZS)),
                remaining={
                    "CPU": draw(st.integers(min_value=0, max_value=4096)),
                    "MEMORY": draw(st.integers(min_value=0, max_value=8192)),
                },
                task_eni_free=draw(st.integers(min_value=0, max_value=4)),
                status=draw(st.sampled_from(["ACTIVE", "ACTIVE", "ACTIVE", "DRAINING"])),
                agent_connected=draw(st.booleans()) or draw(st.booleans()),
                attributes=attributes,
                task_groups={GROUP: draw(st.integers(min_value=0, max_value=2))},
            )
        )
    return out


@st.composite
def requests(draw: st.DrawFn) -> TaskRequest:
    constraints: list[PlacementConstraint] = [
        PlacementConstraint("memberOf", e) for e in draw(st.lists(st.sampled_from(EXPRESSIONS), max_size=2))
    ]
    if draw(st.booleans()):
        constraints.append(PlacementConstraint("distinctInstance"))
    strategy_pool = [
        PlacementStrategy("random"),
        PlacementStrategy("spread", "attribute:ecs.availability-zone"),
        PlacementStrategy("spread", "instanceId"),
        PlacementStrategy("binpack", "cpu"),
        PlacementStrategy("binpack", "memory"),
    ]
    return TaskRequest(
        cpu=draw(st.integers(min_value=0, max_value=2048)),
        memory=draw(st.integers(min_value=0, max_value=4096)),
        needs_eni=draw(st.booleans()),
        required_attributes=(RequiredAttribute("ecs.capability.task-eni"),) if draw(st.booleans()) else (),
        placement_constraints=tuple(constraints),
        placement_strategy=tuple(draw(st.lists(st.sampled_from(strategy_pool), max_size=3))),
        allowed_azs=draw(st.none() | st.sets(st.sampled_from(AZS), min_size=1).map(frozenset)),
        group=GROUP,
        count=draw(st.integers(min_value=1, max_value=10)),
    )


def _replay(compiled: CompiledRequest, cluster: list[InstanceSnapshot], assignments: tuple[str, ...]) -> None:
    """Charge ``cluster`` (copies) with ``assignments`` one by one, checking each step was allowed."""
    by_arn = {i.arn: i for i in cluster}
    request = compiled.request
    for arn in assignments:
        chosen = by_arn[arn]
        assert chosen.status == "ACTIVE"
        assert first_failure(compiled, chosen) is None  # every constraint held when it was chosen
        chosen.remaining["CPU"] -= request.cpu
        chosen.remaining["MEMORY"] -= request.memory
        chosen.task_eni_free -= 1 if request.needs_eni else 0
        chosen.task_groups[GROUP] = chosen.task_groups.get(GROUP, 0) + 1


@settings(max_examples=300, deadline=None)
@given(instances(), requests(), st.integers(min_value=0, max_value=2**32))
def test_placement_properties(cluster: list[InstanceSnapshot], request: TaskRequest, seed: int) -> None:
    before = [i.copy() for i in cluster]
    if all(i.status != "ACTIVE" for i in cluster):
        with pytest.raises(ClientError):
            place(request, cluster, random.Random(seed))
        return
    result = place(request, cluster, random.Random(seed))
    assert cluster == before  # the caller's snapshot is untouched

    # Never over-allocates: per instance, what was placed fits in what was free.
    placed_on = Counter(result.assignments)
    for original in before:
        n = placed_on[original.arn]
        if n:
            assert original.status == "ACTIVE" and original.agent_connected
            assert n * request.cpu <= original.remaining["CPU"]
            assert n * request.memory <= original.remaining["MEMORY"]
            assert not request.needs_eni or n <= original.task_eni_free
            assert request.allowed_azs is None or original.availability_zone in request.allowed_azs
            for expression in request.placement_constraints:
                if expression.type == "memberOf" and expression.expression is not None:
                    assert parse(expression.expression).evaluate(original)
            if any(c.type == "distinctInstance" for c in request.placement_constraints):
                assert n == 1 and original.task_groups.get(GROUP, 0) == 0

    # Replaying the assignments step by step, every choice was legal at the time it was made.
    compiled = compile_request(request)
    replayed = [i.copy() for i in before]
    _replay(compiled, replayed, result.assignments)

    # Accounting: everything placed, or placement stopped with one failure per ACTIVE instance,
    # each naming the reason that instance fails on in the final state.
    active = {i.arn for i in before if i.status == "ACTIVE"}
    if len(result.assignments) == request.count:
        assert result.failures == ()
    else:
        assert len(result.assignments) < request.count
        assert [f.arn for f in result.failures] == sorted(active)
        final = {i.arn: i for i in replayed}
        for failure in result.failures:
            assert failure.reason in REASONS
            assert (failure.detail is not None) == (failure.reason == "ATTRIBUTE")
            assert first_failure(compiled, final[failure.arn]) == failure.reason


@settings(max_examples=100, deadline=None)
@given(instances(), requests(), st.integers(min_value=0, max_value=2**32))
def test_placement_is_a_function_of_its_inputs(
    cluster: list[InstanceSnapshot], request: TaskRequest, seed: int
) -> None:
    assume(any(i.status == "ACTIVE" for i in cluster))
    first = place(request, cluster, random.Random(seed))
    again = place(request, list(reversed(cluster)), random.Random(seed))
    assert first == again
