"""The agent never dies of an answer it cannot read, and never acts on half of one."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from taskvpc.agent.main import _parse
from taskvpc.agentapi.read import integer as _int, seconds as _seconds

GOOD_TASK = {"taskArn": "arn:aws:ecs:us-east-1:000000000000:task/default/abc", "containers": []}


@pytest.mark.parametrize(
    "doc",
    [
        {"generation": 2, "tasks": [{"containers": []}]},  # a task without taskArn
        {"generation": 2, "vpcs": [{"subnets": []}]},  # a VPC without vpcId
        {"generation": 2, "instance": "x"},
        {"generation": "abc"},
        ["not", "an", "object"],
    ],
)
def test_unreadable_answers_are_ignored_whole(doc: Any) -> None:
    """Ignored whole: acting on the readable part would stop every task the unreadable part lists."""
    assert _parse(doc) is None


def test_a_readable_answer_parses() -> None:
    parsed = _parse(
        {"generation": 2, "vpcs": [{"vpcId": "vpc-1", "securityGroups": 5}], "tasks": [GOOD_TASK]}
    )
    assert (
        parsed is not None
        and parsed.generation == 2
        and [t.arn for t in parsed.tasks] == [GOOD_TASK["taskArn"]]
    )
    assert parsed.security_groups == {"vpc-1": {}}


def test_odd_security_groups_read_as_none() -> None:
    doc = {
        "generation": 2,
        "vpcs": [{"vpcId": "vpc-1"}],
        "securityGroups": [{"groupId": "sg-1", "vpcId": "vpc-1", "rules": 5}],
    }
    parsed = _parse(doc)
    assert parsed is not None and parsed.security_groups["vpc-1"]["sg-1"].ingress == ()


@pytest.mark.parametrize("text", ["--5", "²", "1_000x", "", " ", "0x10"])
def test_int_refuses_what_int_would_refuse(text: str) -> None:
    assert _int(text) is None


@pytest.mark.parametrize("value", ["nan", "inf", float("inf"), math.nan, -1, "-0.5", True, "soon"])
def test_durations_are_finite_and_not_negative(value: Any) -> None:
    assert _seconds(value) is None


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
        ),
        max_leaves=30,
    )
)
def test_any_json_never_raises(doc: Any) -> None:
    _parse(doc)
    _parse({"generation": 1, "tasks": [doc], "vpcs": [doc], "securityGroups": [doc], "instance": doc})


@pytest.mark.parametrize(
    "task",
    [
        {"taskArn": "arn:aws:ecs:us-east-1:000000000000:task/default/..", "containers": []},
        {"taskArn": "arn:aws:ecs:us-east-1:000000000000:task/default/", "containers": []},
        {**GOOD_TASK, "containers": [{"name": "../../etc"}]},
        {**GOOD_TASK, "containers": [{"name": "web\n"}]},
    ],
)
def test_ids_and_names_that_could_leave_the_state_dir_are_refused(task: dict[str, Any]) -> None:
    assert _parse({"generation": 2, "tasks": [task]}) is None


def test_volume_names_are_matched_whole() -> None:
    from taskvpc.agent.volumes import VOLUME_NAME_RE

    assert VOLUME_NAME_RE.fullmatch("data_1") and not VOLUME_NAME_RE.fullmatch("data\n")
