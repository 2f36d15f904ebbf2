"""Policy documents: IAM's validation (its MalformedPolicyDocument texts) and a parsed, typed form.

Identity policies (attached to users and roles, and session policies) must name Actions and Resources
and no Principal; trust policies (a role's AssumeRolePolicyDocument) must name a Principal and no
Resource. ``parse_policy`` raises :class:`ClientError` ``MalformedPolicyDocument`` with IAM's wording.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from taskvpc.domain.errors import ClientError
from taskvpc.domain.iam.conditions import known_operator

PolicyKind = Literal["identity", "trust"]
VERSIONS = ("2012-10-17", "2008-10-17")
MAX_DOCUMENT_CHARS = {"identity": 6144, "trust": 2048}  # managed policy / default trust quota (IAM quotas)

_STATEMENT_FIELDS = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Principal"}
_STATEMENT_FIELDS |= {"NotPrincipal", "Condition"}
_ACTION = re.compile(r"^[A-Za-z0-9*?-]+:[A-Za-z0-9*?]*$")
_SID = re.compile(r"^[A-Za-z0-9]*$")


@dataclass(frozen=True, slots=True)
class Statement:
    effect: Literal["Allow", "Deny"]
    actions: tuple[str, ...]
    not_actions: bool  # True: the statement names what it does NOT apply to (NotAction)
    resources: tuple[str, ...]
    not_resources: bool
    # Principal / NotPrincipal of a trust policy: kind ("AWS", "Service", "Federated", "*") -> values.
    principals: tuple[tuple[str, str], ...] = ()
    not_principals: bool = False
    # operator (as written) -> condition key (lower-cased) -> values, all as strings.
    conditions: tuple[tuple[str, tuple[tuple[str, tuple[str, ...]], ...]], ...] = ()
    sid: str = ""


@dataclass(frozen=True, slots=True)
class Policy:
    version: str
    statements: tuple[Statement, ...]

    @property
    def variables(self) -> bool:
        """Policy variables (``${aws:username}``) are substituted only in 2012-10-17 documents."""
        return self.version == "2012-10-17"


def malformed(message: str) -> ClientError:
    return ClientError("MalformedPolicyDocument", message, 400)


def parse_policy(text: str, kind: PolicyKind = "identity") -> Policy:
    """The policy ``text`` as IAM would store it, or MalformedPolicyDocument."""
    if not text.strip():
        raise malformed("Syntax errors in policy.")
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise malformed("This policy contains invalid Json") from None
    return parse_document(document, kind)


def parse_document(document: Any, kind: PolicyKind = "identity") -> Policy:
    if not isinstance(document, dict):
        raise malformed("Syntax errors in policy.")
    unknown = set(document) - {"Version", "Statement", "Id"}
    if unknown:
        raise malformed("Syntax errors in policy.")
    version = document.get("Version", "2008-10-17")
    if version not in VERSIONS:
        raise malformed("Syntax errors in policy.")
    raw = document.get("Statement")
    if raw is None:
        raise malformed("Syntax errors in policy.")
    raw_statements = raw if isinstance(raw, list) else [raw]
    if not raw_statements:
        raise malformed("Syntax errors in policy.")
    statements = tuple(_statement(item, kind) for item in raw_statements)
    sids = [s.sid for s in statements if s.sid]
    if len(sids) != len(set(sids)):
        raise malformed("Statement IDs (SID) in a single policy must be unique.")
    return Policy(version, statements)


def _statement(raw: Any, kind: PolicyKind) -> Statement:
    if not isinstance(raw, dict) or set(raw) - _STATEMENT_FIELDS:
        raise malformed("Syntax errors in policy.")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise malformed("Syntax errors in policy.")
    sid = raw.get("Sid", "")
    if not isinstance(sid, str) or not _SID.match(sid):
        raise malformed(
            "Statement IDs (SID) must be alpha-numeric. Check that your input satisfies the "
            "regular expression [0-9A-Za-z]*"
        )
    actions, not_actions = _pair(raw, "Action", "NotAction")
    if actions is None:
        raise malformed("Policy statement must contain actions.")
    for action in actions:
        if action != "*" and ":" not in action:
            raise malformed("Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.")
        if action != "*" and not _ACTION.match(action):
            raise malformed("Syntax errors in policy.")
    resources, not_resources = _pair(raw, "Resource", "NotResource")
    principals, not_principals = _principals(raw)
    if kind == "identity":
        if principals is not None:
            raise malformed("Policy document should not specify a principal.")
        if resources is None:
            raise malformed("Policy statement must contain resources.")
    else:
        if resources is not None:
            raise malformed(f"Has prohibited field {'NotResource' if not_resources else 'Resource'}")
        if principals is None:
            raise malformed("Missing required field Principal")
    for resource in resources or ():
        if resource != "*" and not resource.startswith("arn:") and "${" not in resource:
            raise malformed(f'Resource {resource} must be in ARN format or "*".')
    return Statement(
        effect=effect,
        actions=actions,
        not_actions=not_actions,
        resources=resources or (),
        not_resources=not_resources,
        principals=principals or (),
        not_principals=not_principals,
        conditions=_conditions(raw.get("Condition")),
        sid=sid,
    )


def _strings(value: Any) -> tuple[str, ...]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) for v in values):
        raise malformed("Syntax errors in policy.")
    return tuple(values)


def _pair(raw: dict[str, Any], name: str, negated: str) -> tuple[tuple[str, ...] | None, bool]:
    if name in raw and negated in raw:
        raise malformed("Syntax errors in policy.")
    if name in raw:
        return _strings(raw[name]), False
    if negated in raw:
        return _strings(raw[negated]), True
    return None, False


def _principals(raw: dict[str, Any]) -> tuple[tuple[tuple[str, str], ...] | None, bool]:
    if "Principal" in raw and "NotPrincipal" in raw:
        raise malformed("Syntax errors in policy.")
    negated = "NotPrincipal" in raw
    value = raw.get("NotPrincipal" if negated else "Principal")
    if value is None:
        return None, False
    if value == "*":
        return (("*", "*"),), negated
    if not isinstance(value, dict) or not value:
        raise malformed("Invalid principal in policy")
    found: list[tuple[str, str]] = []
    for principal_kind, names in value.items():
        if principal_kind not in ("AWS", "Service", "Federated", "CanonicalUser"):
            raise malformed("Invalid principal in policy")
        for name in _strings(names):
            found.append((principal_kind, name))
    return tuple(found), negated


def _conditions(raw: Any) -> tuple[tuple[str, tuple[tuple[str, tuple[str, ...]], ...]], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise malformed("Syntax errors in policy.")
    blocks = []
    for operator, keys in raw.items():
        if not known_operator(operator) or not isinstance(keys, dict) or not keys:
            raise malformed("Syntax errors in policy.")
        entries = []
        for key, values in keys.items():
            if ":" not in key:
                raise malformed("Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.")
            as_list = values if isinstance(values, list) else [values]
            if not all(isinstance(v, str | int | float | bool) for v in as_list):
                raise malformed("Syntax errors in policy.")
            entries.append((key.lower(), tuple(_as_text(v) for v in as_list)))
        blocks.append((operator, tuple(entries)))
    return tuple(blocks)


def _as_text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
