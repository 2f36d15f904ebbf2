"""Condition operators of the IAM policy language (pure).

A condition block is ``{operator: {key: [values]}}``: every operator and every key must hold (AND), any of
a key's policy values may match (OR). A request context maps lower-cased condition keys to their values
(one or several strings); a key the request lacks fails a positive operator and satisfies a negated one,
``...IfExists`` turns a missing key into a match, ``Null`` tests presence. ``ForAnyValue:`` needs one
request value to match (missing: no match), ``ForAllValues:`` needs every one to (missing: match).
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache

Context = Mapping[str, Sequence[str]]


# Policy variables ${*} and ${?} stand for a literal * and ?: substitution writes these placeholders,
# which match only the character itself.
LITERAL_STAR, LITERAL_QUESTION = "\x00", "\x01"
_GLOB_PARTS = {"*": ".*", "?": ".", LITERAL_STAR: re.escape("*"), LITERAL_QUESTION: re.escape("?")}


def literal(text: str) -> str:
    """``text`` with the placeholders of literal wildcards turned back into the characters."""
    return text.replace(LITERAL_STAR, "*").replace(LITERAL_QUESTION, "?")


@lru_cache(maxsize=4096)
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """IAM wildcards: ``*`` any run of characters, ``?`` one character, nothing else special."""
    body = "".join(_GLOB_PARTS.get(c) or re.escape(c) for c in pattern)
    return re.compile(f"(?s:{body})\\Z", re.IGNORECASE if ignore_case else 0)


@lru_cache(maxsize=4096)
def any_glob(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """One case-insensitive pattern for a statement's Action list (matching actions is the hot path)."""
    bodies = ("".join(_GLOB_PARTS.get(c) or re.escape(c) for c in p) for p in patterns)
    return re.compile("(?s:" + "|".join(f"(?:{b})" for b in bodies) + ")\\Z", re.IGNORECASE)


def wildcard_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    if pattern == "*":
        return True
    return _glob(pattern, ignore_case).match(value) is not None


def arn_like(pattern: str, value: str) -> bool:
    """ARN matching: the six colon-separated parts match one by one (a wildcard stays in its part),
    except the resource part, which may itself contain colons."""
    if pattern == "*":
        return True
    want = pattern.split(":", 5)
    have = value.split(":", 5)
    if len(want) != 6 or len(have) != 6:
        return False  # not an ARN (or a pattern of one): IAM matches nothing
    return all(wildcard_match(w, h) for w, h in zip(want, have, strict=True))


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _date(text: str) -> datetime | None:
    try:
        if re.fullmatch(r"-?\d+(\.\d+)?", text):
            return datetime.fromtimestamp(float(text), UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _compare(
    parse: Callable[[str], float | datetime | None], test: Callable[[int], bool]
) -> Callable[[str, str], bool]:
    def match(value: str, wanted: str) -> bool:
        have, want = parse(value), parse(wanted)
        if have is None or want is None:
            return False
        return test((have > want) - (have < want))  # type: ignore[operator]

    return match


def _ip(value: str, wanted: str) -> bool:
    try:
        return ipaddress.ip_address(value) in ipaddress.ip_network(wanted, strict=False)
    except ValueError:
        return False


def _binary(value: str, wanted: str) -> bool:
    try:
        return base64.b64decode(value, validate=True) == base64.b64decode(wanted, validate=True)
    except ValueError:
        return False


# base operator -> (match(request value, policy value), negated)
_OPERATORS: dict[str, tuple[Callable[[str, str], bool], bool]] = {
    "StringEquals": (lambda v, w: v == w, False),
    "StringNotEquals": (lambda v, w: v == w, True),
    "StringEqualsIgnoreCase": (lambda v, w: v.lower() == w.lower(), False),
    "StringNotEqualsIgnoreCase": (lambda v, w: v.lower() == w.lower(), True),
    "StringLike": (lambda v, w: wildcard_match(w, v), False),
    "StringNotLike": (lambda v, w: wildcard_match(w, v), True),
    "NumericEquals": (_compare(_number, lambda c: c == 0), False),
    "NumericNotEquals": (_compare(_number, lambda c: c == 0), True),
    "NumericLessThan": (_compare(_number, lambda c: c < 0), False),
    "NumericLessThanEquals": (_compare(_number, lambda c: c <= 0), False),
    "NumericGreaterThan": (_compare(_number, lambda c: c > 0), False),
    "NumericGreaterThanEquals": (_compare(_number, lambda c: c >= 0), False),
    "DateEquals": (_compare(_date, lambda c: c == 0), False),
    "DateNotEquals": (_compare(_date, lambda c: c == 0), True),
    "DateLessThan": (_compare(_date, lambda c: c < 0), False),
    "DateLessThanEquals": (_compare(_date, lambda c: c <= 0), False),
    "DateGreaterThan": (_compare(_date, lambda c: c > 0), False),
    "DateGreaterThanEquals": (_compare(_date, lambda c: c >= 0), False),
    "Bool": (lambda v, w: v.lower() == w.lower(), False),
    "BinaryEquals": (_binary, False),
    "IpAddress": (_ip, False),
    "NotIpAddress": (_ip, True),
    "ArnEquals": (lambda v, w: arn_like(w, v), False),
    "ArnLike": (lambda v, w: arn_like(w, v), False),
    "ArnNotEquals": (lambda v, w: arn_like(w, v), True),
    "ArnNotLike": (lambda v, w: arn_like(w, v), True),
}


def _split(operator: str) -> tuple[str, str, bool]:
    """``ForAllValues:StringLikeIfExists`` -> ("ForAllValues", "StringLike", if_exists=True)."""
    qualifier, _, base = operator.rpartition(":")
    if_exists = base.endswith("IfExists") and base != "IfExists"
    if if_exists:
        base = base[: -len("IfExists")]
    return qualifier, base, if_exists


def known_operator(operator: str) -> bool:
    qualifier, base, if_exists = _split(operator)
    if qualifier not in ("", "ForAnyValue", "ForAllValues"):
        return False
    if base == "Null":
        return not if_exists and not qualifier
    return base in _OPERATORS


def condition_holds(operator: str, key: str, wanted: Sequence[str], context: Context) -> bool:
    """Whether one ``operator: {key: wanted}`` entry holds for the request ``context``."""
    present = context.get(key)
    qualifier, base, if_exists = _split(operator)
    if base == "Null":
        is_null = not present
        return any((w.lower() == "true") == is_null for w in wanted)
    match, negated = _OPERATORS[base]

    def one(value: str) -> bool:
        found = any(match(value, w) for w in wanted)
        return not found if negated else found

    if not present:
        if qualifier == "ForAllValues":
            return True
        if qualifier == "ForAnyValue":
            return False
        return if_exists or negated
    if qualifier == "ForAllValues":
        return all(one(value) for value in present)
    if qualifier == "ForAnyValue":
        return any(one(value) for value in present)
    if negated:  # a single-valued negated operator: no request value may match
        return all(one(value) for value in present)
    return any(one(value) for value in present)
