"""Flow logs: which VPC, subnet or ENI is captured, which traffic, and the log group the records go to."""

from __future__ import annotations

import re

from taskvpc.console import network_views as nv, views
from taskvpc.console.app import Console, User
from taskvpc.console.http import Request, Response
from taskvpc.console.pages.common import collect
from taskvpc.domain.errors import ClientError


async def flow_logs(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    try:
        found = await collect(console, user, "ec2", "DescribeFlowLogs", {}, "FlowLogs")
    except ClientError as error:
        return console.error_page(request, user, error)
    return console.page(
        request, user, "flow_logs.html", flow_logs=nv.flow_log_rows(found), fmt=views.format_time
    )
