"""CloudWatch Logs rules that need no store: retention values, PutLogEvents batch checks, event positions.

Sources: the botocore ``logs/2014-03-28`` model documentation (PutLogEvents, PutRetentionPolicy,
GetLogEvents) and the CloudWatch Logs API reference's PutLogEvents page: a batch is at most 10,000 events
and 1,048,576 bytes counted as UTF-8 message bytes plus 26 bytes per event; events must be in
chronological order; a batch may not span more than 24 hours; events more than 2 hours in the future, or
older than 14 days or than the group's retention, are rejected one by one and reported in
``rejectedLogEventsInfo`` while the rest are stored. The sequence token is accepted and ignored.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from taskvpc.domain.errors import ClientError

RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip
MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD_BYTES = 26
MAX_BATCH_SPAN_MS = 24 * 3600 * 1000
TOO_NEW_MS = 2 * 3600 * 1000
TOO_OLD_MS = 14 * 24 * 3600 * 1000
DAY_MS = 24 * 3600 * 1000
MAX_EVENT_BYTES = 1_048_576 - EVENT_OVERHEAD_BYTES  # one event may fill a batch (the 1 MB event limit)

GROUP_NAME = re.compile(r"[.\-_/#A-Za-z0-9]{1,512}")


def invalid_parameter(message: str) -> ClientError:
    return ClientError("InvalidParameterException", message)


def check_group_name(name: str) -> None:
    """The model's pattern is checked by the codec; AWS also reserves the ``aws/`` prefix for itself."""
    if name.startswith("aws/"):
        raise invalid_parameter("Log group names starting with 'aws/' are reserved for AWS services.")


def check_retention(days: int) -> None:
    if days not in RETENTION_DAYS:
        # The text CloudWatch Logs answers (as quoted in aws-cdk#1919 and terraform-provider-aws issues).
        raise invalid_parameter(
            f"1 validation error detected: Value '{days}' at 'retentionInDays' failed to satisfy "
            "constraint: Member must satisfy enum value set: "
            f"[{', '.join(str(d) for d in RETENTION_DAYS)}]"
        )


@dataclass(frozen=True, slots=True)
class BatchVerdict:
    accepted: list[int]  # indexes of the events to store, in order
    rejected: dict[str, int]  # rejectedLogEventsInfo (empty when every event was accepted)


def judge_batch(events: Sequence[dict[str, Any]], now_ms: int, retention_days: int | None) -> BatchVerdict:
    """Check a PutLogEvents batch; raise InvalidParameterException when the whole batch is refused."""
    if len(events) > MAX_BATCH_EVENTS:
        raise invalid_parameter(f"The batch of log events exceeds the maximum count of {MAX_BATCH_EVENTS}.")
    size = sum(len(str(e["message"]).encode()) + EVENT_OVERHEAD_BYTES for e in events)
    if size > MAX_BATCH_BYTES:
        raise invalid_parameter(
            f"The batch of log events exceeds the maximum size of {MAX_BATCH_BYTES} bytes."
        )
    stamps = [int(e["timestamp"]) for e in events]
    if any(later < earlier for earlier, later in itertools.pairwise(stamps)):
        raise invalid_parameter("Log events in a single PutLogEvents request must be in chronological order.")
    if stamps and stamps[-1] - stamps[0] > MAX_BATCH_SPAN_MS:
        raise invalid_parameter("The batch of log events in a single PutLogEvents request cannot span more than 24 hours.")  # fmt: skip

    too_new_from = next((i for i, ts in enumerate(stamps) if ts > now_ms + TOO_NEW_MS), None)
    too_old_until = max((i for i, ts in enumerate(stamps) if ts < now_ms - TOO_OLD_MS), default=None)
    expired_until = None
    if retention_days is not None:
        horizon = now_ms - retention_days * DAY_MS
        expired_until = max((i for i, ts in enumerate(stamps) if ts < horizon), default=None)
    rejected: dict[str, int] = {}
    if too_new_from is not None:
        rejected["tooNewLogEventStartIndex"] = too_new_from
    if too_old_until is not None:
        rejected["tooOldLogEventEndIndex"] = too_old_until
    if expired_until is not None:
        rejected["expiredLogEventEndIndex"] = expired_until
    # Events are sorted, so the rejected ones are a prefix (too old / expired) and a suffix (too new).
    first = max(too_old_until if too_old_until is not None else -1, expired_until if expired_until is not None else -1) + 1  # fmt: skip
    end = too_new_from if too_new_from is not None else len(events)
    return BatchVerdict(list(range(first, end)), rejected)


# ---- positions: eventId and GetLogEvents tokens ---------------------------------------------------------
# Events are ordered by (timestamp, seq), seq being the store's insertion number. AWS shows eventIds and
# GetLogEvents tokens as 56 decimal digits (tokens prefixed "f/" or "b/"); ours are the position in that
# shape: 20 digits of timestamp, 20 of seq, 16 zeros.

Position = tuple[int, int]
_DIGITS = re.compile(r"\d{56}")
_OFFSET = 10**19  # timestamps may be negative (before 1970); the digits hold timestamp + offset


def position_digits(position: Position) -> str:
    timestamp, seq = position
    return f"{timestamp + _OFFSET:020d}{seq:020d}{0:016d}"


def event_id(timestamp: int, seq: int) -> str:
    return position_digits((timestamp, seq))


def forward_token(position: Position) -> str:
    return "f/" + position_digits(position)


def backward_token(position: Position) -> str:
    return "b/" + position_digits(position)


def parse_token(token: str) -> tuple[str, Position]:
    """('f' or 'b', position) of a GetLogEvents token; InvalidParameterException for anything else."""
    direction, _, digits = token.partition("/")
    if direction not in ("f", "b") or not _DIGITS.fullmatch(digits):
        raise invalid_parameter("The specified nextToken is invalid.")
    return direction, (int(digits[:20]) - _OFFSET, int(digits[20:40]))
