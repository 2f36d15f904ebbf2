"""ECS's cluster query language: a tokenizer, a recursive-descent parser and an evaluator.

Used by ``memberOf`` placement constraints and by ``ListContainerInstances --filter``. Grammar (from the ECS
Developer Guide ``cluster-query-language.md``; precedence of ``and`` over ``or`` is ours, the guide only says
parentheses may group)::

    expression  := disjunction
    disjunction := conjunction (("||" | "or") conjunction)*
    conjunction := unary (("&&" | "and") unary)*
    unary       := ("!" | "not") unary | "(" expression ")" | comparison
    comparison  := subject operator [argument]
    argument    := value | "[" value ("," value)* "]"
    subject     := agentConnected | agentVersion | ec2InstanceId | registeredAt | runningTasksCount
                 | task:group | attribute:<name>

Operators: ``==``/``equals``, ``!=``/``not_equals``, ``>``/``greater_than``, ``>=``/``greater_than_equal``,
``<``/``less_than``, ``<=``/``less_than_equal``, ``exists``, ``!exists``/``not_exists``, ``in``,
``!in``/``not_in``, ``=~``/``matches``, ``!~``/``not_matches``. Values are bare words or quoted with ``'`` or
``"``; ``matches`` takes a (Java-style, here Python) regular expression that must match the whole value.

Semantics we chose where the guide is silent [I]: a negative operator on ``attribute:`` needs the attribute
present (the guide's ``attribute:stack != prod`` "lists the instances with the custom attribute stack unless
the value is prod"); ``task:group`` is true for ``==``/``in``/``=~``/``exists`` when *some* task on the instance
is in a matching group, and its negatives are the plain negation; ordering operators compare numbers as
numbers, versions part by part and ``registeredAt`` as a timestamp.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol, TypeVar


class QuerySyntaxError(ValueError):
    """An expression that does not parse; ``position`` is the character offset where it went wrong."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.message = message
        self.position = position


class Op(StrEnum):
    EQ = "=="
    NE = "!="
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    EXISTS = "exists"
    NOT_EXISTS = "!exists"
    IN = "in"
    NOT_IN = "!in"
    MATCHES = "=~"
    NOT_MATCHES = "!~"


_WORD_OPS: dict[str, Op] = {
    "equals": Op.EQ,
    "not_equals": Op.NE,
    "greater_than": Op.GT,
    "greater_than_equal": Op.GE,
    "less_than": Op.LT,
    "less_than_equal": Op.LE,
    "exists": Op.EXISTS,
    "not_exists": Op.NOT_EXISTS,
    "in": Op.IN,
    "not_in": Op.NOT_IN,
    "matches": Op.MATCHES,
    "not_matches": Op.NOT_MATCHES,
}
_NEGATIVE = frozenset({Op.NE, Op.NOT_EXISTS, Op.NOT_IN, Op.NOT_MATCHES})
_ORDERING = frozenset({Op.GT, Op.GE, Op.LT, Op.LE})
_EQUALITY_SET = frozenset({Op.EQ, Op.NE, Op.IN, Op.NOT_IN, Op.MATCHES, Op.NOT_MATCHES})
_COMPARABLE = frozenset({Op.EQ, Op.NE, *_ORDERING})

# Subjects and the operators the guide lists for each (attribute: takes all of them).
SUBJECT_OPERATORS: dict[str, frozenset[Op]] = {
    "agentConnected": _EQUALITY_SET,
    "agentVersion": _COMPARABLE,
    "ec2InstanceId": _EQUALITY_SET,
    "registeredAt": _COMPARABLE,
    "runningTasksCount": _COMPARABLE,
    "task:group": _EQUALITY_SET | {Op.EXISTS, Op.NOT_EXISTS},
}
ATTRIBUTE_PREFIX = "attribute:"


# --------------------------------------------------------------------------------------------------- tokens


class Tok(StrEnum):
    WORD = "word"
    STRING = "string"
    OP = "operator"
    AND = "&&"
    OR = "||"
    NOT = "!"
    LPAREN = "("
    RPAREN = ")"
    LBRACKET = "["
    RBRACKET = "]"
    COMMA = ","
    END = "end"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Tok
    text: str
    position: int


