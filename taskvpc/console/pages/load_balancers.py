"""Load balancers (zones and their ENIs' addresses, listeners and rules) and target groups with their
targets' health, live."""

from __future__ import annotations

import re
from typing import Any

from taskvpc.console import network_views as nv
from taskvpc.console.app import Console, User
from taskvpc.console.http import Request, Response, event_stream
from taskvpc.console.pages.common import collect
from taskvpc.domain.errors import ClientError

_ELB = "elasticloadbalancing"
_MAX_PAGES = 10


async def _all(console: Console, user: User, operation: str, params: dict[str, Any], key: str) -> list[Any]:
    """Every item of an ELBv2 list (its pages go by Marker/NextMarker, not NextToken)."""
    items: list[Any] = []
    for _ in range(_MAX_PAGES):
        answer = await console.call(user, _ELB, operation, params)
        items.extend(answer.get(key, []))
        if not answer.get("NextMarker"):
            break
        params = {**params, "Marker": answer["NextMarker"]}
    return items


# ---- load balancers ------------------------------------------------------------------------------------


async def load_balancers(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    try:
        found = await _all(console, user, "DescribeLoadBalancers", {}, "LoadBalancers")
    except ClientError as error:
        return console.error_page(request, user, error)
    found.sort(key=lambda lb: lb["LoadBalancerName"])
    return console.page(request, user, "load_balancers.html", load_balancers=found)


async def load_balancer(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    try:
        answer = await console.call(user, _ELB, "DescribeLoadBalancers", {"Names": [match["name"]]})
        [lb] = answer["LoadBalancers"]
        filters = [{"Name": "description", "Values": [nv.eni_description(lb["LoadBalancerArn"])]}]
        enis = await collect(
            console, user, "ec2", "DescribeNetworkInterfaces", {"Filters": filters}, "NetworkInterfaces"
        )
        listeners = await _all(
            console, user, "DescribeListeners", {"LoadBalancerArn": lb["LoadBalancerArn"]}, "Listeners"
        )
        with_rules = [
            (
                listener,
                await _all(console, user, "DescribeRules", {"ListenerArn": listener["ListenerArn"]}, "Rules"),
            )
            for listener in listeners
        ]
    except ClientError as error:
        return console.error_page(request, user, error)
    view = nv.load_balancer_view(lb, enis, with_rules)
    return console.page(request, user, "load_balancer.html", lb=view)


# ---- target groups -------------------------------------------------------------------------------------


async def target_groups(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    try:
        found = await _all(console, user, "DescribeTargetGroups", {}, "TargetGroups")
    except ClientError as error:
        return console.error_page(request, user, error)
    found.sort(key=lambda g: g["TargetGroupName"])
    return console.page(request, user, "target_groups.html", groups=found, lb_name=nv.name_from_arn)


async def _group(console: Console, user: User, name: str) -> dict[str, Any]:
    answer = await console.call(user, _ELB, "DescribeTargetGroups", {"Names": [name]})
    return dict(answer["TargetGroups"][0])


async def _targets_panel(console: Console, user: User, group_arn: str) -> str:
    try:
        answer = await console.call(user, _ELB, "DescribeTargetHealth", {"TargetGroupArn": group_arn})
    except ClientError as error:
        return console.fragment("_error_row.html", message=f"{error.code}: {error.message}", columns=6)
    return console.fragment("_targets.html", targets=nv.target_rows(answer["TargetHealthDescriptions"]))


async def target_group(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    try:
        group = await _group(console, user, match["name"])
    except ClientError as error:
        return console.error_page(request, user, error)
    panel = await _targets_panel(console, user, group["TargetGroupArn"])
    return console.page(
        request,
        user,
        "target_group.html",
        group=group,
        health_check=nv.health_check_text(group),
        lb_name=nv.name_from_arn,
        panel=panel,
    )


async def target_health_events(
    console: Console, request: Request, user: User, match: re.Match[str]
) -> Response | None:
    arn: list[str] = []

    async def render() -> str:
        if not arn:  # looked up once: a group's ARN never changes, its targets' health does
            try:
                arn.append((await _group(console, user, match["name"]))["TargetGroupArn"])
            except ClientError as error:
                return console.fragment(
                    "_error_row.html", message=f"{error.code}: {error.message}", columns=6
                )
        return await _targets_panel(console, user, arn[0])

    assert request.send is not None and request.receive is not None
    await event_stream(request.send, request.receive, render, "targets", stopping=console.stream_ends(user))
    return None
