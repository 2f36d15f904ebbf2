"""The policy evaluator against a corpus of cases: AWS documentation examples (IAM User Guide policy
examples and evaluation logic) and edge cases, each with the decision AWS documents for it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from taskvpc.domain.iam.document import parse_document
from taskvpc.domain.iam.evaluate import Decision, Request, evaluate

ALLOW, DENY, IMPLICIT = Decision.ALLOW, Decision.EXPLICIT_DENY, Decision.IMPLICIT_DENY
ACCT = "123456789012"
CLUSTER = f"arn:aws:ecs:us-east-1:{ACCT}:cluster/web"


def stmt(effect: str = "Allow", action: Any = "*", resource: Any = "*", **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"Effect": effect, **extra}
    if "NotAction" not in extra:
        out["Action"] = action
    if "NotResource" not in extra:
        out["Resource"] = resource
    return out


def doc(*statements: dict[str, Any], version: str = "2012-10-17") -> dict[str, Any]:
    return {"Version": version, "Statement": list(statements)}


def ctx(**keys: Any) -> dict[str, list[str]]:
    return {k.replace("__", ":").lower(): v if isinstance(v, list) else [v] for k, v in keys.items()}


# (id, identity policies, session policies or None, action, resource, context, expected)
CASES: list[
    tuple[str, list[dict[str, Any]], list[dict[str, Any]] | None, str, str, dict[str, list[str]], Decision]
] = [
    # ---- the basic algebra --------------------------------------------------------------------------
    ("no-policies-implicit-deny", [], None, "ecs:ListClusters", "*", {}, IMPLICIT),
    ("allow-exact", [doc(stmt(action="ecs:ListClusters"))], None, "ecs:ListClusters", "*", {}, ALLOW),
    (
        "allow-other-action",
        [doc(stmt(action="ecs:ListClusters"))],
        None,
        "ecs:CreateCluster",
        CLUSTER,
        {},
        IMPLICIT,
    ),
    (
        "action-case-insensitive",
        [doc(stmt(action="ECS:listclusters"))],
        None,
        "ecs:ListClusters",
        "*",
        {},
        ALLOW,
    ),
    ("action-prefix-wildcard", [doc(stmt(action="ecs:List*"))], None, "ecs:ListTasks", "*", {}, ALLOW),
    (
        "action-prefix-wildcard-miss",
        [doc(stmt(action="ecs:List*"))],
        None,
        "ecs:DescribeTasks",
        "*",
        {},
        IMPLICIT,
    ),
    ("action-question-mark", [doc(stmt(action="ecs:?unTask"))], None, "ecs:RunTask", "*", {}, ALLOW),
    ("action-service-wildcard", [doc(stmt(action="ecs:*"))], None, "ecs:DeleteCluster", CLUSTER, {}, ALLOW),
    (
        "action-service-wildcard-other-service",
        [doc(stmt(action="ecs:*"))],
        None,
        "ec2:DescribeVpcs",
        "*",
        {},
        IMPLICIT,
    ),
    ("star-action", [doc(stmt())], None, "iam:CreateUser", "*", {}, ALLOW),
    (
        "action-list",
        [doc(stmt(action=["ec2:DescribeVpcs", "ecs:ListClusters"]))],
        None,
        "ecs:ListClusters",
        "*",
        {},
        ALLOW,
    ),
    (
        "explicit-deny-wins",
        [doc(stmt(), stmt("Deny", "ecs:DeleteCluster"))],
        None,
        "ecs:DeleteCluster",
        CLUSTER,
        {},
        DENY,
    ),
    (
        "deny-across-policies",
        [doc(stmt()), doc(stmt("Deny", "ecs:*"))],
        None,
        "ecs:ListClusters",
        "*",
        {},
        DENY,
    ),
    (
        "deny-other-action-keeps-allow",
        [doc(stmt(), stmt("Deny", "ecs:DeleteCluster"))],
        None,
        "ecs:ListClusters",
        "*",
        {},
        ALLOW,
    ),
    (
        "deny-only-is-explicit",
        [doc(stmt("Deny", "ecs:ListClusters"))],
        None,
        "ecs:ListClusters",
        "*",
        {},
        DENY,
    ),
    (
        "single-statement-object",
        [{"Version": "2012-10-17", "Statement": stmt(action="ecs:ListClusters")}],
        None,
        "ecs:ListClusters",
        "*",
        {},
        ALLOW,
    ),
    # ---- NotAction ------------------------------------------------------------------------------------
    ("notaction-allow-others", [doc(stmt(NotAction="iam:*"))], None, "ecs:ListClusters", "*", {}, ALLOW),
    ("notaction-excludes", [doc(stmt(NotAction="iam:*"))], None, "iam:CreateUser", "*", {}, IMPLICIT),
    (
        "notaction-deny-all-but",
        [doc(stmt(), stmt("Deny", NotAction=["iam:Get*", "sts:*"]))],
        None,
        "ecs:ListClusters",
        "*",
        {},
        DENY,
    ),
    (
        "notaction-deny-spares-listed",
        [doc(stmt(), stmt("Deny", NotAction=["iam:Get*", "sts:*"]))],
        None,
        "iam:GetUser",
        "*",
        {},
        ALLOW,
    ),
    # ---- Resource and NotResource ---------------------------------------------------------------------
    (
        "resource-exact",
        [doc(stmt(action="ecs:DeleteCluster", resource=CLUSTER))],
        None,
        "ecs:DeleteCluster",
        CLUSTER,
        {},
        ALLOW,
    ),
    (
        "resource-other",
        [doc(stmt(action="ecs:DeleteCluster", resource=CLUSTER))],
        None,
        "ecs:DeleteCluster",
        CLUSTER + "2",
        {},
        IMPLICIT,
    ),
    (
        "resource-wildcard-suffix",
        [doc(stmt(resource=f"arn:aws:ecs:us-east-1:{ACCT}:cluster/web-*"))],
        None,
        "ecs:DeleteCluster",
        CLUSTER + "-prod",
        {},
        ALLOW,
    ),
    (
        "resource-region-wildcard",
        [doc(stmt(resource=f"arn:aws:ecs:*:{ACCT}:cluster/web"))],
        None,
        "ecs:DeleteCluster",
        CLUSTER,
        {},
        ALLOW,
    ),
    (
        "resource-case-sensitive",
        [doc(stmt(resource=CLUSTER.replace("web", "WEB")))],
        None,
        "ecs:DeleteCluster",
        CLUSTER,
        {},
        IMPLICIT,
    ),
    (
        "resource-wildcard-stays-in-segment",
        [doc(stmt(resource="arn:aws:ecs:us-east-1*"))],
        None,
        "ecs:DeleteCluster",
        CLUSTER,
        {},
        IMPLICIT,
    ),
    (
        "resource-path-wildcard-crosses-slash",
        [doc(stmt(resource=f"arn:aws:iam::{ACCT}:role/*"))],
        None,
        "iam:GetRole",
        f"arn:aws:iam::{ACCT}:role/team/app",
        {},
        ALLOW,
    ),
    (
        "resource-list",
        [doc(stmt(resource=["arn:aws:ecs:us-east-1:1:cluster/a", CLUSTER]))],
        None,
        "ecs:DeleteCluster",
        CLUSTER,
        {},
        ALLOW,
    ),
    (
        "resource-star-vs-specific-request",
        [doc(stmt(resource=CLUSTER))],
        None,
        "ecs:ListClusters",
        "*",
        {},
        IMPLICIT,
    ),
    (
        "notresource-allows-others",
        [doc(stmt(NotResource=CLUSTER))],
        None,
        "ecs:DeleteCluster",
        CLUSTER + "2",
        {},
        ALLOW,
    ),
    (
        "notresource-excludes",
        [doc(stmt(NotResource=CLUSTER))],
        None,
        "ecs:DeleteCluster",
        CLUSTER,
        {},
        IMPLICIT,
    ),
    (
        "notresource-deny",
        [doc(stmt(), stmt("Deny", NotResource=f"arn:aws:ecs:*:{ACCT}:cluster/dev-*"))],
        None,
        "ecs:DeleteCluster",
        CLUSTER,
        {},
        DENY,
    ),
    (
        "notresource-deny-spares",
        [doc(stmt(), stmt("Deny", NotResource=f"arn:aws:ecs:*:{ACCT}:cluster/dev-*"))],
        None,
        "ecs:DeleteCluster",
        CLUSTER.replace("web", "dev-1"),
        {},
        ALLOW,
    ),
    # ---- policy variables -----------------------------------------------------------------------------
    (
        "variable-username",
        [doc(stmt(action="iam:*AccessKey*", resource=f"arn:aws:iam::{ACCT}:user/${{aws:username}}"))],
        None,
        "iam:CreateAccessKey",
        f"arn:aws:iam::{ACCT}:user/bob",
        ctx(aws__username="bob"),
        ALLOW,
    ),
    (
        "variable-username-other-user",
        [doc(stmt(action="iam:*AccessKey*", resource=f"arn:aws:iam::{ACCT}:user/${{aws:username}}"))],
        None,
        "iam:CreateAccessKey",
        f"arn:aws:iam::{ACCT}:user/eve",
        ctx(aws__username="bob"),
        IMPLICIT,
    ),
    (
        "variable-missing-matches-nothing",
        [doc(stmt(resource=f"arn:aws:iam::{ACCT}:user/${{aws:username}}"))],
        None,
        "iam:GetUser",
        f"arn:aws:iam::{ACCT}:user/bob",
        {},
        IMPLICIT,
    ),
    (
        "variable-default",
        [doc(stmt(resource=f"arn:aws:iam::{ACCT}:user/${{aws:username, 'bob'}}"))],
        None,
        "iam:GetUser",
        f"arn:aws:iam::{ACCT}:user/bob",
        {},
        ALLOW,
    ),
    (
        "variable-literal-star",
        [doc(stmt(resource="arn:aws:s3:::bucket/${*}"))],
        None,
        "s3:GetObject",
        "arn:aws:s3:::bucket/*",
        {},
        ALLOW,
    ),
    (
        "variable-literal-star-not-wildcard",
        [doc(stmt(resource="arn:aws:s3:::bucket/${*}"))],
        None,
        "s3:GetObject",
        "arn:aws:s3:::bucket/x",
        {},
        IMPLICIT,
    ),
    (
        "variable-in-legacy-version-is-text",
        [doc(stmt(resource="arn:aws:s3:::b/${aws:username}"), version="2008-10-17")],
        None,
        "s3:GetObject",
        "arn:aws:s3:::b/${aws:username}",
        ctx(aws__username="bob"),
        ALLOW,
    ),
    (
        "variable-in-condition",
        [doc(stmt(Condition={"StringEquals": {"ecs:ResourceTag/owner": "${aws:username}"}}))],
        None,
        "ecs:DeleteCluster",
        CLUSTER,
        ctx(aws__username="bob", **{"ecs__ResourceTag/owner": "bob"}),
        ALLOW,
    ),
    # ---- String conditions ----------------------------------------------------------------------------
    (
        "string-equals",
        [doc(stmt(Condition={"StringEquals": {"aws:RequestedRegion": "us-east-1"}}))],
        None,
        "ecs:ListClusters",
        "*",
        ctx(aws__RequestedRegion="us-east-1"),
        ALLOW,
    ),
    (
        "string-equals-miss",
        [doc(stmt(Condition={"StringEquals": {"aws:RequestedRegion": "us-east-1"}}))],
        None,
        "ecs:ListClusters",
        "*",
        ctx(aws__RequestedRegion="eu-west-1"),
        IMPLICIT,
    ),
    (
        "string-equals-case-sensitive",
        [doc(stmt(Condition={"StringEquals": {"aws:RequestedRegion": "US-EAST-1"}}))],
        None,
        "ecs:ListClusters",
        "*",
        ctx(aws__RequestedRegion="us-east-1"),
        IMPLICIT,
    ),
    (
        "string-equals-ignore-case",
        [doc(stmt(Condition={"StringEqualsIgnoreCase": {"aws:RequestedRegion": "US-EAST-1"}}))],
        None,
        "ecs:ListClusters",
        "*",
        ctx(aws__RequestedRegion="us-east-1"),
        ALLOW,
    ),
    (
        "condition-key-case-insensitive",
        [doc(stmt(Condition={"StringEquals": {"AWS:REQUESTEDREGION": "us-east-1"}}))],
        None,
        "ecs:ListClusters",
        "*",
        ctx(aws__requestedregion="us-east-1"),
        ALLOW,
    ),
    (
        "string-equals-values-or",
        [doc(stmt(Condition={"StringEquals": {"aws:RequestedRegion": ["eu-west-1", "us-east-1"]}}))],
        None,
        "ecs:ListClusters",
        "*",
        ctx(aws__RequestedRegion="us-east-1"),
        ALLOW,
    ),
    (
        "string-equals-missing-key",
        [doc(stmt(Condition={"StringEquals": {"aws:RequestedRegion": "us-east-1"}}))],
        None,
        "ecs:ListClusters",
        "*",
        {},
        IMPLICIT,
    ),
    (
        "string-not-equals-missing-key-holds",
        [doc(stmt(Condition={"StringNotEquals": {"aws:RequestedRegion": "us-east-1"}}))],
        None,
        "ecs:ListClusters",
        "*",
        {},
        ALLOW,
    ),
    (
        "string-not-equals",
        [doc(stmt(Condition={"StringNotEquals": {"aws:RequestedRegion": "us-east-1"}}))],
        None,
        "ecs:ListClusters",
        "*",
        ctx(aws__RequestedRegion="us-east-1"),
        IMPLICIT,
    ),
    (
        "deny-outside-regions",
        [
            doc(
                stmt(),
                stmt(
                    "Deny", Condition={"StringNotEquals": {"aws:RequestedRegion": ["us-east-1", "us-west-2"]}}
                ),
            )
        ],
        None,
        "ecs:ListClusters",
        "*",
        ctx(aws__RequestedRegion="eu-west-1"),
        DENY,
    ),
    (
        "deny-outside-regions-spares-listed",
        [
            doc(
                stmt(),
                stmt(
                    "Deny", Condition={"StringNotEquals": {"aws:RequestedRegion": ["us-east-1", "us-west-2"]}}
                ),
            )
        ],
        None,
        "ecs:ListClusters",
        "*",
        ctx(aws__RequestedRegion="us-west-2"),
        ALLOW,
    ),
    (
        "string-like",
        [doc(stmt(Condition={"StringLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/dev-*"}}))],
        None,
        "ecs:ListClusters",
        "*",
        ctx(aws__PrincipalArn=f"arn:aws:iam::{ACCT}:user/dev-ann"),
        ALLOW,
    ),
    (
        "string-not-like",
        [doc(stmt(Condition={"StringNotLike": {"aws:PrincipalArn": "*:user/dev-*"}}))],
        None,
        "ecs:ListClusters",
        "*",
        ctx(aws__PrincipalArn=f"arn:aws:iam::{ACCT}:user/dev-ann"),
        IMPLICIT,
    ),
    (
        "if-exists-missing",
        [doc(stmt(Condition={"StringEqualsIfExists": {"ec2:InstanceType": "t3.micro"}}))],
        None,
        "ec2:RunInstances",
        "*",
        {},
        ALLOW,
    ),
    (
        "if-exists-present-miss",
        [doc(stmt(Condition={"StringEqualsIfExists": {"ec2:InstanceType": "t3.micro"}}))],
        None,
        "ec2:RunInstances",
        "*",
        ctx(ec2__InstanceType="m5.large"),
        IMPLICIT,
    ),
    (
        "two-keys-and",
        [doc(stmt(Condition={"StringEquals": {"aws:RequestedRegion": "us-east-1", "aws:username": "bob"}}))],
        None,
        "ecs:ListClusters",
        "*",
        ctx(aws__RequestedRegion="us-east-1", aws__username="eve"),
        IMPLICIT,
    ),
    (
        "two-operators-and",
        [
            doc(
                stmt(
                    Condition={
                        "StringEquals": {"aws:username": "bob"},
                        "Bool": {"aws:SecureTransport": "true"},
                    }
                )
            )
        ],
        None,
        "ecs:ListClusters",
        "*",
        ctx(aws__username="bob", aws__SecureTransport="false"),
        IMPLICIT,
    ),
    # ---- Numeric, Date, Bool, Null, IP, ARN, Binary ---------------------------------------------------
    (
        "numeric-less-than",
        [doc(stmt(Condition={"NumericLessThanEquals": {"s3:max-keys": "10"}}))],
        None,
        "s3:ListBucket",
        "*",
        ctx(s3__max_keys="10"),
        IMPLICIT,
    ),
    (
        "numeric-le-holds",
        [doc(stmt(Condition={"NumericLessThanEquals": {"s3:max-keys": "10"}}))],
        None,
        "s3:ListBucket",
        "*",
        {"s3:max-keys": ["7"]},
        ALLOW,
    ),
    (
        "numeric-gt-miss",
        [doc(stmt(Condition={"NumericGreaterThan": {"s3:max-keys": 10}}))],
        None,
        "s3:ListBucket",
        "*",
        {"s3:max-keys": ["7"]},
        IMPLICIT,
    ),
    (
        "numeric-not-a-number",
        [doc(stmt(Condition={"NumericEquals": {"s3:max-keys": "10"}}))],
        None,
        "s3:ListBucket",
        "*",
        {"s3:max-keys": ["ten"]},
        IMPLICIT,
    ),
    (
        "date-less-than",
        [doc(stmt(Condition={"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}))],
        None,
        "ecs:ListClusters",
        "*",
        ctx(aws__CurrentTime="2026-12-05T11:00:00Z"),
        ALLOW,
    ),
    (
        "date-greater-than-miss",
        [doc(stmt(Condition={"DateGreaterThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}))],
        None,
        "ecs:ListClusters",
        "*",
        ctx(aws__CurrentTime="2026-12-05T11:00:00Z"),
        IMPLICIT,
    ),
    (
        "date-epoch-policy-value",
        [doc(stmt(Condition={"DateGreaterThan": {"aws:TokenIssueTime": "1700000000"}}))],
        None,
        "ecs:ListClusters",
        "*",
        ctx(aws__TokenIssueTime="2026-12-05T11:00:00Z"),
        ALLOW,
    ),
    (
        "date-window-and",
        [
            doc(
                stmt(
                    Condition={
                        "DateGreaterThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"},
                        "DateLessThan": {"aws:CurrentTime": "2026-06-30T23:59:59Z"},
                    }
                )
            )
        ],
        None,
        "ecs:ListClusters",
        "*",
        ctx(aws__CurrentTime="2026-12-05T11:00:00Z"),
        IMPLICIT,
    ),
    (
        "bool-mfa-deny",
        [doc(stmt(), stmt("Deny", Condition={"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}}))],
        None,
        "ec2:TerminateInstances",
        "*",
        ctx(aws__MultiFactorAuthPresent="false"),
        DENY,
    ),
    (
        "bool-mfa-deny-missing-key",
        [doc(stmt(), stmt("Deny", Condition={"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}}))],
        None,
        "ec2:TerminateInstances",
        "*",
        {},
        DENY,
    ),
    (
        "bool-mfa-present",
        [doc(stmt(), stmt("Deny", Condition={"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}}))],
        None,
        "ec2:TerminateInstances",
        "*",
        ctx(aws__MultiFactorAuthPresent="true"),
        ALLOW,
    ),
    (
        "bool-json-boolean",
        [doc(stmt(Condition={"Bool": {"aws:SecureTransport": True}}))],
        None,
        "ecs:ListClusters",
        "*",
        ctx(aws__SecureTransport="true"),
        ALLOW,
    ),
    (
        "null-true-key-absent",
        [doc(stmt(Condition={"Null": {"aws:TokenIssueTime": "true"}}))],
        None,
        "ecs:ListClusters",
        "*",
        {},
        ALLOW,
    ),
    (
        "null-true-key-present",
        [doc(stmt(Condition={"Null": {"aws:TokenIssueTime": "true"}}))],
        None,
        "ecs:ListClusters",
        "*",
        ctx(aws__TokenIssueTime="2026-12-05T11:00:00Z"),
        IMPLICIT,
    ),
    (
        "null-false-key-present",
        [doc(stmt(Condition={"Null": {"aws:TokenIssueTime": "false"}}))],
        None,
        "ecs:ListClusters",
        "*",
        ctx(aws__TokenIssueTime="2026-12-05T11:00:00Z"),
        ALLOW,
    ),
    (
        "ip-address",
        [doc(stmt(Condition={"IpAddress": {"aws:SourceIp": ["192.0.2.0/24", "203.0.113.0/24"]}}))],
        None,
        "ecs:ListClusters",
        "*",
        ctx(aws__SourceIp="203.0.113.9"),
        ALLOW,
    ),
    (
        "ip-address-miss",
        [doc(stmt(Condition={"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}}))],
        None,
        "ecs:ListClusters",
        "*",
        ctx(aws__SourceIp="198.51.100.1"),
        IMPLICIT,
    ),
    (
        "not-ip-address-deny",
        [doc(stmt(), stmt("Deny", Condition={"NotIpAddress": {"aws:SourceIp": "192.0.2.0/24"}}))],
        None,
        "ecs:ListClusters",
        "*",
        ctx(aws__SourceIp="198.51.100.1"),
        DENY,
    ),
    (
        "ip-address-v6",
        [doc(stmt(Condition={"IpAddress": {"aws:SourceIp": "2001:db8::/32"}}))],
        None,
        "ecs:ListClusters",
        "*",
        ctx(aws__SourceIp="2001:db8::1"),
        ALLOW,
    ),
    (
        "arn-like",
        [doc(stmt(Condition={"ArnLike": {"aws:SourceArn": f"arn:aws:ecs:us-east-1:{ACCT}:*"}}))],
        None,
        "sts:AssumeRole",
        "*",
        ctx(aws__SourceArn=f"arn:aws:ecs:us-east-1:{ACCT}:task/web/abc"),
        ALLOW,
    ),
    (
        "arn-like-other-account",
        [doc(stmt(Condition={"ArnLike": {"aws:SourceArn": f"arn:aws:ecs:us-east-1:{ACCT}:*"}}))],
        None,
        "sts:AssumeRole",
        "*",
        ctx(aws__SourceArn="arn:aws:ecs:us-east-1:999999999999:task/web/abc"),
        IMPLICIT,
    ),
    (
        "arn-not-equals",
        [doc(stmt(Condition={"ArnNotEquals": {"aws:SourceArn": CLUSTER}}))],
        None,
        "ecs:ListClusters",
        "*",
        ctx(aws__SourceArn=CLUSTER),
        IMPLICIT,
    ),
    (
        "binary-equals",
        [doc(stmt(Condition={"BinaryEquals": {"x:key": "QmluYXJ5VmFsdWU="}}))],
        None,
        "ecs:ListClusters",
        "*",
        {"x:key": ["QmluYXJ5VmFsdWU="]},
        ALLOW,
    ),
    # ---- set operators --------------------------------------------------------------------------------
    (
        "for-any-value-hit",
        [doc(stmt(Condition={"ForAnyValue:StringEquals": {"aws:TagKeys": ["env", "team"]}}))],
        None,
        "ecs:TagResource",
        "*",
        {"aws:tagkeys": ["owner", "team"]},
        ALLOW,
    ),
    (
        "for-any-value-miss",
        [doc(stmt(Condition={"ForAnyValue:StringEquals": {"aws:TagKeys": ["env", "team"]}}))],
        None,
        "ecs:TagResource",
        "*",
        {"aws:tagkeys": ["owner"]},
        IMPLICIT,
    ),
    (
        "for-any-value-missing-key",
        [doc(stmt(Condition={"ForAnyValue:StringEquals": {"aws:TagKeys": ["env"]}}))],
        None,
        "ecs:TagResource",
        "*",
        {},
        IMPLICIT,
    ),
    (
        "for-all-values-hit",
        [doc(stmt(Condition={"ForAllValues:StringEquals": {"aws:TagKeys": ["env", "team"]}}))],
        None,
        "ecs:TagResource",
        "*",
        {"aws:tagkeys": ["env"]},
        ALLOW,
    ),
    (
        "for-all-values-miss",
        [doc(stmt(Condition={"ForAllValues:StringEquals": {"aws:TagKeys": ["env", "team"]}}))],
        None,
        "ecs:TagResource",
        "*",
        {"aws:tagkeys": ["env", "owner"]},
        IMPLICIT,
    ),
    (
        "for-all-values-missing-key-holds",
        [doc(stmt(Condition={"ForAllValues:StringEquals": {"aws:TagKeys": ["env"]}}))],
        None,
        "ecs:TagResource",
        "*",
        {},
        ALLOW,
    ),
    (
        "for-all-values-like",
        [doc(stmt(Condition={"ForAllValues:StringLike": {"aws:TagKeys": ["app-*"]}}))],
        None,
        "ecs:TagResource",
        "*",
        {"aws:tagkeys": ["app-a", "app-b"]},
        ALLOW,
    ),
    (
        "for-any-value-not-equals",
        [doc(stmt(Condition={"ForAnyValue:StringNotEquals": {"aws:TagKeys": ["env"]}}))],
        None,
        "ecs:TagResource",
        "*",
        {"aws:tagkeys": ["env", "x"]},
        ALLOW,
    ),
    (
        "for-all-values-not-equals",
        [doc(stmt(Condition={"ForAllValues:StringNotEquals": {"aws:TagKeys": ["env"]}}))],
        None,
        "ecs:TagResource",
        "*",
        {"aws:tagkeys": ["env", "x"]},
        IMPLICIT,
    ),
    # ---- session policies -----------------------------------------------------------------------------
    (
        "session-intersects",
        [doc(stmt(action="ecs:*"))],
        [doc(stmt(action="ecs:List*"))],
        "ecs:ListClusters",
        "*",
        {},
        ALLOW,
    ),
    (
        "session-narrows",
        [doc(stmt(action="ecs:*"))],
        [doc(stmt(action="ecs:List*"))],
        "ecs:CreateCluster",
        CLUSTER,
        {},
        IMPLICIT,
    ),
    (
        "session-cannot-widen",
        [doc(stmt(action="ecs:List*"))],
        [doc(stmt())],
        "ecs:CreateCluster",
        CLUSTER,
        {},
        IMPLICIT,
    ),
    ("session-deny", [doc(stmt())], [doc(stmt(), stmt("Deny", "iam:*"))], "iam:CreateUser", "*", {}, DENY),
    ("session-empty-list-denies", [doc(stmt())], [], "ecs:ListClusters", "*", {}, IMPLICIT),
]


@pytest.mark.parametrize(
    ("identity", "session", "action", "resource", "context", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_policy_corpus(
    identity: list[dict[str, Any]],
    session: list[dict[str, Any]] | None,
    action: str,
    resource: str,
    context: dict[str, list[str]],
    expected: Decision,
) -> None:
    policies = [parse_document(d) for d in identity]
    sessions = None if session is None else [parse_document(d) for d in session]
    assert evaluate(policies, Request(action, resource, context), sessions) is expected


def test_corpus_is_large_and_covers_every_outcome() -> None:
    assert len(CASES) >= 60
    assert len({case[0] for case in CASES}) == len(CASES)
    assert {case[-1] for case in CASES} == {ALLOW, DENY, IMPLICIT}


def test_corpus_documents_round_trip_as_json() -> None:
    for case in CASES:
        for document in case[1]:
            assert parse_document(orjson.loads(orjson.dumps(document))).statements
