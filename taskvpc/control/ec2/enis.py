"""Network interface use cases: CreateNetworkInterface, DescribeNetworkInterfaces, DeleteNetworkInterface
(the attribute calls are in ``eni_attributes.py``); and :func:`allocate`, which the task lifecycle hooks
(``task_enis.py``) share.

Addresses are claimed as rows under a (subnet, ip) primary key: two server processes that choose the
same address cannot both insert it; the loser re-reads what is taken and chooses again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import describe, errors, ids, security_groups, subnets, tags
from taskvpc.domain.errors import ClientError, ServerError
from taskvpc.netmodel import ipam, security_groups as sg
from taskvpc.store import ec2_repo

Doc = dict[str, Any]
_ATTEMPTS = 64  # choices of an address before giving up; each lost race means someone else got one
# Random candidates looked up per choice: with a subnet 3/4 full all 16 are taken 1% of the time (then
# every used address is read, as before); a subnet's free addresses are chosen uniformly either way.
_CANDIDATES = 16


def free_addresses(conn: Connection, subnet: Doc) -> int:
    used = ec2_repo.used_counts(conn, [subnet["SubnetId"]]).get(subnet["SubnetId"], 0)
    return subnets.available(subnet, used)


def _picker(ctx: RequestContext) -> Callable[[int], int]:
    """Uniform picks (``pick(n)`` in ``[0, n)``) from the context's generator, 8 bytes each."""
    pool = bytearray()

    def pick(n: int) -> int:
        if len(pool) < 8:
            pool.extend(ids.random_bytes(ctx, 32))
        value = int.from_bytes(pool[:8], "big")
        del pool[:8]
        return value % n

    return pick


def _free_candidate(conn: Connection, subnet: Doc, pick: Callable[[int], int]) -> str | None:
    """A few uniform candidates, one indexed query: the first free one, without reading every used one."""
    candidates = ipam.random_candidates(subnet["CidrBlock"], pick, _CANDIDATES)
    return ipam.first_free(candidates, ec2_repo.taken_among(conn, subnet["SubnetId"], candidates))


def has_free_address(conn: Connection, ctx: RequestContext, subnet: Doc) -> bool:
    """``free_addresses(...) > 0``, answered by a free random candidate when there is one (no count of
    every address the subnet has handed out)."""
    return _free_candidate(conn, subnet, _picker(ctx)) is not None or free_addresses(conn, subnet) > 0


def claim_address(
    conn: Connection, ctx: RequestContext, subnet: Doc, eni_id: str, requested: str | None = None
) -> str:
    """Take an address in ``subnet`` for ``eni_id`` (the requested one, else a random free one)."""
    pick = _picker(ctx)
    for _ in range(_ATTEMPTS):
        ip = None if requested is not None else _free_candidate(conn, subnet, pick)
        if ip is None:  # requested, or a crowded subnet: choose among every free address
            used = ec2_repo.used_ips(conn, subnet["SubnetId"])
            ip = ipam.choose_address(subnet["CidrBlock"], used, requested, pick)
        if ec2_repo.claim_ip(conn, ctx.region, subnet["SubnetId"], ip, eni_id):
            return ip
        if requested is not None:
            raise ipam.address_in_use()
    raise ServerError(f"no address claimed in {subnet['SubnetId']} after {_ATTEMPTS} attempts")


def check_groups(conn: Connection, ctx: RequestContext, subnet: Doc, group_ids: list[str]) -> list[str]:
    """The groups an ENI in ``subnet`` gets: those named (existing, same VPC), else the VPC's default."""
    if not group_ids:
        default = ec2_repo.group_by_name(conn, subnet["VpcId"], security_groups.DEFAULT_NAME)
        return [default["GroupId"]] if default else []
    for group_id in group_ids:
        group = security_groups.require(conn, ctx, group_id)
        if group["VpcId"] != subnet["VpcId"]:
            raise errors.groups_in_different_vpcs(group_id, subnet["SubnetId"])
    return list(dict.fromkeys(group_ids))


