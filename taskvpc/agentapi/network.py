"""The network sections of the desired-state answer: task ENIs, VPC routers, security groups.

The subnet router's address (``gateway``) is computed here once (:func:`subnet_gateway`), by the control
plane when it writes an answer; the agent uses what it is sent. Security-group rules travel in the
project's own shape (:class:`taskvpc.netmodel.security_groups.Rule`), not EC2's ``SecurityGroupRule``
document, and are checked on arrival as the EC2 API checks a permission.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskvpc.agentapi import read
from taskvpc.netmodel.security_groups import (
    Rule,
    malformed_cidr,
    normalize_ipv4_cidr,
    normalize_ipv6_cidr,
    normalize_ports,
    normalize_protocol,
)

Doc = dict[str, Any]


def subnet_gateway(cidr: str) -> str:
    """The subnet router: the first host address (``.1`` of the subnet), as in a VPC."""
    net = ipaddress.IPv4Network(cidr)
    if net.prefixlen > 28:
        raise ValueError(f"subnet {cidr} is smaller than a VPC allows (/28)")
    return str(net.network_address + 1)


@dataclass(frozen=True, slots=True)
class Eni:
    """A task's ENI: the one value every part of the agent API uses for it."""

    attachment_id: str
    network_interface_id: str
    mac_address: str
    private_ipv4_address: str
    prefix_length: int
    gateway: str
    subnet_id: str
    vpc_id: str
    private_dns_name: str = ""
    security_group_ids: tuple[str, ...] = ()

    @property
    def subnet_cidr(self) -> str:
        return str(ipaddress.IPv4Interface(f"{self.private_ipv4_address}/{self.prefix_length}").network)

    @property
    def address(self) -> str:
        return f"{self.private_ipv4_address}/{self.prefix_length}"

    @property
    def mac(self) -> str:
        return self.mac_address.lower()

    @classmethod
    def from_ec2(cls, eni: Mapping[str, Any], subnet_cidr: str, attachment_id: str) -> Eni:
        """From an EC2 ``NetworkInterface`` document and its subnet's CIDR (the control plane's side)."""
        return cls(
            attachment_id=attachment_id,
            network_interface_id=eni["NetworkInterfaceId"],
            mac_address=eni["MacAddress"],
            private_ipv4_address=eni["PrivateIpAddress"],
            prefix_length=ipaddress.IPv4Network(subnet_cidr).prefixlen,
            gateway=subnet_gateway(subnet_cidr),
            subnet_id=eni["SubnetId"],
            vpc_id=eni["VpcId"],
            private_dns_name=eni.get("PrivateDnsName") or "",
            security_group_ids=tuple(g["GroupId"] for g in eni.get("Groups", [])),
        )

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> Eni:
        return cls(
            attachment_id=read.text(doc.get("attachmentId")),
            network_interface_id=read.text(doc.get("networkInterfaceId")),
            mac_address=read.text(doc.get("macAddress")),
            private_ipv4_address=read.text(doc.get("privateIpv4Address")),
            prefix_length=read.integer(doc.get("prefixLength")) or 32,
            gateway=read.text(doc.get("gateway")),
            subnet_id=read.text(doc.get("subnetId")),
            vpc_id=read.text(doc.get("vpcId")),
            private_dns_name=read.text(doc.get("privateDnsName")),
            security_group_ids=read.strings(doc.get("securityGroupIds")),
        )

    def to_wire(self) -> Doc:
        return {
            "attachmentId": self.attachment_id,
            "networkInterfaceId": self.network_interface_id,
            "macAddress": self.mac_address,
            "privateIpv4Address": self.private_ipv4_address,
            "prefixLength": self.prefix_length,
            "gateway": self.gateway,
            "subnetId": self.subnet_id,
            "vpcId": self.vpc_id,
            "privateDnsName": self.private_dns_name,
            "securityGroupIds": list(self.security_group_ids),
        }


@dataclass(frozen=True, slots=True)
class Subnet:
    subnet_id: str
    cidr_block: str
    gateway: str  # the subnet router's address (subnet_gateway), which the VPC router answers on
    availability_zone: str = ""

    @classmethod
    def of(cls, subnet_id: str, cidr_block: str, availability_zone: str = "") -> Subnet:
        return cls(subnet_id, cidr_block, subnet_gateway(cidr_block), availability_zone)

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> Subnet | None:
        cidr, gateway = read.string(doc.get("cidrBlock")), read.string(doc.get("gateway"))
        if cidr is None or gateway is None:
            return None
        return cls(read.text(doc.get("subnetId")), cidr, gateway, read.text(doc.get("availabilityZone")))

    def to_wire(self) -> Doc:
        return {
            "subnetId": self.subnet_id,
            "cidrBlock": self.cidr_block,
            "gateway": self.gateway,
            "availabilityZone": self.availability_zone,
        }


