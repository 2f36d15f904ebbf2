"""The kept copy of an instance's task inputs (taskvpc.control.agent_inputs): brought up to date change by
change, it equals the copy read whole from the final rows, counts and all."""

from __future__ import annotations

from typing import Any

from hypothesis import given, strategies as st

from taskvpc.agentapi.network import Eni
from taskvpc.control.agent_inputs import TaskInputs

ARNS = [f"arn:aws:ecs:us-east-1:123456789012:task/default/t{i}" for i in range(8)]
VPCS = ["vpc-a", "vpc-b"]
GROUPS = ["sg-1", "sg-2", "sg-3"]


def _eni(arn: str, vpc: str, groups: tuple[str, ...]) -> Eni:
    n = ARNS.index(arn)
    return Eni(f"att-{n}", f"eni-{n}", "0e:00:00:00:00:01", f"10.0.0.{n + 4}", 24, "10.0.0.1", "subnet-1", vpc,
               security_group_ids=groups)  # fmt: skip


def _row(arn: str, role: str | None, desired: str) -> dict[str, Any]:
    return {"arn": arn, "spec": {"taskRoleArn": role}, "body": {"desiredStatus": desired}}


# One step: a task (re)written with or without an ENI (its VPC and groups), a role and a desired status;
# or a task gone.
steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("write"),
            st.sampled_from(ARNS),
            st.one_of(
                st.none(), st.tuples(st.sampled_from(VPCS), st.lists(st.sampled_from(GROUPS), max_size=3))
            ),
            st.sampled_from([None, "arn:aws:iam::123456789012:role/app"]),
            st.sampled_from(["RUNNING", "STOPPED"]),
        ),
        st.tuples(st.just("gone"), st.sampled_from(ARNS)),
    ),
    max_size=30,
)


@given(steps, st.integers(1, 4))
def test_a_copy_brought_up_to_date_equals_one_read_whole(script: list[tuple[Any, ...]], batch: int) -> None:
    rows: dict[str, dict[str, Any]] = {}
    enis: dict[str, Eni] = {}
    kept = TaskInputs.of(0, [], {})
    for start in range(0, len(script), batch):  # several changes per poll, as a delta brings them
        changed: dict[str, dict[str, Any]] = {}
        removed: list[str] = []
        for step in script[start : start + batch]:
            if step[0] == "gone":
                rows.pop(step[1], None)
                enis.pop(step[1], None)
                changed.pop(step[1], None)
                removed.append(step[1])
                continue
            _, arn, network, role, desired = step
            rows[arn] = changed[arn] = _row(arn, role, desired)
            if network is None:
                enis.pop(arn, None)
            else:
                vpc = network[0]  # a group belongs to one VPC, as in EC2
                enis[arn] = _eni(arn, vpc, tuple(f"{g}-{vpc}" for g in network[1]))
        kept = kept.updated(start + 1, list(changed.values()), enis, removed)
    whole = TaskInputs.of(len(script) + 1, list(rows.values()), enis)
    assert set(kept.live) == set(whole.live) == set(rows)
    assert dict(kept.enis) == dict(whole.enis) == enis
    assert dict(kept.roles) == dict(whole.roles)
    assert dict(kept.vpc_counts) == dict(whole.vpc_counts)
    assert dict(kept.group_counts) == dict(whole.group_counts)
    assert set(kept.vpc_ids) == {e.vpc_id for e in enis.values()}
    assert kept.carried_groups == {g: e.vpc_id for e in enis.values() for g in e.security_group_ids}
    assert dict(kept.roles) == {
        arn: r["spec"]["taskRoleArn"]
        for arn, r in rows.items()
        if r["spec"]["taskRoleArn"] and r["body"]["desiredStatus"] == "RUNNING"
    }


def test_a_copy_is_not_changed_by_the_next() -> None:
    first = TaskInputs.of(1, [_row(ARNS[0], None, "RUNNING")], {ARNS[0]: _eni(ARNS[0], "vpc-a", ("sg-1",))})
    second = first.updated(2, [], {}, [ARNS[0]])
    assert ARNS[0] in first.live and first.vpc_ids == ("vpc-a",) and first.carried_groups == {"sg-1": "vpc-a"}
    assert not second.live and second.vpc_ids == () and second.carried_groups == {}