def allocate(
    conn: Connection,
    ctx: RequestContext,
    subnet: Doc,
    group_ids: list[str],
    *,
    description: str,
    requested_ip: str | None = None,
    interface_type: str = "interface",
    requester_id: str | None = None,
) -> Doc:
    """Write a new ENI in ``subnet`` (status ``available``) with an address and a MAC; its wire document."""
    eni_id = ids.new_id(ctx, "eni")
    ip = claim_address(conn, ctx, subnet, eni_id, requested_ip)
    eni: Doc = {
        "AvailabilityZone": subnet["AvailabilityZone"],
        "AvailabilityZoneId": subnet["AvailabilityZoneId"],
        "Description": description,
        "InterfaceType": interface_type,
        "Ipv6Addresses": [],
        "NetworkInterfaceId": eni_id,
        "OwnerId": ctx.account_id,
        "PrivateDnsName": ipam.private_dns_name(ip, ctx.region),
        "PrivateIpAddress": ip,
        "PrivateIpAddresses": [
            {"Primary": True, "PrivateDnsName": ipam.private_dns_name(ip, ctx.region), "PrivateIpAddress": ip}
        ],
        "RequesterManaged": requester_id is not None,
        "SourceDestCheck": True,
        "Status": "available",
        "SubnetId": subnet["SubnetId"],
        "VpcId": subnet["VpcId"],
    }
    if requester_id is not None:
        eni["RequesterId"] = requester_id
    for _ in range(8):  # a MAC drawn twice (46 random bits) is refused by the UNIQUE constraint
        eni["MacAddress"] = ipam.new_mac(ids.random_bytes(ctx, 6))
        if ec2_repo.insert_eni(conn, ctx.region, eni, ctx.now):
            break
    else:
        raise ServerError(f"could not draw a unique MAC address for {eni_id}")
    ec2_repo.set_eni_groups(conn, ctx.region, eni_id, group_ids)
    return eni


def view(conn: Connection, ctx: RequestContext, docs: list[Doc]) -> list[Doc]:
    eni_ids = [doc["NetworkInterfaceId"] for doc in docs]
    memberships = ec2_repo.eni_groups(conn, eni_ids)
    carried = {group_id for group_ids in memberships.values() for group_id in group_ids}
    names = {g["GroupId"]: g["GroupName"] for g in ec2_repo.list_groups(conn, ctx.region, carried)}
    by_tags = ec2_repo.tags_of(conn, eni_ids)
    views = []
    for doc in docs:
        eni_id = doc["NetworkInterfaceId"]
        shown = {
            **doc,
            "Groups": [{"GroupId": gid, "GroupName": names.get(gid, "")} for gid in memberships[eni_id]],
            "TagSet": by_tags[eni_id],
        }
        views.append(shown)
    return views


def require(conn: Connection, ctx: RequestContext, eni_id: str) -> Doc:
    ids.check("eni", [eni_id])
    eni = ec2_repo.get_eni(conn, ctx.region, eni_id)
    if eni is None:
        raise errors.not_found("eni", [eni_id])
    return eni


_UNSUPPORTED = (
    "Ipv4Prefixes",
    "Ipv4PrefixCount",
    "Ipv6Prefixes",
    "Ipv6PrefixCount",
    "Ipv6Addresses",
    "Ipv6AddressCount",
    "SecondaryPrivateIpAddressCount",
    "EnablePrimaryIpv6",
    "ConnectionTrackingSpecification",
    "Operator",
)


def _requested_ip(params: dict[str, Any]) -> str | None:
    listed = params.get("PrivateIpAddresses") or []
    if len(listed) > 1 or any(not entry.get("Primary", True) for entry in listed):
        raise ClientError(
            "UnsupportedOperation", "taskvpc does not support secondary private IP addresses yet."
        )
    if (
        listed
        and params.get("PrivateIpAddress")
        and listed[0].get("PrivateIpAddress") != params["PrivateIpAddress"]
    ):
        # Two different primary addresses # unconfirmed wording
        raise ClientError(
            "InvalidParameterCombination", "Only one primary private IP address can be specified."
        )
    return params.get("PrivateIpAddress") or (listed[0].get("PrivateIpAddress") if listed else None)


