"""Policy evaluation as AWS documents it for one account (pure).

For a request (action, resource, context): an explicit Deny in any policy that applies wins; otherwise
the identity's policies (inline and managed) must Allow it, and so must the session policies when the
credentials carry any (their intersection); otherwise the implicit deny. A role's trust policy decides
who may assume it: naming the caller itself grants on its own, naming the account (or its root) defers
to the caller's identity policies, as with any same-account resource policy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from taskvpc.domain.iam.conditions import (
    LITERAL_QUESTION,
    LITERAL_STAR,
    Context,
    any_glob,
    arn_like,
    condition_holds,
    literal,
)
from taskvpc.domain.iam.document import Policy, Statement


class Decision(Enum):
    ALLOW = "Allow"
    EXPLICIT_DENY = "ExplicitDeny"
    IMPLICIT_DENY = "ImplicitDeny"


@dataclass(frozen=True, slots=True)
class Request:
    action: str  # "ecs:CreateCluster"
    resource: str  # the resource's ARN, or "*" where the action names none
    context: Mapping[str, Sequence[str]] = field(default_factory=dict)  # lower-case keys


_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_LITERALS = {"*": LITERAL_STAR, "?": LITERAL_QUESTION, "$": "$"}


def substitute(text: str, context: Context) -> str | None:
    """``text`` with its policy variables replaced; None when one has no value and no default (the
    element then matches nothing). ``${*}``/``${?}`` become placeholders that match only themselves."""
    if "${" not in text:
        return text
    missing = False

    def replace(found: re.Match[str]) -> str:
        nonlocal missing
        name, _, default = found.group(1).partition(",")
        name = name.strip()
        if name in _LITERALS:
            return _LITERALS[name]
        values = context.get(name.lower())
        if values and len(values) == 1:
            return values[0]
        default = default.strip()
        if len(default) >= 2 and default[0] == default[-1] == "'":
            return default[1:-1]
        missing = True
        return ""

    result = _VARIABLE.sub(replace, text)
    return None if missing else result


def _action_matches(statement: Statement, action: str) -> bool:
    found = any_glob(statement.actions).match(action) is not None
    return found != statement.not_actions


def _resource_matches(statement: Statement, resource: str, policy: Policy, context: Context) -> bool:
    found = False
    for pattern in statement.resources:
        expanded = substitute(pattern, context) if policy.variables else pattern
        if expanded is not None and arn_like(expanded, resource):
            found = True
            break
    return found != statement.not_resources


def conditions_hold(statement: Statement, policy: Policy, context: Context) -> bool:
    for operator, entries in statement.conditions:
        for key, wanted in entries:
            values = wanted
            if policy.variables:
                values = tuple(v for v in (substitute(w, context) for w in wanted) if v is not None)
                if "Like" not in operator:
                    values = tuple(literal(v) for v in values)
            if not condition_holds(operator, key, values, context):
                return False
    return True


def statement_applies(statement: Statement, policy: Policy, request: Request) -> bool:
    return (
        _action_matches(statement, request.action)
        and _resource_matches(statement, request.resource, policy, request.context)
        and conditions_hold(statement, policy, request.context)
    )


def _effects(policies: Iterable[Policy], request: Request) -> tuple[bool, bool]:
    """(some statement allows, some statement denies) among ``policies``."""
    allowed = denied = False
    for policy in policies:
        for statement in policy.statements:
            if statement_applies(statement, policy, request):
                if statement.effect == "Deny":
                    denied = True
                else:
                    allowed = True
    return allowed, denied


def evaluate(
    identity: Sequence[Policy], request: Request, session: Sequence[Policy] | None = None
) -> Decision:
    """The decision for ``request`` by a principal with ``identity`` policies and, for a session with
    session policies, those too (None: no session policy, which restricts nothing)."""
    allowed, denied = _effects(identity, request)
    if session is not None:
        session_allowed, session_denied = _effects(session, request)
        denied = denied or session_denied
        allowed = allowed and session_allowed
    if denied:
        return Decision.EXPLICIT_DENY
    return Decision.ALLOW if allowed else Decision.IMPLICIT_DENY


# ---- trust policies (who may assume a role) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks to assume a role: an IAM principal of ``account_id`` (``arn``), or an AWS service."""

    account_id: str
    arn: str = ""
    service: str = ""  # "ecs-tasks.amazonaws.com" when ECS assumes a task role


def _principal_matches(kind: str, name: str, caller: Caller) -> tuple[bool, bool]:
    """(matches, names the caller itself rather than its account)."""
    if kind == "*":
        return True, True
    if kind == "Service":
        return bool(caller.service) and name == caller.service, True
    if kind != "AWS" or caller.service:
        return False, False
    if name == "*":
        return True, True
    if name in (caller.account_id, f"arn:aws:iam::{caller.account_id}:root"):
        return True, False
    return name == caller.arn or (("*" in name or "?" in name) and arn_like(name, caller.arn)), True


def trust_decision(trust: Policy, caller: Caller, request: Request) -> tuple[Decision, bool]:
    """The trust policy's own decision for ``caller`` and whether an Allow named the caller itself (else it
    named the caller's account, and the caller's identity policies must allow the action too)."""
    allowed = direct = denied = False
    for statement in trust.statements:
        if not _action_matches(statement, request.action):
            continue
        if not conditions_hold(statement, trust, request.context):
            continue
        matches = [_principal_matches(kind, name, caller) for kind, name in statement.principals]
        hit = any(m for m, _ in matches)
        if statement.not_principals:
            hit = not hit
        if not hit:
            continue
        if statement.effect == "Deny":
            denied = True
        else:
            allowed = True
            direct = direct or statement.not_principals or any(m and d for m, d in matches)
    if denied:
        return Decision.EXPLICIT_DENY, False
    return (Decision.ALLOW if allowed else Decision.IMPLICIT_DENY), direct


def may_assume(
    trust: Policy,
    caller: Caller,
    request: Request,
    identity: Sequence[Policy] | None,
    session: Sequence[Policy] | None = None,
) -> bool:
    """Whether ``caller`` may assume the role ``request.resource``. ``identity`` None: the caller's
    identity policies are not consulted (the account root, or an AWS service)."""
    trusted, direct = trust_decision(trust, caller, request)
    if trusted is not Decision.ALLOW:
        return False
    if identity is None:
        return True
    decision = evaluate(identity, request, session)
    if decision is Decision.EXPLICIT_DENY:
        return False
    return direct or decision is Decision.ALLOW
