"""The reference security-group evaluator (taskvpc.netmodel.evaluator), case by case and against a brute force."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from taskvpc.netmodel.evaluator import Eni, Flow, GroupRules, Verdict, evaluate, rule_matches
from taskvpc.netmodel.security_groups import (
    Rule,
    default_group_rules,
    new_group_egress,
    rules_from_permissions,
)

OWNER = "123456789012"
EXTERNAL = "198.51.100.7"


def tcp(port: int, src: str = "10.0.0.10", dst: str = "10.0.0.20") -> Flow:
    return Flow(src, dst, "tcp", dst_port=port)


def ingress(*perms: dict[str, Any]) -> tuple[Rule, ...]:
    return tuple(rules_from_permissions("ingress", list(perms), owner_id=OWNER))


def egress(*perms: dict[str, Any]) -> tuple[Rule, ...]:
    return tuple(rules_from_permissions("egress", list(perms), owner_id=OWNER))


def cidr(c: str) -> dict[str, Any]:
    key = "Ipv6Ranges" if ":" in c else "IpRanges"
    return {key: [{"CidrIpv6" if ":" in c else "CidrIp": c}]}


def sg(gid: str) -> dict[str, Any]:
    return {"UserIdGroupPairs": [{"GroupId": gid}]}


def allowed(flow: Flow, enis: list[Eni], groups: dict[str, GroupRules]) -> bool:
    return evaluate(flow, enis, groups).allowed


# --------------------------------------------------------------------------------------------------
# The default group


def default_group(gid: str = "sg-default") -> dict[str, GroupRules]:
    i, e = default_group_rules(gid, OWNER)
    return {gid: GroupRules(gid, i, e)}


def test_default_group_members_reach_each_other() -> None:
    groups = default_group()
    a = Eni("eni-a", ("10.0.0.10",), ("sg-default",))
    b = Eni("eni-b", ("10.0.0.20",), ("sg-default",))
    v = evaluate(tcp(80), [a, b], groups)
    assert v.allowed and v.reason == "allowed"
    assert v.egress is not None and v.egress[0] == "sg-default" and v.egress[1].cidr_ipv4 == "0.0.0.0/0"
    assert v.ingress is not None and v.ingress[1].group_id == "sg-default"
    # anything, any port, any protocol
    assert allowed(Flow("10.0.0.10", "10.0.0.20", "47"), [a, b], groups)
    assert allowed(Flow("10.0.0.10", "10.0.0.20", "icmp", icmp_type=8, icmp_code=0), [a, b], groups)


def test_default_group_refuses_outsiders_and_lets_members_out() -> None:
    groups = {**default_group(), "sg-other": GroupRules("sg-other", (), (new_group_egress(),))}
    a = Eni("eni-a", ("10.0.0.10",), ("sg-default",))
    other = Eni("eni-o", ("10.0.0.30",), ("sg-other",))
    v = evaluate(tcp(80, src="10.0.0.30", dst="10.0.0.10"), [a, other], groups)
    assert not v.allowed and v.egress is not None and v.ingress is None
    assert v.reason == "destination eni-a has no ingress rule that allows it"
    assert not allowed(tcp(80, src=EXTERNAL, dst="10.0.0.10"), [a], groups)
    out = evaluate(tcp(443, src="10.0.0.10", dst=EXTERNAL), [a], groups)
    assert out.allowed and out.ingress is None  # the destination is not one of our ENIs


# --------------------------------------------------------------------------------------------------
# Several groups, egress restrictions, group references


def test_groups_are_a_union() -> None:
    groups = {
        "sg-web": GroupRules(
            "sg-web", ingress({"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, **cidr("0.0.0.0/0")}), ()
        ),
        "sg-ssh": GroupRules(
            "sg-ssh", ingress({"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, **cidr("10.0.0.0/8")}), ()
        ),
    }
    web = Eni("eni-w", ("10.0.0.20",), ("sg-web", "sg-ssh"))
    v = evaluate(tcp(80, src=EXTERNAL), [web], groups)
    assert v.allowed and v.ingress is not None and v.ingress[0] == "sg-web"
    v = evaluate(tcp(22, src="10.9.9.9"), [web], groups)
    assert v.allowed and v.ingress is not None and v.ingress[0] == "sg-ssh"
    assert not allowed(tcp(22, src=EXTERNAL), [web], groups)
    assert not allowed(tcp(443, src="10.9.9.9"), [web], groups)


def test_egress_only_restriction() -> None:
    groups = {
        "sg-out": GroupRules(
            "sg-out", (), egress({"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, **cidr("0.0.0.0/0")})
        )
    }
    task = Eni("eni-t", ("10.0.0.10",), ("sg-out",))
    v = evaluate(tcp(443, dst=EXTERNAL), [task], groups)
    assert v.allowed and v.egress is not None and v.ingress is None
    v = evaluate(tcp(80, dst=EXTERNAL), [task], groups)
    assert v == Verdict(False, None, None, "source eni-t has no egress rule that allows it")
    assert not allowed(Flow("10.0.0.10", EXTERNAL, "udp", dst_port=443), [task], groups)
    # a new group without its default egress rule lets nothing out
    bare = {"sg-bare": GroupRules("sg-bare", (), ())}
    assert not allowed(tcp(443, dst=EXTERNAL), [Eni("eni-t", ("10.0.0.10",), ("sg-bare",))], bare)


def test_group_reference_follows_enis() -> None:
    groups = {
        "sg-db": GroupRules(
            "sg-db", ingress({"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, **sg("sg-app")}), ()
        ),
        "sg-app": GroupRules("sg-app", (), (new_group_egress(),)),
        "sg-none": GroupRules("sg-none", (), (new_group_egress(),)),
    }
    db = Eni("eni-db", ("10.0.0.20",), ("sg-db",))
    app = Eni("eni-app", ("10.0.0.10", "10.0.0.11"), ("sg-app",))
    assert allowed(tcp(5432), [db, app], groups)
    assert allowed(tcp(5432, src="10.0.0.11"), [db, app], groups)  # secondary private IP too
    # the same address after the ENI leaves the group
    moved = Eni("eni-app", ("10.0.0.10", "10.0.0.11"), ("sg-none",))
    assert not allowed(tcp(5432), [db, moved], groups)
    # a new ENI joining the group is admitted at once
    newcomer = Eni("eni-new", ("10.0.0.40",), ("sg-none", "sg-app"))
    assert allowed(tcp(5432, src="10.0.0.40"), [db, moved, newcomer], groups)
    # an address outside the VPC's ENIs never matches a group reference
    assert not allowed(tcp(5432, src=EXTERNAL), [db, app], groups)


# --------------------------------------------------------------------------------------------------
# Protocols and ports


def test_icmp_type_and_code() -> None:
    echo_only = {
        "sg-i": GroupRules(
            "sg-i", ingress({"IpProtocol": "icmp", "FromPort": 8, "ToPort": -1, **cidr("0.0.0.0/0")}), ()
        )
    }
    dst = [Eni("eni-d", ("10.0.0.20",), ("sg-i",))]
    assert allowed(Flow(EXTERNAL, "10.0.0.20", "icmp", icmp_type=8, icmp_code=0), dst, echo_only)
    assert allowed(Flow(EXTERNAL, "10.0.0.20", "1", icmp_type=8, icmp_code=0), dst, echo_only)
    assert not allowed(Flow(EXTERNAL, "10.0.0.20", "icmp", icmp_type=0, icmp_code=0), dst, echo_only)
    exact = {
        "sg-i": GroupRules(
            "sg-i", ingress({"IpProtocol": "icmp", "FromPort": 3, "ToPort": 4, **cidr("0.0.0.0/0")}), ()
        )
    }
    assert allowed(Flow(EXTERNAL, "10.0.0.20", "icmp", icmp_type=3, icmp_code=4), dst, exact)
    assert not allowed(Flow(EXTERNAL, "10.0.0.20", "icmp", icmp_type=3, icmp_code=1), dst, exact)
    anything = {
        "sg-i": GroupRules(
            "sg-i", ingress({"IpProtocol": "icmp", "FromPort": -1, "ToPort": -1, **cidr("0.0.0.0/0")}), ()
        )
    }
    assert allowed(Flow(EXTERNAL, "10.0.0.20", "icmp", icmp_type=11, icmp_code=0), dst, anything)
    # icmp and icmpv6 are different protocols
    v6 = {"sg-i": GroupRules("sg-i", ingress({"IpProtocol": "icmpv6", **cidr("::/0")}), ())}
    dst6 = [Eni("eni-d", ("2001:db8::20",), ("sg-i",))]
    assert allowed(Flow("2001:db8::1", "2001:db8::20", "icmpv6", icmp_type=128, icmp_code=0), dst6, v6)
    assert not allowed(Flow("2001:db8::1", "2001:db8::20", "icmp", icmp_type=8, icmp_code=0), dst6, v6)


def test_port_ranges_are_inclusive() -> None:
    groups = {
        "sg-r": GroupRules(
            "sg-r", ingress({"IpProtocol": "tcp", "FromPort": 1000, "ToPort": 2000, **cidr("0.0.0.0/0")}), ()
        )
    }
    dst = [Eni("eni-d", ("10.0.0.20",), ("sg-r",))]
    assert [allowed(tcp(p, src=EXTERNAL), dst, groups) for p in (999, 1000, 1500, 2000, 2001)] == [
        False,
        True,
        True,
        True,
        False,
    ]
    assert not allowed(Flow(EXTERNAL, "10.0.0.20", "udp", dst_port=1500), dst, groups)
    assert allowed(Flow(EXTERNAL, "10.0.0.20", "6", dst_port=1500), dst, groups)


def test_all_protocols_and_bare_protocol_numbers() -> None:
    groups = {
        "sg-all": GroupRules("sg-all", ingress({"IpProtocol": "-1", **cidr("10.0.0.0/8")}), ()),
        "sg-gre": GroupRules("sg-gre", ingress({"IpProtocol": "47", **cidr("0.0.0.0/0")}), ()),
    }
    a = [Eni("eni-d", ("10.0.0.20",), ("sg-all",))]
    assert allowed(tcp(1, src="10.1.1.1"), a, groups)
    assert allowed(Flow("10.1.1.1", "10.0.0.20", "udp", dst_port=65535), a, groups)
    assert allowed(Flow("10.1.1.1", "10.0.0.20", "132"), a, groups)
    assert not allowed(tcp(1, src=EXTERNAL), a, groups)
    g = [Eni("eni-d", ("10.0.0.20",), ("sg-gre",))]
    assert allowed(Flow(EXTERNAL, "10.0.0.20", "47"), g, groups)
    assert not allowed(Flow(EXTERNAL, "10.0.0.20", "50"), g, groups)
    assert not allowed(tcp(80, src=EXTERNAL), g, groups)


def test_ipv4_rules_never_match_ipv6_peers() -> None:
    groups = {"sg-a": GroupRules("sg-a", ingress({"IpProtocol": "-1", **cidr("0.0.0.0/0")}), ())}
    dst = [Eni("eni-d", ("10.0.0.20", "2001:db8::20"), ("sg-a",))]
    assert allowed(Flow(EXTERNAL, "10.0.0.20", "tcp", dst_port=1), dst, groups)
    assert not allowed(Flow("2001:db8::1", "2001:db8::20", "tcp", dst_port=1), dst, groups)


def test_prefix_lists_match_only_when_known() -> None:
    rule = ingress(
        {
            "IpProtocol": "tcp",
            "FromPort": 443,
            "ToPort": 443,
            "PrefixListIds": [{"PrefixListId": "pl-63a5400a"}],
        }
    )
    groups = {"sg-p": GroupRules("sg-p", rule, ())}
    dst = [Eni("eni-d", ("10.0.0.20",), ("sg-p",))]
    flow = tcp(443, src="52.216.0.9")
    assert not evaluate(flow, dst, groups).allowed
    assert evaluate(flow, dst, groups, prefix_lists={"pl-63a5400a": ["52.216.0.0/15"]}).allowed


# --------------------------------------------------------------------------------------------------
# ENIs without groups, traffic to self, inconsistent input


def test_eni_without_groups_allows_nothing() -> None:
    groups = default_group()
    lonely = Eni("eni-l", ("10.0.0.10",), ())
    member = Eni("eni-m", ("10.0.0.20",), ("sg-default",))
    v = evaluate(tcp(80), [lonely, member], groups)
    assert v == Verdict(False, None, None, "source eni-l has no security groups")
    v = evaluate(tcp(80, src="10.0.0.20", dst="10.0.0.10"), [lonely, member], groups)
    assert not v.allowed and v.reason == "destination eni-l has no security groups"
    # a group id with no rules known behaves the same
    assert not allowed(tcp(80, src=EXTERNAL), [Eni("eni-x", ("10.0.0.20",), ("sg-gone",))], groups)


def test_traffic_to_self_is_not_filtered() -> None:
    lonely = Eni("eni-l", ("10.0.0.10", "10.0.0.11"), ())
    v = evaluate(tcp(80, src="10.0.0.10", dst="10.0.0.10"), [lonely], {})
    assert v.allowed and v.egress is None and v.ingress is None
    assert allowed(tcp(80, src="10.0.0.10", dst="10.0.0.11"), [lonely], {})


def test_an_address_on_two_enis_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        evaluate(tcp(80), [Eni("eni-1", ("10.0.0.10",), ()), Eni("eni-2", ("10.0.0.10",), ())], {})


def test_rule_matches_helper() -> None:
    (rule,) = ingress({"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, **sg("sg-app")})
    members = {"sg-app": frozenset({"10.0.0.10"})}
    assert rule_matches(rule, tcp(80), "10.0.0.10", members)
    assert not rule_matches(rule, tcp(80), "10.0.0.11", members)
    assert not rule_matches(rule, tcp(81), "10.0.0.10", members)


# --------------------------------------------------------------------------------------------------
# Property: evaluate == an independent brute-force formulation

INSIDE = [f"10.0.0.{i}" for i in range(4, 12)] + ["2001:db8::4", "2001:db8::5"]
OUTSIDE = ["10.0.1.9", "192.0.2.1", "2001:db8:1::9"]
GROUP_IDS = ["sg-1", "sg-2", "sg-3", "sg-4"]
PEERS_V4 = ["0.0.0.0/0", "10.0.0.0/24", "10.0.0.8/29", "10.0.0.5/32", "192.0.2.0/24"]
PEERS_V6 = ["::/0", "2001:db8::/64", "2001:db8::5/128"]
PORTS = [22, 80, 443, 1000, 2000, 65535]
NUMBERS = {
    "tcp": "tcp",
    "6": "tcp",
    "udp": "udp",
    "17": "udp",
    "icmp": "icmp",
    "1": "icmp",
    "icmpv6": "icmpv6",
    "58": "icmpv6",
    "47": "47",
}


@st.composite
def any_rule(draw: st.DrawFn, direction: str) -> Rule:
    protocol = draw(st.sampled_from(["-1", "tcp", "udp", "icmp", "icmpv6", "47"]))
    lo: int | None = None
    hi: int | None = None
    if protocol in ("tcp", "udp"):
        lo, hi = sorted(draw(st.lists(st.sampled_from(PORTS), min_size=2, max_size=2)))
    elif protocol in ("icmp", "icmpv6"):
        lo = draw(st.sampled_from([-1, 0, 3, 8]))
        hi = -1 if lo == -1 else draw(st.sampled_from([-1, 0, 1]))
    peer = draw(st.sampled_from(["v4", "v6", "group"]))
    base: dict[str, Any] = {"direction": direction, "protocol": protocol, "from_port": lo, "to_port": hi}
    if peer == "v4":
        return Rule(**base, cidr_ipv4=str(ipaddress.ip_network(draw(st.sampled_from(PEERS_V4)))))
    if peer == "v6":
        return Rule(**base, cidr_ipv6=draw(st.sampled_from(PEERS_V6)))
    return Rule(**base, group_id=draw(st.sampled_from(GROUP_IDS)), group_owner_id=OWNER)


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[Eni], dict[str, GroupRules]]:
    """2-5 ENIs over the INSIDE addresses (some addresses belong to no ENI), mostly with groups that have
    rules, so that most flows are decided by actual rule matching rather than by default."""
    ips = draw(st.permutations(INSIDE))
    sizes = draw(st.lists(st.integers(1, 3), min_size=2, max_size=5))
    enis: list[Eni] = []
    start = 0
    for i, size in enumerate(sizes):
        if start >= len(ips):
            break
        gids = tuple(
            draw(st.lists(st.sampled_from(GROUP_IDS), min_size=0 if i == 4 else 1, max_size=3, unique=True))
        )
        enis.append(Eni(f"eni-{i}", tuple(ips[start : start + size]), gids))
        start += size
    known = draw(st.lists(st.sampled_from(GROUP_IDS), min_size=3, unique=True))  # a group may be unknown
    groups = {
        gid: GroupRules(
            gid,
            tuple(draw(st.lists(any_rule("ingress"), min_size=1, max_size=5))),
            tuple(draw(st.lists(any_rule("egress"), min_size=1, max_size=5))),
        )
        for gid in known
    }
    return enis, groups


NEAR_PORTS = sorted({q for p in PORTS for q in (p - 1, p, p + 1) if 0 <= q <= 65535})


@st.composite
def flows(draw: st.DrawFn) -> Flow:
    src = draw(st.sampled_from(INSIDE * 4 + OUTSIDE))
    dst = draw(st.sampled_from(INSIDE * 4 + OUTSIDE))
    protocol = draw(st.sampled_from(["tcp", "tcp", "udp", "icmp", *NUMBERS]))
    name = NUMBERS[protocol]
    if name in ("tcp", "udp"):
        return Flow(src, dst, protocol, dst_port=draw(st.sampled_from(NEAR_PORTS)))
    if name in ("icmp", "icmpv6"):
        return Flow(
            src,
            dst,
            protocol,
            icmp_type=draw(st.sampled_from([0, 3, 8])),
            icmp_code=draw(st.sampled_from([0, 1])),
        )
    return Flow(src, dst, protocol)


def brute_rule(rule: Rule, flow: Flow, peer: str, enis: list[Eni]) -> bool:
    """Written from the VPC User Guide's wording, sharing no code with the evaluator."""
    name = NUMBERS[flow.protocol]
    if rule.protocol != "-1" and rule.protocol != name:
        return False
    if rule.protocol in ("tcp", "udp"):
        assert rule.from_port is not None and rule.to_port is not None
        if flow.dst_port not in range(rule.from_port, rule.to_port + 1):
            return False
    if rule.protocol in ("icmp", "icmpv6") and (
        rule.from_port not in (-1, flow.icmp_type) or rule.to_port not in (-1, flow.icmp_code)
    ):
        return False
    if rule.group_id is not None:
        return any(peer in e.private_ips for e in enis if rule.group_id in e.group_ids)
    net = ipaddress.ip_network(rule.cidr_ipv4 or rule.cidr_ipv6 or "")
    address = ipaddress.ip_address(peer)
    return address.version == net.version and address in net


