"""The reference security-group evaluator: does a NEW flow pass the security groups of a VPC?

This is the executable definition the data plane (the nftables compiler) and any reachability analyser are
tested against, so it favours being obviously right over being fast.

Semantics (sources: EC2 User Guide ``security-group-connection-tracking.md``, VPC User Guide
``security-group-rules.md`` and ``default-security-group.md``):

* **Allow only, union.** Rules only allow; there are no deny rules. An ENI with several groups allows
  the union of their rules. A flow is allowed iff

  - its source is not an ENI we model (traffic from outside the VPC's ENIs), or some **egress** rule of
    some group of the source ENI matches it (peer = the destination address), **and**
  - its destination is not an ENI we model, or some **ingress** rule of some group of the destination ENI
    matches it (peer = the source address).

* **Peers.** An IPv4/IPv6 CIDR matches addresses inside it. A group reference matches the *current*
  private IPs of every ENI that carries the referenced group (the referenced group's own rules are not
  imported). A prefix-list reference matches the CIDRs of the list when the caller supplies them
  (``prefix_lists``), otherwise nothing.
* **Protocols and ports.** Protocol ``-1`` matches every protocol and port. tcp/udp rules match an
  inclusive destination-port range. icmp/icmpv6 rules match an ICMP type (``from_port``) and code
  (``to_port``), -1 meaning any. A rule for any other protocol number matches that protocol on all ports.
  ``icmp`` is ICMP for IPv4 and ``icmpv6`` is ICMP for IPv6; they are different protocols (1 and 58).
* **An ENI with no groups** allows nothing, in either direction: there is no rule to match. (EC2 never
  creates such an ENI: a missing ``Groups`` parameter means the VPC's default group.) A group id on an ENI
  with no entry in ``groups`` is treated the same way, as a group with no rules.
* **Traffic to self** (source and destination are addresses of the same ENI) is allowed without
  consulting any rule: it never leaves the ENI (for an ``awsvpc`` task it stays in the task's network
  namespace), so the security groups never see it.

**Statefulness.** This function judges the first packet of a flow only. Security groups are stateful:
"responses to inbound traffic are allowed to flow out of the instance regardless of outbound security
group rules, and vice versa" and "When you change a security group rule, its tracked connections are not
immediately interrupted. The security group continues to allow packets until existing connections time
out." [EC2 UG, security-group-connection-tracking]. So the data plane must (1) pass every packet of an
established (conntrack ESTABLISHED/RELATED) flow in both directions regardless of rules, and (2) keep
established flows when rules change, re-evaluating only new flows. We deliberately do not model EC2's
*untracked* flows (all-traffic rules to 0.0.0.0/0 in both directions are not tracked and are cut at once
when such a rule is removed): every allowed flow is tracked, which is never less permissive for replies.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from taskvpc.netmodel.security_groups import ICMP_PROTOCOLS, PORTED_PROTOCOLS, Rule, normalize_protocol


@dataclass(frozen=True)
class Eni:
    eni_id: str
    private_ips: tuple[str, ...]
    group_ids: tuple[str, ...]


@dataclass(frozen=True)
class Flow:
    """The first packet of a flow. ``protocol``: "tcp", "udp", "icmp", "icmpv6" or a number string."""

    src_ip: str
    dst_ip: str
    protocol: str
    dst_port: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None


@dataclass(frozen=True)
class GroupRules:
    group_id: str
    ingress: tuple[Rule, ...]
    egress: tuple[Rule, ...]


@dataclass(frozen=True)
class Verdict:
    """``egress``/``ingress``: the (group id, rule) that allowed that side, or None when that side was not
    checked (the endpoint is not an ENI, or the flow is to self) or nothing matched."""

    allowed: bool
    egress: tuple[str, Rule] | None
    ingress: tuple[str, Rule] | None
    reason: str


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def group_members(enis: Sequence[Eni]) -> dict[str, frozenset[str]]:
    """Group id -> the private IPs of every ENI carrying that group."""
    members: dict[str, set[str]] = {}
    for eni in enis:
        for gid in eni.group_ids:
            members.setdefault(gid, set()).update(eni.private_ips)
    return {gid: frozenset(ips) for gid, ips in members.items()}


def _same_address(a: str, b: str) -> bool:
    return ipaddress.ip_address(a) == ipaddress.ip_address(b)


def _peer_matches(
    rule: Rule,
    peer: Address,
    enis_by_group: Mapping[str, frozenset[str]],
    prefix_lists: Mapping[str, Sequence[str]],
) -> bool:
    if rule.cidr_ipv4 is not None:
        return isinstance(peer, ipaddress.IPv4Address) and peer in ipaddress.IPv4Network(rule.cidr_ipv4)
    if rule.cidr_ipv6 is not None:
        return isinstance(peer, ipaddress.IPv6Address) and peer in ipaddress.IPv6Network(rule.cidr_ipv6)
    if rule.group_id is not None:
        return any(peer == ipaddress.ip_address(ip) for ip in enis_by_group.get(rule.group_id, ()))
    assert rule.prefix_list_id is not None
    return any(peer in ipaddress.ip_network(c) for c in prefix_lists.get(rule.prefix_list_id, ()))


def _traffic_matches(rule: Rule, flow: Flow, protocol: str) -> bool:
    if rule.protocol == "-1":
        return True
    if rule.protocol != protocol:
        return False
    if protocol in PORTED_PROTOCOLS:
        assert rule.from_port is not None and rule.to_port is not None
        return flow.dst_port is not None and rule.from_port <= flow.dst_port <= rule.to_port
    if protocol in ICMP_PROTOCOLS:
        type_ok = rule.from_port == -1 or rule.from_port == flow.icmp_type
        code_ok = rule.to_port == -1 or rule.to_port == flow.icmp_code
        return type_ok and code_ok
    return True  # any other protocol: no ports


def rule_matches(
    rule: Rule,
    flow: Flow,
    peer_ip: str,
    enis_by_group: Mapping[str, frozenset[str]],
    prefix_lists: Mapping[str, Sequence[str]] | None = None,
) -> bool:
    """Does ``rule`` match ``flow`` with ``peer_ip`` on the other end?

    ``peer_ip`` is the flow's destination for an egress rule and its source for an ingress rule.
    """
    protocol = normalize_protocol(flow.protocol)
    return _traffic_matches(rule, flow, protocol) and _peer_matches(
        rule, ipaddress.ip_address(peer_ip), enis_by_group, prefix_lists or {}
    )


def _eni_with(ip: str, enis: Sequence[Eni]) -> Eni | None:
    owners = [e for e in enis if any(_same_address(ip, p) for p in e.private_ips)]
    if len(owners) > 1:
        raise ValueError(f"address {ip} belongs to several ENIs: {[e.eni_id for e in owners]}")
    return owners[0] if owners else None


def _first_match(
    eni: Eni,
    side: str,
    flow: Flow,
    peer_ip: str,
    groups: Mapping[str, GroupRules],
    enis_by_group: Mapping[str, frozenset[str]],
    prefix_lists: Mapping[str, Sequence[str]],
) -> tuple[str, Rule] | None:
    """The first (group, rule) of ``eni`` on ``side`` matching ``flow``, in group order then rule order."""
    for gid in eni.group_ids:
        group = groups.get(gid)
        if group is None:
            continue
        rules = group.egress if side == "egress" else group.ingress
        for rule in rules:
            if rule_matches(rule, flow, peer_ip, enis_by_group, prefix_lists):
                return gid, rule
    return None


def evaluate(
    flow: Flow,
    enis: Sequence[Eni],
    groups: Mapping[str, GroupRules],
    prefix_lists: Mapping[str, Sequence[str]] | None = None,
) -> Verdict:
    """Decide whether a NEW ``flow`` is allowed; see the module docstring for the exact semantics."""
    lists = prefix_lists or {}
    src = _eni_with(flow.src_ip, enis)
    dst = _eni_with(flow.dst_ip, enis)
    if src is not None and src == dst:
        return Verdict(True, None, None, f"traffic to self on {src.eni_id} never reaches its security groups")
    members = group_members(enis)

    egress: tuple[str, Rule] | None = None
    if src is not None:
        egress = _first_match(src, "egress", flow, flow.dst_ip, groups, members, lists)
        if egress is None:
            why = "has no security groups" if not src.group_ids else "has no egress rule that allows it"
            return Verdict(False, None, None, f"source {src.eni_id} {why}")

    ingress: tuple[str, Rule] | None = None
    if dst is not None:
        ingress = _first_match(dst, "ingress", flow, flow.src_ip, groups, members, lists)
        if ingress is None:
            why = "has no security groups" if not dst.group_ids else "has no ingress rule that allows it"
            return Verdict(False, egress, None, f"destination {dst.eni_id} {why}")

    return Verdict(True, egress, ingress, "allowed")
