"""Load balancers: Create/Describe/Delete, their attributes, and the ENIs ELB puts in their subnets.

Each load balancer owns one requester-managed ENI per subnet (address from the subnet's IPAM, like any
ENI), described as ELB describes it (``ELB app/<name>/<id>``) and released when the LB is deleted.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import enis, ids, security_groups
from taskvpc.control.elbv2 import common, tagging
from taskvpc.domain import elb
from taskvpc.domain.errors import ClientError
from taskvpc.store import ec2_repo, elbv2_repo

Doc = dict[str, Any]
ELB_REQUESTER = "amazon-elb"


def _subnet_ids(params: dict[str, Any]) -> list[str]:
    mapped = [m["SubnetId"] for m in params.get("SubnetMappings") or []]
    listed = list(params.get("Subnets") or [])
    if mapped and listed:
        raise elb.validation("You can specify subnets or subnet mappings, not both")  # unconfirmed
    return list(dict.fromkeys(mapped or listed))


def _resolve_subnets(conn: Connection, ctx: RequestContext, subnet_ids: list[str], lb_type: str) -> list[Doc]:
    found = []
    for subnet_id in subnet_ids:
        subnet = (
            ec2_repo.get_subnet(conn, ctx.region, subnet_id)
            if ids.is_well_formed("subnet", subnet_id)
            else None
        )
        if subnet is None:
            # "The subnet ID 'subnet-123' is not valid" (CLI transcripts quoting ELB)
            raise ClientError("SubnetNotFound", f"The subnet ID '{subnet_id}' is not valid")
        found.append(subnet)
    if len({s["VpcId"] for s in found}) > 1:
        raise elb.configuration("The subnets must all belong to the same VPC")  # unconfirmed
    zones = [s["AvailabilityZone"] for s in found]
    if len(set(zones)) < len(zones):
        # "A load balancer cannot be attached to multiple subnets in the same Availability Zone" (ELB)
        raise elb.configuration(
            "A load balancer cannot be attached to multiple subnets in the same Availability Zone"
        )
    if lb_type == "application" and len(set(zones)) < 2:
        raise elb.validation("At least two subnets in two different Availability Zones must be specified")
    return found


def _resolve_groups(
    conn: Connection, ctx: RequestContext, group_ids: list[str], vpc_id: str, lb_type: str
) -> list[str]:
    if not group_ids:
        if lb_type == "network":
            return []  # an NLB without groups at creation never gets any (notes §2)
        default = ec2_repo.group_by_name(conn, vpc_id, security_groups.DEFAULT_NAME)
        return [default["GroupId"]] if default else []
    for group_id in group_ids:
        group = ec2_repo.get_group(conn, ctx.region, group_id) if ids.is_well_formed("sg", group_id) else None
        if group is None or group["VpcId"] != vpc_id:
            # "One or more security groups are invalid" (CLI transcripts quoting ELB)
            raise ClientError("InvalidSecurityGroup", f"Security group '{group_id}' does not exist")
    return list(dict.fromkeys(group_ids))


def _attach_enis(
    conn: Connection, ctx: RequestContext, lb: Doc, found: list[Doc], groups: list[str]
) -> list[str]:
    path = elb.lb_path(lb["LoadBalancerArn"])
    interface_type = "interface" if lb["Type"] == "application" else "network_load_balancer"
    made = []
    for subnet in found:
        if enis.free_addresses(conn, subnet) <= 0:
            raise elb.configuration(
                f"Not enough IP space available in {subnet['SubnetId']}. ELB requires at least 8 free IP "
                "addresses in each subnet."
            )
        eni = enis.allocate(
            conn,
            ctx,
            subnet,
            groups,
            description=f"ELB {path}",
            interface_type=interface_type,
            requester_id=ELB_REQUESTER,
        )
        eni["Status"] = "in-use"
        eni["Attachment"] = {
            "AttachTime": ctx.now,
            "AttachmentId": ids.new_id(ctx, "ela-attach"),
            "DeleteOnTermination": False,
            "DeviceIndex": 1,
            "InstanceOwnerId": ELB_REQUESTER,
            "Status": "attached",
        }
        ec2_repo.update_eni(conn, eni)
        made.append(eni)
    for zone in lb["AvailabilityZones"]:
        eni = next(e for e in made if e["SubnetId"] == zone["SubnetId"])
        zone["_EniId"] = eni["NetworkInterfaceId"]
        if lb["Type"] == "network":
            zone["LoadBalancerAddresses"] = [{"PrivateIPv4Address": eni["PrivateIpAddress"]}]
    return [e["NetworkInterfaceId"] for e in made]


def _same_settings(existing: Doc, params: dict[str, Any], subnet_ids: list[str]) -> bool:
    return (
        existing["Type"] == params.get("Type", "application")
        and existing["Scheme"] == params.get("Scheme", "internet-facing")
        and sorted(z["SubnetId"] for z in existing["AvailabilityZones"]) == sorted(subnet_ids)
    )


def view(doc: Doc) -> Doc:
    shown = common.public(doc)
    shown["AvailabilityZones"] = [common.public(zone) for zone in doc["AvailabilityZones"]]
    return shown


def create_load_balancer(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = params["Name"]
    elb.check_lb_name(name)
    lb_type = params.get("Type", "application")
    if lb_type == "gateway":
        raise elb.validation("taskvpc does not serve gateway load balancers")
    scheme = params.get("Scheme", "internet-facing")
    if params.get("IpAddressType", "ipv4") != "ipv4":
        raise elb.validation("taskvpc serves ipv4 load balancers only (IpAddressType 'ipv4')")
    if params.get("CustomerOwnedIpv4Pool"):
        raise elb.validation("Customer-owned IP pools are not supported")  # unconfirmed
    subnet_ids = _subnet_ids(params)
    if not subnet_ids:
        raise elb.validation("At least one subnet must be specified")  # unconfirmed
    new_tags = tagging.checked_tags(params.get("Tags") or [])
    with ctx.db.transaction() as conn:
        existing = elbv2_repo.list_docs(conn, "load_balancer", ctx.region, name=name)
        if existing:
            if _same_settings(existing[0], params, subnet_ids):
                return {"LoadBalancers": [view(existing[0])]}
            # "A load balancer with the same name 'x' exists, but with different settings" (ELB)
            raise ClientError(
                "DuplicateLoadBalancerName",
                f"A load balancer with the same name '{name}' exists, but with different settings",
            )
        found = _resolve_subnets(conn, ctx, subnet_ids, lb_type)
        vpc_id = found[0]["VpcId"]
        groups = _resolve_groups(conn, ctx, list(params.get("SecurityGroups") or []), vpc_id, lb_type)
        suffix = common.new_suffix(ctx)
        arn = elb.lb_arn(ctx.region, ctx.account_id, lb_type, name, suffix)
        lb: Doc = {
            "LoadBalancerArn": arn,
            "DNSName": elb.dns_name(name, scheme, lb_type, ctx.region, suffix),
            "CanonicalHostedZoneId": elb.hosted_zone(ctx.region, lb_type),
            "CreatedTime": ctx.now,
            "LoadBalancerName": name,
            "Scheme": scheme,
            "VpcId": vpc_id,
            "State": {"Code": "active"},
            "Type": lb_type,
            "AvailabilityZones": [
                {"ZoneName": s["AvailabilityZone"], "SubnetId": s["SubnetId"], "LoadBalancerAddresses": []}
                for s in found
            ],
            "IpAddressType": "ipv4",
            "_Attributes": elb.lb_attribute_defaults(lb_type),
        }
        if groups:
            lb["SecurityGroups"] = groups
        _attach_enis(conn, ctx, lb, found, groups)
        if not elbv2_repo.insert_doc(conn, "load_balancer", ctx.region, arn, lb, ctx.now, name=name):
            raise ClientError(
                "DuplicateLoadBalancerName",
                f"A load balancer with the same name '{name}' exists, but with different settings",
            )
        elbv2_repo.put_tags(conn, ctx.region, arn, new_tags)
    return {"LoadBalancers": [view(lb)]}


def describe_load_balancers(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    arns = list(params.get("LoadBalancerArns") or [])
    names = list(params.get("Names") or [])
    if arns and names:
        raise elb.validation(
            "Load balancer names and load balancer ARNs cannot be specified at the same time"
        )
    with ctx.db.read() as conn:
        docs = elbv2_repo.list_docs(conn, "load_balancer", ctx.region)
    if arns or names:
        key, wanted = ("LoadBalancerArn", arns) if arns else ("LoadBalancerName", names)
        by_key = {doc[key]: doc for doc in docs}
        missing = [w for w in wanted if w not in by_key]
        if missing:
            raise common.lb_not_found(missing)
        docs = [by_key[w] for w in dict.fromkeys(wanted)]
    result = common.page(ctx, "DescribeLoadBalancers", docs, params, "LoadBalancerArn", "LoadBalancers")
    result["LoadBalancers"] = [view(doc) for doc in result["LoadBalancers"]]
    return result


def release_enis(conn: Connection, lb: Doc) -> None:
    for zone in lb["AvailabilityZones"]:
        if zone.get("_EniId"):
            ec2_repo.remove_tags(conn, zone["_EniId"], None)
            ec2_repo.delete_eni(conn, zone["_EniId"])


def delete_load_balancer(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    arn = params["LoadBalancerArn"]
    with ctx.db.transaction() as conn:
        lb = elbv2_repo.get_doc(conn, "load_balancer", ctx.region, arn)
        if lb is None:
            return {}  # deleting a load balancer that is gone succeeds (ELB is idempotent here)
        if lb["_Attributes"].get("deletion_protection.enabled") == "true":
            raise ClientError(
                "OperationNotPermitted",
                f"Load balancer '{arn}' cannot be deleted because deletion protection is enabled",
            )
        listeners = elbv2_repo.list_docs(conn, "listener", ctx.region, load_balancer_arn=arn)
        for rule in elbv2_repo.list_rules(conn, [li["ListenerArn"] for li in listeners]):
            elbv2_repo.delete_doc(conn, "rule", rule["RuleArn"])
        for listener in listeners:
            elbv2_repo.delete_doc(conn, "listener", listener["ListenerArn"])
        release_enis(conn, lb)
        elbv2_repo.delete_doc(conn, "load_balancer", arn)
    return {}


def describe_load_balancer_attributes(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.read() as conn:
        lb = common.require_lb(conn, ctx, params["LoadBalancerArn"])
    return {"Attributes": common.attributes(lb)}


def modify_load_balancer_attributes(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.transaction() as conn:
        lb = common.require_lb(conn, ctx, params["LoadBalancerArn"])
        allowed = elb.lb_attribute_defaults(lb["Type"])
        for attribute in params["Attributes"]:
            elb.check_lb_attribute(attribute["Key"], attribute.get("Value", ""), allowed)
        for attribute in params["Attributes"]:
            lb["_Attributes"][attribute["Key"]] = attribute.get("Value", "")
        if lb["_Attributes"]["access_logs.s3.enabled"] == "true":
            raise elb.configuration("taskvpc does not write access logs to S3")
        elbv2_repo.update_doc(conn, "load_balancer", lb["LoadBalancerArn"], lb)
    return {"Attributes": common.attributes(lb)}
