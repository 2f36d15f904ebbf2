"""Security groups and the inbound rule editor."""

from __future__ import annotations

import re
from typing import Any

from taskvpc.console import views
from taskvpc.console.app import Console, User
from taskvpc.console.http import Request, Response
from taskvpc.console.pages.common import back, collect
from taskvpc.domain.errors import ClientError

# ---- security groups -----------------------------------------------------------------------------


async def _groups_page(
    console: Console, request: Request, user: User, error: str, form: dict[str, str]
) -> Response:
    try:
        groups = await collect(console, user, "ec2", "DescribeSecurityGroups", {}, "SecurityGroups")
        vpcs = await collect(console, user, "ec2", "DescribeVpcs", {}, "Vpcs")
    except ClientError as failure:
        return console.error_page(request, user, failure)
    groups.sort(key=lambda g: (g["VpcId"], g["GroupName"]))
    vpcs.sort(key=lambda v: (not v.get("IsDefault"), v["VpcId"]))
    return console.page(
        request, user, "security_groups.html", groups=groups, vpcs=vpcs, error=error, form=form
    )


async def security_groups(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    return await _groups_page(console, request, user, "", {})


async def create_security_group(
    console: Console, request: Request, user: User, match: re.Match[str]
) -> Response:
    form = {key: values[0].strip() for key, values in request.form.items() if values}
    params = {"GroupName": form.get("name", ""), "Description": form.get("description", "")}
    if form.get("vpc"):
        params["VpcId"] = form["vpc"]
    try:
        answer = await console.call(user, "ec2", "CreateSecurityGroup", params)
    except ClientError as failure:
        return await _groups_page(console, request, user, f"{failure.code}: {failure.message}", form)
    return back(request, f"/security-groups/{answer['GroupId']}")


async def _group(console: Console, user: User, group_id: str) -> dict[str, Any]:
    answer = await console.call(user, "ec2", "DescribeSecurityGroups", {"GroupIds": [group_id]})
    return dict(answer["SecurityGroups"][0])


async def _rules_response(
    console: Console, request: Request, user: User, group_id: str, error: str
) -> Response:
    try:
        group = await _group(console, user, group_id)
    except ClientError as failure:
        return console.error_page(request, user, failure)
    context: dict[str, Any] = {
        "group": group,
        "rules": views.rule_rows(group.get("IpPermissions", [])),
        "error": error,
    }
    if request.htmx:
        return Response.html(console.fragment("_rules.html", user=user, **context))
    if error:
        return console.page(request, user, "security_group.html", **context)
    return back(request, f"/security-groups/{group_id}")


async def security_group(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    try:
        group = await _group(console, user, match["group"])
    except ClientError as error:
        return console.error_page(request, user, error)
    rules = views.rule_rows(group.get("IpPermissions", []))
    return console.page(request, user, "security_group.html", group=group, rules=rules, error="")


async def authorize_ingress(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    error = ""
    try:
        permission = views.permission_from_form(request.form)
        params = {"GroupId": match["group"], "IpPermissions": [permission]}
        await console.call(user, "ec2", "AuthorizeSecurityGroupIngress", params)
    except views.FormError as failure:
        error = str(failure)
    except ClientError as failure:
        error = f"{failure.code}: {failure.message}"
    return await _rules_response(console, request, user, match["group"], error)


async def revoke_ingress(console: Console, request: Request, user: User, match: re.Match[str]) -> Response:
    error = ""
    try:
        permission = views.revoke_permission((request.form.get("rule") or [""])[0])
        params = {"GroupId": match["group"], "IpPermissions": [permission]}
        await console.call(user, "ec2", "RevokeSecurityGroupIngress", params)
    except views.FormError as failure:
        error = str(failure)
    except ClientError as failure:
        error = f"{failure.code}: {failure.message}"
    return await _rules_response(console, request, user, match["group"], error)
