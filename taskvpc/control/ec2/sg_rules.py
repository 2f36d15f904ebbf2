"""Security group rule use cases: Authorize/RevokeSecurityGroupIngress/Egress, DescribeSecurityGroupRules,
ModifySecurityGroupRules.

Validation, normalisation, duplicate and quota checks are the pure ``taskvpc.netmodel.security_groups``;
this module resolves names and ids against the store and writes the rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import dataplane, describe, errors, ids, rules, security_groups, tags
from taskvpc.domain.errors import ClientError
from taskvpc.netmodel import security_groups as sg
from taskvpc.store import ec2_repo

Doc = dict[str, Any]


def _legacy_permissions(params: dict[str, Any]) -> list[Doc]:
    """The pre-IpPermissions form (CidrIp, IpProtocol, FromPort, ToPort, SourceSecurityGroupName)."""
    if not any(params.get(k) is not None for k in ("CidrIp", "IpProtocol", "SourceSecurityGroupName")):
        return []
    perm: Doc = {"IpProtocol": params.get("IpProtocol")}
    for member in ("FromPort", "ToPort"):
        if params.get(member) is not None:
            perm[member] = params[member]
    if params.get("CidrIp") is not None:
        perm["IpRanges"] = [{"CidrIp": params["CidrIp"]}]
    if params.get("SourceSecurityGroupName") is not None:
        pair = {"GroupName": params["SourceSecurityGroupName"]}
        if params.get("SourceSecurityGroupOwnerId"):
            pair["UserId"] = params["SourceSecurityGroupOwnerId"]
        perm["UserIdGroupPairs"] = [pair]
    return [perm]


def _require_protocols(permissions: list[Doc]) -> None:
    """A VPC rule names its protocol (``-1`` for all); EC2 assumes none."""
    if any(perm.get("IpProtocol") is None for perm in permissions):
        raise errors.protocol_not_given()


def _resolve_pairs(conn: Connection, ctx: RequestContext, group: Doc, permissions: list[Doc]) -> list[Doc]:
    """Turn each referenced group's name into its id, and check every referenced group is a peer we know."""
    resolved = []
    for perm in permissions:
        pairs = []
        for pair in perm.get("UserIdGroupPairs") or ():
            pair = dict(pair)
            if not pair.get("GroupId") and pair.get("GroupName"):
                found = ec2_repo.group_by_name(conn, group["VpcId"], pair["GroupName"])
                if found is None:
                    raise errors.group_name_not_found(pair["GroupName"], group["VpcId"])
                pair["GroupId"] = found["GroupId"]
            if pair.get("GroupId"):
                peer = security_groups.require(conn, ctx, pair["GroupId"])
                if peer["VpcId"] != group["VpcId"]:
                    # "You have specified two resources that belong to different networks." (seen in the
                    # console for a cross-VPC reference); code # unconfirmed
                    raise ClientError(
                        "InvalidGroup.NotFound",
                        "You have specified two resources that belong to different networks.",
                    )
            pairs.append(pair)
        resolved.append({**perm, "UserIdGroupPairs": pairs} if pairs else perm)
    return resolved


def _requested_rules(
    conn: Connection, ctx: RequestContext, group: Doc, params: dict[str, Any], direction: sg.Direction
) -> list[sg.Rule]:
    permissions = list(params.get("IpPermissions") or []) or _legacy_permissions(params)
    _require_protocols(permissions)
    permissions = _resolve_pairs(conn, ctx, group, permissions)
    return sg.rules_from_permissions(direction, permissions, owner_id=ctx.account_id)


def _authorize(ctx: RequestContext, params: dict[str, Any], direction: sg.Direction) -> dict[str, Any]:
    new_tags = tags.from_specs(params, "security-group-rule")
    with ctx.db.transaction() as conn:
        group = security_groups.target(conn, ctx, params)
        adding = _requested_rules(conn, ctx, group, params, direction)
        describe.dry_run(params)
        existing = [rules.from_doc(d) for d in rules.of_groups(conn, [group["GroupId"]])[group["GroupId"]]]
        sg.check_no_duplicates(existing, adding)
        sg.check_rule_quota(existing, adding)
        docs = rules.add(conn, ctx, group["GroupId"], adding)
        for doc in docs:
            tags.attach(conn, ctx, doc["SecurityGroupRuleId"], new_tags)
            if new_tags:
                doc["Tags"] = new_tags
        dataplane.security_changed(conn, ctx)
    return {"Return": True, "SecurityGroupRules": docs}