_PUNCT: dict[str, Tok] = {
    "(": Tok.LPAREN,
    ")": Tok.RPAREN,
    "[": Tok.LBRACKET,
    "]": Tok.RBRACKET,
    ",": Tok.COMMA,
}
_WORD_STOP = set(" \t\r\n()[],'\"=<>!&|")
_SYMBOL_OPS = ("==", "!=", ">=", "<=", "=~", "!~", ">", "<")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in _PUNCT:
            tokens.append(Token(_PUNCT[ch], ch, i))
            i += 1
            continue
        if ch in "'\"":
            end = text.find(ch, i + 1)
            if end < 0:
                raise QuerySyntaxError("unterminated quoted value", i)
            tokens.append(Token(Tok.STRING, text[i + 1 : end], i))
            i = end + 1
            continue
        if text.startswith("&&", i):
            tokens.append(Token(Tok.AND, "&&", i))
            i += 2
            continue
        if text.startswith("||", i):
            tokens.append(Token(Tok.OR, "||", i))
            i += 2
            continue
        if ch == "!":
            for word, op in (("!exists", Op.NOT_EXISTS), ("!in", Op.NOT_IN)):
                after = i + len(word)
                if text.startswith(word, i) and (after == n or text[after] in _WORD_STOP):
                    tokens.append(Token(Tok.OP, op.value, i))
                    i = after
                    break
            else:
                if text.startswith(("!=", "!~"), i):
                    tokens.append(Token(Tok.OP, text[i : i + 2], i))
                    i += 2
                else:
                    tokens.append(Token(Tok.NOT, "!", i))
                    i += 1
            continue
        symbol = next((s for s in _SYMBOL_OPS if text.startswith(s, i)), None)
        if symbol is not None:
            tokens.append(Token(Tok.OP, symbol, i))
            i += len(symbol)
            continue
        if ch in "=<>&|":
            raise QuerySyntaxError(f"unexpected character {ch!r}", i)
        start = i
        while i < n and text[i] not in _WORD_STOP:
            i += 1
        tokens.append(Token(Tok.WORD, text[start:i], start))
    tokens.append(Token(Tok.END, "", n))
    return tokens


# --------------------------------------------------------------------------------------------------- tree


class Target(Protocol):
    """What an expression can look at on a container instance."""

    @property
    def instance_id(self) -> str: ...
    @property
    def agent_connected(self) -> bool: ...
    @property
    def agent_version(self) -> str | None: ...
    @property
    def registered_at(self) -> datetime | None: ...
    @property
    def running_tasks_count(self) -> int: ...
    @property
    def task_groups(self) -> Mapping[str, int]: ...
    def attribute(self, name: str) -> tuple[bool, str | None]: ...


@dataclass(frozen=True, slots=True)
class Compare:
    subject: str
    op: Op
    args: tuple[str, ...] = ()
    pattern: re.Pattern[str] | None = None

    def evaluate(self, target: Target) -> bool:
        if self.subject == "task:group":
            groups = [g for g, n in target.task_groups.items() if n > 0]
            positive = _POSITIVE_OF.get(self.op, self.op)
            hit = any(_test(positive, g, self.args, self.pattern, "task:group") for g in groups)
            return not hit if self.op in _NEGATIVE else hit
        present, value = _subject_value(self.subject, target)
        if self.op is Op.EXISTS:
            return present
        if self.op is Op.NOT_EXISTS:
            return not present
        if not present or value is None:
            return False
        return _test(self.op, value, self.args, self.pattern, self.subject)


@dataclass(frozen=True, slots=True)
class Not:
    inner: Expr

    def evaluate(self, target: Target) -> bool:
        return not self.inner.evaluate(target)


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Expr, ...]

    def evaluate(self, target: Target) -> bool:
        return all(item.evaluate(target) for item in self.items)


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Expr, ...]

    def evaluate(self, target: Target) -> bool:
        return any(item.evaluate(target) for item in self.items)


