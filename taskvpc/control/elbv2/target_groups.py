"""Target groups: Create/Describe/Modify/Delete, their attributes, and which load balancers use them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import ids
from taskvpc.control.elbv2 import common, tagging
from taskvpc.domain import elb
from taskvpc.domain.errors import ClientError
from taskvpc.store import ec2_repo, elbv2_repo

Doc = dict[str, Any]

_HC_RANGES = {
    "HealthCheckIntervalSeconds": (5, 300),
    "HealthCheckTimeoutSeconds": (2, 120),
    "HealthyThresholdCount": (2, 10),
    "UnhealthyThresholdCount": (2, 10),
}
_HC_MEMBERS = (
    "HealthCheckProtocol",
    "HealthCheckPort",
    "HealthCheckEnabled",
    "HealthCheckPath",
    "HealthCheckIntervalSeconds",
    "HealthCheckTimeoutSeconds",
    "HealthyThresholdCount",
    "UnhealthyThresholdCount",
)


def forward_targets(actions: list[Doc]) -> list[str]:
    """Target group ARNs a list of listener/rule actions forwards to."""
    found = []
    for action in actions:
        if action.get("Type") != "forward":
            continue
        if action.get("TargetGroupArn"):
            found.append(action["TargetGroupArn"])
        for group in (action.get("ForwardConfig") or {}).get("TargetGroups") or []:
            found.append(group["TargetGroupArn"])
    return found


def usage(conn: Connection, ctx: RequestContext) -> dict[str, set[str]]:
    """Target group ARN -> ARNs of the load balancers whose listeners or rules forward to it."""
    used: dict[str, set[str]] = {}
    listeners = elbv2_repo.list_docs(conn, "listener", ctx.region)
    lb_of = {li["ListenerArn"]: li["LoadBalancerArn"] for li in listeners}
    for listener in listeners:
        for arn in forward_targets(listener["DefaultActions"]):
            used.setdefault(arn, set()).add(listener["LoadBalancerArn"])
    for rule in elbv2_repo.list_rules(conn, lb_of):
        for arn in forward_targets(rule["Actions"]):
            used.setdefault(arn, set()).add(lb_of[rule["_ListenerArn"]])
    return used


def view(doc: Doc, used: dict[str, set[str]]) -> Doc:
    shown = common.public(doc)
    shown["LoadBalancerArns"] = sorted(used.get(doc["TargetGroupArn"], ()))
    return shown


def _check_health_check(doc: Doc) -> None:
    check = doc.get("HealthCheckProtocol")
    # ELB checks with HTTP, HTTPS or TCP only ("The GENEVE, TLS, UDP, and TCP_UDP protocols are not supported
    # for health checks", CreateTargetGroup's reference): a UDP group is checked over TCP or HTTP(S).
    if check is not None and check not in ("HTTP", "HTTPS", "TCP"):
        raise elb.validation(f"Health check protocol '{check}' is not supported")  # unconfirmed
    if check == "TCP" and elb.tg_is_alb(doc.get("Protocol")):
        raise elb.validation(
            f"Health check protocol 'TCP' is not supported for target groups with the protocol '{doc.get('Protocol')}'"
        )  # unconfirmed
    for member, (low, high) in _HC_RANGES.items():
        value = doc.get(member)
        if value is not None and not low <= value <= high:
            # "Health check interval must be between 5 and 300 seconds"-style texts # unconfirmed
            raise elb.validation(f"{member} must be between {low} and {high}")
    if doc.get("HealthCheckTimeoutSeconds", 0) >= doc.get("HealthCheckIntervalSeconds", 301) and doc.get(
        "HealthCheckEnabled"
    ):
        # "Health check interval must be greater than the timeout." (CLI transcripts quoting ELB)
        raise elb.validation("Health check interval must be greater than the timeout.")
    if doc.get("HealthCheckProtocol") not in ("HTTP", "HTTPS") and (
        "HealthCheckPath" in doc or "Matcher" in doc
    ):
        raise elb.validation(
            f"Health check path and matcher cannot be specified for {doc.get('HealthCheckProtocol')} health checks"
        )  # unconfirmed
    port = doc.get("HealthCheckPort", "traffic-port")
    if port != "traffic-port" and (not str(port).isdigit() or not 1 <= int(port) <= 65535):
        raise elb.validation(
            f"Health check port '{port}' must be 'traffic-port' or a number from 1 to 65535"
        )  # unconfirmed
    matcher = (doc.get("Matcher") or {}).get("HttpCode")
    if matcher is not None:
        low, high = (200, 499) if elb.tg_is_alb(doc.get("Protocol")) else (200, 599)
        for part in matcher.replace("-", ",").split(","):
            if not part.isdigit() or not low <= int(part) <= high:
                # "Health check matcher HTTP code '600' must be within '200-499' inclusive" (ELB) # unconfirmed
                raise elb.validation(
                    f"Health check matcher HTTP code '{part}' must be within '{low}-{high}' inclusive"
                )


def _apply_health_check(doc: Doc, params: dict[str, Any]) -> None:
    for member in _HC_MEMBERS:
        if member in params:
            doc[member] = params[member]
    if "Matcher" in params:
        doc["Matcher"] = {k: v for k, v in params["Matcher"].items() if k == "HttpCode"}
    if doc.get("HealthCheckProtocol") in ("HTTP", "HTTPS"):
        doc.setdefault("HealthCheckPath", "/")
        doc.setdefault("Matcher", {"HttpCode": "200" if elb.tg_is_alb(doc.get("Protocol")) else "200-399"})
    _check_health_check(doc)


def create_target_group(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = params["Name"]
    elb.check_tg_name(name)
    target_type = params.get("TargetType", "instance")
    if target_type not in ("instance", "ip"):
        raise elb.validation(f"taskvpc serves 'instance' and 'ip' target groups, not '{target_type}'")
    protocol, port, vpc_id = params.get("Protocol"), params.get("Port"), params.get("VpcId")
    if protocol is None:
        raise elb.validation("A protocol must be specified")
    if port is None:
        raise elb.validation("A port must be specified")
    if vpc_id is None:
        raise elb.validation("A VPC ID must be specified")
    if protocol == "GENEVE":
        raise elb.validation("taskvpc does not serve GENEVE target groups")
    doc: Doc = {
        "TargetGroupName": name,
        "Protocol": protocol,
        "Port": port,
        "VpcId": vpc_id,
        **elb.health_check_defaults(protocol, target_type, params.get("HealthCheckProtocol")),
        "TargetType": target_type,
        "IpAddressType": "ipv4",
    }
    if elb.tg_is_alb(protocol):
        doc["ProtocolVersion"] = params.get("ProtocolVersion", "HTTP1")
    elif params.get("ProtocolVersion"):
        raise elb.validation(
            "Protocol version can be specified only for HTTP and HTTPS target groups"
        )  # unconfirmed
    _apply_health_check(doc, params)
    new_tags = tagging.checked_tags(params.get("Tags") or [])
    with ctx.db.transaction() as conn:
        if not ids.is_well_formed("vpc", vpc_id) or ec2_repo.get_vpc(conn, ctx.region, vpc_id) is None:
            # "The VPC ID 'vpc-123' is not found" (CLI transcripts quoting ELB)
            raise elb.validation(f"The VPC ID '{vpc_id}' is not found")
        existing = elbv2_repo.list_docs(conn, "target_group", ctx.region, name=name)
        if existing:
            if all(existing[0].get(k) == doc.get(k) for k in ("Protocol", "Port", "VpcId", "TargetType")):
                return {"TargetGroups": [view(existing[0], usage(conn, ctx))]}
            raise ClientError(
                "DuplicateTargetGroupName",
                f"A target group with the same name '{name}' exists, but with different settings",
            )
        arn = elb.tg_arn(ctx.region, ctx.account_id, name, common.new_suffix(ctx))
        doc = {"TargetGroupArn": arn, **doc, "_Attributes": elb.tg_attribute_defaults(protocol, target_type)}
        if not elbv2_repo.insert_doc(conn, "target_group", ctx.region, arn, doc, ctx.now, name=name):
            raise ClientError(
                "DuplicateTargetGroupName",
                f"A target group with the same name '{name}' exists, but with different settings",
            )
        elbv2_repo.put_tags(conn, ctx.region, arn, new_tags)
    return {"TargetGroups": [view(doc, {})]}


def describe_target_groups(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    arns, names = list(params.get("TargetGroupArns") or []), list(params.get("Names") or [])
    lb_arn = params.get("LoadBalancerArn")
    if sum(bool(x) for x in (arns, names, lb_arn)) > 1:
        raise elb.validation(
            "Target group names, target group ARNs, and a load balancer ARN cannot be specified at the same time"
        )  # unconfirmed
    with ctx.db.read() as conn:
        docs = elbv2_repo.list_docs(conn, "target_group", ctx.region)
        used = usage(conn, ctx)
        if lb_arn:
            common.require_lb(conn, ctx, lb_arn)
    if lb_arn:
        docs = [doc for doc in docs if lb_arn in used.get(doc["TargetGroupArn"], ())]
    if arns or names:
        key, wanted = ("TargetGroupArn", arns) if arns else ("TargetGroupName", names)
        by_key = {doc[key]: doc for doc in docs}
        missing = [w for w in wanted if w not in by_key]
        if missing:
            raise common.tg_not_found(missing)
        docs = [by_key[w] for w in dict.fromkeys(wanted)]
    result = common.page(ctx, "DescribeTargetGroups", docs, params, "TargetGroupArn", "TargetGroups")
    by_arn = {doc["TargetGroupArn"]: doc for doc in docs}
    result["TargetGroups"] = [view(by_arn[tg["TargetGroupArn"]], used) for tg in result["TargetGroups"]]
    return result


def modify_target_group(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.transaction() as conn:
        doc = common.require_tg(conn, ctx, params["TargetGroupArn"])
        if params.get("HealthCheckEnabled") is False and doc["TargetType"] in ("ip", "instance"):
            # Health checks cannot be disabled for ip/instance targets (notes §2) # unconfirmed wording
            raise elb.validation(
                "Health checks cannot be disabled for target groups with target type 'instance' or 'ip'"
            )
        _apply_health_check(doc, params)
        elbv2_repo.update_doc(conn, "target_group", doc["TargetGroupArn"], doc)
        shown = view(doc, usage(conn, ctx))
    return {"TargetGroups": [shown]}


def delete_target_group(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    arn = params["TargetGroupArn"]
    with ctx.db.transaction() as conn:
        if elbv2_repo.get_doc(conn, "target_group", ctx.region, arn) is None:
            return {}
        if arn in usage(conn, ctx):
            # "Target group 'arn:...' is currently in use by a listener or a rule" (CLI transcripts)
            raise ClientError(
                "ResourceInUse", f"Target group '{arn}' is currently in use by a listener or a rule"
            )
        elbv2_repo.remove_all_targets(conn, arn)
        elbv2_repo.delete_doc(conn, "target_group", arn)
    return {}


def describe_target_group_attributes(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.read() as conn:
        doc = common.require_tg(conn, ctx, params["TargetGroupArn"])
    return {"Attributes": common.attributes(doc)}


def modify_target_group_attributes(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.transaction() as conn:
        doc = common.require_tg(conn, ctx, params["TargetGroupArn"])
        allowed = elb.tg_attribute_defaults(doc["Protocol"], doc["TargetType"])
        for attribute in params["Attributes"]:
            elb.check_tg_attribute(attribute["Key"], attribute.get("Value", ""), allowed)
        for attribute in params["Attributes"]:
            doc["_Attributes"][attribute["Key"]] = attribute.get("Value", "")
        elbv2_repo.update_doc(conn, "target_group", doc["TargetGroupArn"], doc)
    return {"Attributes": common.attributes(doc)}