def authorize_security_group_ingress(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return _authorize(ctx, params, "ingress")


def authorize_security_group_egress(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return _authorize(ctx, params, "egress")


def _revoked(doc: Doc) -> Doc:
    shown = {
        k: v
        for k, v in doc.items()
        if k not in ("GroupOwnerId", "ReferencedGroupInfo", "SecurityGroupRuleArn", "Tags")
    }
    if doc.get("ReferencedGroupInfo"):
        shown["ReferencedGroupId"] = doc["ReferencedGroupInfo"]["GroupId"]
    return shown


def _revoke(ctx: RequestContext, params: dict[str, Any], direction: sg.Direction) -> dict[str, Any]:
    rule_ids = list(params.get("SecurityGroupRuleIds") or [])
    ids.check("sgr", rule_ids)
    with ctx.db.transaction() as conn:
        group = security_groups.target(conn, ctx, params)
        group_id = group["GroupId"]
        docs = rules.of_groups(conn, [group_id])[group_id]
        egress = direction == "egress"
        mine = {d["SecurityGroupRuleId"]: d for d in docs if d["IsEgress"] == egress}
        missing = [rule_id for rule_id in rule_ids if rule_id not in mine]
        if missing:
            raise errors.not_found("sgr", missing)
        chosen = {rule_id: mine[rule_id] for rule_id in rule_ids}
        if params.get("IpPermissions") or _legacy_permissions(params):
            removing = _requested_rules(conn, ctx, group, params, direction)
            existing = [rules.from_doc(d) for d in mine.values()]
            sg.revoke(existing, removing)  # InvalidPermission.NotFound unless every rule is there
            wanted = {rules.key_of(rule) for rule in removing}
            chosen.update(
                {
                    d["SecurityGroupRuleId"]: d
                    for d in mine.values()
                    if rules.key_of(rules.from_doc(d)) in wanted
                }
            )
        elif not rule_ids:
            raise sg.missing_source()
        describe.dry_run(params)
        for rule_id in chosen:
            ec2_repo.remove_tags(conn, rule_id, None)
        ec2_repo.delete_rules(conn, list(chosen))
        dataplane.security_changed(conn, ctx)
    return {"Return": True, "RevokedSecurityGroupRules": [_revoked(d) for d in chosen.values()]}


def revoke_security_group_ingress(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return _revoke(ctx, params, "ingress")


def revoke_security_group_egress(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return _revoke(ctx, params, "egress")


def _filter_values(doc: Doc) -> dict[str, Any]:
    return {"group-id": doc["GroupId"], "security-group-rule-id": doc["SecurityGroupRuleId"]}


LISTING = describe.Listing(
    prefix="sgr",
    id_member="SecurityGroupRuleId",
    supported_filters=("group-id", "security-group-rule-id"),
    filter_values=_filter_values,
    table="security_group_rules",
    columns={"group-id": "group_id", "security-group-rule-id": "id"},
    bounded_columns=("id", "group_id"),
)


def describe_security_group_rules(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    requested = describe.check_request(LISTING, params, "SecurityGroupRuleIds")
    for wanted in params.get("Filters") or ():
        if wanted.get("Name") == "group-id":
            for value in wanted.get("Values") or ():
                if not ids.is_well_formed("sg", value):
                    raise errors.group_id_malformed(value)
    return describe.run(ctx, LISTING, params, requested, "SecurityGroupRules", _with_tags)


def _with_tags(conn: Connection, docs: list[Doc]) -> list[Doc]:
    by_tags = ec2_repo.tags_of(conn, [d["SecurityGroupRuleId"] for d in docs])
    for doc in docs:
        doc["Tags"] = by_tags[doc["SecurityGroupRuleId"]]
    return docs


def _replacement(conn: Connection, ctx: RequestContext, group: Doc, current: Doc, request: Doc) -> sg.Rule:
    """The rule a ModifySecurityGroupRules entry asks for, in the direction the rule already has."""
    permission: Doc = {"IpProtocol": request.get("IpProtocol")}
    for member in ("FromPort", "ToPort"):
        if request.get(member) is not None:
            permission[member] = request[member]
    described = {"Description": request["Description"]} if request.get("Description") is not None else {}
    if request.get("CidrIpv4"):
        permission["IpRanges"] = [{"CidrIp": request["CidrIpv4"], **described}]
    if request.get("CidrIpv6"):
        permission["Ipv6Ranges"] = [{"CidrIpv6": request["CidrIpv6"], **described}]
    if request.get("PrefixListId"):
        permission["PrefixListIds"] = [{"PrefixListId": request["PrefixListId"], **described}]
    if request.get("ReferencedGroupId"):
        permission["UserIdGroupPairs"] = [{"GroupId": request["ReferencedGroupId"], **described}]
    direction: sg.Direction = "egress" if current["IsEgress"] else "ingress"
    _require_protocols([permission])
    found = sg.rules_from_permissions(
        direction, _resolve_pairs(conn, ctx, group, [permission]), owner_id=ctx.account_id
    )
    if len(found) != 1:
        # A rule has exactly one peer (EC2 API reference, SecurityGroupRuleRequest) # unconfirmed wording
        raise errors.invalid_parameter_value(
            "A security group rule must specify exactly one of CidrIpv4, "
            "CidrIpv6, PrefixListId or ReferencedGroupId."
        )
    return found[0]


def modify_security_group_rules(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    updates = params.get("SecurityGroupRules") or []
    ids.check("sgr", [u["SecurityGroupRuleId"] for u in updates])
    with ctx.db.transaction() as conn:
        group = security_groups.require(conn, ctx, params["GroupId"])
        docs = {
            d["SecurityGroupRuleId"]: d for d in rules.of_groups(conn, [group["GroupId"]])[group["GroupId"]]
        }
        missing = [u["SecurityGroupRuleId"] for u in updates if u["SecurityGroupRuleId"] not in docs]
        if missing:
            raise errors.not_found("sgr", missing)
        replaced = {
            u["SecurityGroupRuleId"]: _replacement(
                conn, ctx, group, docs[u["SecurityGroupRuleId"]], u.get("SecurityGroupRule") or {}
            )
            for u in updates
        }
        describe.dry_run(params)
        others = [rules.from_doc(d) for rule_id, d in docs.items() if rule_id not in replaced]
        sg.check_no_duplicates(others, list(replaced.values()))
        for rule_id, rule in replaced.items():
            doc = rules.to_doc(ctx, rule, group["GroupId"], rule_id)
            if not ec2_repo.update_rule(conn, doc, rules.key_of(rule)):
                raise sg.duplicate(rule)
        dataplane.security_changed(conn, ctx)
    return {"Return": True}
