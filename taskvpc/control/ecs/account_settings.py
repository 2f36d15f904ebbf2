"""PutAccountSetting(Default), ListAccountSettings, DeleteAccountSetting.

A user's own setting wins over the account default, which wins over AWS's default. Settings are kept
per region, as ECS keeps them.
"""

from __future__ import annotations

from typing import Any

from taskvpc.control.context import RequestContext
from taskvpc.domain.arns import root_principal_arn
from taskvpc.domain.errors import invalid_parameter
from taskvpc.domain.pagination import Pager, is_int, page_size
from taskvpc.store import ecs_repo

# AWS's defaults today (long ARNs are no longer optional; trunking is opt-in).
AWS_DEFAULTS: dict[str, str] = {
    "serviceLongArnFormat": "enabled",
    "taskLongArnFormat": "enabled",
    "containerInstanceLongArnFormat": "enabled",
    "awsvpcTrunking": "disabled",
    "containerInsights": "disabled",
    "dualStackIPv6": "disabled",
    "fargateFIPSMode": "disabled",
    "tagResourceAuthorization": "on",
    "fargateTaskRetirementWaitPeriod": "7",
    "guardDutyActivate": "off",
    "defaultLogDriverMode": "non-blocking",
}

_VALUES: dict[str, tuple[str, ...]] = {
    "containerInsights": ("enabled", "disabled", "enhanced"),
    "tagResourceAuthorization": ("on", "off"),
    "guardDutyActivate": ("on", "off"),
    "fargateTaskRetirementWaitPeriod": ("0", "7", "14"),
    "defaultLogDriverMode": ("blocking", "non-blocking"),
}
_ENABLED_DISABLED = ("enabled", "disabled")
# Settings that only the account default can carry.
_DEFAULT_ONLY = frozenset({"fargateTaskRetirementWaitPeriod", "guardDutyActivate", "fargateFIPSMode"})


def _check_value(name: str, value: str) -> None:
    if value not in _VALUES.get(name, _ENABLED_DISABLED):
        # Confirmed wording for an invalid value: aws/aws-cli#3785.
        raise invalid_parameter("Invalid setting 'value'")


def _setting(name: str, value: str, principal_arn: str, kind: str = "user") -> dict[str, str]:
    return {"name": name, "value": value, "principalArn": principal_arn, "type": kind}


def put_account_setting(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name, value = params["name"], params["value"]
    principal = params.get("principalArn") or ctx.principal_arn
    _check_value(name, value)
    if name in _DEFAULT_ONLY and principal != root_principal_arn(ctx.account_id, ctx.region):
        raise invalid_parameter(f"The {name} setting can only be changed with PutAccountSettingDefault.")
    with ctx.db.transaction() as conn:
        ecs_repo.put_setting(conn, ctx.region, principal, name, value)
    return {"setting": _setting(name, value, principal)}


def put_account_setting_default(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name, value = params["name"], params["value"]
    _check_value(name, value)
    root = root_principal_arn(ctx.account_id, ctx.region)
    with ctx.db.transaction() as conn:
        ecs_repo.put_setting(conn, ctx.region, root, name, value)
    return {"setting": _setting(name, value, root)}


def delete_account_setting(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = params["name"]
    principal = params.get("principalArn") or ctx.principal_arn
    with ctx.db.transaction() as conn:
        stored = {(p, n): v for p, n, v in ecs_repo.get_settings(conn, ctx.region)}
        value = stored.get((principal, name))
        if value is None:
            raise invalid_parameter(f"The account setting {name} is not set for {principal}.")  # unconfirmed
        ecs_repo.delete_setting(conn, ctx.region, principal, name)
    return {"setting": _setting(name, value, principal)}


def list_account_settings(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    principal = params.get("principalArn") or ctx.principal_arn
    root = root_principal_arn(ctx.account_id, ctx.region)
    with ctx.db.read() as conn:
        stored = ecs_repo.get_settings(conn, ctx.region)
    own = {n: v for p, n, v in stored if p == principal}
    defaults = {n: v for p, n, v in stored if p == root}
    settings: list[dict[str, str]] = []
    if params.get("effectiveSettings"):
        for name, aws_default in AWS_DEFAULTS.items():
            if name in own:
                settings.append(_setting(name, own[name], principal))
            elif name in defaults:
                settings.append(_setting(name, defaults[name], root))
            else:
                settings.append(_setting(name, aws_default, root, "aws_managed"))
    else:
        settings = [_setting(name, value, principal) for name, value in sorted(own.items())]
    if "name" in params:
        settings = [s for s in settings if s["name"] == params["name"]]
    if "value" in params:
        settings = [s for s in settings if s["value"] == params["value"]]
    pager = Pager.of(ctx.page_key, "ecs:ListAccountSettings", ctx.region, ctx.account_id, params)
    start = pager.decode(params.get("nextToken"), invalid_parameter("Invalid nextToken."), is_int) or 0
    limit = page_size(params.get("maxResults"), 10, 10)
    result: dict[str, Any] = {"settings": settings[start : start + limit]}
    if start + limit < len(settings):
        result["nextToken"] = pager.encode(start + limit)
    return result
