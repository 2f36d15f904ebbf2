"""Desired-state deltas (agentapi/delta.py, agent/desiredview.py): what a delta carries, how the agent
merges it, and when it falls back to the full state (agent restart, a delta that does not add up)."""

from __future__ import annotations

from typing import Any

import pytest

from taskvpc.agent.desiredview import DesiredView
from taskvpc.agentapi import answer
from taskvpc.agentapi.answer import DesiredState, Instance, Section
from taskvpc.agentapi.delta import DELTA, decode_have, digest, encode_have, write_answer
from taskvpc.agentapi.tasks import DesiredContainer, DesiredStatus, DesiredTask

ARN = "arn:aws:ecs:us-east-1:123456789012:task/default/{:032x}"


def task(n: int, status: DesiredStatus = DesiredStatus.RUNNING) -> dict[str, Any]:
    return DesiredTask(ARN.format(n), status, (DesiredContainer("app"),)).to_wire()


def whole(status: str = "ACTIVE") -> dict[str, Any]:
    return {"instance": Instance(status, "arn:ci", "default").to_wire(), "vpcs": [], "securityGroups": []}


def full(generation: int, tasks: list[dict[str, Any]], status: str = "ACTIVE") -> dict[str, Any]:
    return write_answer(generation, True, whole(status), tasks=tasks)


def parse(doc: Any) -> DesiredState | None:
    try:
        return DesiredState.from_wire(doc)
    except Exception:
        return None


def test_a_delta_carries_the_changed_tasks_and_only_changed_sections() -> None:
    have = {k: digest(v) for k, v in whole().items()}
    doc = write_answer(
        7, True, whole("DRAINING"), tasks=[task(2)], since=5, removed=[ARN.format(3)], task_count=4, have=have
    )
    assert doc[DELTA] is True and doc["tasks"] == [task(2)] and doc["removedTasks"] == [ARN.format(3)]
    assert "instance" in doc and "vpcs" not in doc and "securityGroups" not in doc  # only what changed
    assert set(doc["digests"]) == {"instance", "vpcs", "securityGroups"}
    assert DELTA not in full(7, [task(1)]) and "vpcs" in full(7, [task(1)])


def test_have_survives_the_query_and_nonsense_is_ignored() -> None:
    digests = {"securityGroups": "0123456789abcdef", "vpcs": "fedcba9876543210"}
    assert decode_have(encode_have(digests)) == digests
    assert decode_have("vpcs:zz,:12,a b:12,instance:00ff") == {"instance": "00ff"}


def test_the_view_merges_deltas_and_falls_back_to_the_full_state() -> None:
    view = DesiredView(parse)
    assert view.poll_arguments(-1) == {}  # an agent (re)started: the full state
    first = full(5, [task(1), task(2), task(3)])
    state = view.take(first)
    assert state is not None and len(state.tasks) == 3
    args = view.poll_arguments(5)
    assert args["since"] == 5 and decode_have(args["have"]) == first["digests"]
    kept = state.tasks[0]

    stop = task(2, DesiredStatus.STOPPED)
    merged = view.take(
        write_answer(
            6,
            True,
            whole(),
            tasks=[stop],
            since=5,
            removed=[ARN.format(3)],
            task_count=2,
            have=first["digests"],
        )
    )
    assert merged is not None
    assert [t.arn for t in merged.tasks] == [ARN.format(1), ARN.format(2)]
    assert merged.tasks[1].desired_status is DesiredStatus.STOPPED
    assert merged.tasks[0] is kept  # untouched entries stay the same objects: the engine skips them
    assert merged.instance_status == "ACTIVE" and view.poll_arguments(6)["since"] == 6

    drained = view.take(
        write_answer(7, True, whole("DRAINING"), tasks=[], since=6, task_count=2, have=first["digests"])
    )
    assert drained is not None and drained.instance_status == "DRAINING"

    # A task the copy never heard of is gone from the count: the delta is not acted on, the next poll is full.
    assert view.take(write_answer(8, True, whole(), tasks=[], since=7, task_count=3)) is None
    assert view.state is None and view.poll_arguments(8) == {}
    assert view.take(full(8, [task(1)])) is not None and view.poll_arguments(8)["since"] == 8


def test_an_unreadable_delta_is_not_acted_on() -> None:
    view = DesiredView(parse)
    view.take(full(1, [task(1)]))
    assert view.take({"generation": 2, "delta": True, "taskCount": "two"}) is None
    assert view.state is None


def test_delta_members_cannot_be_section_keys() -> None:
    for key in ("delta", "removedTasks", "taskCount", "digests"):
        with pytest.raises(ValueError):
            answer.register_section(Section(key, lambda v: v, lambda v: v, lambda: None))
