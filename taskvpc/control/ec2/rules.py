"""Security group rules as stored rows: the pure ``Rule`` of ``taskvpc.netmodel`` <-> the wire document
``SecurityGroupRule`` (what DescribeSecurityGroupRules returns), and their writes.

One row per rule, with an ``sgr-`` id. The row's ``rule_key`` is the rule's identity without its
description; a UNIQUE (group, direction, key) constraint makes a duplicate impossible even when two
server processes authorize the same rule at once.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import ids
from taskvpc.domain.arns import ec2_arn
from taskvpc.netmodel import security_groups as sg
from taskvpc.store import ec2_repo

Doc = dict[str, Any]


def key_of(rule: sg.Rule) -> str:
    return json.dumps(sg.rule_key(rule), separators=(",", ":"))


def rule_arn(ctx: RequestContext, rule_id: str) -> str:
    return ec2_arn(ctx.region, ctx.account_id, f"security-group-rule/{rule_id}")


def to_doc(ctx: RequestContext, rule: sg.Rule, group_id: str, rule_id: str) -> Doc:
    """The ``SecurityGroupRule`` EC2 shows; ports of "all"/other protocols read -1 there (EC2 CLI examples)."""
    doc: Doc = {
        "SecurityGroupRuleId": rule_id,
        "GroupId": group_id,
        "GroupOwnerId": ctx.account_id,
        "IsEgress": rule.direction == "egress",
        "IpProtocol": rule.protocol,
        "FromPort": -1 if rule.from_port is None else rule.from_port,
        "ToPort": -1 if rule.to_port is None else rule.to_port,
    }
    if rule.cidr_ipv4 is not None:
        doc["CidrIpv4"] = rule.cidr_ipv4
    if rule.cidr_ipv6 is not None:
        doc["CidrIpv6"] = rule.cidr_ipv6
    if rule.prefix_list_id is not None:
        doc["PrefixListId"] = rule.prefix_list_id
    if rule.group_id is not None:
        doc["ReferencedGroupInfo"] = {
            "GroupId": rule.group_id,
            "UserId": rule.group_owner_id or ctx.account_id,
        }
    if rule.description is not None:
        doc["Description"] = rule.description
    doc["SecurityGroupRuleArn"] = rule_arn(ctx, rule_id)
    return doc


def from_doc(doc: Doc) -> sg.Rule:
    return sg.rule_from_doc(doc)


def add(conn: Connection, ctx: RequestContext, group_id: str, new_rules: list[sg.Rule]) -> list[Doc]:
    """Insert rules (already checked against the group's); a concurrent twin is InvalidPermission.Duplicate."""
    seq = ec2_repo.next_rule_seq(conn, group_id)
    docs = []
    for offset, rule in enumerate(new_rules):
        doc = to_doc(ctx, rule, group_id, ids.new_id(ctx, "sgr"))
        if not ec2_repo.insert_rule(conn, ctx.region, doc, key_of(rule), seq + offset, ctx.now):
            raise sg.duplicate(rule)
        docs.append(doc)
    return docs


def of_groups(conn: Connection, group_ids: list[str]) -> dict[str, list[Doc]]:
    return ec2_repo.rules_of(conn, group_ids)


def permissions(docs: list[Doc]) -> tuple[list[Doc], list[Doc]]:
    """(IpPermissions, IpPermissionsEgress) as DescribeSecurityGroups shows a group's rules."""
    ingress = [from_doc(d) for d in docs if not d["IsEgress"]]
    egress = [from_doc(d) for d in docs if d["IsEgress"]]
    return sg.permissions_from_rules(ingress), sg.permissions_from_rules(egress)
