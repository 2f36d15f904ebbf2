"""CloudWatch Logs filter patterns: parse once, then match messages (pure, no I/O).

Three syntaxes, chosen by the pattern's first character (CloudWatch Logs UG, "Filter pattern syntax for
metric filters, subscription filters, filter log events, and Live Tail"):

* terms - ``ERROR``, ``"Connection refused"`` (a phrase), ``?ERROR ?WARN`` (at least one of the optional
  terms), ``-DEBUG`` (excluded), ``%regex%``. Plain terms must all occur; matching is case-sensitive and
  by substring (the UG's examples all agree with substring matching).
* JSON - ``{ $.level = "error" && ($.latency > 500 || $.user NOT EXISTS) }``: selectors ``$.a.b[0]``,
  ``=``/``!=`` against strings (``*`` wildcard) or ``%regex%``, numeric ``= != < > <= >=``, ``IS TRUE``,
  ``IS FALSE``, ``IS NULL``, ``NOT EXISTS``; messages that are not JSON never match.
* space-delimited - ``[ip, user, ..., status = 4* || status = 5*, bytes > 1000]``: the message is split on
  spaces (``"..."`` and ``[...]`` stay one field), ``...`` stands for any number of fields, and each
  field may carry conditions on named fields joined by ``&&``/``||``.

An empty pattern matches every event.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Matcher = Callable[[str], bool]


class FilterPatternError(ValueError):
    """The pattern does not parse; the API answers InvalidParameterException."""


def compile_pattern(pattern: str | None) -> Matcher:
    text = (pattern or "").strip()
    if not text:
        return _always
    if text.startswith("{"):
        return _compile_json(text)
    if text.startswith("["):
        return _compile_delimited(text)
    return _compile_terms(text)


def _always(message: str) -> bool:
    return True


# ---- term patterns --------------------------------------------------------------------------------------

_TERM = re.compile(r'\s*([?-]?)("(?:[^"\\]|\\.)*"|%[^%]+%|[^\s"]+)')


def _compile_terms(text: str) -> Matcher:
    required: list[Matcher] = []
    optional: list[Matcher] = []
    excluded: list[Matcher] = []
    position = 0
    while position < len(text):
        found = _TERM.match(text, position)
        if found is None:
            if text[position:].strip():
                raise FilterPatternError(f"Invalid character(s) in term '{text[position:].strip()}'")
            break
        position = found.end()
        modifier, term = found.group(1), found.group(2)
        {"": required, "?": optional, "-": excluded}[modifier].append(_term_matcher(term))

    def matches(message: str) -> bool:
        return (
            all(m(message) for m in required)
            and (not optional or any(m(message) for m in optional))
            and not any(m(message) for m in excluded)
        )

    return matches


def _term_matcher(term: str) -> Matcher:
    if term.startswith('"'):
        phrase = _unquote(term)
        return lambda message: phrase in message
    if len(term) > 2 and term.startswith("%") and term.endswith("%"):
        regex = _regex(term)
        return lambda message: regex.search(message) is not None
    return lambda message: term in message


def _unquote(quoted: str) -> str:
    return re.sub(r"\\(.)", r"\1", quoted[1:-1])


def _regex(term: str) -> re.Pattern[str]:
    try:
        return re.compile(term[1:-1])
    except re.error:
        raise FilterPatternError(f"Invalid regular expression '{term}'") from None


# ---- values and comparisons (shared by JSON and space-delimited patterns) ----------------------------

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_OPERATORS = ("<=", ">=", "!=", "=", "<", ">")


@dataclass(frozen=True, slots=True)
class _Value:
    text: str
    number: float | None  # set when the literal is a number (unquoted)
    regex: re.Pattern[str] | None


def _value(token: str) -> _Value:
    if token.startswith('"'):
        return _Value(_unquote(token), None, None)
    if len(token) > 2 and token.startswith("%") and token.endswith("%"):
        return _Value(token, None, _regex(token))
    if _NUMBER.fullmatch(token):
        return _Value(token, float(token), None)
    return _Value(token, None, None)


def _wildcard(text: str, candidate: str) -> bool:
    if "*" not in text:
        return text == candidate
    regex = "".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", text))
    return re.fullmatch(regex, candidate, re.DOTALL) is not None


def _compare(found: object, operator: str, value: _Value) -> bool:
    """``found`` (a JSON value or a field's text) against a literal; a type mismatch never matches."""
    if value.number is not None:
        number = _as_number(found)
        if number is None:
            return False
        return {
            "=": number == value.number,
            "!=": number != value.number,
            "<": number < value.number,
            ">": number > value.number,
            "<=": number <= value.number,
            ">=": number >= value.number,
        }[operator]
    if operator not in ("=", "!="):
        raise FilterPatternError(f"Operator '{operator}' needs a numeric value, not '{value.text}'")
    if not isinstance(found, str):
        return False
    equal = value.regex.search(found) is not None if value.regex else _wildcard(value.text, found)
    return equal if operator == "=" else not equal


def _as_number(found: object) -> float | None:
    if isinstance(found, bool) or found is None:
        return None
    if isinstance(found, int | float):
        return float(found)
    if isinstance(found, str) and _NUMBER.fullmatch(found):
        return float(found)
    return None


# ---- a small tokenizer and boolean-expression parser ------------------------------------------------

_TOKEN = re.compile(
    r'\s*("(?:[^"\\]|\\.)*"|%[^%]+%|&&|\|\||<=|>=|!=|=|<|>|\(|\)|,|\$[^\s=!<>()&|,]*|[^\s=!<>()&|,"]+)'
)


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    position = 0
    while position < len(text):
        found = _TOKEN.match(text, position)
        if found is None:
            if text[position:].strip():
                raise FilterPatternError(f"Invalid character(s) in filter pattern near '{text[position:]}'")
            break
        out.append(found.group(1))
        position = found.end()
    return out


Condition = Callable[[Callable[[str], tuple[bool, object]]], bool]  # resolver(name) -> (present, value)


class _Parser:
    """``expr := and ('||' and)*; and := atom ('&&' atom)*; atom := '(' expr ')' | comparison``."""

    def __init__(self, tokens: Sequence[str], json_mode: bool) -> None:
        self.tokens = list(tokens)
        self.position = 0
        self.json_mode = json_mode

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise FilterPatternError("Unexpected end of filter pattern")
        self.position += 1
        return token

    def expression(self) -> Condition:
        parts = [self.conjunction()]
        while self.peek() == "||":
            self.take()
            parts.append(self.conjunction())
        if len(parts) == 1:
            return parts[0]
        return lambda resolve: any(part(resolve) for part in parts)

    def conjunction(self) -> Condition:
        parts = [self.atom()]
        while self.peek() == "&&":
            self.take()
            parts.append(self.atom())
        if len(parts) == 1:
            return parts[0]
        return lambda resolve: all(part(resolve) for part in parts)

    def atom(self) -> Condition:
        if self.peek() == "(":
            self.take()
            inner = self.expression()
            if self.take() != ")":
                raise FilterPatternError("Expected ')' in filter pattern")
            return inner
        return self.comparison()

    def comparison(self) -> Condition:
        name = self.take()
        if self.json_mode and not name.startswith("$"):
            raise FilterPatternError(f"Expected a selector starting with '$', found '{name}'")
        if not self.json_mode and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise FilterPatternError(f"Invalid field name '{name}'")
        word = self.take()
        if self.json_mode and word.upper() in ("IS", "NOT"):
            return self._keyword(name, word.upper())
        if word not in _OPERATORS:
            raise FilterPatternError(f"Expected an operator after '{name}', found '{word}'")
        value = _value(self.take())
        if value.number is None and word not in ("=", "!="):
            raise FilterPatternError(f"Operator '{word}' needs a numeric value, not '{value.text}'")

        def compare(resolve: Callable[[str], tuple[bool, object]]) -> bool:
            present, found = resolve(name)
            return present and _compare(found, word, value)

        return compare

    def _keyword(self, name: str, word: str) -> Condition:
        second = self.take().upper()
        if word == "NOT" and second == "EXISTS":
            return lambda resolve: not resolve(name)[0]
        expected = {"NULL": None, "TRUE": True, "FALSE": False}
        if word == "IS" and second in expected:
            wanted = expected[second]

            def check(resolve: Callable[[str], tuple[bool, object]]) -> bool:
                present, found = resolve(name)
                return present and found is wanted

            return check
        raise FilterPatternError(f"Unexpected '{word} {second}' in filter pattern")


# ---- JSON patterns ------------------------------------------------------------------------------------

_STEP = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")


def _compile_json(text: str) -> Matcher:
    if not text.endswith("}"):
        raise FilterPatternError("A JSON filter pattern must end with '}'")
    parser = _Parser(_tokens(text[1:-1]), json_mode=True)
    condition = parser.expression()
    if parser.peek() is not None:
        raise FilterPatternError(f"Unexpected '{parser.peek()}' in filter pattern")
    for token in parser.tokens:
        if token.startswith("$"):
            _selector_steps(token)  # reject malformed selectors now, not at match time

    def matches(message: str) -> bool:
        try:
            document = json.loads(message)
        except ValueError:
            return False
        return condition(lambda name: _select(document, name))

    return matches


def _selector_steps(selector: str) -> list[str | int]:
    rest = selector[1:]
    steps: list[str | int] = []
    position = 0
    while position < len(rest):
        found = _STEP.match(rest, position)
        if found is None:
            raise FilterPatternError(f"Invalid selector '{selector}'")
        steps.append(found.group(1) if found.group(1) is not None else int(found.group(2)))
        position = found.end()
    return steps


def _select(document: object, selector: str) -> tuple[bool, object]:
    current = document
    for step in _selector_steps(selector):
        if isinstance(current, list) and isinstance(step, int) and step < len(current):
            current = current[step]
            continue
        if isinstance(current, dict) and isinstance(step, str) and step in current:
            current = current[step]
            continue
        return False, None
    return True, current


# ---- space-delimited patterns -------------------------------------------------------------------------

_FIELD = re.compile(r'"([^"]*)"|\[([^\]]*)\]|(\S+)')
ELLIPSIS = "..."
MAX_ELLIPSES = 3


@dataclass(frozen=True, slots=True)
class _Column:
    name: str  # "..." for any number of fields
    condition: Condition | None


def _compile_delimited(text: str) -> Matcher:
    if not text.endswith("]"):
        raise FilterPatternError("A space-delimited filter pattern must end with ']'")
    columns = [_column(part) for part in _split_columns(text[1:-1])]
    if not columns:
        raise FilterPatternError("A space-delimited filter pattern needs at least one field")
    # Each "..." multiplies the ways to bind fields; a few are all real patterns use, and the cap keeps
    # one request's matching cost bounded.
    if sum(column.name == ELLIPSIS for column in columns) > MAX_ELLIPSES:
        raise FilterPatternError(
            f"At most {MAX_ELLIPSES} '...' are allowed in a space-delimited filter pattern"
        )

    def matches(message: str) -> bool:
        fields = [next(g for g in m.groups() if g is not None) for m in _FIELD.finditer(message)]
        return _bind(columns, 0, fields, 0, {})

    return matches


def _split_columns(body: str) -> list[str]:
    """Top-level commas separate columns; commas inside quotes do not."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in body:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    if any(not part for part in parts) and body.strip():
        raise FilterPatternError("Empty field in space-delimited filter pattern")
    return [part for part in parts if part]


def _column(spec: str) -> _Column:
    if spec == ELLIPSIS:
        return _Column(ELLIPSIS, None)
    tokens = _tokens(spec)
    name = tokens[0]
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise FilterPatternError(f"Invalid field name '{name}'")
    if len(tokens) == 1:
        return _Column(name, None)
    parser = _Parser(tokens, json_mode=False)
    condition = parser.expression()
    if parser.peek() is not None:
        raise FilterPatternError(f"Unexpected '{parser.peek()}' in filter pattern")
    return _Column(name, condition)


def _bind(columns: list[_Column], ci: int, fields: list[str], fi: int, bound: dict[str, str]) -> bool:
    """Assign fields to columns left to right (``...`` tries every width); check conditions at the end."""
    if ci == len(columns):
        if fi != len(fields):
            return False
        return all(
            column.condition(lambda name: (name in bound, bound.get(name)))
            for column in columns
            if column.condition is not None
        )
    column = columns[ci]
    if column.name == ELLIPSIS:
        return any(_bind(columns, ci + 1, fields, end, bound) for end in range(fi, len(fields) + 1))
    if fi >= len(fields):
        return False
    return _bind(columns, ci + 1, fields, fi + 1, {**bound, column.name: fields[fi]})
