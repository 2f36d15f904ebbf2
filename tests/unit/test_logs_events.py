"""PutLogEvents batch rules and GetLogEvents positions (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from taskvpc.domain import logs_events as rules
from taskvpc.domain.errors import ClientError

NOW = 1_700_000_000_000
HOUR = 3_600_000


def batch(*stamps: int, size: int = 1) -> list[dict[str, object]]:
    return [{"timestamp": ts, "message": "x" * size} for ts in stamps]


def test_a_fresh_batch_is_accepted_whole() -> None:
    verdict = rules.judge_batch(batch(NOW - 5, NOW), NOW, None)
    assert verdict.accepted == [0, 1] and verdict.rejected == {}


@pytest.mark.parametrize(
    ("events", "fragment"),
    [
        (batch(NOW, NOW - 1), "chronological"),
        (batch(*([NOW] * 10_001)), "10000"),
        (batch(NOW - 24 * HOUR - 1, NOW), "24 hours"),
        (batch(NOW, NOW, size=524_288 - 25), "1048576"),
    ],
)
def test_whole_batch_refusals(events: list[dict[str, object]], fragment: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        rules.judge_batch(events, NOW, None)
    assert excinfo.value.code == "InvalidParameterException" and fragment in excinfo.value.message


def test_exactly_full_batch_is_accepted() -> None:
    assert rules.judge_batch(batch(NOW, NOW, size=524_288 - 26), NOW, None).accepted == [0, 1]


def test_rejections_are_reported_by_index() -> None:
    old = NOW - 14 * 24 * HOUR - 2
    verdict = rules.judge_batch(batch(old, old + 1, old + 2 * HOUR), NOW, None)
    assert verdict.rejected == {"tooOldLogEventEndIndex": 1} and verdict.accepted == [2]
    verdict = rules.judge_batch(batch(NOW, NOW + 2 * HOUR, NOW + 2 * HOUR + 1), NOW, None)
    assert verdict.rejected == {"tooNewLogEventStartIndex": 2} and verdict.accepted == [0, 1]
    verdict = rules.judge_batch(batch(NOW - 23 * HOUR, NOW - 2 * HOUR, NOW), NOW, 1)
    assert verdict.rejected == {} and verdict.accepted == [0, 1, 2]
    verdict = rules.judge_batch(batch(NOW - 24 * HOUR - 1, NOW - 2 * HOUR), NOW, 1)
    assert verdict.rejected == {"expiredLogEventEndIndex": 0} and verdict.accepted == [1]


def test_retention_values() -> None:
    rules.check_retention(3653)
    for bad in (0, 2, 4000, -1):
        with pytest.raises(ClientError):
            rules.check_retention(bad)


@given(st.integers(-(10**15), 10**15), st.integers(0, 10**18))
def test_tokens_round_trip_and_sort_like_positions(timestamp: int, seq: int) -> None:
    token = rules.forward_token((timestamp, seq))
    assert token.startswith("f/") and len(token) == 58
    assert rules.parse_token(token) == ("f", (timestamp, seq))
    assert rules.parse_token(rules.backward_token((timestamp, seq))) == ("b", (timestamp, seq))
    later = rules.event_id(timestamp, seq + 1)
    assert rules.event_id(timestamp, seq) < later < rules.event_id(timestamp + 1, 0)


@pytest.mark.parametrize("token", ["", "f/", "x/" + "0" * 56, "f/" + "0" * 55, "f/" + "a" * 56])
def test_bad_tokens(token: str) -> None:
    with pytest.raises(ClientError):
        rules.parse_token(token)