Expr = Compare | Not | And | Or

_POSITIVE_OF: dict[Op, Op] = {
    Op.NE: Op.EQ,
    Op.NOT_IN: Op.IN,
    Op.NOT_MATCHES: Op.MATCHES,
    Op.NOT_EXISTS: Op.EXISTS,
}


def _subject_value(subject: str, target: Target) -> tuple[bool, str | None]:
    if subject.startswith(ATTRIBUTE_PREFIX):
        return target.attribute(subject[len(ATTRIBUTE_PREFIX) :])
    if subject == "ec2InstanceId":
        return True, target.instance_id
    if subject == "agentConnected":
        return True, "true" if target.agent_connected else "false"
    if subject == "agentVersion":
        return target.agent_version is not None, target.agent_version
    if subject == "runningTasksCount":
        return True, str(target.running_tasks_count)
    if subject == "registeredAt":
        at = target.registered_at
        return at is not None, None if at is None else at.isoformat()
    raise AssertionError(f"unchecked subject {subject}")  # parse() only admits known subjects


def _test(op: Op, value: str, args: tuple[str, ...], pattern: re.Pattern[str] | None, subject: str) -> bool:
    if op is Op.EXISTS:
        return True
    if op in (Op.MATCHES, Op.NOT_MATCHES):
        assert pattern is not None
        found = pattern.fullmatch(value) is not None
        return found if op is Op.MATCHES else not found
    if op in (Op.IN, Op.NOT_IN):
        inside = any(_equal(subject, value, a) for a in args)
        return inside if op is Op.IN else not inside
    if op is Op.EQ:
        return _equal(subject, value, args[0])
    if op is Op.NE:
        return not _equal(subject, value, args[0])
    order = _order(subject, value, args[0])
    if order is None:
        return False
    return {Op.GT: order > 0, Op.GE: order >= 0, Op.LT: order < 0, Op.LE: order <= 0}[op]


def _equal(subject: str, value: str, arg: str) -> bool:
    if subject == "agentConnected":
        return value == arg.lower()
    if subject in ("runningTasksCount", "registeredAt", "agentVersion"):
        return _order(subject, value, arg) == 0
    return value == arg


_Comparable = TypeVar("_Comparable", str, datetime, tuple[float, ...])


def _cmp(left: _Comparable, right: _Comparable) -> int:
    return (left > right) - (left < right)


def _order(subject: str, value: str, arg: str) -> int | None:
    """-1, 0 or 1 comparing ``value`` with ``arg`` as ``subject`` orders them; ``None`` if incomparable."""
    if subject == "registeredAt":
        when, than = _parse_when(value), _parse_when(arg)
        return None if when is None or than is None else _cmp(when, than)
    left, right = _version(value), _version(arg)
    if left is not None and right is not None:
        width = max(len(left), len(right))
        return _cmp(left + (0.0,) * (width - len(left)), right + (0.0,) * (width - len(right)))
    if subject in ("runningTasksCount", "agentVersion"):
        return None
    return _cmp(value, arg)


def _version(text: str) -> tuple[float, ...] | None:
    parts = text.split(".")
    try:
        return tuple(float(p) for p in parts)
    except ValueError:
        return None