@dataclass(frozen=True, slots=True)
class Vpc:
    """A VPC whose router this host needs: its CIDR blocks and every subnet."""

    vpc_id: str
    cidr_blocks: tuple[str, ...] = ()
    subnets: tuple[Subnet, ...] = ()

    def with_subnet(self, subnet: Subnet) -> Vpc:
        if any(s.cidr_block == subnet.cidr_block for s in self.subnets):
            return self
        return Vpc(self.vpc_id, self.cidr_blocks, (*self.subnets, subnet))

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> Vpc:
        subnets = (Subnet.from_wire(s) for s in read.mappings(doc.get("subnets")))
        return cls(
            vpc_id=str(doc["vpcId"]),
            cidr_blocks=read.strings(doc.get("cidrBlocks")),
            subnets=tuple(s for s in subnets if s is not None),
        )

    def to_wire(self) -> Doc:
        return {
            "vpcId": self.vpc_id,
            "cidrBlocks": list(self.cidr_blocks),
            "subnets": [s.to_wire() for s in self.subnets],
        }


# ---------------------------------------------------------------------------------------------- groups


_PEERS = (("cidrIpv4", "cidr_ipv4"), ("cidrIpv6", "cidr_ipv6"), ("groupId", "group_id"))


def rule_to_wire(rule: Rule) -> Doc:
    doc: Doc = {
        "direction": rule.direction,
        "protocol": rule.protocol,
        "fromPort": rule.from_port,
        "toPort": rule.to_port,
    }
    for key, attr in (*_PEERS, ("prefixListId", "prefix_list_id"), ("groupOwnerId", "group_owner_id")):
        if getattr(rule, attr) is not None:
            doc[key] = getattr(rule, attr)
    return doc


def rule_from_wire(doc: Mapping[str, Any]) -> Rule:
    """A rule, checked as the EC2 API checks a permission (ports in range, CIDRs as EC2 writes them), so
    a rule from the wire is never one nft would refuse; raises on anything else."""
    protocol = normalize_protocol(doc["protocol"])
    from_port, to_port = normalize_ports(protocol, doc.get("fromPort"), doc.get("toPort"))
    cidr_ipv4, cidr_ipv6 = doc.get("cidrIpv4"), doc.get("cidrIpv6")
    for cidr, normalize in ((cidr_ipv4, normalize_ipv4_cidr), (cidr_ipv6, normalize_ipv6_cidr)):
        if cidr is not None and normalize(cidr) != cidr:  # sent normalised: host bits mean garbage
            raise malformed_cidr(str(cidr))
    direction = doc["direction"]
    if direction not in ("ingress", "egress"):
        raise ValueError(f"bad direction {direction!r}")
    return Rule(
        direction=direction,
        protocol=protocol,
        from_port=from_port,
        to_port=to_port,
        cidr_ipv4=cidr_ipv4,
        cidr_ipv6=cidr_ipv6,
        group_id=doc.get("groupId"),
        group_owner_id=doc.get("groupOwnerId"),
        prefix_list_id=doc.get("prefixListId"),
    )


@dataclass(frozen=True, slots=True)
class SecurityGroup:
    """A group some task ENI on this host carries, with all its rules. ``skipped``: rules this end could
    not read (a newer peer's rule kind, or nonsense), left out; the rest are enforced."""

    group_id: str
    vpc_id: str
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()
    skipped: tuple[str, ...] = ()

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> SecurityGroup | None:
        group_id = read.string(doc.get("groupId"))
        if group_id is None:
            return None
        ingress: list[Rule] = []
        egress: list[Rule] = []
        skipped: list[str] = []
        for rule_doc in read.as_list(doc.get("rules")):
            try:
                rule = rule_from_wire(rule_doc)
            except Exception as exc:
                skipped.append(repr(exc))
                continue
            (egress if rule.direction == "egress" else ingress).append(rule)
        return cls(group_id, read.text(doc.get("vpcId")), tuple(ingress), tuple(egress), tuple(skipped))

    def to_wire(self) -> Doc:
        return {
            "groupId": self.group_id,
            "vpcId": self.vpc_id,
            "rules": [rule_to_wire(r) for r in (*self.ingress, *self.egress)],
        }
