"""VPC Flow Logs, control-plane half: CreateFlowLogs, DescribeFlowLogs, DeleteFlowLogs, and
:func:`deliver_flow_records`, which turns an agent's flow records for one ENI into log events.

Delivery goes to CloudWatch Logs only: ``s3`` and ``kinesis-data-firehose`` destinations are refused
with an error rather than accepted and never written. As on AWS, the log group is created on first
delivery when it does not exist, and each ENI gets a log stream named by its id (VPC User Guide,
``flow-logs-cwl.md``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection

from taskvpc.agentapi.flowlogs import FlowLogWatch, FlowRecords, watch_for
from taskvpc.agentapi.network import Eni
from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import dataplane, describe, errors, ids, tags
from taskvpc.control.logs.common import group_arn
from taskvpc.domain.errors import ClientError
from taskvpc.domain.logs_events import GROUP_NAME
from taskvpc.domain.pagination import Pager
from taskvpc.netmodel import filters, flow_logs as model
from taskvpc.store import ec2_repo, flow_logs_repo, logs_repo, tasks_repo

Doc = dict[str, Any]
MAX_RESOURCE_IDS = 1000
AGGREGATION_INTERVALS = (60, 600)
_FLOW_LOG_ID = re.compile(r"fl-(?:[0-9a-f]{8}|[0-9a-f]{17})")
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+")
_RESOURCE_PREFIX = {"VPC": "vpc", "Subnet": "subnet", "NetworkInterface": "eni"}
_LOG_GROUP_ARN = re.compile(
    r"arn:aws[a-z-]*:logs:[a-z0-9-]+:\d{12}:log-group:([.\-_/#A-Za-z0-9]{1,512})(?::\*)?"
)


def _invalid(message: str) -> ClientError:
    return ClientError("InvalidParameter", message)


def create_flow_logs(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    resource_type = params["ResourceType"]
    resource_ids = list(dict.fromkeys(params["ResourceIds"]))
    prefix = _RESOURCE_PREFIX.get(resource_type)
    if prefix is None:
        raise _invalid(f"Flow logs for resource type '{resource_type}' are not supported by taskvpc.")
    if not resource_ids or len(resource_ids) > MAX_RESOURCE_IDS:
        raise _invalid(f"ResourceIds must name between 1 and {MAX_RESOURCE_IDS} resources.")  # unconfirmed
    ids.check(prefix, resource_ids)
    destination_type = params.get("LogDestinationType", "cloud-watch-logs")
    if destination_type != "cloud-watch-logs":
        raise ClientError(
            "Unsupported",
            f"LogDestinationType '{destination_type}' is not supported: taskvpc delivers flow logs to "
            "CloudWatch Logs only (use cloud-watch-logs).",
        )
    traffic_type = params.get("TrafficType")
    if traffic_type is None:
        raise errors.missing_parameter("TrafficType")
    group_name = _log_group(params)
    role = params.get("DeliverLogsPermissionArn")
    if role is None:
        # "DeliverLogsPermissionArn can't be empty if LogDestinationType is cloud-watch-logs." # unconfirmed
        raise _invalid("DeliverLogsPermissionArn can't be empty if LogDestinationType is cloud-watch-logs.")
    if not _ROLE_ARN.fullmatch(role):
        raise _invalid(f"DeliverLogsPermissionArn '{role}' is not a valid IAM role ARN.")  # unconfirmed
    interval = params.get("MaxAggregationInterval", 600)
    if interval not in AGGREGATION_INTERVALS:
        raise _invalid("MaxAggregationInterval must be 60 or 600 seconds.")  # unconfirmed
    log_format = params.get("LogFormat")
    try:
        model.parse_log_format(log_format)
    except model.LogFormatError as problem:
        raise _invalid(str(problem)) from None
    tag_list = _tags(params)
    describe.dry_run(params)

    created: list[str] = []
    unsuccessful: list[Doc] = []
    with ctx.db.transaction() as conn:
        existing = flow_logs_repo.list_flow_logs(conn, ctx.region, resource_ids)
        for resource_id in resource_ids:
            if not _resource_exists(conn, ctx, prefix, resource_id):
                failure = errors.not_found(prefix, [resource_id])
                unsuccessful.append(_failure(resource_id, failure.code, failure.message))
                continue
            same = [
                f
                for f in existing
                if f["ResourceId"] == resource_id
                and f["TrafficType"] == traffic_type
                and f["LogGroupName"] == group_name
            ]
            if same:
                unsuccessful.append(
                    _failure(
                        resource_id,
                        "FlowLogAlreadyExists",
                        "Error. There is an existing Flow Log with the same configuration and log destination.",
                    )
                )
                continue
            flow_log_id = ids.new_id(ctx, "fl")
            doc = {
                "CreationTime": ctx.now,
                "DeliverLogsPermissionArn": role,
                "DeliverLogsStatus": "SUCCESS",
                "FlowLogId": flow_log_id,
                "FlowLogStatus": "ACTIVE",
                "LogGroupName": group_name,
                "ResourceId": resource_id,
                "TrafficType": traffic_type,
                "LogDestinationType": "cloud-watch-logs",
                "LogDestination": group_arn(ctx, group_name),
                "LogFormat": log_format if log_format is not None else model.DEFAULT_FORMAT,
                "Tags": tag_list,
                "MaxAggregationInterval": interval,
            }
            flow_logs_repo.insert_flow_log(conn, ctx.region, doc, ctx.now)
            created.append(flow_log_id)
        if created:  # the agents start collecting at their next answer: wake them
            dataplane.security_changed(conn, ctx)
    result: dict[str, Any] = {"FlowLogIds": created, "Unsuccessful": unsuccessful}
    if params.get("ClientToken"):
        result["ClientToken"] = params["ClientToken"]
    return result


def _log_group(params: Mapping[str, Any]) -> str:
    name, destination = params.get("LogGroupName"), params.get("LogDestination")
    if name is not None and destination is not None:
        raise ClientError(
            "InvalidParameterCombination", "Please only provide LogGroupName or only provide LogDestination."
        )
    if destination is not None:
        found = _LOG_GROUP_ARN.fullmatch(destination)
        if found is None:
            raise _invalid(
                f"LogDestination '{destination}' is not a CloudWatch Logs log group ARN."
            )  # unconfirmed
        return found.group(1)
    if name is None:
        raise errors.missing_parameter("LogGroupName")  # unconfirmed which one EC2 names
    if not GROUP_NAME.fullmatch(name):
        raise _invalid(f"LogGroupName '{name}' is not a valid log group name.")  # unconfirmed
    return str(name)


def _tags(params: Mapping[str, Any]) -> list[dict[str, str]]:
    return tags.from_specs(params, "vpc-flow-log")


def _resource_exists(conn: Connection, ctx: RequestContext, prefix: str, resource_id: str) -> bool:
    get = {"vpc": ec2_repo.get_vpc, "subnet": ec2_repo.get_subnet, "eni": ec2_repo.get_eni}[prefix]
    return get(conn, ctx.region, resource_id) is not None


def _failure(resource_id: str, code: str, message: str) -> Doc:
    return {"ResourceId": resource_id, "Error": {"Code": code, "Message": message}}


# ---- DescribeFlowLogs / DeleteFlowLogs ----------------------------------------------------------------

LISTING = describe.Listing(
    prefix="fl",
    id_member="FlowLogId",
    supported_filters=(
        "deliver-log-status",
        "log-destination-type",
        "flow-log-id",
        "log-group-name",
        "resource-id",
        "traffic-type",
    ),
    filter_values=lambda doc: {
        "deliver-log-status": doc["DeliverLogsStatus"],
        "log-destination-type": doc["LogDestinationType"],
        "flow-log-id": doc["FlowLogId"],
        "log-group-name": doc["LogGroupName"],
        "resource-id": doc["ResourceId"],
        "traffic-type": doc["TrafficType"],
    },
)


def describe_flow_logs(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    filters.check_filter_names(params.get("Filter"), LISTING.supported_filters)
    describe.dry_run(params)
    with ctx.db.read() as conn:
        docs = flow_logs_repo.list_flow_logs(conn, ctx.region)
    wanted = params.get("FlowLogIds")
    if wanted:
        docs = [doc for doc in docs if doc["FlowLogId"] in set(wanted)]
    selected = describe.select(LISTING, docs, {"Filters": params.get("Filter")})
    pager = Pager.of(ctx.page_key, "ec2:DescribeFlowLogs", ctx.region, ctx.account_id, params)
    chunk, token = describe.page(LISTING, selected, params, pager)
    result: dict[str, Any] = {"FlowLogs": chunk}
    if token is not None:
        result["NextToken"] = token
    return result


def delete_flow_logs(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    requested = list(dict.fromkeys(params["FlowLogIds"]))
    for flow_log_id in requested:
        if not _FLOW_LOG_ID.fullmatch(flow_log_id):
            raise ClientError(
                "InvalidFlowLogId.Malformed", f'Invalid id: "{flow_log_id}" (expecting "fl-...")'
            )  # unconfirmed
    describe.dry_run(params)
    unsuccessful: list[Doc] = []
    with ctx.db.transaction() as conn:
        for flow_log_id in requested:
            if flow_logs_repo.delete_flow_log(conn, ctx.region, flow_log_id):
                dataplane.security_changed(conn, ctx)  # the agents stop collecting what none wants
            else:
                unsuccessful.append(
                    _failure(
                        flow_log_id,
                        "InvalidFlowLogId.NotFound",
                        f"These flow log ids in the input list are not found: [TotalCount: 1] {flow_log_id}",
                    )
                )
    return {"Unsuccessful": unsuccessful}


# ---- the agents' part ----------------------------------------------------------------------------------


def watches(conn: Connection, ctx: RequestContext, enis: Sequence[Eni]) -> tuple[FlowLogWatch, ...]:
    """What an instance's agent collects: per task ENI covered by some flow log, the union of what they
    want (the ``flowLogs`` section of its desired state)."""
    watched = flow_logs_repo.resource_ids(conn, ctx.region)  # few: not one lookup per ENI of the host
    if not watched:
        return ()
    scope = watched & {x for e in enis for x in (e.network_interface_id, e.subnet_id, e.vpc_id)}
    if not scope:
        return ()
    targets = [(doc, _target(doc)) for doc in flow_logs_repo.list_flow_logs(conn, ctx.region, sorted(scope))]
    out = []
    for eni in sorted(enis, key=lambda e: e.network_interface_id):
        covering = [
            (doc, target)
            for doc, target in targets
            if target.resource_id in (eni.network_interface_id, eni.subnet_id, eni.vpc_id)
        ]
        if covering:
            out.append(
                watch_for(
                    eni.network_interface_id,
                    [t.traffic_type for _, t in covering],
                    [int(doc.get("MaxAggregationInterval", 600)) for doc, _ in covering],
                    [t.fields for _, t in covering],
                )
            )
    return tuple(out)


def deliver_reported(ctx: RequestContext, instance_id: str, entries: Sequence[FlowRecords]) -> int:
    """An agent's ``flowRecords``: each entry for an ENI of a task on that instance is delivered (others,
    which the agent has no business reporting, are ignored); returns the events written."""
    with ctx.db.read() as conn:
        own = {t["eni_id"] for t in tasks_repo.tasks_on_instance(conn, instance_id, live_only=False)}
    return sum(deliver_flow_records(ctx, e.eni_id, e.records) for e in entries if e.eni_id in own)


# ---- delivery -----------------------------------------------------------------------------------------


def deliver_flow_records(ctx: RequestContext, eni_id: str, records: Sequence[Mapping[str, object]]) -> int:
    """Write an ENI's flow records (dicts keyed by AWS field names) as log events of every flow log that
    covers the ENI, in the stream named by the ENI id; returns how many events were written.

    The agent reports records through the agent API; fields the control plane knows (account, ENI, VPC,
    subnet, region, zone) are filled here, so the agent sends only what it measured.
    """
    with ctx.db.transaction() as conn:
        eni = ec2_repo.get_eni(conn, ctx.region, eni_id)
        if eni is None:
            return 0
        subnet = ec2_repo.get_subnet(conn, ctx.region, eni["SubnetId"]) or {}
        scope = [eni_id, eni["SubnetId"], eni["VpcId"]]
        targets = [_target(doc) for doc in flow_logs_repo.list_flow_logs(conn, ctx.region, scope)]
        known = {
            "account-id": ctx.account_id,
            "interface-id": eni_id,
            "vpc-id": eni["VpcId"],
            "subnet-id": eni["SubnetId"],
            "region": ctx.region,
            "az-id": subnet.get("AvailabilityZoneId"),
        }
        written = 0
        ingestion = int(ctx.now * 1000)
        for target in model.applicable(targets, eni_id, eni["SubnetId"], eni["VpcId"]):
            full = [{**known, **record} for record in records]
            events = sorted(  # by window start; records of one window keep the order they came in
                (
                    (_start_ms(record), model.format_flow_record(target.fields, record))
                    for record in full
                    if model.wants(target, record)
                ),
                key=lambda event: event[0],
            )
            if events:
                group_id, stream_id = _ensure_stream(conn, ctx, target.log_group_name, eni_id)
                logs_repo.put_events(conn, group_id, stream_id, events, ingestion)
                written += len(events)
    return written


def _start_ms(record: Mapping[str, object]) -> int:
    """A record's event time: its window start (epoch seconds in the record), in milliseconds."""
    start = record.get("start")
    return int(start) * 1000 if isinstance(start, int | float | str) else 0


def _target(doc: Mapping[str, Any]) -> model.FlowLogTarget:
    return model.FlowLogTarget(
        flow_log_id=doc["FlowLogId"],
        resource_id=doc["ResourceId"],
        traffic_type=doc["TrafficType"],
        log_group_name=doc["LogGroupName"],
        fields=model.parse_log_format(doc["LogFormat"]),
    )


def _ensure_stream(
    conn: Connection, ctx: RequestContext, group_name: str, stream_name: str
) -> tuple[int, int]:
    group = logs_repo.get_group(conn, ctx.region, group_name)
    if group is None:  # flow logs create their log group on first delivery, as AWS does
        values = {
            "region": ctx.region,
            "name": group_name,
            "arn": group_arn(ctx, group_name),
            "created_at": int(ctx.now * 1000),
            "retention_days": None,
            "kms_key_id": None,
            "log_group_class": "STANDARD",
        }
        group_id = logs_repo.insert_group(conn, values)
    else:
        group_id = group["id"]
    stream = logs_repo.get_stream(conn, group_id, stream_name)
    if stream is not None:
        return group_id, int(stream["id"])
    return group_id, logs_repo.insert_stream(conn, group_id, stream_name, int(ctx.now * 1000))
