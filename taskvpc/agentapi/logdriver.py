"""Container log drivers in the agent contract (docs/logs.md, "awslogs").

* :class:`LogConfiguration`: a container's ``logConfiguration`` as the ``tasks`` section carries it.
* :func:`awslogs_options`: its ``awslogs`` options checked as Docker's driver checks them when the container
  is created (ECS registers a task definition with almost any options; the driver refuses the bad ones and
  the task fails to start). :class:`LogOptionError` carries Docker's words.
* :class:`LogDelivery` / :class:`LogAck`: the ``logEvents`` member of a report, and the ``logAcks`` member
  of the report's answer. Events are numbered per container from 0 (``first`` is the number of the first
  one sent); the control plane stores each container's next expected number in the same transaction as
  the events and answers it as ``next``, so a batch sent again after an agent restart is never stored
  twice, and the agent moves its saved position only past what ``next`` acknowledges.

Read strictly, as the rest of a report (:class:`taskvpc.agentapi.reports.WireError`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskvpc.agentapi import read
from taskvpc.agentapi.reports import WireError

Doc = dict[str, Any]

LOG_EVENTS = "logEvents"  # the report's member
LOG_ACKS = "logAcks"  # the report answer's member

# Docker's default ring buffer for mode=non-blocking (1 MB); ECS documents max-buffer-size the same way.
DEFAULT_MAX_BUFFER = 1_000_000
# Options Docker's awslogs driver knows (its ValidateLogOpt), plus ECS's stream prefix and the generic
# ``mode``/``max-buffer-size``; any other is refused as Docker does.
KNOWN_OPTIONS = frozenset(
    {
        "awslogs-group",
        "awslogs-region",
        "awslogs-stream",
        "awslogs-stream-prefix",
        "awslogs-create-group",
        "awslogs-datetime-format",
        "awslogs-multiline-pattern",
        "awslogs-endpoint",
        "awslogs-credentials-endpoint",
        "awslogs-force-flush-interval-seconds",
        "awslogs-max-buffered-events",
        "awslogs-format",
        "tag",
        "mode",
        "max-buffer-size",
    }
)

# strftime directives of awslogs-datetime-format, as Docker's driver translates them (moby
# daemon/logger/awslogs, strftimeToRegex).
STRFTIME_TO_REGEX = {
    "%a": r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)",
    "%A": r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)",
    "%w": r"[0-6]",
    "%d": r"(?:0[1-9]|[1,2][0-9]|3[0,1])",
    "%b": r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)",
    "%B": r"(?:January|February|March|April|May|June|July|August|September|October|November|December)",
    "%m": r"(?:0[1-9]|1[0-2])",
    "%Y": r"\d{4}",
    "%y": r"\d{2}",
    "%H": r"(?:[0,1][0-9]|2[0-3])",
    "%I": r"(?:0[0-9]|1[0-2])",
    "%p": r"[A,P]M",
    "%M": r"[0-5][0-9]",
    "%S": r"[0-5][0-9]",
    "%f": r"\d{6}",
    "%z": r"[+-]\d{4}",
    "%Z": r"[A-Z]{1,4}T",
    "%j": r"(?:0[0-9][1-9]|[1,2][0-9][0-9]|3[0-5][0-9]|36[0-6])",
    "%L": r"\.\d{3}",
}
_DIRECTIVE = re.compile(r"%.")
_SIZE = re.compile(r"(?i)\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?\s*")


class LogOptionError(ValueError):
    """Options the log driver refuses (Docker's message): the container cannot be created."""


@dataclass(frozen=True, slots=True)
class LogConfiguration:
    driver: str
    options: tuple[tuple[str, str], ...] = ()

    def option(self, name: str) -> str | None:
        return next((v for k, v in self.options if k == name), None)

    @classmethod
    def from_wire(cls, value: Any) -> LogConfiguration | None:
        doc = read.mapping(value)
        driver = read.string(doc.get("logDriver"))
        if driver is None:
            return None
        options = read.mapping(doc.get("options"))
        return cls(driver, tuple(sorted((str(k), read.text(v)) for k, v in options.items())))

    def to_wire(self) -> Doc:
        return {"logDriver": self.driver, "options": dict(self.options)}


@dataclass(frozen=True, slots=True)
class AwslogsOptions:
    group: str
    region: str | None = None
    stream_prefix: str | None = None
    stream: str | None = None  # Docker's awslogs-stream: a fixed stream name
    create_group: bool = False
    starts_event: str | None = None  # a regex: a line it finds starts a new (multiline) event
    anchored: bool = False  # the regex must match at the line's start (awslogs-datetime-format)
    blocking: bool = False  # ECS's default mode is non-blocking (account setting defaultLogDriverMode)
    max_buffer_size: int = DEFAULT_MAX_BUFFER

    def stream_name(self, container: str, task_id: str, fallback: str) -> str:
        """ECS's naming: ``prefix/container-name/task-id``; without a prefix Docker's own (the container
        id: ``fallback``), or ``awslogs-stream`` when given."""
        if self.stream:
            return self.stream
        if self.stream_prefix:
            return f"{self.stream_prefix}/{container}/{task_id}"
        return fallback


def _bool(name: str, text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    # Go's strconv.ParseBool error, as Docker wraps it (moby ValidateLogOpt)
    raise LogOptionError(
        f"must specify valid value for log opt '{name}': strconv.ParseBool: parsing {text!r}: invalid syntax"
    )


def parse_size(text: str) -> int | None:
    """Docker's RAM sizes (``1m``, ``25MiB``, ``512k``): bytes, powers of 1024; None if unreadable."""
    found = _SIZE.fullmatch(text)
    if found is None:
        return None
    scale = 1024 ** " kmgtp".index(found.group(2).lower() or " ")
    return int(float(found.group(1)) * scale)


def datetime_regex(fmt: str) -> str:
    """``awslogs-datetime-format`` as a regex; unknown directives vanish, as in Docker's translation."""
    return _DIRECTIVE.sub(lambda m: STRFTIME_TO_REGEX.get(m.group(0), ""), fmt)


def awslogs_options(config: LogConfiguration) -> AwslogsOptions:
    """The awslogs options, or :class:`LogOptionError` with Docker's message for what it refuses."""
    opts = dict(config.options)
    for key in opts:
        if key not in KNOWN_OPTIONS:
            raise LogOptionError(f"unknown log opt '{key}' for awslogs log driver")
    group = opts.get("awslogs-group", "")
    if not group:
        raise LogOptionError("must specify a value for log opt 'awslogs-group'")
    create = (
        _bool("awslogs-create-group", opts["awslogs-create-group"])
        if "awslogs-create-group" in opts
        else False
    )
    datetime_format, multiline = opts.get("awslogs-datetime-format"), opts.get("awslogs-multiline-pattern")
    if datetime_format and multiline:
        raise LogOptionError(
            "you cannot configure log opt 'awslogs-datetime-format' and 'awslogs-multiline-pattern' at the same time"
        )
    pattern = datetime_regex(datetime_format) if datetime_format else multiline or None
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error:
            raise LogOptionError(f"awslogs could not parse multiline pattern key {pattern!r}") from None
    mode = opts.get("mode", "")
    if mode not in ("", "blocking", "non-blocking"):
        raise LogOptionError(f"logger: logmode not supported: {mode}")  # unconfirmed wording
    size = DEFAULT_MAX_BUFFER
    if "max-buffer-size" in opts:
        parsed = parse_size(opts["max-buffer-size"])
        if parsed is None or parsed <= 0:
            raise LogOptionError("could not parse value for max-buffer-size")  # unconfirmed wording
        size = parsed
    return AwslogsOptions(
        group=group,
        region=opts.get("awslogs-region") or None,
        stream_prefix=opts.get("awslogs-stream-prefix") or None,
        stream=opts.get("awslogs-stream") or None,
        create_group=create,
        starts_event=pattern,
        anchored=bool(datetime_format),
        blocking=mode == "blocking",
        max_buffer_size=size,
    )


# ---- the report entry and its ack ----------------------------------------------------------------


def _int(doc: Mapping[str, Any], name: str) -> int:
    value = doc.get(name, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise WireError(f"{name} must be a non-negative integer.")
    return value


def _str(doc: Mapping[str, Any], name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise WireError(f"{name} must be a non-empty string.")
    return value


@dataclass(frozen=True, slots=True)
class LogDelivery:
    """Events of one container for its stream; no events: open the stream (before the container starts)."""

    task_arn: str
    container: str
    stream: str
    first: int = 0
    events: tuple[tuple[int, str], ...] = ()  # (timestamp ms, message), in order
    dropped: int = 0  # lines the agent dropped so far (non-blocking mode, buffer full)

    @classmethod
    def from_wire(cls, doc: Any) -> LogDelivery:
        if not isinstance(doc, Mapping):
            raise WireError("each log delivery must be an object.")
        events = doc.get("events", [])
        if not isinstance(events, list):
            raise WireError("events must be a list.")
        parsed = []
        for event in events:
            if not isinstance(event, Mapping):
                raise WireError("each event must be an object.")
            timestamp, message = event.get("timestamp"), event.get("message")
            if not isinstance(timestamp, int) or isinstance(timestamp, bool) or not isinstance(message, str):
                raise WireError("each event needs an integer timestamp and a string message.")
            parsed.append((timestamp, message))
        return cls(
            task_arn=_str(doc, "taskArn"),
            container=_str(doc, "container"),
            stream=_str(doc, "stream"),
            first=_int(doc, "first"),
            events=tuple(parsed),
            dropped=_int(doc, "dropped"),
        )

    def to_wire(self) -> Doc:
        return {
            "taskArn": self.task_arn,
            "container": self.container,
            "stream": self.stream,
            "first": self.first,
            "events": [{"timestamp": t, "message": m} for t, m in self.events],
            "dropped": self.dropped,
        }


@dataclass(frozen=True, slots=True)
class LogAck:
    """The container's next expected event number (everything before it is stored), or why not."""

    task_arn: str
    container: str
    next: int
    error_code: str | None = None
    error_message: str | None = None

    @classmethod
    def from_wire(cls, doc: Any) -> LogAck | None:
        if not isinstance(doc, Mapping):
            return None
        arn, container, nxt = doc.get("taskArn"), doc.get("container"), read.integer(doc.get("next"))
        if not isinstance(arn, str) or not isinstance(container, str) or nxt is None:
            return None
        error = read.mapping(doc.get("error"))
        return cls(arn, container, nxt, read.string(error.get("code")), read.string(error.get("message")))

    def to_wire(self) -> Doc:
        doc: Doc = {"taskArn": self.task_arn, "container": self.container, "next": self.next}
        if self.error_code is not None:
            doc["error"] = {"code": self.error_code, "message": self.error_message or ""}
        return doc


def deliveries_from_report(doc: Any) -> tuple[LogDelivery, ...]:
    """The report's ``logEvents`` (absent: none); WireError if malformed."""
    items = doc.get(LOG_EVENTS) if isinstance(doc, Mapping) else None
    if items is None:
        return ()
    if not isinstance(items, list):
        raise WireError(f"{LOG_EVENTS} must be a list.")
    return tuple(LogDelivery.from_wire(item) for item in items)


def acks_from_answer(doc: Any) -> tuple[LogAck, ...]:
    """The answer's ``logAcks`` (leniently: an entry the agent cannot read acknowledges nothing)."""
    items = read.as_list(doc.get(LOG_ACKS)) if isinstance(doc, Mapping) else []
    return tuple(a for a in (LogAck.from_wire(i) for i in items) if a is not None)
