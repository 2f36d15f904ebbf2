"""Policy documents as IAM validates them (MalformedPolicyDocument texts), trust policies, and properties
of the evaluator that hold for every policy (hypothesis)."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from taskvpc.domain.errors import ClientError
from taskvpc.domain.iam.conditions import arn_like, wildcard_match
from taskvpc.domain.iam.document import Policy, parse_document, parse_policy
from taskvpc.domain.iam.evaluate import Caller, Decision, Request, evaluate, may_assume, substitute

ACCT = "123456789012"
ALLOW_ALL = {"Effect": "Allow", "Action": "*", "Resource": "*"}


def _text(document: Any) -> str:
    return document if isinstance(document, str) else orjson.dumps(document).decode()


MALFORMED: list[tuple[str, Any, str, str]] = [
    ("not-json", "{not json", "identity", "This policy contains invalid Json"),
    ("empty", "   ", "identity", "Syntax errors in policy."),
    ("a-list", [ALLOW_ALL], "identity", "Syntax errors in policy."),
    ("no-statement", {"Version": "2012-10-17"}, "identity", "Syntax errors in policy."),
    (
        "empty-statement-list",
        {"Version": "2012-10-17", "Statement": []},
        "identity",
        "Syntax errors in policy.",
    ),
    (
        "bad-version",
        {"Version": "2020-01-01", "Statement": [ALLOW_ALL]},
        "identity",
        "Syntax errors in policy.",
    ),
    (
        "unknown-top-field",
        {"Version": "2012-10-17", "Statement": [ALLOW_ALL], "Foo": 1},
        "identity",
        "Syntax errors in policy.",
    ),
    ("bad-effect", {"Statement": [{**ALLOW_ALL, "Effect": "allow"}]}, "identity", "Syntax errors in policy."),
    (
        "unknown-statement-field",
        {"Statement": [{**ALLOW_ALL, "Actions": "x:y"}]},
        "identity",
        "Syntax errors in policy.",
    ),
    (
        "no-action",
        {"Statement": [{"Effect": "Allow", "Resource": "*"}]},
        "identity",
        "Policy statement must contain actions.",
    ),
    (
        "action-and-notaction",
        {"Statement": [{**ALLOW_ALL, "NotAction": "iam:*"}]},
        "identity",
        "Syntax errors in policy.",
    ),
    (
        "action-without-vendor",
        {"Statement": [{**ALLOW_ALL, "Action": "ListClusters"}]},
        "identity",
        "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.",
    ),
    (
        "no-resource",
        {"Statement": [{"Effect": "Allow", "Action": "*"}]},
        "identity",
        "Policy statement must contain resources.",
    ),
    (
        "resource-not-arn",
        {"Statement": [{**ALLOW_ALL, "Resource": "cluster/web"}]},
        "identity",
        'Resource cluster/web must be in ARN format or "*".',
    ),
    (
        "principal-in-identity",
        {"Statement": [{**ALLOW_ALL, "Principal": "*"}]},
        "identity",
        "Policy document should not specify a principal.",
    ),
    (
        "duplicate-sid",
        {"Statement": [{**ALLOW_ALL, "Sid": "a"}, {**ALLOW_ALL, "Sid": "a"}]},
        "identity",
        "Statement IDs (SID) in a single policy must be unique.",
    ),
    (
        "unknown-operator",
        {"Statement": [{**ALLOW_ALL, "Condition": {"StringSortOf": {"aws:username": "x"}}}]},
        "identity",
        "Syntax errors in policy.",
    ),
    (
        "condition-key-without-vendor",
        {"Statement": [{**ALLOW_ALL, "Condition": {"StringEquals": {"username": "x"}}}]},
        "identity",
        "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.",
    ),
    (
        "null-if-exists",
        {"Statement": [{**ALLOW_ALL, "Condition": {"NullIfExists": {"aws:username": "true"}}}]},
        "identity",
        "Syntax errors in policy.",
    ),
    (
        "resource-in-trust",
        {"Statement": [{**ALLOW_ALL, "Principal": {"Service": "ecs-tasks.amazonaws.com"}}]},
        "trust",
        "Has prohibited field Resource",
    ),
    (
        "no-principal-in-trust",
        {"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole"}]},
        "trust",
        "Missing required field Principal",
    ),
    (
        "bad-principal-kind",
        {"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"User": "bob"}}]},
        "trust",
        "Invalid principal in policy",
    ),
]


@pytest.mark.parametrize(
    ("document", "kind", "message"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_documents_get_iams_error(document: Any, kind: Any, message: str) -> None:
    with pytest.raises(ClientError) as raised:
        parse_policy(_text(document), kind)
    assert (raised.value.code, raised.value.message, raised.value.http_status) == (
        "MalformedPolicyDocument",
        message,
        400,
    )


def test_a_valid_document_keeps_its_statements() -> None:
    policy = parse_policy(_text({"Version": "2012-10-17", "Statement": {**ALLOW_ALL, "Sid": "All"}}))
    assert policy.version == "2012-10-17" and policy.statements[0].sid == "All"


# ---- trust policies -------------------------------------------------------------------------------------

ROLE = f"arn:aws:iam::{ACCT}:role/web"
BOB = f"arn:aws:iam::{ACCT}:user/bob"


def _trust(principal: Any, condition: dict[str, Any] | None = None) -> Policy:
    statement: dict[str, Any] = {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}
    if condition:
        statement["Condition"] = condition
    return parse_document({"Version": "2012-10-17", "Statement": [statement]}, "trust")


ASSUME = Request("sts:AssumeRole", ROLE, {})
ALLOW_ASSUME = parse_document(
    {"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": ROLE}]}
)


def test_trusting_the_account_defers_to_the_callers_policies() -> None:
    trust = _trust({"AWS": f"arn:aws:iam::{ACCT}:root"})
    assert not may_assume(trust, Caller(ACCT, BOB), ASSUME, [])
    assert may_assume(trust, Caller(ACCT, BOB), ASSUME, [ALLOW_ASSUME])
    assert may_assume(trust, Caller(ACCT, f"arn:aws:iam::{ACCT}:root"), ASSUME, None)  # root: no policies


def test_trusting_the_user_itself_grants_on_its_own() -> None:
    assert may_assume(_trust({"AWS": BOB}), Caller(ACCT, BOB), ASSUME, [])
    assert not may_assume(_trust({"AWS": BOB}), Caller(ACCT, f"arn:aws:iam::{ACCT}:user/eve"), ASSUME, [])


def test_an_explicit_deny_in_the_callers_policies_wins_over_trust() -> None:
    deny = parse_document({"Statement": [{"Effect": "Deny", "Action": "sts:*", "Resource": "*"}]})
    assert not may_assume(_trust({"AWS": BOB}), Caller(ACCT, BOB), ASSUME, [deny])


def test_another_account_is_not_trusted() -> None:
    assert not may_assume(_trust({"AWS": "999999999999"}), Caller(ACCT, BOB), ASSUME, [ALLOW_ASSUME])


def test_ecs_tasks_service_trust_with_confused_deputy_conditions() -> None:
    trust = _trust(
        {"Service": "ecs-tasks.amazonaws.com"},
        {
            "ArnLike": {"aws:SourceArn": f"arn:aws:ecs:us-east-1:{ACCT}:*"},
            "StringEquals": {"aws:SourceAccount": ACCT},
        },
    )
    task = f"arn:aws:ecs:us-east-1:{ACCT}:task/web/0123456789abcdef"
    ours = Request("sts:AssumeRole", ROLE, {"aws:sourcearn": [task], "aws:sourceaccount": [ACCT]})
    theirs = Request(
        "sts:AssumeRole",
        ROLE,
        {"aws:sourcearn": [task.replace(ACCT, "999999999999")], "aws:sourceaccount": ["999999999999"]},
    )
    assert may_assume(trust, Caller(ACCT, service="ecs-tasks.amazonaws.com"), ours, None)
    assert not may_assume(trust, Caller(ACCT, service="ecs-tasks.amazonaws.com"), theirs, None)
    assert not may_assume(trust, Caller(ACCT, BOB), ours, [ALLOW_ASSUME])  # a user is not the service


def test_a_deny_in_the_trust_policy_wins() -> None:
    trust = parse_document(
        {
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": ACCT}, "Action": "sts:AssumeRole"},
                {"Effect": "Deny", "Principal": {"AWS": BOB}, "Action": "sts:AssumeRole"},
            ]
        },
        "trust",
    )
    assert not may_assume(trust, Caller(ACCT, BOB), ASSUME, [ALLOW_ASSUME])


def test_policy_variables() -> None:
    assert substitute("user/${aws:username}", {"aws:username": ["bob"]}) == "user/bob"
    assert substitute("user/${aws:username}", {}) is None
    assert substitute("${aws:username, 'x'}", {}) == "x"
    assert substitute("no variables", {}) == "no variables"


# ---- properties -------------------------------------------------------------------------------------

ACTIONS = ["ecs:ListClusters", "ecs:CreateCluster", "ec2:DescribeVpcs", "iam:CreateUser", "sts:AssumeRole"]
RESOURCES = ["*", f"arn:aws:ecs:us-east-1:{ACCT}:cluster/web", f"arn:aws:iam::{ACCT}:user/bob"]
action_patterns = st.sampled_from(["*", "ecs:*", "ecs:List*", "ec2:Describe*", "iam:Create?ser", *ACTIONS])
resource_patterns = st.sampled_from(["*", f"arn:aws:ecs:*:{ACCT}:cluster/*", *RESOURCES[1:]])


@st.composite
def statements(draw: st.DrawFn) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": draw(st.sampled_from(["Allow", "Deny"]))}
    statement["NotAction" if draw(st.booleans()) else "Action"] = draw(
        st.lists(action_patterns, min_size=1, max_size=3)
    )
    statement["NotResource" if draw(st.booleans()) else "Resource"] = draw(
        st.lists(resource_patterns, min_size=1, max_size=2)
    )
    if draw(st.booleans()):
        statement["Condition"] = {
            "StringEquals": {"aws:RequestedRegion": draw(st.sampled_from(["us-east-1", "eu-west-1"]))}
        }
    return statement


policies = st.lists(
    st.lists(statements(), min_size=1, max_size=4).map(
        lambda s: parse_document({"Version": "2012-10-17", "Statement": s})
    ),
    max_size=3,
)
requests = st.builds(
    Request,
    st.sampled_from(ACTIONS),
    st.sampled_from(RESOURCES),
    st.sampled_from([{}, {"aws:requestedregion": ["us-east-1"]}, {"aws:requestedregion": ["eu-west-1"]}]),
)


@settings(max_examples=120, deadline=None)
@given(policies, policies, requests)
def test_session_policies_never_widen(
    identity: list[Policy], session: list[Policy], request: Request
) -> None:
    if evaluate(identity, request, session) is Decision.ALLOW:
        assert evaluate(identity, request) is Decision.ALLOW
        assert evaluate(session, request) is Decision.ALLOW


@settings(max_examples=120, deadline=None)
@given(policies, requests)
def test_a_matching_deny_always_wins(identity: list[Policy], request: Request) -> None:
    deny = parse_document({"Statement": [{"Effect": "Deny", "Action": request.action, "Resource": "*"}]})
    assert evaluate([*identity, deny], request) is Decision.EXPLICIT_DENY


@settings(max_examples=120, deadline=None)
@given(policies, requests, st.randoms(use_true_random=False))
def test_order_of_policies_and_statements_does_not_matter(
    identity: list[Policy], request: Request, rnd: random.Random
) -> None:
    shuffled = [Policy(p.version, tuple(rnd.sample(p.statements, len(p.statements)))) for p in identity]
    rnd.shuffle(shuffled)
    assert evaluate(shuffled, request) is evaluate(identity, request)


@settings(max_examples=120, deadline=None)
@given(policies, policies, requests)
def test_adding_a_policy_never_removes_a_deny(
    identity: list[Policy], more: list[Policy], request: Request
) -> None:
    if evaluate(identity, request) is Decision.EXPLICIT_DENY:
        assert evaluate([*identity, *more], request) is Decision.EXPLICIT_DENY


@settings(max_examples=120, deadline=None)
@given(st.text(alphabet="abc/:-_.", min_size=0, max_size=20), st.data())
def test_a_value_matches_any_pattern_made_by_blurring_it(value: str, data: st.DataObject) -> None:
    blurred = "".join(data.draw(st.sampled_from([c, "?", "*"])) if c != ":" else c for c in value)
    assert wildcard_match(blurred, value)
    arn = f"arn:aws:ecs:us-east-1:{ACCT}:{value}"
    assert arn_like(f"arn:aws:ecs:us-east-1:{ACCT}:{blurred}", arn)
