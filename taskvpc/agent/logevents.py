"""Lines of a container's output -> CloudWatch Logs events, as Docker's awslogs driver groups them.

Pure (no I/O, no clock): the shipper (``logshipper.py``) hands in each complete line with the time it read
it and the file position just past it, and gets back finished events, each carrying the position past
its last line (what the control plane's acknowledgement lets the shipper save).

* Without a pattern every non-empty line is one event, its message the line without its newline (Docker
  sends no event for an empty line).
* With ``awslogs-multiline-pattern`` (found anywhere in the line) or ``awslogs-datetime-format`` (matched
  at the start of the line) a line that matches starts a new event; lines that do not are appended to
  the current one. Each line of a multiline event keeps its newline, as Docker's driver writes them. A
  pending event is finished by the next matching line, by :meth:`EventGrouper.flush_older_than` (Docker
  flushes an event buffer older than its 5 s publishing period) or by :meth:`EventGrouper.flush` at the end.
* A message longer than 262,118 bytes (256 KiB less PutLogEvents' 26 bytes of overhead) is split into
  several events, at character boundaries.

Timestamps never go backwards (``max`` of the previous one and the line's), so a stream read in order
by (timestamp, insertion) is the container's output in order even if the host clock steps back.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from dataclasses import dataclass, field

MAX_EVENT_BYTES = 262_144 - 26
MULTILINE_FLUSH_MS = 5_000


@dataclass(frozen=True, slots=True)
class Event:
    timestamp: int  # ms
    message: str
    end: Hashable  # the reader's position just past the event's last line
    lines: int = 1

    @property
    def size(self) -> int:
        """What the event counts towards PutLogEvents' batch limit."""
        return len(self.message.encode()) + 26


def split_message(message: str, limit: int = MAX_EVENT_BYTES) -> list[str]:
    """``message`` in pieces of at most ``limit`` UTF-8 bytes, never cutting a character."""
    data = message.encode()
    if len(data) <= limit:
        return [message]
    pieces = []
    while data:
        cut = min(limit, len(data))
        while cut < len(data) and (data[cut] & 0xC0) == 0x80:  # inside a character: back off
            cut -= 1
        pieces.append(data[:cut].decode())
        data = data[cut:]
    return pieces


@dataclass
class EventGrouper:
    starts_event: str | None = None
    anchored: bool = False
    _pattern: re.Pattern[str] | None = field(init=False, default=None)
    _buffer: list[str] = field(init=False, default_factory=list)
    _buffer_size: int = field(init=False, default=0)
    _buffer_at: int = field(init=False, default=0)
    _buffer_end: Hashable = field(init=False, default=None)
    _last_ts: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.starts_event is not None:
            self._pattern = re.compile(self.starts_event)

    @property
    def pending(self) -> bool:
        return bool(self._buffer)

    def _stamp(self, timestamp: int) -> int:
        self._last_ts = max(self._last_ts, timestamp)
        return self._last_ts

    def _starts(self, line: str) -> bool:
        assert self._pattern is not None
        found = self._pattern.match(line) if self.anchored else self._pattern.search(line)
        return found is not None

    def _emit(self, message: str, timestamp: int, end: Hashable, lines: int) -> list[Event]:
        pieces = split_message(message)
        # every piece but the last ends inside the line: only the last one may move the saved position
        return [
            Event(timestamp, piece, end if i == len(pieces) - 1 else None, lines if i == 0 else 0)
            for i, piece in enumerate(pieces)
        ]

    def line(self, text: str, timestamp: int, end: Hashable) -> list[Event]:
        """One complete line (without its newline), read at ``timestamp`` ms; the events it finishes."""
        timestamp = self._stamp(timestamp)
        if self._pattern is None:
            return self._emit(text, timestamp, end, 1) if text else []
        out: list[Event] = []
        piece = text + "\n"
        size = len(piece.encode())
        if self._buffer and (self._starts(text) or self._buffer_size + size > MAX_EVENT_BYTES):
            out = self.flush()
        if not self._buffer:
            self._buffer_at = timestamp
        self._buffer.append(piece)
        self._buffer_size += size
        self._buffer_end = end
        return out

    def flush(self) -> list[Event]:
        """The pending multiline event, finished now (none if nothing is pending)."""
        if not self._buffer:
            return []
        lines, message = len(self._buffer), "".join(self._buffer)
        self._buffer, self._buffer_size = [], 0
        return self._emit(message, self._buffer_at, self._buffer_end, lines)

    def flush_older_than(self, now: int, age: int = MULTILINE_FLUSH_MS) -> list[Event]:
        """The pending event if its first line was read more than ``age`` ms before ``now``."""
        if self._buffer and now - self._buffer_at > age:
            return self.flush()
        return []