def _parse_when(text: str) -> datetime | None:
    candidate = text[:-1] + "+00:00" if text.endswith("Z") else text
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# --------------------------------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.index = 0

    def peek(self) -> Token:
        return self.tokens[self.index]

    def take(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def expect(self, kind: Tok, what: str) -> Token:
        token = self.take()
        if token.kind is not kind:
            raise QuerySyntaxError(f"expected {what}, found {_describe(token)}", token.position)
        return token

    def at_keyword(self, *words: str) -> bool:
        token = self.peek()
        return token.kind is Tok.WORD and token.text.lower() in words

    def expression(self) -> Expr:
        items = [self.conjunction()]
        while self.peek().kind is Tok.OR or self.at_keyword("or"):
            self.take()
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def conjunction(self) -> Expr:
        items = [self.unary()]
        while self.peek().kind is Tok.AND or self.at_keyword("and"):
            self.take()
            items.append(self.unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self) -> Expr:
        token = self.peek()
        if token.kind is Tok.NOT or self.at_keyword("not"):
            self.take()
            return Not(self.unary())
        if token.kind is Tok.LPAREN:
            self.take()
            inner = self.expression()
            self.expect(Tok.RPAREN, "')'")
            return inner
        return self.comparison()

    def comparison(self) -> Compare:
        token = self.take()
        if token.kind is not Tok.WORD:
            raise QuerySyntaxError(f"expected a subject, found {_describe(token)}", token.position)
        subject = _canonical_subject(token)
        op_token = self.take()
        op = _operator(op_token)
        if subject.startswith(ATTRIBUTE_PREFIX):
            allowed: frozenset[Op] = frozenset(Op)
        else:
            allowed = SUBJECT_OPERATORS[subject]
        if op not in allowed:
            raise QuerySyntaxError(f"operator {op.value} is not valid for {subject}", op_token.position)
        if op in (Op.EXISTS, Op.NOT_EXISTS):
            return Compare(subject, op)
        if op in (Op.IN, Op.NOT_IN):
            return Compare(subject, op, self.value_list())
        value_token = self.peek()
        value = self.value()
        if op in (Op.MATCHES, Op.NOT_MATCHES):
            try:
                pattern = re.compile(value)
            except re.error as exc:
                raise QuerySyntaxError(f"invalid pattern {value!r}: {exc}", value_token.position) from None
            return Compare(subject, op, (value,), pattern)
        if op in _ORDERING or subject == "registeredAt":
            _check_ordered_value(subject, value, value_token)
        return Compare(subject, op, (value,))

    def value(self) -> str:
        token = self.take()
        if token.kind in (Tok.WORD, Tok.STRING):
            return token.text
        raise QuerySyntaxError(f"expected a value, found {_describe(token)}", token.position)

    def value_list(self) -> tuple[str, ...]:
        self.expect(Tok.LBRACKET, "'['")
        values = [self.value()]
        while self.peek().kind is Tok.COMMA:
            self.take()
            values.append(self.value())
        self.expect(Tok.RBRACKET, "']'")
        return tuple(values)


def _describe(token: Token) -> str:
    return "end of expression" if token.kind is Tok.END else repr(token.text)


def _canonical_subject(token: Token) -> str:
    text = token.text
    if text.startswith(ATTRIBUTE_PREFIX):
        if len(text) == len(ATTRIBUTE_PREFIX):
            raise QuerySyntaxError("attribute name missing", token.position)
        return text
    if text in SUBJECT_OPERATORS:
        return text
    raise QuerySyntaxError(f"unknown subject {text!r}", token.position)


def _operator(token: Token) -> Op:
    if token.kind is Tok.OP:
        return Op(token.text)
    if token.kind is Tok.WORD and token.text.lower() in _WORD_OPS:
        return _WORD_OPS[token.text.lower()]
    raise QuerySyntaxError(f"expected an operator, found {_describe(token)}", token.position)


def _check_ordered_value(subject: str, value: str, token: Token) -> None:
    if subject == "registeredAt" and _parse_when(value) is None:
        raise QuerySyntaxError(f"invalid date {value!r}", token.position)
    if subject in ("runningTasksCount", "agentVersion") and _version(value) is None:
        raise QuerySyntaxError(f"invalid number {value!r}", token.position)


def parse(text: str) -> Expr:
    """Parse a cluster query expression; raises :class:`QuerySyntaxError`."""
    parser = _Parser(text)
    if parser.peek().kind is Tok.END:
        raise QuerySyntaxError("empty expression", 0)
    tree = parser.expression()
    trailing = parser.peek()
    if trailing.kind is not Tok.END:
        raise QuerySyntaxError(f"unexpected {_describe(trailing)}", trailing.position)
    return tree


def matches(text: str, target: Target) -> bool:
    """Parse and evaluate in one go (tests, one-off filters)."""
    return parse(text).evaluate(target)
