"""Amazon CloudWatch Logs as taskvpc serves it (JSON 1.1, signing name ``logs``)."""

from __future__ import annotations

from taskvpc.control.logs import events, groups, streams
from taskvpc.control.manifest import ServiceManifest

MANIFEST = ServiceManifest(
    model="logs",
    signing_name="logs",
    protocol="json",
    regional=True,
    handlers={
        "CreateLogGroup": groups.create_log_group,
        "DeleteLogGroup": groups.delete_log_group,
        "DescribeLogGroups": groups.describe_log_groups,
        "PutRetentionPolicy": groups.put_retention_policy,
        "DeleteRetentionPolicy": groups.delete_retention_policy,
        "TagResource": groups.tag_resource,
        "UntagResource": groups.untag_resource,
        "ListTagsForResource": groups.list_tags_for_resource,
        "TagLogGroup": groups.tag_log_group,
        "UntagLogGroup": groups.untag_log_group,
        "ListTagsLogGroup": groups.list_tags_log_group,
        "CreateLogStream": streams.create_log_stream,
        "DeleteLogStream": streams.delete_log_stream,
        "DescribeLogStreams": streams.describe_log_streams,
        "PutLogEvents": events.put_log_events,
        "GetLogEvents": events.get_log_events,
        "FilterLogEvents": events.filter_log_events,
    },
    # A full PutLogEvents batch is 1 MiB of message bytes (+26 per event) *before* JSON encoding: 10,000
    # events' framing and escaping (a control character becomes six bytes) take it well past 1 MiB.
    max_body=8 * 1024 * 1024,
    # awslogs_cursors: the awslogs driver's per-container delivery cursors (delivery.py)
    tables=("log_groups", "log_streams", "log_events", "log_group_tags", "awslogs_cursors"),
    migrations=("0030", "0090"),
)
