"""Listener and rule actions and rule conditions: ELB's checks, and the normal form ELB answers with.

A ``forward`` to one group comes back as ELB shows it: ``TargetGroupArn`` plus a ``ForwardConfig`` with
that group at weight 1; host-header and path-pattern conditions carry both ``Values`` and their config.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.elbv2 import common, target_groups
from taskvpc.domain import elb
from taskvpc.domain.errors import ClientError

Doc = dict[str, Any]

_TERMINAL = ("forward", "redirect", "fixed-response")
_CONTENT_TYPES = ("text/plain", "text/css", "text/html", "application/javascript", "application/json")
_CONFIG_OF = {
    "host-header": "HostHeaderConfig",
    "path-pattern": "PathPatternConfig",
    "http-header": "HttpHeaderConfig",
    "http-request-method": "HttpRequestMethodConfig",
    "query-string": "QueryStringConfig",
    "source-ip": "SourceIpConfig",
}
MAX_CONDITION_VALUES = 5


def invalid_action(message: str) -> ClientError:
    return ClientError("InvalidLoadBalancerAction", message)


def _forward(conn: Connection, ctx: RequestContext, action: Doc, lb: Doc, listener_protocol: str) -> Doc:
    config = action.get("ForwardConfig") or {}
    groups = [dict(g) for g in config.get("TargetGroups") or []]
    single = action.get("TargetGroupArn")
    if single and groups and [g["TargetGroupArn"] for g in groups] != [single]:
        raise elb.validation(
            "You cannot specify a target group ARN and a forward config with different target groups"
        )  # unconfirmed
    if not groups:
        if not single:
            raise elb.validation("A target group ARN must be specified")  # unconfirmed
        groups = [{"TargetGroupArn": single}]
    if len(groups) > 5 or (lb["Type"] == "network" and len(groups) > 1):
        raise elb.validation(
            "You can specify up to 5 target groups in a forward action (1 for a Network Load Balancer)"
        )  # unconfirmed
    used = target_groups.usage(conn, ctx)
    for group in groups:
        tg = common.require_tg(conn, ctx, group["TargetGroupArn"])
        if elb.tg_is_alb(tg["Protocol"]) != (lb["Type"] == "application") or not elb.nlb_pair_ok(
            listener_protocol, tg["Protocol"]
        ):
            # "Listener protocol 'HTTP' is not supported with a target group with the protocol 'TCP'" (ELB)
            raise elb.configuration(
                f"Listener protocol '{listener_protocol}' is not supported with a target group with the protocol '{tg['Protocol']}'"
            )
        if tg["VpcId"] != lb["VpcId"]:
            raise elb.configuration(
                f"Target group '{tg['TargetGroupArn']}' is not in the same VPC as the load balancer"
            )  # unconfirmed
        others = used.get(tg["TargetGroupArn"], set()) - {lb["LoadBalancerArn"]}
        if others:
            raise ClientError(
                "TargetGroupAssociationLimit",
                f"The following target groups cannot be associated with more than one load balancer: {tg['TargetGroupArn']}",
            )
        weight = group.setdefault("Weight", 1)
        if not 0 <= weight <= 999:
            raise elb.validation(f"Target group weight '{weight}' must be between 0 and 999")  # unconfirmed
    stickiness = dict(config.get("TargetGroupStickinessConfig") or {"Enabled": False})
    if stickiness.get("Enabled") and not 1 <= stickiness.get("DurationSeconds", 0) <= 604800:
        raise elb.validation(
            "Target group stickiness duration must be between 1 and 604800 seconds"
        )  # unconfirmed
    shown: Doc = {"Type": "forward"}
    if len(groups) == 1:
        shown["TargetGroupArn"] = groups[0]["TargetGroupArn"]
    shown["ForwardConfig"] = {"TargetGroups": groups, "TargetGroupStickinessConfig": stickiness}
    return shown


def _redirect(action: Doc) -> Doc:
    config = dict(action.get("RedirectConfig") or {})
    if config.get("StatusCode") not in ("HTTP_301", "HTTP_302"):
        raise elb.validation("A redirect status code must be 'HTTP_301' or 'HTTP_302'")  # unconfirmed
    config.setdefault("Protocol", "#{protocol}")
    config.setdefault("Port", "#{port}")
    config.setdefault("Host", "#{host}")
    config.setdefault("Path", "/#{path}")
    config.setdefault("Query", "#{query}")
    if config["Protocol"] not in ("HTTP", "HTTPS", "#{protocol}"):
        raise elb.validation(
            f"Redirect protocol '{config['Protocol']}' must be 'HTTP', 'HTTPS' or '#{{protocol}}'"
        )  # unconfirmed
    port = config["Port"]
    if port != "#{port}" and (not port.isdigit() or not 1 <= int(port) <= 65535):
        raise elb.validation(
            f"Redirect port '{port}' must be '#{{port}}' or a number from 1 to 65535"
        )  # unconfirmed
    if not config["Path"].startswith("/"):
        raise elb.validation("A redirect path must start with a '/'")  # unconfirmed
    if config["Query"].startswith("?"):
        raise elb.validation("A redirect query must not start with a '?'")  # unconfirmed
    unchanged = {
        "Protocol": "#{protocol}",
        "Port": "#{port}",
        "Host": "#{host}",
        "Path": "/#{path}",
        "Query": "#{query}",
    }
    if all(config[key] == value for key, value in unchanged.items()):
        # A redirect to the very URL would loop forever; ELB refuses it # unconfirmed wording
        raise invalid_action("The redirect configuration is not valid: it would redirect to the original URL")
    return {"Type": "redirect", "RedirectConfig": config}


def _fixed_response(action: Doc) -> Doc:
    config = dict(action.get("FixedResponseConfig") or {})
    if not re.fullmatch(r"[245][0-9][0-9]", str(config.get("StatusCode", ""))):
        raise elb.validation("A fixed-response status code must be 2XX, 4XX or 5XX")  # unconfirmed
    if "ContentType" in config and config["ContentType"] not in _CONTENT_TYPES:
        raise elb.validation(
            f"Content type '{config['ContentType']}' must be one of: {', '.join(_CONTENT_TYPES)}"
        )  # unconfirmed
    if len(config.get("MessageBody", "")) > 1024:
        raise elb.validation("A fixed-response message body can have at most 1024 characters")  # unconfirmed
    return {"Type": "fixed-response", "FixedResponseConfig": config}


def check_actions(
    conn: Connection, ctx: RequestContext, actions: list[Doc], lb: Doc, listener_protocol: str
) -> list[Doc]:
    """ELB's checks on an action list; the actions in ELB's normal form, in order."""
    if not actions:
        raise elb.validation("At least one action must be specified")  # unconfirmed
    ordered = sorted(enumerate(actions), key=lambda pair: (pair[1].get("Order", pair[0] + 1), pair[0]))
    shown = []
    for position, (_, action) in enumerate(ordered):
        kind = action["Type"]
        if kind not in _TERMINAL:
            raise elb.validation(f"taskvpc does not serve '{kind}' actions")
        if position != len(ordered) - 1:
            # Exactly one terminal action, the last one (ELB)  # unconfirmed wording
            raise invalid_action(f"Action type '{kind}' must be the last action")
        if lb["Type"] == "network" and kind != "forward":
            raise invalid_action(
                f"Action type '{kind}' is not supported for Network Load Balancer listeners"
            )  # unconfirmed
        if kind == "forward":
            normal = _forward(conn, ctx, action, lb, listener_protocol)
        elif kind == "redirect":
            normal = _redirect(action)
        else:
            normal = _fixed_response(action)
        normal["Order"] = action.get("Order", position + 1)
        shown.append(normal)
    return shown


def _values(condition: Doc) -> list[str]:
    field = condition["Field"]
    config = condition.get(_CONFIG_OF[field]) or {}
    if field == "query-string":
        return [f"{p.get('Key', '')}={p['Value']}" for p in config.get("Values") or []]
    if field == "http-header":
        return list(config.get("Values") or [])
    return list(config.get("Values") or condition.get("Values") or [])


def check_conditions(conditions: list[Doc]) -> list[Doc]:
    if not conditions:
        raise elb.validation("A rule must have at least one condition")  # unconfirmed
    shown, seen, total = [], set(), 0
    for condition in conditions:
        field = condition.get("Field")
        if field not in _CONFIG_OF:
            raise elb.validation(
                f"Condition field '{field}' must be one of [{', '.join(_CONFIG_OF)}]"
            )  # unconfirmed
        config_name = _CONFIG_OF[field]
        if condition.get("Values") and condition.get(config_name):
            raise elb.validation(
                f"You cannot specify both Values and {config_name} for a '{field}' condition"
            )  # unconfirmed
        if condition.get("Values") and field not in ("host-header", "path-pattern"):
            raise elb.validation(
                f"Values can only be specified for 'host-header' and 'path-pattern' conditions, use {config_name}"
            )  # unconfirmed
        if field in seen and field not in ("http-header", "query-string"):
            raise elb.validation(f"A rule can only have one '{field}' condition")  # unconfirmed
        seen.add(field)
        values = _values(condition)
        if not values:
            raise elb.validation(f"A '{field}' condition must have at least one value")  # unconfirmed
        total += len(values)
        for value in values:
            if len(value) > 128:
                raise elb.validation(
                    f"Condition value '{value}' cannot be longer than 128 characters"
                )  # unconfirmed
        normal: Doc = {"Field": field}
        config = dict(condition.get(config_name) or {})
        if field in ("host-header", "path-pattern"):
            normal["Values"] = values
            normal[config_name] = {"Values": values}
        elif field == "http-header":
            if not config.get("HttpHeaderName"):
                raise elb.validation("An http-header condition needs an HttpHeaderName")  # unconfirmed
            normal[config_name] = {"HttpHeaderName": config["HttpHeaderName"], "Values": values}
        elif field == "http-request-method":
            for value in values:
                if not re.fullmatch(r"[A-Za-z_-]+", value):
                    raise elb.validation(f"HTTP request method '{value}' is not valid")  # unconfirmed
            normal[config_name] = {"Values": values}
        elif field == "source-ip":
            for value in values:
                if not re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}/\d{1,2}", value):
                    raise elb.validation(f"Source IP '{value}' must be a CIDR block")  # unconfirmed
            normal[config_name] = {"Values": values}
        else:
            normal[config_name] = {"Values": [dict(p) for p in config.get("Values") or []]}
        shown.append(normal)
    if total > MAX_CONDITION_VALUES:
        raise elb.validation(f"A rule can only have '{MAX_CONDITION_VALUES}' condition values")  # unconfirmed
    return shown
