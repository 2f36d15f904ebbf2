"""CloudWatch Logs filter patterns: a corpus of (pattern, message, matches) and properties."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

from taskvpc.domain.logs_filter import FilterPatternError, compile_pattern

APACHE = '127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /apache_pb.gif HTTP/1.0" 200 1534'
APACHE_404 = '127.0.0.1 - bob [10/Oct/2000:13:55:36 -0700] "GET /missing HTTP/1.0" 404 0'
CLOUDTRAIL = json.dumps(
    {
        "eventType": "UpdateTrail",
        "sourceIPAddress": "123.123.123.123",
        "arrayKey": ["value", "another value"],
        "objectList": [{"name": "a", "id": 1}, {"name": "b", "id": 2}],
        "SomeObject": None,
        "ThisFlag": True,
        "latency": 88.5,
        "user": {"name": "alice", "groups": ["admins"]},
    }
)

CORPUS: list[tuple[str, str, bool]] = [
    # empty: everything
    ("", "anything", True),
    ("   ", "", True),
    # terms (UG "Matching terms in unstructured log events")
    ("ERROR", "[ERROR] A fatal exception has occurred", True),
    ("ERROR", "[INFO] all good", False),
    ("ERROR", "[error] lower case", False),  # case-sensitive
    ("ERROR Exception", "[ERROR] Caught IllegalArgumentException", True),
    ("ERROR Exception", "[ERROR] Unhandled exception", False),
    ('"Failed to process the request"', "[WARN] Failed to process the request", True),
    ('"Failed to process the request"', "[WARN] Failed to process request", False),
    ("?ERROR ?WARN", "[WARN] Failed to process the request", True),
    ("?ERROR ?WARN", "[ERROR] boom", True),
    ("?ERROR ?WARN", "[INFO] fine", False),
    ("ERROR -Exiting", "[ERROR] Caught IllegalArgumentException", True),
    ("ERROR -Exiting", "[ERROR] Exiting now", False),
    ('-"health check"', "GET /health check", False),
    ('-"health check"', "GET /index", True),
    ("%ERR[0-9]+%", "code ERR42 seen", True),
    ("%ERR[0-9]+%", "code ERR seen", False),
    # JSON (UG "Using filter patterns to match terms in JSON log events")
    ('{ $.eventType = "UpdateTrail" }', CLOUDTRAIL, True),
    ("{ $.eventType = UpdateTrail }", CLOUDTRAIL, True),
    ('{ $.eventType = "Update*" }', CLOUDTRAIL, True),
    ('{ $.eventType != "UpdateTrail" }', CLOUDTRAIL, False),
    ("{ $.sourceIPAddress != 123.123.* }", CLOUDTRAIL, False),
    ('{ $.arrayKey[0] = "value" }', CLOUDTRAIL, True),
    ('{ $.arrayKey[1] = "value" }', CLOUDTRAIL, False),
    ("{ $.objectList[1].id = 2 }", CLOUDTRAIL, True),
    ("{ $.objectList[1].id > 1 && $.objectList[0].id < 2 }", CLOUDTRAIL, True),
    ("{ $.SomeObject IS NULL }", CLOUDTRAIL, True),
    ("{ $.ThisFlag IS TRUE }", CLOUDTRAIL, True),
    ("{ $.ThisFlag IS FALSE }", CLOUDTRAIL, False),
    ("{ $.nothere NOT EXISTS }", CLOUDTRAIL, True),
    ("{ $.user.name NOT EXISTS }", CLOUDTRAIL, False),
    ("{ $.latency >= 88.5 }", CLOUDTRAIL, True),
    ("{ $.latency > 88.5 }", CLOUDTRAIL, False),
    ('{ ($.user.name = "bob") || ($.latency < 100) }', CLOUDTRAIL, True),
    ('{ ($.user.name = "bob" || $.latency < 10) && $.ThisFlag IS TRUE }', CLOUDTRAIL, False),
    ("{ $.user.groups[0] = %adm.*% }", CLOUDTRAIL, True),
    ('{ $.eventType = "UpdateTrail" }', "not json at all", False),
    ("{ $.latency = 88.5 }", json.dumps({"latency": "fast"}), False),  # a string is not a number
    ('{ $.level = "error" }', json.dumps({"level": 3}), False),
    # space-delimited (UG "Using filter patterns to match terms in space-delimited log events")
    ("[ip, user, username, timestamp, request, status_code, bytes]", APACHE, True),
    ("[ip, user, username, timestamp, request, status_code, bytes]", APACHE + " extra", False),
    ("[ip, user, username, timestamp, request, status_code = 404, bytes]", APACHE_404, True),
    ("[ip, user, username, timestamp, request, status_code = 404, bytes]", APACHE, False),
    ("[ip, user, username, timestamp, request, status_code = 4*, bytes]", APACHE_404, True),
    ("[ip, user, username, timestamp, request, status_code = 2* || status_code = 4*, bytes]", APACHE, True),
    ("[ip, user, username, timestamp, request, status_code, bytes > 1000]", APACHE, True),
    ("[ip, user, username, timestamp, request, status_code, bytes > 1000]", APACHE_404, False),
    ("[ip = 127.0.0.1, ...]", APACHE, True),
    ("[ip = 10.*, ...]", APACHE, False),
    ("[..., status_code = 200, bytes]", APACHE, True),
    ('[ip, user, username = "frank", ...]', APACHE, True),
    ("[ip, ..., bytes = 1534]", APACHE, True),
    ("[a, b]", "one", False),
]


@pytest.mark.parametrize(("pattern", "message", "expected"), CORPUS)
def test_corpus(pattern: str, message: str, expected: bool) -> None:
    assert compile_pattern(pattern)(message) is expected


@pytest.mark.parametrize(
    "pattern",
    [
        '{ $.a = "x"',  # unclosed brace
        "{ a = 1 }",  # selector without $
        "{ $.a }",  # no operator
        "{ $.a = }",  # no value
        '{ $.a > "text" }',  # ordering needs a number
        "{ $.a = 1 && }",
        "{ ($.a = 1 }",
        "{ $.a IS MAYBE }",
        "{ $..a = 1 }",
        "[ip, user",  # unclosed bracket
        "[ip,, user]",
        "[1ip]",
        "[status > abc]",
        '"unterminated',
        "%[%",  # bad regex
    ],
)
def test_malformed_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(FilterPatternError):
        compile_pattern(pattern)


WORDS = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", min_size=1, max_size=8
)


@given(st.lists(WORDS, min_size=1, max_size=6), st.data())
def test_a_word_of_the_message_matches_and_its_exclusion_does_not(
    words: list[str], data: st.DataObject
) -> None:
    message = " ".join(words)
    word = data.draw(st.sampled_from(words))
    assert compile_pattern(word)(message)
    assert compile_pattern(f'"{word}"')(message)
    assert not compile_pattern(f"-{word}")(message)
    assert compile_pattern(f"?{word} ?zzzzzzzzzz")(message)


@given(st.lists(WORDS, min_size=1, max_size=6))
def test_space_delimited_field_count_and_ellipsis(words: list[str]) -> None:
    message = " ".join(words)
    names = ", ".join(f"f{i}" for i in range(len(words)))
    assert compile_pattern(f"[{names}]")(message)
    assert not compile_pattern(f"[{names}, extra]")(message)
    assert compile_pattern("[...]")(message)
    assert compile_pattern(f'[..., last = "{words[-1]}"]')(message)


JSON_SCALARS = st.one_of(st.integers(-(10**6), 10**6), WORDS, st.booleans(), st.none())


@given(st.dictionaries(WORDS, JSON_SCALARS, min_size=1, max_size=5), st.data())
def test_json_equality_agrees_with_python(document: dict[str, object], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(document)))
    value = document[key]
    message = json.dumps(document)
    if isinstance(value, bool):
        assert compile_pattern(f"{{ $.{key} IS {'TRUE' if value else 'FALSE'} }}")(message)
    elif value is None:
        assert compile_pattern(f"{{ $.{key} IS NULL }}")(message)
    elif isinstance(value, int):
        assert compile_pattern(f"{{ $.{key} = {value} }}")(message)
        assert compile_pattern(f"{{ $.{key} < {value + 1} && $.{key} > {value - 1} }}")(message)
        assert not compile_pattern(f"{{ $.{key} != {value} }}")(message)
    else:
        assert compile_pattern(f'{{ $.{key} = "{value}" }}')(message)
        assert not compile_pattern(f'{{ $.{key} != "{value}" }}')(message)
    assert compile_pattern("{ $.zz_not_a_key_zz NOT EXISTS }")(message) is ("zz_not_a_key_zz" not in document)


@given(st.text(max_size=40), st.text(max_size=40))
def test_any_pattern_either_compiles_or_is_refused_and_never_crashes(pattern: str, message: str) -> None:
    try:
        matcher = compile_pattern(pattern)
    except FilterPatternError:
        return
    assert matcher(message) in (True, False)
