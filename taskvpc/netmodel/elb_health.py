"""A registered target's health in ELB's terms, as one transition table (pure; the clock is passed in).

States and reason codes are ELB's (``DescribeTargetHealth``). The rules (notes §2, from the ELB guides):
a new target needs ONE passing check to become healthy and ``unhealthy`` consecutive failures to become
unhealthy; afterwards ``healthy`` passes / ``unhealthy`` failures flip it; a healthy target has no reason.
Deregistering starts ``draining``, shown until the deregistration delay has passed even when no request is
in flight; then the target is gone (``unused`` / ``Target.NotRegistered`` when asked for by name).

``TRANSITIONS`` maps (state, event kind) to the step that handles it; a missing key is a move ELB does not
make (an event ignored in that state maps to ``_same``, so the table is complete by construction).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

INITIAL: Final = "initial"
HEALTHY: Final = "healthy"
UNHEALTHY: Final = "unhealthy"
DRAINING: Final = "draining"
UNUSED: Final = "unused"
STATES: Final = (INITIAL, HEALTHY, UNHEALTHY, DRAINING, UNUSED)

# Reason code -> DescribeTargetHealth's description (ELB guide's "Health check reason codes").
DESCRIPTIONS: Final = {
    "Elb.RegistrationInProgress": "Target registration is in progress",
    "Elb.InitialHealthChecking": "Initial health checks in progress",
    "Target.ResponseCodeMismatch": "Health checks failed with these codes: [{code}]",
    "Target.Timeout": "Request timed out",
    "Target.FailedHealthChecks": "Health checks failed",
    "Target.DeregistrationInProgress": "Target deregistration is in progress",
    "Target.NotRegistered": "Target is not registered to the target group",
    "Target.NotInUse": "Target group is not configured to receive traffic from the load balancer",
    "Target.InvalidState": "Target is in the stopped or terminated state",
    "Target.IpUnusable": "The target IP address is reserved for use by a load balancer",
    "Target.HealthCheckDisabled": "Health checks are disabled",
    "Elb.InternalError": "Health checks failed due to an internal error",
}


@dataclass(frozen=True, slots=True)
class Policy:
    """A target group's settings that the machine reads."""

    healthy_threshold: int = 5
    unhealthy_threshold: int = 2
    deregistration_delay: float = 300.0
    application: bool = True  # ALB names failures by cause; NLB says only Target.FailedHealthChecks


@dataclass(frozen=True, slots=True)
class Health:
    state: str
    reason: str | None = None
    description: str | None = None
    passes: int = 0  # consecutive passing checks since the last failure
    fails: int = 0  # consecutive failing checks since the last pass
    drain_until: float | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """``kind``: register | checking | pass | fail | deregister | tick.

    A ``fail`` carries its cause: ``code`` (an HTTP status that did not match), ``timeout``, or ``failed``
    (connection refused or reset). ``now`` is the clock at the event (deregister and tick read it).
    """

    kind: str
    now: float = 0.0
    cause: str = "failed"
    code: str | None = None


def describe(reason: str, code: str | None = None) -> str:
    return DESCRIPTIONS[reason].format(code=code or "")


def _with_reason(state: str, reason: str | None, code: str | None = None, **counts: int) -> Health:
    return Health(state, reason, describe(reason, code) if reason else None, **counts)


def _register(health: Health, event: Event, policy: Policy) -> Health:
    return _with_reason(INITIAL, "Elb.RegistrationInProgress")


def _checking(health: Health, event: Event, policy: Policy) -> Health:
    return replace(
        health, reason="Elb.InitialHealthChecking", description=describe("Elb.InitialHealthChecking")
    )


def _same(health: Health, event: Event, policy: Policy) -> Health:
    return health


def _failure_reason(event: Event, policy: Policy) -> tuple[str, str | None]:
    if not policy.application:
        return "Target.FailedHealthChecks", None
    if event.cause == "code":
        return "Target.ResponseCodeMismatch", event.code
    if event.cause == "timeout":
        return "Target.Timeout", None
    return "Target.FailedHealthChecks", None


def _pass(health: Health, event: Event, policy: Policy) -> Health:
    passes = health.passes + 1
    if health.state == INITIAL or health.state == HEALTHY or passes >= policy.healthy_threshold:
        return Health(HEALTHY, passes=passes)
    return replace(health, passes=passes, fails=0)


def _fail(health: Health, event: Event, policy: Policy) -> Health:
    fails = health.fails + 1
    if health.state == UNHEALTHY or fails >= policy.unhealthy_threshold:
        reason, code = _failure_reason(event, policy)
        return _with_reason(UNHEALTHY, reason, code, fails=fails)
    return replace(health, passes=0, fails=fails)


def _deregister(health: Health, event: Event, policy: Policy) -> Health:
    drained = _with_reason(DRAINING, "Target.DeregistrationInProgress")
    return replace(drained, drain_until=event.now + policy.deregistration_delay)


def _tick(health: Health, event: Event, policy: Policy) -> Health:
    if health.drain_until is not None and event.now >= health.drain_until:
        return _with_reason(UNUSED, "Target.NotRegistered")
    return health


Step = Callable[[Health, Event, Policy], Health]

TRANSITIONS: Final[dict[tuple[str, str], Step]] = {
    (UNUSED, "register"): _register,
    (DRAINING, "register"): _register,  # registering again ends the drain: checks start over
    (INITIAL, "register"): _same,
    (HEALTHY, "register"): _same,
    (UNHEALTHY, "register"): _same,
    (INITIAL, "checking"): _checking,
    (INITIAL, "pass"): _pass,
    (INITIAL, "fail"): _fail,
    (HEALTHY, "pass"): _pass,
    (HEALTHY, "fail"): _fail,
    (UNHEALTHY, "pass"): _pass,
    (UNHEALTHY, "fail"): _fail,
    (DRAINING, "pass"): _same,  # a draining target is no longer judged
    (DRAINING, "fail"): _same,
    (INITIAL, "deregister"): _deregister,
    (HEALTHY, "deregister"): _deregister,
    (UNHEALTHY, "deregister"): _deregister,
    (DRAINING, "deregister"): _same,
    (DRAINING, "tick"): _tick,
    (INITIAL, "tick"): _same,
    (HEALTHY, "tick"): _same,
    (UNHEALTHY, "tick"): _same,
    (UNUSED, "tick"): _same,
}


class IllegalTransition(ValueError):
    pass


def step(health: Health, event: Event, policy: Policy) -> Health:
    handler = TRANSITIONS.get((health.state, event.kind))
    if handler is None:
        raise IllegalTransition(f"{event.kind} in state {health.state}")
    return handler(health, event, policy)


def registered(policy: Policy) -> Health:
    """A freshly registered target whose first check is under way (what the control plane shows)."""
    return step(step(Health(UNUSED), Event("register"), policy), Event("checking"), policy)


def receives_traffic(states: list[str]) -> list[bool]:
    """Which targets of a group the load balancer sends new requests to: the healthy ones, or - when none
    is healthy - every initial-done target (ELB fails open: all unhealthy means all get traffic)."""
    if any(state == HEALTHY for state in states):
        return [state == HEALTHY for state in states]
    return [state == UNHEALTHY for state in states]