def brute(flow: Flow, enis: list[Eni], groups: dict[str, GroupRules]) -> bool:
    src = next((e for e in enis if flow.src_ip in e.private_ips), None)
    dst = next((e for e in enis if flow.dst_ip in e.private_ips), None)
    if src is not None and src is dst:
        return True
    out_ok = src is None or any(
        brute_rule(r, flow, flow.dst_ip, enis) for g in src.group_ids if g in groups for r in groups[g].egress
    )
    in_ok = dst is None or any(
        brute_rule(r, flow, flow.src_ip, enis)
        for g in dst.group_ids
        if g in groups
        for r in groups[g].ingress
    )
    return out_ok and in_ok


@settings(max_examples=500)
@given(worlds(), st.lists(flows(), min_size=1, max_size=10))
def test_evaluate_agrees_with_brute_force(
    world: tuple[list[Eni], dict[str, GroupRules]], fs: list[Flow]
) -> None:
    enis, groups = world
    for flow in fs:
        verdict = evaluate(flow, enis, groups)
        assert verdict.allowed == brute(flow, enis, groups), (flow, verdict)
        # whatever rule the verdict names really is a rule of that ENI's group and really matches
        for side, peer, ip in (("egress", flow.dst_ip, flow.src_ip), ("ingress", flow.src_ip, flow.dst_ip)):
            named = verdict.egress if side == "egress" else verdict.ingress
            if named is None:
                continue
            gid, rule = named
            eni = next(e for e in enis if ip in e.private_ips)
            assert gid in eni.group_ids
            assert rule in (groups[gid].egress if side == "egress" else groups[gid].ingress)
            assert brute_rule(rule, flow, peer, enis)