def create_network_interface(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    for member in _UNSUPPORTED:
        if params.get(member):
            raise ClientError("UnsupportedOperation", f"taskvpc does not support {member} yet.")
    group_ids = list(params.get("Groups") or [])
    ids.check("subnet", [params["SubnetId"]])
    ids.check("sg", group_ids)
    sg.check_groups_per_new_eni(len(set(group_ids)), ctx.account_id)
    requested_ip = _requested_ip(params)
    new_tags = tags.from_specs(params, "network-interface")
    with ctx.db.transaction() as conn:
        subnet = subnets.require(conn, ctx, params["SubnetId"])
        groups = check_groups(conn, ctx, subnet, group_ids)
        if requested_ip is None and free_addresses(conn, subnet) <= 0:
            # CreateNetworkInterface answers a full subnet with InvalidParameterValue (see ipam's source).
            raise ipam.subnet_full_for_new_eni()
        describe.dry_run(params)
        try:
            eni = allocate(
                conn,
                ctx,
                subnet,
                groups,
                description=params.get("Description", ""),
                requested_ip=requested_ip,
                interface_type=params.get("InterfaceType", "interface"),
            )
        except ClientError as error:
            if error.code == "InsufficientFreeAddressesInSubnet":  # the last address went meanwhile
                raise ipam.subnet_full_for_new_eni() from None
            raise
        tags.attach(conn, ctx, eni["NetworkInterfaceId"], new_tags)
        result: dict[str, Any] = {"NetworkInterface": view(conn, ctx, [eni])[0]}
    if params.get("ClientToken"):
        result["ClientToken"] = params["ClientToken"]
    return result


def _filter_values(doc: Doc) -> dict[str, Any]:
    attachment = doc.get("Attachment") or {}
    groups = doc["Groups"]
    return {
        "addresses.private-ip-address": [a["PrivateIpAddress"] for a in doc["PrivateIpAddresses"]],
        "addresses.primary": [a["Primary"] for a in doc["PrivateIpAddresses"]],
        "attachment.attachment-id": attachment.get("AttachmentId"),
        "attachment.instance-id": attachment.get("InstanceId"),
        "attachment.instance-owner-id": attachment.get("InstanceOwnerId"),
        "attachment.device-index": attachment.get("DeviceIndex"),
        "attachment.status": attachment.get("Status"),
        "attachment.delete-on-termination": attachment.get("DeleteOnTermination"),
        "availability-zone": doc["AvailabilityZone"],
        "description": doc["Description"],
        "group-id": [g["GroupId"] for g in groups],
        "group-name": [g["GroupName"] for g in groups],
        "interface-type": doc["InterfaceType"],
        "mac-address": doc["MacAddress"],
        "network-interface-id": doc["NetworkInterfaceId"],
        "owner-id": doc["OwnerId"],
        "private-dns-name": doc["PrivateDnsName"],
        "private-ip-address": doc["PrivateIpAddress"],
        "requester-id": doc.get("RequesterId"),
        "requester-managed": doc["RequesterManaged"],
        "source-dest-check": doc["SourceDestCheck"],
        "status": doc["Status"],
        "subnet-id": doc["SubnetId"],
        "vpc-id": doc["VpcId"],
    }


_FILTERS = (
    "addresses.private-ip-address",
    "addresses.primary",
    "attachment.attachment-id",
    "attachment.instance-id",
    "attachment.instance-owner-id",
    "attachment.device-index",
    "attachment.status",
    "attachment.delete-on-termination",
    "availability-zone",
    "description",
    "group-id",
    "group-name",
    "interface-type",
    "mac-address",
    "network-interface-id",
    "owner-id",
    "private-dns-name",
    "private-ip-address",
    "requester-id",
    "requester-managed",
    "source-dest-check",
    "status",
    "subnet-id",
    "vpc-id",
    # Accepted, never matching: taskvpc ENIs have no public or IPv6 addresses.
    "association.public-ip",
    "association.ip-owner-id",
    "association.allocation-id",
    "association.association-id",
    "ipv6-addresses.ipv6-address",
)
LISTING = describe.Listing(
    prefix="eni",
    id_member="NetworkInterfaceId",
    supported_filters=_FILTERS,
    filter_values=_filter_values,
    tags_member="TagSet",
    table="network_interfaces",
    columns={"network-interface-id": "id", "subnet-id": "subnet_id", "vpc-id": "vpc_id", "status": "status"},
)


def describe_network_interfaces(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    requested = describe.check_request(LISTING, params, "NetworkInterfaceIds")
    return describe.run(
        ctx, LISTING, params, requested, "NetworkInterfaces", lambda conn, docs: view(conn, ctx, docs)
    )


def delete_network_interface(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    eni_id = params["NetworkInterfaceId"]
    with ctx.db.transaction() as conn:
        eni = require(conn, ctx, eni_id)
        if eni["RequesterManaged"] and eni["Status"] != "in-use":
            raise errors.requester_managed(eni_id)
        describe.dry_run(params)  # DryRun answers once ids resolve; the ENI's state is not looked at
        if eni["Status"] == "in-use":
            raise errors.eni_in_use(eni_id)
        ec2_repo.remove_tags(conn, eni_id, None)
        ec2_repo.delete_eni(conn, eni_id)
    return {}
