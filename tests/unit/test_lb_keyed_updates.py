"""Keyed updates of the ``loadBalancers`` section (a target change answered with its load balancer alone):
the agent's merge, and the control plane's journal of the generations target changes made."""

from __future__ import annotations

from hypothesis import given, strategies as st

from taskvpc.agentapi.answer import DesiredState
from taskvpc.agentapi.delta import UPDATES, Delta, digest, merge, write_updates
from taskvpc.agentapi.loadbalancers import (
    LOAD_BALANCERS,
    DesiredLoadBalancer,
    HealthCheck,
    LbTarget,
    LbTargetGroup,
    merge_updates,
)
from taskvpc.agentapi.network import Vpc
from taskvpc.control.elbv2 import retarget


def _lb(n: int, targets: tuple[str, ...] = ()) -> DesiredLoadBalancer:
    arn = f"arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/lb{n}/{n:016x}"
    group = LbTargetGroup(
        f"tg-{n}", "HTTP", 80, HealthCheck(), tuple(LbTarget(ip, 80, "healthy") for ip in targets)
    )
    return DesiredLoadBalancer(
        arn, f"lb{n}", "application", Vpc("vpc-1", ("10.0.0.0/16",)), (), (), (), (group,)
    )


def test_changed_entries_replace_theirs_and_keep_the_others_as_they_were() -> None:
    held = (_lb(1), _lb(2), _lb(3))
    merged = merge_updates(held, [_lb(2, ("10.0.0.9",)).to_wire()])
    assert merged is not None
    assert [lb.arn for lb in merged] == [lb.arn for lb in held]  # order kept
    assert merged[0] is held[0] and merged[2] is held[2]  # untouched entries: the same objects
    assert merged[1] == _lb(2, ("10.0.0.9",))


def test_entries_that_do_not_fit_the_copy_ask_for_the_full_state() -> None:
    held = (_lb(1),)
    assert merge_updates(held, [_lb(2).to_wire()]) is None  # a load balancer the copy does not hold
    assert merge_updates(held, [{"loadBalancerArn": "x"}]) is None  # unreadable
    assert merge_updates(None, [_lb(1).to_wire()]) is None
    assert merge_updates(held, []) == held


def _state(*lbs: DesiredLoadBalancer) -> DesiredState:
    return DesiredState.of(4, tasks=(), loadBalancers=lbs)


def test_a_delta_with_updates_merges_into_the_view_and_its_digest_matches() -> None:
    view = _state(_lb(1), _lb(2))
    after = (_lb(1), _lb(2, ("10.0.0.7",)))
    digests = {LOAD_BALANCERS.key: digest(LOAD_BALANCERS.to_wire(after))}
    doc = write_updates(5, True, {LOAD_BALANCERS.key: [after[1].to_wire()]}, task_count=0, digests=digests)
    delta = Delta.from_wire(doc)
    merged = merge(view, delta)
    assert merged is not None and merged.generation == 5
    assert merged[LOAD_BALANCERS] == after
    assert digest(LOAD_BALANCERS.to_wire(merged[LOAD_BALANCERS])) == delta.digests[LOAD_BALANCERS.key]


def test_updates_of_a_section_without_a_keyed_merge_or_sent_whole_are_not_acted_on() -> None:
    view = _state(_lb(1))
    unknown = write_updates(5, True, {"vpcs": []}, task_count=0, digests={})
    assert merge(view, Delta.from_wire(unknown)) is None
    both = write_updates(5, True, {LOAD_BALANCERS.key: [_lb(1).to_wire()]}, task_count=0, digests={})
    both[LOAD_BALANCERS.key] = [_lb(1).to_wire()]
    assert merge(view, Delta.from_wire(both)) is None
    assert UPDATES in both


def test_the_journal_covers_a_range_only_when_target_changes_made_every_generation_in_it() -> None:
    journal = retarget.Journal(depth=4)
    journal.record([("i-1", 5, frozenset({"a"})), ("i-2", 5, frozenset({"z"}))])
    journal.record([("i-1", 6, frozenset({"b"}))])
    assert journal.covering("i-1", 4, 6) == {"a", "b"}
    assert journal.covering("i-1", 5, 6) == {"b"}
    assert journal.covering("i-1", 3, 6) is None  # generation 4: another write made it
    assert journal.covering("i-1", 4, 7) is None
    assert journal.covering("i-3", 4, 5) is None
    assert journal.made("i-1", 6) and not journal.made("i-1", 7)


@given(st.lists(st.integers(1, 40), unique=True, max_size=20), st.integers(0, 40), st.integers(0, 40))
def test_covering_is_exactly_every_generation_journaled(made: list[int], since: int, current: int) -> None:
    journal = retarget.Journal(depth=64)
    journal.record([("i", g, frozenset({f"lb{g}"})) for g in made])
    found = journal.covering("i", since, current)
    wanted = range(since + 1, current + 1)
    if all(g in made for g in wanted):
        assert found == {f"lb{g}" for g in wanted}
    else:
        assert found is None


def test_remember_keeps_the_load_balancers_a_delta_left_out() -> None:
    lbs = [_lb(1).to_wire()]
    full = {
        "generation": 3,
        "tasks": [{}, {}],
        LOAD_BALANCERS.key: lbs,
        "digests": {LOAD_BALANCERS.key: "ab"},
    }
    retarget.remember("i-r", full)
    same = {
        "generation": 4,
        "delta": True,
        "taskCount": 2,
        "tasks": [],
        "digests": {LOAD_BALANCERS.key: "ab"},
    }
    retarget.remember("i-r", same)
    held = retarget._held["i-r"]
    assert (held.generation, held.lbs, held.task_count) == (4, tuple(lbs), 2)
    other = {**same, "generation": 5, "digests": {LOAD_BALANCERS.key: "cd"}}  # changed but not sent: unknown
    retarget.remember("i-r", other)
    assert "i-r" not in retarget._held
