"""The ``overlay`` section of the desired-state answer: the VPC members on other hosts, for VXLAN.

A VPC's subnets span hosts over VXLAN (``taskvpc/agent/overlay.py``): one VNI per VPC, and on each host
the VPC's router namespace holds a VXLAN device whose UDP socket lives in the host's own namespace
(the *underlay*). For every VPC in which this host has a task ENI, the control plane sends
:class:`OverlayVpc`: the VPC's VNI and each task ENI of the VPC that lives on *another* host with an
underlay address (:class:`RemoteMember`: address, groups, the host's underlay address). The agent
routes each member's address into the VXLAN device with a static neighbour and FDB entry, adds the
member to its security-group sets (a group reference matches members on every host) and accepts
overlay packets from a host only with the sources the control plane places on that host.

A host registers its underlay address as the container instance attribute
:data:`UNDERLAY_ATTRIBUTE` (``taskvpc agent --underlay-address``); a host without one gets an empty
section and is not part of any overlay. No delta form: the section is sent whole.

Each host's VXLAN device has the MAC :func:`vtep_mac` of its underlay address, so a sender knows the
inner destination MAC of a remote host without being told.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskvpc.agentapi import read
from taskvpc.agentapi.answer import Section, register_section

Doc = dict[str, Any]
UNDERLAY_ATTRIBUTE = "taskvpc.underlay-address"
VXLAN_PORT = 4789  # IANA's
VXLAN_OVERHEAD = 50  # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14
MAX_VNI = (1 << 24) - 1


def vtep_mac(underlay_ip: str) -> str:
    """The MAC of a host's VXLAN devices: locally administered ``02:76`` + the underlay IPv4 address."""
    packed = ipaddress.IPv4Address(underlay_ip).packed
    return ":".join(f"{b:02x}" for b in (0x02, 0x76, *packed))


def _ipv4(value: Any) -> str | None:
    text = read.string(value)
    if text is None:
        return None
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class RemoteMember:
    """A task ENI of the VPC on another host."""

    eni_id: str
    ip: str
    host: str  # the owning host's underlay address
    group_ids: tuple[str, ...] = ()

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> RemoteMember | None:
        eni_id, ip, host = read.string(doc.get("eniId")), _ipv4(doc.get("ip")), _ipv4(doc.get("host"))
        if eni_id is None or ip is None or host is None:
            return None
        return cls(eni_id, ip, host, read.strings(doc.get("groupIds")))

    def to_wire(self) -> Doc:
        return {"eniId": self.eni_id, "ip": self.ip, "host": self.host, "groupIds": list(self.group_ids)}


@dataclass(frozen=True, slots=True)
class OverlayVpc:
    vpc_id: str
    vni: int
    members: tuple[RemoteMember, ...] = ()

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> OverlayVpc | None:
        vpc_id, vni = read.string(doc.get("vpcId")), read.positive(doc.get("vni"))
        if vpc_id is None or vni is None or vni > MAX_VNI:
            return None
        parsed = (RemoteMember.from_wire(m) for m in read.mappings(doc.get("members")))
        return cls(vpc_id, vni, tuple(m for m in parsed if m is not None))

    def to_wire(self) -> Doc:
        return {"vpcId": self.vpc_id, "vni": self.vni, "members": [m.to_wire() for m in self.members]}

    @property
    def hosts(self) -> frozenset[str]:
        return frozenset(m.host for m in self.members)


def _parse(value: Any) -> tuple[OverlayVpc, ...]:
    parsed = (OverlayVpc.from_wire(v) for v in read.mappings(value))
    return tuple(v for v in parsed if v is not None)


def _dump(values: tuple[OverlayVpc, ...]) -> list[Doc]:
    return [v.to_wire() for v in values]


def _none() -> tuple[OverlayVpc, ...]:
    return ()


OVERLAY: Section[tuple[OverlayVpc, ...]] = register_section(Section("overlay", _parse, _dump, _none))


def assign_vnis(vpc_ids: list[str]) -> dict[str, int]:
    """A VNI per VPC of a region: from the id's hex digits, probing past a collision in id order, so
    every control plane computes the same numbers and two VPCs never share one."""
    taken: dict[int, str] = {}
    out: dict[str, int] = {}
    for vpc_id in sorted(set(vpc_ids)):
        digits = "".join(c for c in vpc_id.partition("-")[2] if c in "0123456789abcdef") or "0"
        vni = int(digits, 16) % MAX_VNI + 1  # 1..MAX_VNI
        while vni in taken:
            vni = vni % MAX_VNI + 1
        taken[vni] = vpc_id
        out[vpc_id] = vni
    return out
