"""Listeners: Create/Describe/Modify/Delete. Each listener has its default rule (shown by DescribeRules)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.elbv2 import actions, common, tagging
from taskvpc.domain import elb
from taskvpc.domain.errors import ClientError
from taskvpc.store import elbv2_repo

Doc = dict[str, Any]
DEFAULT_SSL_POLICY = "ELBSecurityPolicy-2016-08"
_CERTIFICATE_ARN = re.compile(
    r"arn:aws[a-z-]*:(acm:[a-z0-9-]+:\d{12}:certificate/[A-Za-z0-9-]+|iam::\d{12}:server-certificate/.+)"
)


def _protocol(lb: Doc, params: dict[str, Any]) -> str:
    allowed = elb.ALB_PROTOCOLS if lb["Type"] == "application" else elb.NLB_PROTOCOLS
    protocol = params.get("Protocol") or allowed[0]
    if protocol not in allowed:
        kind = "Application" if lb["Type"] == "application" else "Network"
        raise elb.validation(
            f"Listener protocol '{protocol}' is not supported for {kind} Load Balancers"
        )  # unconfirmed
    return protocol


def _certificates(protocol: str, params: dict[str, Any]) -> list[Doc]:
    given = [dict(c) for c in params.get("Certificates") or []]
    if protocol not in ("HTTPS", "TLS"):
        return []
    if not given:
        # "A certificate must be specified for HTTPS listeners" (CLI transcripts quoting ELB)
        raise elb.validation(f"A certificate must be specified for {protocol} listeners")
    for certificate in given:
        if not _CERTIFICATE_ARN.fullmatch(certificate.get("CertificateArn", "")):
            raise ClientError(
                "CertificateNotFound", f"Certificate '{certificate.get('CertificateArn')}' not found"
            )
    return [{"CertificateArn": given[0]["CertificateArn"]}]


def _default_rule(listener: Doc) -> Doc:
    return {
        "RuleArn": elb.rule_arn(listener["ListenerArn"], listener["_DefaultRuleSuffix"]),
        "Priority": "default",
        "Conditions": [],
        "Actions": listener["DefaultActions"],
        "IsDefault": True,
        "_ListenerArn": listener["ListenerArn"],
    }


def _fill(conn: Connection, ctx: RequestContext, lb: Doc, listener: Doc, params: dict[str, Any]) -> None:
    protocol = _protocol(lb, {"Protocol": params.get("Protocol", listener.get("Protocol"))})
    port = params.get("Port", listener.get("Port"))
    if port is None or not 1 <= port <= 65535:
        raise elb.validation("A listener port must be between 1 and 65535")  # unconfirmed
    listener["Protocol"], listener["Port"] = protocol, port
    if "Certificates" in params or protocol in ("HTTPS", "TLS"):
        certificates = _certificates(
            protocol, {"Certificates": params.get("Certificates", listener.get("Certificates"))}
        )
        listener["Certificates"] = certificates
        # taskvpc has no ACM: the data plane serves a locally generated certificate under this ARN.
        listener["_LocalCertificate"] = bool(certificates)
        listener["SslPolicy"] = params.get("SslPolicy") or listener.get("SslPolicy") or DEFAULT_SSL_POLICY
    else:
        listener.pop("Certificates", None)
        listener.pop("SslPolicy", None)
    if "DefaultActions" in params:
        listener["DefaultActions"] = actions.check_actions(conn, ctx, params["DefaultActions"], lb, protocol)


def create_listener(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    new_tags = tagging.checked_tags(params.get("Tags") or [])
    with ctx.db.transaction() as conn:
        lb = common.require_lb(conn, ctx, params["LoadBalancerArn"])
        listener: Doc = {"LoadBalancerArn": lb["LoadBalancerArn"]}
        _fill(conn, ctx, lb, listener, params)
        existing = elbv2_repo.list_docs(
            conn, "listener", ctx.region, load_balancer_arn=lb["LoadBalancerArn"], port=listener["Port"]
        )
        if existing:
            # "A listener already exists on this port for this load balancer 'arn:...'" (CLI transcripts)
            raise ClientError(
                "DuplicateListener",
                f"A listener already exists on this port for this load balancer '{lb['LoadBalancerArn']}'",
            )
        arn = elb.listener_arn(lb["LoadBalancerArn"], common.new_suffix(ctx))
        listener = {"ListenerArn": arn, **listener, "_DefaultRuleSuffix": common.new_suffix(ctx)}
        elbv2_repo.insert_doc(
            conn,
            "listener",
            ctx.region,
            arn,
            listener,
            ctx.now,
            load_balancer_arn=lb["LoadBalancerArn"],
            port=listener["Port"],
        )
        rule = _default_rule(listener)
        elbv2_repo.insert_doc(
            conn,
            "rule",
            ctx.region,
            rule["RuleArn"],
            rule,
            ctx.now,
            listener_arn=arn,
            priority=elb.DEFAULT_RULE_PRIORITY,
        )
        elbv2_repo.put_tags(conn, ctx.region, arn, new_tags)
    return {"Listeners": [common.public(listener)]}


def describe_listeners(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    lb_arn, arns = params.get("LoadBalancerArn"), list(params.get("ListenerArns") or [])
    if not lb_arn and not arns:
        raise elb.validation("You must specify either listener ARNs or a load balancer ARN")  # unconfirmed
    with ctx.db.read() as conn:
        if lb_arn:
            common.require_lb(conn, ctx, lb_arn)
            docs = elbv2_repo.list_docs(conn, "listener", ctx.region, load_balancer_arn=lb_arn)
        else:
            docs = elbv2_repo.list_docs(conn, "listener", ctx.region, arn=arns)
    if arns:
        by_arn = {doc["ListenerArn"]: doc for doc in docs}
        missing = [arn for arn in arns if arn not in by_arn]
        if missing:
            raise common.listener_not_found(missing)
        docs = [by_arn[arn] for arn in dict.fromkeys(arns) if arn in by_arn]
    docs.sort(key=lambda doc: doc["Port"])
    return common.page(ctx, "DescribeListeners", docs, params, "ListenerArn", "Listeners")


def modify_listener(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.transaction() as conn:
        listener = common.require_listener(conn, ctx, params["ListenerArn"])
        lb = common.require_lb(conn, ctx, listener["LoadBalancerArn"])
        _fill(conn, ctx, lb, listener, params)
        if not elbv2_repo.update_doc(
            conn, "listener", listener["ListenerArn"], listener, port=listener["Port"]
        ):
            raise ClientError(
                "DuplicateListener",
                f"A listener already exists on this port for this load balancer '{lb['LoadBalancerArn']}'",
            )
        rule = _default_rule(listener)
        elbv2_repo.update_doc(conn, "rule", rule["RuleArn"], rule)
    return {"Listeners": [common.public(listener)]}


def delete_listener(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.transaction() as conn:
        listener = common.require_listener(conn, ctx, params["ListenerArn"])
        for rule in elbv2_repo.list_rules(conn, [listener["ListenerArn"]]):
            elbv2_repo.delete_doc(conn, "rule", rule["RuleArn"])
        elbv2_repo.delete_doc(conn, "listener", listener["ListenerArn"])
    return {}
