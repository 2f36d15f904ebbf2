"""The target health machine: ELB's thresholds, reasons, draining by the clock; properties by hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from taskvpc.netmodel import elb_health as h

ALB = h.Policy(healthy_threshold=3, unhealthy_threshold=2, deregistration_delay=10, application=True)
NLB = h.Policy(healthy_threshold=3, unhealthy_threshold=2, deregistration_delay=10, application=False)


def run(events: list[h.Event], policy: h.Policy = ALB) -> h.Health:
    health = h.registered(policy)
    for event in events:
        health = h.step(health, event, policy)
    return health


def test_new_target_is_initial_checking_then_one_pass_makes_it_healthy() -> None:
    fresh = h.registered(ALB)
    assert (fresh.state, fresh.reason, fresh.description) == (
        "initial",
        "Elb.InitialHealthChecking",
        "Initial health checks in progress",
    )
    healthy = run([h.Event("pass")])
    assert (healthy.state, healthy.reason, healthy.description) == ("healthy", None, None)


def test_failure_reasons_alb_and_nlb() -> None:
    mismatch = run([h.Event("fail", cause="code", code="503")] * 2)
    assert (mismatch.state, mismatch.reason, mismatch.description) == (
        "unhealthy",
        "Target.ResponseCodeMismatch",
        "Health checks failed with these codes: [503]",
    )
    timeout = run([h.Event("fail", cause="timeout")] * 2)
    assert (timeout.reason, timeout.description) == ("Target.Timeout", "Request timed out")
    nlb = run([h.Event("fail", cause="code", code="503")] * 2, NLB)
    assert (nlb.reason, nlb.description) == ("Target.FailedHealthChecks", "Health checks failed")
    assert run([h.Event("fail")]).state == "initial"  # one failure is below the threshold


def test_unhealthy_needs_the_healthy_threshold_to_recover() -> None:
    down = [h.Event("pass"), h.Event("fail"), h.Event("fail")]
    assert run(down).state == "unhealthy"
    assert run([*down, h.Event("pass"), h.Event("pass")]).state == "unhealthy"
    assert run([*down, h.Event("pass"), h.Event("pass"), h.Event("pass")]).state == "healthy"
    assert (
        run([*down, h.Event("pass"), h.Event("fail"), h.Event("pass"), h.Event("pass")]).state == "unhealthy"
    )


def test_draining_lasts_the_delay_exactly() -> None:
    draining = run([h.Event("pass"), h.Event("deregister", now=100.0)])
    assert (draining.state, draining.reason, draining.drain_until) == (
        "draining",
        "Target.DeregistrationInProgress",
        110.0,
    )
    assert h.step(draining, h.Event("tick", now=109.999), ALB).state == "draining"
    gone = h.step(draining, h.Event("tick", now=110.0), ALB)
    assert (gone.state, gone.reason, gone.description) == (
        "unused",
        "Target.NotRegistered",
        "Target is not registered to the target group",
    )
    assert h.step(draining, h.Event("fail"), ALB) == draining  # no longer judged
    assert h.step(draining, h.Event("register"), ALB).state == "initial"


def test_illegal_moves_are_refused() -> None:
    with pytest.raises(h.IllegalTransition):
        h.step(h.Health("unused"), h.Event("pass"), ALB)
    with pytest.raises(h.IllegalTransition):
        h.step(h.Health("healthy"), h.Event("checking"), ALB)


def test_fail_open_when_nothing_is_healthy() -> None:
    assert h.receives_traffic(["healthy", "unhealthy", "initial"]) == [True, False, False]
    assert h.receives_traffic(["unhealthy", "unhealthy", "initial"]) == [True, True, False]


_events = st.lists(
    st.one_of(
        st.just(h.Event("pass")),
        st.builds(
            h.Event,
            kind=st.just("fail"),
            cause=st.sampled_from(["code", "timeout", "failed"]),
            code=st.just("500"),
        ),
    ),
    max_size=40,
)


@given(_events, st.sampled_from([ALB, NLB]))
def test_states_and_reasons_agree(events: list[h.Event], policy: h.Policy) -> None:
    health = h.registered(policy)
    for event in events:
        health = h.step(health, event, policy)
        assert health.state in h.STATES
        assert (health.reason is None) == (health.state == "healthy")
        if health.reason is not None:
            assert health.reason in h.DESCRIPTIONS and health.description
        if not policy.application and health.state == "unhealthy":
            assert health.reason == "Target.FailedHealthChecks"


@given(_events, st.integers(min_value=0, max_value=12))
def test_threshold_runs_decide_the_state(prefix: list[h.Event], run_length: int) -> None:
    base = run(prefix)
    after_passes = base
    for _ in range(run_length):
        after_passes = h.step(after_passes, h.Event("pass"), ALB)
    if run_length >= ALB.healthy_threshold or (run_length >= 1 and base.state != "unhealthy"):
        assert after_passes.state == "healthy"
    after_fails = base
    for _ in range(run_length):
        after_fails = h.step(after_fails, h.Event("fail"), ALB)
    if run_length >= ALB.unhealthy_threshold:
        assert after_fails.state == "unhealthy"
    if run_length == 0:
        assert after_fails == base


@given(_events, st.floats(min_value=0, max_value=1e6), st.floats(min_value=0, max_value=100))
def test_draining_ends_at_the_delay_and_never_before(
    events: list[h.Event], start: float, later: float
) -> None:
    draining = h.step(run(events), h.Event("deregister", now=start), ALB)
    ticked = h.step(draining, h.Event("tick", now=start + later), ALB)
    assert ticked.state == ("unused" if later >= ALB.deregistration_delay else "draining")
