"""The awslogs driver's pure parts: lines -> events (multiline, datetime formats, splitting, ordering),
the options Docker's driver accepts or refuses, and the contract's wire forms."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings, strategies as st

from taskvpc.agent.logevents import MAX_EVENT_BYTES, EventGrouper, split_message
from taskvpc.agentapi.logdriver import (
    AwslogsOptions,
    LogAck,
    LogConfiguration,
    LogDelivery,
    LogOptionError,
    acks_from_answer,
    awslogs_options,
    datetime_regex,
    deliveries_from_report,
    parse_size,
)
from taskvpc.agentapi.reports import WireError
from taskvpc.agentapi.tasks import DesiredContainer


def feed(grouper: EventGrouper, lines: list[str], start: int = 1000) -> list[tuple[int, str, object]]:
    out = []
    for i, line in enumerate(lines):
        out += [(e.timestamp, e.message, e.end) for e in grouper.line(line, start + i, i)]
    out += [(e.timestamp, e.message, e.end) for e in grouper.flush()]
    return out


def test_each_non_empty_line_is_one_event_in_order() -> None:
    events = feed(EventGrouper(), ["first", "", "second", "third"])
    assert [m for _, m, _ in events] == ["first", "second", "third"]
    assert [end for _, _, end in events] == [0, 2, 3]  # the position past each event's line


def test_timestamps_never_go_back_even_if_the_clock_does() -> None:
    grouper = EventGrouper()
    stamps = [
        e.timestamp for t, line in [(500, "a"), (300, "b"), (700, "c")] for e in grouper.line(line, t, None)
    ]
    assert stamps == [500, 500, 700]


def test_multiline_pattern_starts_an_event_wherever_it_is_found() -> None:
    grouper = EventGrouper(starts_event=r"ERROR|INFO")
    lines = ["INFO start", "  detail 1", "  detail 2", "x ERROR boom", "  trace", "INFO next"]
    events = feed(grouper, lines)
    assert [m for _, m, _ in events] == [
        "INFO start\n  detail 1\n  detail 2\n",
        "x ERROR boom\n  trace\n",
        "INFO next\n",
    ]
    assert [end for _, _, end in events] == [2, 4, 5]
    assert [t for t, _, _ in events] == [1000, 1003, 1005]  # the time of each event's first line


def test_lines_before_the_first_match_make_an_event_of_their_own() -> None:
    events = feed(EventGrouper(starts_event="^START"), ["preamble", "START one", "more"])
    assert [m for _, m, _ in events] == ["preamble\n", "START one\nmore\n"]


def test_datetime_format_matches_only_at_the_start_of_a_line() -> None:
    fmt = r"\[%b %d, %Y %H:%M:%S\]"
    grouper = EventGrouper(starts_event=datetime_regex(fmt), anchored=True)
    lines = [
        "[May 01, 2017 19:00:01] A message was logged",
        "[May 01, 2017 19:00:04] Another multi-line message was logged",
        "Some random message",
        "with a timestamp [May 01, 2017 19:00:05] inside it",
        "[May 01, 2017 19:01:00] Another message",
    ]
    events = feed(grouper, lines)
    assert [m.count("\n") for _, m, _ in events] == [1, 3, 1]
    assert events[1][1].startswith("[May 01, 2017 19:00:04]")


@pytest.mark.parametrize(
    ("fmt", "line", "starts"),
    [
        ("%Y-%m-%d", "2024-02-29 12:00 ok", True),
        ("%Y-%m-%d", "2024-13-01 bad month", False),
        ("%Y-%m-%dT%H:%M:%S%z", "2024-01-02T23:59:59+0100 x", True),
        ("%a %b %d %H:%M:%S %Z %Y", "Tue Feb 06 10:00:00 PST 2024", True),
        ("%H:%M:%S%L", "12:30:45.123 x", True),
        ("%I:%M %p", "13:00 PM", False),
        ("%j", "366", True),
    ],
)
def test_strftime_directives_translate_as_docker_does(fmt: str, line: str, starts: bool) -> None:
    assert bool(re.match(datetime_regex(fmt), line)) is starts


def test_an_old_pending_multiline_event_is_flushed_by_age() -> None:
    grouper = EventGrouper(starts_event="^S")
    assert grouper.line("S one", 1000, 0) == []
    assert grouper.flush_older_than(5999) == []
    [event] = grouper.flush_older_than(6001)
    assert (event.message, event.end, event.lines) == ("S one\n", 0, 1)
    assert not grouper.pending


def test_long_messages_are_split_at_character_boundaries() -> None:
    message = "é" * MAX_EVENT_BYTES  # 2 bytes each: the limit falls inside a character every other time
    pieces = split_message(message)
    assert "".join(pieces) == message
    assert all(len(p.encode()) <= MAX_EVENT_BYTES for p in pieces)
    events = EventGrouper().line(message, 1, "end")
    assert [e.end for e in events] == [None, "end"]  # only the last piece may move the saved position


def test_a_multiline_event_that_would_outgrow_the_limit_is_cut_before_the_line() -> None:
    grouper = EventGrouper(starts_event="^S")
    big = "x" * (MAX_EVENT_BYTES // 2)
    out = [e for i, line in enumerate(["S", big, big]) for e in grouper.line(line, 1, i)] + grouper.flush()
    assert [len(e.message) for e in out] == [2 + len(big) + 1, len(big) + 1]
    assert all(e.size - 26 <= MAX_EVENT_BYTES for e in out)


lines_strategy = st.lists(st.text(alphabet="abS \t", max_size=12), max_size=40)


@settings(max_examples=200, deadline=None)
@given(lines_strategy, st.sampled_from([None, "S", "^S"]))
def test_grouping_keeps_every_line_once_and_in_order(lines: list[str], pattern: str | None) -> None:
    events = feed(EventGrouper(starts_event=pattern), lines)
    if pattern is None:
        assert [m for _, m, _ in events] == [line for line in lines if line]
    else:
        assert "".join(m for _, m, _ in events) == "".join(line + "\n" for line in lines)
        for _, message, _ in events[1:]:  # every event but the first begins with a line that matches
            assert re.search(pattern, message.split("\n", 1)[0])
    ends = [end for _, _, end in events]
    assert ends == sorted(ends)  # positions only move forward
    assert [t for t, _, _ in events] == sorted(t for t, _, _ in events)


# ---- options --------------------------------------------------------------------------------------


def config(**options: str) -> LogConfiguration:
    return LogConfiguration("awslogs", tuple(sorted(options.items())))


def test_console_options_parse() -> None:
    opts = awslogs_options(
        config(
            **{
                "awslogs-group": "/ecs/web",
                "awslogs-create-group": "true",
                "awslogs-region": "us-east-1",
                "awslogs-stream-prefix": "ecs",
                "mode": "non-blocking",
                "max-buffer-size": "25m",
            }
        )
    )
    assert opts == AwslogsOptions(
        group="/ecs/web",
        region="us-east-1",
        stream_prefix="ecs",
        create_group=True,
        blocking=False,
        max_buffer_size=25 * 1024 * 1024,
    )
    assert opts.stream_name("web", "abc123", "fallback") == "ecs/web/abc123"
    assert AwslogsOptions(group="g").stream_name("web", "abc123", "fallback") == "fallback"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "must specify a value for log opt 'awslogs-group'"),
        ({"awslogs-group": "g", "awslogs-create-group": "yes"}, "awslogs-create-group"),
        (
            {"awslogs-group": "g", "awslogs-datetime-format": "%Y", "awslogs-multiline-pattern": "x"},
            "you cannot configure log opt 'awslogs-datetime-format' and 'awslogs-multiline-pattern' at the same time",
        ),
        ({"awslogs-group": "g", "awslogs-multiline-pattern": "("}, "could not parse multiline pattern"),
        ({"awslogs-group": "g", "mode": "sometimes"}, "logmode not supported"),
        ({"awslogs-group": "g", "max-buffer-size": "lots"}, "max-buffer-size"),
        ({"awslogs-group": "g", "awslogs-colour": "red"}, "unknown log opt 'awslogs-colour'"),
    ],
)
def test_options_docker_refuses(options: dict[str, str], message: str) -> None:
    with pytest.raises(LogOptionError, match=re.escape(message)):
        awslogs_options(config(**options))


@pytest.mark.parametrize(
    ("text", "size"), [("1m", 1 << 20), ("512k", 512 << 10), ("25MiB", 25 << 20), ("100", 100)]
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


# ---- wire -----------------------------------------------------------------------------------------


def test_the_container_spec_carries_log_configuration() -> None:
    doc = {
        "name": "web",
        "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g", "mode": "blocking"}},
    }
    container = DesiredContainer.from_wire(doc)
    assert container.log_configuration == LogConfiguration(
        "awslogs", (("awslogs-group", "g"), ("mode", "blocking"))
    )
    assert DesiredContainer.from_wire(container.to_wire()) == container
    assert DesiredContainer.from_wire({"name": "web"}).log_configuration is None


def test_deliveries_and_acks_round_trip() -> None:
    delivery = LogDelivery("arn:t", "web", "ecs/web/t", 7, ((1, "a"), (2, "b")), dropped=3)
    assert deliveries_from_report({"tasks": [], "logEvents": [delivery.to_wire()]}) == (delivery,)
    assert deliveries_from_report({"tasks": []}) == ()
    ack, refused = LogAck("arn:t", "web", 9), LogAck("arn:t", "db", 0, "ResourceNotFoundException", "gone")
    assert acks_from_answer({"logAcks": [ack.to_wire(), refused.to_wire(), {"junk": 1}]}) == (ack, refused)


@pytest.mark.parametrize(
    "entry",
    [
        "nope",
        {"container": "web", "stream": "s"},
        {"taskArn": "t", "container": "web", "stream": "s", "first": -1},
        {"taskArn": "t", "container": "web", "stream": "s", "events": [{"timestamp": "1", "message": "m"}]},
        {"taskArn": "t", "container": "web", "stream": "s", "events": {"a": 1}},
    ],
)
def test_malformed_deliveries_are_refused(entry: object) -> None:
    with pytest.raises(WireError):
        deliveries_from_report({"logEvents": [entry]})
