"""VPC Flow Logs in the agent contract: the ``flowLogs`` section and the report entry ``flowRecords``.

* ``flowLogs`` (desired state): one :class:`FlowLogWatch` per ENI of the instance's tasks that some flow
  log covers (on the ENI, its subnet or its VPC), the union of what those flow logs want: traffic types,
  the shortest aggregation interval, and the fields their formats name. An ENI with no flow log has no
  entry, and the agent collects nothing for it.
* ``flowRecords`` (report): :class:`FlowRecords`, one ENI's records of one aggregation window, keyed by
  AWS field names (``srcaddr``, ``packets``, ``action``, ``log-status``, ...). The control plane fills the
  fields it knows (account, interface, VPC, subnet, region) and writes them into every covering flow
  log's group (``taskvpc.control.ec2.flow_logs.deliver_flow_records``).

A report carrying ``flowRecords`` is read strictly, like the rest of a report: a malformed entry refuses
the report whole (:class:`~taskvpc.agentapi.reports.WireError`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskvpc.agentapi import read
from taskvpc.agentapi.answer import Section, register_section
from taskvpc.agentapi.reports import WireError

Doc = dict[str, Any]
TRAFFIC_TYPES = ("ACCEPT", "REJECT")
REPORT_KEY = "flowRecords"
MAX_RECORDS = 10_000  # per entry; a window's records beyond it are the agent's to split
_SCALARS = (str, int, float)


@dataclass(frozen=True, slots=True)
class FlowLogWatch:
    eni_id: str
    aggregation_interval: int  # seconds: 60 or 600
    traffic_types: frozenset[str]  # ACCEPT, REJECT or both
    fields: tuple[str, ...] = ()  # the fields the covering flow logs' formats name (union)

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> FlowLogWatch | None:
        eni_id = read.string(doc.get("eniId"))
        interval = read.positive(doc.get("aggregationInterval"))
        types = frozenset(t for t in read.strings(doc.get("trafficTypes")) if t in TRAFFIC_TYPES)
        if eni_id is None or interval is None or not types:
            return None
        return cls(eni_id, interval, types, read.strings(doc.get("fields")))

    def to_wire(self) -> Doc:
        return {
            "eniId": self.eni_id,
            "aggregationInterval": self.aggregation_interval,
            "trafficTypes": sorted(self.traffic_types),
            "fields": list(self.fields),
        }


def _parse(value: Any) -> tuple[FlowLogWatch, ...]:
    parsed = (FlowLogWatch.from_wire(v) for v in read.mappings(value))
    return tuple(w for w in parsed if w is not None)


def _dump(values: tuple[FlowLogWatch, ...]) -> list[Doc]:
    return [v.to_wire() for v in values]


def _none() -> tuple[FlowLogWatch, ...]:
    return ()


FLOW_LOGS: Section[tuple[FlowLogWatch, ...]] = register_section(Section("flowLogs", _parse, _dump, _none))


def watch_for(
    eni_id: str, traffic_types: list[str], intervals: list[int], fields: list[tuple[str, ...]]
) -> FlowLogWatch:
    """The union of the flow logs covering one ENI (their ``TrafficType``s, intervals and formats)."""
    wanted = frozenset(x for t in traffic_types for x in (TRAFFIC_TYPES if t == "ALL" else (t,)))
    names = tuple(dict.fromkeys(name for format_fields in fields for name in format_fields))
    return FlowLogWatch(eni_id, min(intervals), wanted, names)


# ---- the report entry --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlowRecords:
    eni_id: str
    window_start: int
    window_end: int
    records: tuple[Mapping[str, str | int | float | None], ...]

    def to_wire(self) -> Doc:
        return {
            "eniId": self.eni_id,
            "window": [self.window_start, self.window_end],
            "records": [dict(r) for r in self.records],
        }

    @classmethod
    def from_wire(cls, doc: Any) -> FlowRecords:
        if not isinstance(doc, Mapping) or not isinstance(doc.get("eniId"), str):
            raise WireError("each flowRecords entry needs an eniId.")
        window = doc.get("window")
        if (
            not isinstance(window, list)
            or len(window) != 2
            or not all(isinstance(w, int) and not isinstance(w, bool) for w in window)
        ):
            raise WireError("window must be [start, end] in epoch seconds.")
        records = doc.get("records")
        if not isinstance(records, list) or len(records) > MAX_RECORDS:
            raise WireError(f"records must be a list of at most {MAX_RECORDS} records.")
        parsed = []
        for record in records:
            if not isinstance(record, Mapping) or not all(
                isinstance(k, str) and (v is None or (isinstance(v, _SCALARS) and not isinstance(v, bool)))
                for k, v in record.items()
            ):
                raise WireError("each flow record maps field names to strings, numbers or null.")
            parsed.append(dict(record))
        return cls(doc["eniId"], window[0], window[1], tuple(parsed))


def records_to_wire(entries: tuple[FlowRecords, ...]) -> Doc:
    """A report body carrying only flow records (no task reports)."""
    return {"tasks": [], REPORT_KEY: [e.to_wire() for e in entries]}


def records_from_wire(payload: Mapping[str, Any]) -> tuple[FlowRecords, ...]:
    """The ``flowRecords`` of a report body; none when it has no such member."""
    value = payload.get(REPORT_KEY)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise WireError(f"{REPORT_KEY} must be a list.")
    return tuple(FlowRecords.from_wire(item) for item in value)
