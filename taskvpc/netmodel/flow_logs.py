"""VPC Flow Logs records: the field list, log formats, the record line, and which flow logs see an ENI.

Pure. Facts from the Amazon VPC User Guide (awsdocs/amazon-vpc-user-guide ``flow-logs.md`` "Available
fields", ``flow-logs-records-examples.md``, ``flow-logs-cwl.md``):

* a record is the values of the format's fields, separated by single spaces, ``-`` when a field does not
  apply (or for every traffic field of a NODATA/SKIPDATA record);
* the default format is the 14 version-2 fields; a custom format is ``${field}`` names separated by
  spaces, and its records' ``version`` is the highest version among the fields it names;
* a flow log on a VPC or subnet covers every ENI in it; CloudWatch Logs delivery writes one log stream
  per ENI, named by the ENI id, with the record's ``start`` as the event time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# field -> the flow log version that introduced it (the User Guide's "Available fields" table).
FIELD_VERSIONS: dict[str, int] = {
    "version": 2,
    "account-id": 2,
    "interface-id": 2,
    "srcaddr": 2,
    "dstaddr": 2,
    "srcport": 2,
    "dstport": 2,
    "protocol": 2,
    "packets": 2,
    "bytes": 2,
    "start": 2,
    "end": 2,
    "action": 2,
    "log-status": 2,
    "vpc-id": 3,
    "subnet-id": 3,
    "instance-id": 3,
    "tcp-flags": 3,
    "type": 3,
    "pkt-srcaddr": 3,
    "pkt-dstaddr": 3,
    "region": 4,
    "az-id": 4,
    "sublocation-type": 4,
    "sublocation-id": 4,
    "pkt-src-aws-service": 5,
    "pkt-dst-aws-service": 5,
    "flow-direction": 5,
    "traffic-path": 5,
    # Version 7: the ECS fields, which taskvpc can fill for its awsvpc tasks.
    "ecs-cluster-arn": 7,
    "ecs-cluster-name": 7,
    "ecs-container-instance-arn": 7,
    "ecs-container-instance-id": 7,
    "ecs-container-id": 7,
    "ecs-second-container-id": 7,
    "ecs-service-name": 7,
    "ecs-task-definition-arn": 7,
    "ecs-task-arn": 7,
    "ecs-task-id": 7,
}
DEFAULT_FIELDS: tuple[str, ...] = tuple(name for name, version in FIELD_VERSIONS.items() if version == 2)
DEFAULT_FORMAT = " ".join(f"${{{name}}}" for name in DEFAULT_FIELDS)

ACTIONS = ("ACCEPT", "REJECT")
LOG_STATUSES = ("OK", "NODATA", "SKIPDATA")
_FIELD = re.compile(r"\$\{([^}]*)\}")


class LogFormatError(ValueError):
    """A LogFormat EC2 refuses; the message says which part."""


def parse_log_format(text: str | None) -> tuple[str, ...]:
    """The fields a ``LogFormat`` names, in order (the default format when ``text`` is None)."""
    if text is None:
        return DEFAULT_FIELDS
    names: list[str] = []
    for part in text.split():
        found = _FIELD.fullmatch(part)
        if found is None:
            raise LogFormatError(f"Unsupported LogFormat element '{part}': expected '${{field}}'")
        if found.group(1) not in FIELD_VERSIONS:
            raise LogFormatError(f"Unknown field '{part}' in LogFormat")
        names.append(found.group(1))
    if not names:
        raise LogFormatError("LogFormat names no field")
    return tuple(names)


def format_version(fields: Iterable[str]) -> int:
    return max((FIELD_VERSIONS[name] for name in fields), default=2)


def format_flow_record(fields: Sequence[str], record: Mapping[str, object]) -> str:
    """One record line: the fields' values in order, ``-`` for a missing (None) value."""
    values: list[str] = []
    for name in fields:
        value = record.get(name)
        if name == "version" and value is None:
            value = format_version(fields)
        values.append("-" if value is None or value == "" else str(value))
    return " ".join(values)


def status_record(log_status: str, base: Mapping[str, object], start: int, end: int) -> dict[str, object]:
    """A NODATA or SKIPDATA record: only the interface's own fields, the window and the status."""
    if log_status not in ("NODATA", "SKIPDATA"):
        raise ValueError(log_status)
    kept = {k: v for k, v in base.items() if k in _INTERFACE_FIELDS}
    return {**kept, "start": start, "end": end, "log-status": log_status}


# What a NODATA/SKIPDATA record still shows: who and where, never traffic (the examples in
# flow-logs-records-examples.md show "-" for addresses, ports, protocol, packets, bytes and action).
_INTERFACE_FIELDS = frozenset(
    {"version", "account-id", "interface-id", "vpc-id", "subnet-id", "instance-id", "region", "az-id"}
)


# ---- which flow logs see an ENI -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlowLogTarget:
    flow_log_id: str
    resource_id: str  # the ENI, subnet or VPC it was created on
    traffic_type: str  # ACCEPT | REJECT | ALL
    log_group_name: str
    fields: tuple[str, ...]


def applicable(
    flow_logs: Iterable[FlowLogTarget], eni_id: str, subnet_id: str, vpc_id: str
) -> list[FlowLogTarget]:
    """The flow logs that cover an ENI: made on the ENI itself, its subnet or its VPC."""
    scope = {eni_id, subnet_id, vpc_id}
    return [flow_log for flow_log in flow_logs if flow_log.resource_id in scope]


def wants(flow_log: FlowLogTarget, record: Mapping[str, object]) -> bool:
    """Whether the flow log records this record: its traffic type, or a NODATA/SKIPDATA status."""
    if record.get("log-status", "OK") != "OK":
        return True
    return flow_log.traffic_type == "ALL" or record.get("action") == flow_log.traffic_type


def parse_flow_record(fields: Sequence[str], line: str) -> dict[str, str] | None:
    """A record line read back with its format's fields (the inverse of format_flow_record): field ->
    value, a ``-`` value left out; None when the line does not have one value per field."""
    values = line.split()
    if len(values) != len(fields):
        return None
    return {name: value for name, value in zip(fields, values, strict=True) if value != "-"}
