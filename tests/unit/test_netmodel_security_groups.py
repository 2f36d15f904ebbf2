"""Security-group rules (taskvpc.netmodel.security_groups): IpPermissions in and out, validation, quotas."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, strategies as st

from taskvpc.domain.errors import ClientError
from taskvpc.netmodel.security_groups import (
    MAX_RULES_PER_DIRECTION,
    Rule,
    check_groups_per_eni,
    check_groups_per_new_eni,
    check_no_duplicates,
    check_rule_quota,
    default_group_rules,
    duplicate_message,
    new_group_egress,
    normalize_protocol,
    not_found_message,
    permissions_from_rules,
    revoke,
    rule_key,
    rules_from_permissions,
)

OWNER = "123456789012"


def refused(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    return exc.value.code, exc.value.message


def perm(protocol: Any, from_port: Any = None, to_port: Any = None, **peers: Any) -> dict[str, Any]:
    p: dict[str, Any] = {"IpProtocol": protocol}
    if from_port is not None:
        p["FromPort"] = from_port
    if to_port is not None:
        p["ToPort"] = to_port
    p.update(peers)
    return p


ANYWHERE = [{"CidrIp": "0.0.0.0/0"}]


# --------------------------------------------------------------------------------------------------
# Protocol and port normalisation


@pytest.mark.parametrize(
    ("given_", "expected"),
    [
        ("tcp", "tcp"),
        ("TCP", "tcp"),
        ("Udp", "udp"),
        ("6", "tcp"),
        ("006", "tcp"),
        ("17", "udp"),
        ("1", "icmp"),
        ("58", "icmpv6"),
        ("ICMPv6", "icmpv6"),
        ("-1", "-1"),
        ("47", "47"),
        ("0", "0"),
        ("255", "255"),
    ],
)
def test_protocol_normalisation(given_: str, expected: str) -> None:
    assert normalize_protocol(given_) == expected


@pytest.mark.parametrize("value", ["all", "esp", "gre", "256", "-2", "", "tcp6"])
def test_unknown_protocol_refused(value: str) -> None:
    with pytest.raises(ClientError) as e:
        normalize_protocol(value)
    assert refused(e) == (
        "InvalidParameterValue",
        f"Invalid value '{value}' for IP protocol. Unknown protocol.",
    )


def one(permission: dict[str, Any], direction: str = "ingress") -> Rule:
    rules = rules_from_permissions(direction, [permission])  # type: ignore[arg-type]
    assert len(rules) == 1
    return rules[0]


def test_ports_kept_for_tcp_udp_and_icmp() -> None:
    r = one(perm("6", 22, 22, IpRanges=ANYWHERE))
    assert (r.protocol, r.from_port, r.to_port) == ("tcp", 22, 22)
    r = one(perm("udp", 0, 65535, IpRanges=ANYWHERE))
    assert (r.from_port, r.to_port) == (0, 65535)
    r = one(perm("icmp", 8, -1, IpRanges=ANYWHERE))
    assert (r.protocol, r.from_port, r.to_port) == ("icmp", 8, -1)


def test_ports_dropped_for_all_and_other_protocols() -> None:
    r = one(perm("-1", 0, 0, IpRanges=ANYWHERE))
    assert (r.protocol, r.from_port, r.to_port) == ("-1", None, None)
    r = one(perm("47", 10, 20, IpRanges=ANYWHERE))
    assert (r.protocol, r.from_port, r.to_port) == ("47", None, None)


def test_icmpv6_without_ports_means_all() -> None:
    r = one(perm("icmpv6", Ipv6Ranges=[{"CidrIpv6": "::/0"}]))
    assert (r.protocol, r.from_port, r.to_port) == ("icmpv6", -1, -1)


@pytest.mark.parametrize(
    ("permission", "message"),
    [
        (perm("tcp", 22), "Invalid value 'Must specify both from and to ports with TCP/UDP.' for portRange."),
        (
            perm("udp", None, 53),
            "Invalid value 'Must specify both from and to ports with TCP/UDP.' for portRange.",
        ),
        (perm("tcp", -1, -1), "TCP/UDP (from) port (-1) out of range"),
        (perm("tcp", 80, 70000), "TCP/UDP (to) port (70000) out of range"),
        (perm("tcp", 80, 70), "Invalid TCP/UDP port range (80-70): from port is greater than to port"),
        (perm("icmp"), "Invalid value 'Must specify both from and to ports with ICMP.' for portRange."),
        (perm("icmp", 0, 65535), "ICMP code (65535) out of range"),
        (perm("icmp", 256, 0), "ICMP type (256) out of range"),
        (perm("icmp", -1, 0), "ICMP code (0) must be -1 when the ICMP type is -1 (all types)"),
        (perm("all"), "Invalid value 'all' for IP protocol. Unknown protocol."),
    ],
)
def test_bad_ports_refused(permission: dict[str, Any], message: str) -> None:
    permission["IpRanges"] = ANYWHERE
    with pytest.raises(ClientError) as e:
        rules_from_permissions("ingress", [permission])
    assert refused(e) == ("InvalidParameterValue", message)


# --------------------------------------------------------------------------------------------------
# Peers


def test_cidr_host_bits_masked_as_ec2_does() -> None:
    assert one(perm("tcp", 22, 22, IpRanges=[{"CidrIp": "10.0.0.28/29"}])).cidr_ipv4 == "10.0.0.24/29"
    assert one(perm("tcp", 22, 22, IpRanges=[{"CidrIp": "10.0.0.1/8"}])).cidr_ipv4 == "10.0.0.0/8"
    r = one(perm("tcp", 22, 22, Ipv6Ranges=[{"CidrIpv6": "2001:DB8::1/64"}]))
    assert r.cidr_ipv6 == "2001:db8::/64"


@pytest.mark.parametrize(
    "peers",
    [
        {"IpRanges": [{"CidrIp": "::/0"}]},
        {"IpRanges": [{"CidrIp": "10.0.0.0/33"}]},
        {"IpRanges": [{"CidrIp": "1.2.3.4"}]},
        {"IpRanges": [{"CidrIp": "sg-05cbbd25a44de07f5"}]},
        {"Ipv6Ranges": [{"CidrIpv6": "0.0.0.0/0"}]},
        {"Ipv6Ranges": [{"CidrIpv6": "2001:db8::/129"}]},
    ],
)
def test_malformed_cidr(peers: dict[str, Any]) -> None:
    with pytest.raises(ClientError) as e:
        rules_from_permissions("ingress", [perm("tcp", 22, 22, **peers)])
    bad = next(iter(next(iter(peers.values()))[0].values()))
    assert refused(e) == ("InvalidParameterValue", f"CIDR block {bad} is malformed")


def test_permission_expands_to_one_rule_per_peer() -> None:
    rules = rules_from_permissions(
        "ingress",
        [
            perm(
                "tcp",
                443,
                443,
                IpRanges=[{"CidrIp": "10.0.0.0/8"}, {"CidrIp": "192.168.0.0/16", "Description": "office"}],
                Ipv6Ranges=[{"CidrIpv6": "::/0"}],
                UserIdGroupPairs=[{"GroupId": "sg-1"}, {"GroupId": "sg-2", "UserId": "999999999999"}],
                PrefixListIds=[{"PrefixListId": "pl-63a5400a"}],
            )
        ],
        owner_id=OWNER,
    )
    assert [r.peer for r in rules] == ["sg-1", "sg-2", "10.0.0.0/8", "192.168.0.0/16", "::/0", "pl-63a5400a"]
    assert rules[0].group_owner_id == OWNER and rules[1].group_owner_id == "999999999999"
    assert rules[3].description == "office"
    assert all((r.protocol, r.from_port, r.to_port) == ("tcp", 443, 443) for r in rules)


def test_no_permissions_is_missing_parameter() -> None:
    with pytest.raises(ClientError) as e:
        rules_from_permissions("ingress", [])
    assert refused(e) == (
        "MissingParameter",
        "Missing source specification: include source security group or CIDR information",
    )


def test_permission_without_peer_adds_nothing() -> None:
    assert rules_from_permissions("ingress", [perm("tcp", 22, 22)]) == []


def test_group_pair_needs_group_id() -> None:
    with pytest.raises(ClientError) as e:
        rules_from_permissions("ingress", [perm("tcp", 22, 22, UserIdGroupPairs=[{"GroupName": "web"}])])
    assert refused(e) == ("MissingParameter", "Source group ID missing.")


def test_same_permission_twice_in_one_request() -> None:
    with pytest.raises(ClientError) as e:
        rules_from_permissions(
            "ingress",
            [
                perm(
                    "tcp",
                    22,
                    22,
                    IpRanges=[{"CidrIp": "10.0.0.0/8"}, {"CidrIp": "10.1.2.3/8", "Description": "x"}],
                )
            ],
        )
    assert refused(e) == ("InvalidParameterValue", "The same permission must not appear multiple times")


@pytest.mark.parametrize("description", ["テスト項目", "Saída liberada", "Let's Encrypt", "x" * 256, "a?b"])
def test_bad_description(description: str) -> None:
    with pytest.raises(ClientError) as e:
        rules_from_permissions(
            "ingress", [perm("tcp", 22, 22, IpRanges=[{"CidrIp": "0.0.0.0/0", "Description": description}])]
        )
    assert refused(e) == (
        "InvalidParameterValue",
        "Invalid rule description. Valid descriptions are strings less than 256 characters from the "
        "following set:  a-zA-Z0-9. _-:/()#,@[]+=&;{}!$*",
    )


def test_good_description_kept() -> None:
    text = "SSH from office (HQ) #1: a-z_A.Z/0-9, @[x]+=&;{y}!$*" + "x" * 200
    text = text[:255]
    r = one(perm("tcp", 22, 22, IpRanges=[{"CidrIp": "0.0.0.0/0", "Description": text}]))
    assert r.description == text


def test_rule_needs_exactly_one_peer() -> None:
    with pytest.raises(ValueError):
        Rule("ingress", "-1", None, None)
    with pytest.raises(ValueError):
        Rule("ingress", "-1", None, None, cidr_ipv4="0.0.0.0/0", group_id="sg-1")


# --------------------------------------------------------------------------------------------------
# Back to IpPermissions


def test_default_group_as_describe_security_groups_shows_it() -> None:
    ingress, egress = default_group_rules("sg-903004f8", OWNER)
    # aws-cli examples/ec2/describe-security-groups.rst (EC2-VPC), plus today's Ipv6Ranges list
    assert permissions_from_rules(ingress) == [
        {
            "IpProtocol": "-1",
            "UserIdGroupPairs": [{"UserId": OWNER, "GroupId": "sg-903004f8"}],
            "IpRanges": [],
            "Ipv6Ranges": [],
            "PrefixListIds": [],
        }
    ]
    assert permissions_from_rules(egress) == [
        {
            "IpProtocol": "-1",
            "UserIdGroupPairs": [],
            "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            "Ipv6Ranges": [],
            "PrefixListIds": [],
        }
    ]
    _, egress6 = default_group_rules("sg-1", OWNER, ipv6=True)
    assert [r.peer for r in egress6] == ["0.0.0.0/0", "::/0"]
    assert new_group_egress() == egress[0]


def test_permissions_grouped_per_protocol_and_ports() -> None:
    rules = rules_from_permissions(
        "ingress",
        [
            perm("tcp", 22, 22, IpRanges=[{"CidrIp": "10.0.0.0/8", "Description": "ssh"}]),
            perm("tcp", 443, 443, IpRanges=ANYWHERE),
            perm("tcp", 22, 22, UserIdGroupPairs=[{"GroupId": "sg-1", "Description": "bastion"}]),
        ],
        owner_id=OWNER,
    )
    assert permissions_from_rules(rules) == [
        {
            "IpProtocol": "tcp",
            "FromPort": 22,
            "ToPort": 22,
            "UserIdGroupPairs": [{"UserId": OWNER, "GroupId": "sg-1", "Description": "bastion"}],
            "IpRanges": [{"CidrIp": "10.0.0.0/8", "Description": "ssh"}],
            "Ipv6Ranges": [],
            "PrefixListIds": [],
        },
        {
            "IpProtocol": "tcp",
            "FromPort": 443,
            "ToPort": 443,
            "UserIdGroupPairs": [],
            "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            "Ipv6Ranges": [],
            "PrefixListIds": [],
        },
    ]


def test_mixed_directions_refused() -> None:
    ingress, egress = default_group_rules("sg-1", OWNER)
    with pytest.raises(ValueError):
        permissions_from_rules([*ingress, *egress])


descriptions = st.none() | st.text(alphabet="abcXYZ019. _-:/()#,@[]+=&;{}!$*", max_size=20)


@st.composite
def rules(draw: st.DrawFn, direction: str = "ingress") -> Rule:
    protocol = draw(st.sampled_from(["-1", "tcp", "udp", "icmp", "icmpv6", "47", "132"]))
    lo: int | None
    hi: int | None
    if protocol in ("tcp", "udp"):
        lo = draw(st.integers(0, 65535))
        hi = draw(st.integers(lo, 65535))
    elif protocol in ("icmp", "icmpv6"):
        lo = draw(st.integers(-1, 255))
        hi = -1 if lo == -1 else draw(st.integers(-1, 255))
    else:
        lo = hi = None
    kind = draw(st.sampled_from(["v4", "v6", "group", "pl"]))
    base: dict[str, Any] = {"direction": direction, "protocol": protocol, "from_port": lo, "to_port": hi}
    desc = draw(descriptions)
    if kind == "v4":
        net = ipaddress.IPv4Network((draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 32))), strict=False)
        return Rule(**base, cidr_ipv4=str(net), description=desc)
    if kind == "v6":
        net6 = ipaddress.IPv6Network(
            (draw(st.integers(0, 2**128 - 1)), draw(st.integers(0, 128))), strict=False
        )
        return Rule(**base, cidr_ipv6=str(net6), description=desc)
    if kind == "group":
        gid = draw(st.sampled_from(["sg-1", "sg-2", "sg-0a1b2c3d4e5f60718"]))
        return Rule(**base, group_id=gid, group_owner_id=OWNER, description=desc)
    return Rule(
        **base, prefix_list_id=draw(st.sampled_from(["pl-63a5400a", "pl-02cd2c6b"])), description=desc
    )


def unique(rs: list[Rule]) -> list[Rule]:
    seen: dict[Any, Rule] = {}
    for r in rs:
        seen.setdefault(rule_key(r), r)
    return list(seen.values())


@given(st.lists(rules(), max_size=30).map(unique))
def test_round_trip_rules_permissions_rules(rs: list[Rule]) -> None:
    perms = permissions_from_rules(rs)
    back = rules_from_permissions("ingress", perms) if perms else []
    assert sorted(back, key=repr) == sorted(rs, key=repr)
    # and the permissions form is a fixed point
    assert permissions_from_rules(back) == perms


@given(st.lists(rules(), max_size=10).map(unique))
def test_every_rule_is_a_duplicate_of_itself(rs: list[Rule]) -> None:
    for r in rs:
        with pytest.raises(ClientError) as e:
            check_no_duplicates(rs, [r])
        assert e.value.code == "InvalidPermission.Duplicate"
    assert revoke(rs, rs) == []


# --------------------------------------------------------------------------------------------------
# Duplicates and revocation


def test_duplicate_messages() -> None:
    r = one(perm("tcp", 22, 22, IpRanges=ANYWHERE))
    assert (
        duplicate_message(r)
        == 'the specified rule "peer: 0.0.0.0/0, TCP, from port: 22, to port: 22, ALLOW" already exists'
    )
    ingress, egress = default_group_rules("sg-f6b1a68b", OWNER)
    assert (
        duplicate_message(ingress[0]) == 'the specified rule "peer: sg-f6b1a68b, ALL, ALLOW" already exists'
    )
    assert duplicate_message(egress[0]) == 'the specified rule "peer: 0.0.0.0/0, ALL, ALLOW" already exists'
    udp = one(perm("udp", 50000, 60000, IpRanges=ANYWHERE))
    assert (
        duplicate_message(udp)
        == 'the specified rule "peer: 0.0.0.0/0, UDP, from port: 50000, to port: 60000, ALLOW" already exists'
    )


def test_duplicate_ignores_description() -> None:
    existing = rules_from_permissions(
        "ingress", [perm("tcp", 22, 22, IpRanges=[{"CidrIp": "0.0.0.0/0", "Description": "a"}])]
    )
    adding = rules_from_permissions(
        "ingress", [perm("6", 22, 22, IpRanges=[{"CidrIp": "0.0.0.0/0", "Description": "b"}])]
    )
    assert rule_key(existing[0]) == rule_key(adding[0])
    with pytest.raises(ClientError) as e:
        check_no_duplicates(existing, adding)
    assert refused(e) == (
        "InvalidPermission.Duplicate",
        'the specified rule "peer: 0.0.0.0/0, TCP, from port: 22, to port: 22, ALLOW" already exists',
    )
    # the other direction is a different rule
    check_no_duplicates(existing, rules_from_permissions("egress", [perm("tcp", 22, 22, IpRanges=ANYWHERE)]))


def test_revoke() -> None:
    existing = rules_from_permissions(
        "ingress", [perm("tcp", 22, 22, IpRanges=ANYWHERE), perm("tcp", 80, 80, IpRanges=ANYWHERE)]
    )
    left = revoke(
        existing,
        rules_from_permissions(
            "ingress", [perm("TCP", 80, 80, IpRanges=[{"CidrIp": "0.0.0.0/0", "Description": "x"}])]
        ),
    )
    assert left == existing[:1]
    with pytest.raises(ClientError) as e:
        revoke(existing, rules_from_permissions("ingress", [perm("tcp", 81, 81, IpRanges=ANYWHERE)]))
    assert refused(e) == (
        "InvalidPermission.NotFound",
        "The specified rule does not exist in this security group.",
    )
    assert not_found_message() == "The specified rule does not exist in this security group."


# --------------------------------------------------------------------------------------------------
# Quotas


def cidr_rules(n: int, direction: str = "ingress", v6: bool = False) -> list[Rule]:
    if v6:
        return [Rule(direction, "tcp", i, i, cidr_ipv6="::/0") for i in range(n)]  # type: ignore[arg-type]
    return [Rule(direction, "tcp", i, i, cidr_ipv4="0.0.0.0/0") for i in range(n)]  # type: ignore[arg-type]


def test_rule_quota_per_direction_and_family() -> None:
    check_rule_quota(cidr_rules(59), cidr_rules(1))
    check_rule_quota(cidr_rules(60), cidr_rules(60, v6=True))  # IPv4 and IPv6 counted separately
    check_rule_quota(cidr_rules(60), cidr_rules(60, "egress"))  # and each direction separately
    with pytest.raises(ClientError) as e:
        check_rule_quota(cidr_rules(60), cidr_rules(1))
    assert refused(e) == (
        "RulesPerSecurityGroupLimitExceeded",
        "The maximum number of rules per security group has been reached.",
    )
    assert MAX_RULES_PER_DIRECTION == 60


def test_group_reference_counts_for_both_families() -> None:
    group = [Rule("ingress", "-1", None, None, group_id="sg-1", group_owner_id=OWNER)]
    check_rule_quota(cidr_rules(59, v6=True), group)
    with pytest.raises(ClientError):
        check_rule_quota(cidr_rules(60, v6=True), group)
    with pytest.raises(ClientError):
        check_rule_quota(cidr_rules(60), group)


def test_groups_per_eni() -> None:
    check_groups_per_eni(5)
    with pytest.raises(ClientError) as e:
        check_groups_per_eni(6)
    assert refused(e) == (
        "SecurityGroupsPerInterfaceLimitExceeded",
        "The maximum number of security groups per interface has been reached.",
    )
    check_groups_per_eni(16, limit=16)
    with pytest.raises(ClientError) as e:
        check_groups_per_new_eni(7, "975050023620")
    assert refused(e) == (
        "InvalidParameterValue",
        "user 975050023620 exceeded limit 5 on the number of interface security group memberships",
    )
