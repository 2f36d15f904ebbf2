"""Security-group rules: EC2's ``IpPermissions`` shape in and out, validation, identity, quotas.

One :class:`Rule` is one peer (an IPv4 CIDR, an IPv6 CIDR, a security group or a prefix list) for one
(protocol, port range) in one direction: what the VPC console and ``DescribeSecurityGroupRules`` call a
security group rule. An ``IpPermissions`` entry with several ranges expands to several rules, and
DescribeSecurityGroups groups them back per (protocol, from, to).

Normalisations EC2 applies, and we apply too:

* protocol names are case-folded and the numbers 1, 6, 17, 58 become ``icmp``, ``tcp``, ``udp``,
  ``icmpv6``; every other number stays a number (measured against real AWS in go-to-k/cdkd#1650,
  hashicorp/terraform#5881). ``-1`` means all protocols; the word ``all`` is refused
  (hashicorp/terraform-provider-aws#1793), as are other names such as ``esp`` (hashicorp/terraform#6915).
* for ``-1`` and for protocols other than tcp/udp/icmp/icmpv6 the ports are ignored and not stored;
  DescribeSecurityGroups omits ``FromPort``/``ToPort`` for them (aws-cli ``describe-security-groups``
  example shows this for ``-1``; for other numbers it is our assumption).
* ``icmpv6`` without ports means all types and codes and is stored as -1/-1 [EC2 API reference:
  "For icmpv6, the port range is optional; if you omit the port range, traffic for all types and codes
  is allowed"].
* a CIDR with host bits set is masked to its network ("10.0.0.28/29" is stored as "10.0.0.24/29";
  ansible/ansible#25403 and #21956).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from taskvpc.domain.errors import ClientError

Direction = Literal["ingress", "egress"]

MAX_RULES_PER_DIRECTION: Final = 60  # per direction, counted separately for IPv4 and IPv6 [VPCUG quotas]
MAX_GROUPS_PER_ENI: Final = 5  # adjustable up to 16 [VPCUG quotas]
MAX_DESCRIPTION: Final = 255

PROTOCOL_NAMES: Final = {"1": "icmp", "6": "tcp", "17": "udp", "58": "icmpv6"}
NAMED_PROTOCOLS: Final = frozenset(PROTOCOL_NAMES.values())
PORTED_PROTOCOLS: Final = frozenset({"tcp", "udp"})
ICMP_PROTOCOLS: Final = frozenset({"icmp", "icmpv6"})

# Allowed description characters [EC2 error text below]: a-zA-Z0-9. _-:/()#,@[]+=&;{}!$*
_DESCRIPTION_RE: Final = re.compile(r"^[A-Za-z0-9. _\-:/()#,@\[\]+=&;{}!$*]*$")
_PREFIX_LIST_RE: Final = re.compile(r"^pl-[0-9a-f]+$")


@dataclass(frozen=True)
class Rule:
    """One security group rule. Exactly one of the four peers is set.

    ``protocol`` is normalised ("-1", "tcp", "udp", "icmp", "icmpv6" or a decimal protocol number).
    ``from_port``/``to_port``: the inclusive port range for tcp/udp; ICMP type/code for icmp/icmpv6
    (-1 = any); ``None`` for "-1" and other protocols.
    """

    direction: Direction
    protocol: str
    from_port: int | None
    to_port: int | None
    cidr_ipv4: str | None = None
    cidr_ipv6: str | None = None
    group_id: str | None = None
    group_owner_id: str | None = None
    prefix_list_id: str | None = None
    description: str | None = None

    def __post_init__(self) -> None:
        peers = [
            p for p in (self.cidr_ipv4, self.cidr_ipv6, self.group_id, self.prefix_list_id) if p is not None
        ]
        if len(peers) != 1:
            raise ValueError(f"a rule has exactly one peer, got {peers!r}")
        if self.direction not in ("ingress", "egress"):
            raise ValueError(f"bad direction {self.direction!r}")

    @property
    def peer(self) -> str:
        """The peer as EC2 prints it in messages: the CIDR, ``sg-…`` or ``pl-…``."""
        for p in (self.cidr_ipv4, self.cidr_ipv6, self.group_id, self.prefix_list_id):
            if p is not None:
                return p
        raise AssertionError("unreachable: __post_init__ guarantees a peer")


RuleKey = tuple[str, str, int | None, int | None, str | None, str | None, str | None, str | None]


def rule_key(rule: Rule) -> RuleKey:
    """Identity of a rule for duplicate/revoke matching: everything but the description and group owner."""
    return (
        rule.direction,
        rule.protocol,
        rule.from_port,
        rule.to_port,
        rule.cidr_ipv4,
        rule.cidr_ipv6,
        rule.group_id,
        rule.prefix_list_id,
    )


# --------------------------------------------------------------------------------------------------
# Errors


def _invalid(message: str) -> ClientError:
    return ClientError("InvalidParameterValue", message)


def unknown_protocol(value: str) -> ClientError:
    # "Invalid value 'all' for IP protocol. Unknown protocol." hashicorp/terraform-provider-aws#1793;
    # 'ah'/'esp' likewise, hashicorp/terraform#6915
    return _invalid(f"Invalid value '{value}' for IP protocol. Unknown protocol.")


def malformed_cidr(cidr: str) -> ClientError:
    # "CIDR block ::/0 is malformed" aws/aws-cli#2428 (IPv6 range given as CidrIp);
    # "CIDR block sg-05cbbd25a44de07f5 is malformed" crossplane-contrib/provider-aws#422
    return _invalid(f"CIDR block {cidr} is malformed")


def duplicate_message(rule: Rule) -> str:
    """EC2's ``InvalidPermission.Duplicate`` text for ``rule``.

    Confirmed forms: ``peer: 0.0.0.0/0, ALL, ALLOW`` (lucidsoftware/cumulus#101), ``peer: sg-…, ALL,
    ALLOW`` (kubernetes/kops source comment), ``peer: 10.220.130.0/27, TCP, from port: 9200, to port: 9200,
    ALLOW`` (ansible/ansible-modules-core#2120), ``UDP, from port: 50000, to port: 60000``
    (terraform-aws-modules/terraform-aws-security-group#351). The ICMP and bare-protocol-number forms
    are unconfirmed.
    """
    return f'the specified rule "peer: {rule.peer}, {_describe_traffic(rule)}, ALLOW" already exists'


def _describe_traffic(rule: Rule) -> str:
    if rule.protocol == "-1":
        return "ALL"
    if rule.protocol in PORTED_PROTOCOLS:
        return f"{rule.protocol.upper()}, from port: {rule.from_port}, to port: {rule.to_port}"
    if rule.protocol in ICMP_PROTOCOLS:  # unconfirmed
        typ = "ALL" if rule.from_port == -1 else str(rule.from_port)
        code = "ALL" if rule.to_port == -1 else str(rule.to_port)
        return f"{rule.protocol.upper()}, type: {typ}, code: {code}"
    return rule.protocol  # unconfirmed


def duplicate(rule: Rule) -> ClientError:
    return ClientError("InvalidPermission.Duplicate", duplicate_message(rule))


def not_found_message() -> str:
    # "The specified rule does not exist in this security group." cloud-custodian/cloud-custodian#9656
    # (boto3, 2024; also the EC2 API error-code table). A 2025 Go-SDK report shows it without the period
    # (piyushsonigra/aws_ipadd#10).
    return "The specified rule does not exist in this security group."


def not_found() -> ClientError:
    return ClientError("InvalidPermission.NotFound", not_found_message())


def same_permission_twice() -> ClientError:
    # "InvalidParameterValue: The same permission must not appear multiple times" input-output-hk/bitte#24,
    # hashicorp/terraform-provider-aws#29492 (one CIDR listed twice in one request)
    return _invalid("The same permission must not appear multiple times")


def rules_limit_exceeded() -> ClientError:
    # aws-samples/aws-cloudfront-samples#53, dan-v/awslambdaproxy#25
    return ClientError(
        "RulesPerSecurityGroupLimitExceeded",
        "The maximum number of rules per security group has been reached.",
    )


def groups_per_eni_exceeded() -> ClientError:
    # ModifyNetworkInterfaceAttribute: kubernetes-sigs/aws-load-balancer-controller#682
    return ClientError(
        "SecurityGroupsPerInterfaceLimitExceeded",
        "The maximum number of security groups per interface has been reached.",
    )


def groups_per_new_eni_exceeded(account_id: str, limit: int = MAX_GROUPS_PER_ENI) -> ClientError:
    # CreateNetworkInterface: "InvalidParameterValue: user 975050023620 exceeded limit 5 on the number of
    # interface security group memberships" aws/amazon-vpc-resource-controller-k8s#583 (2025)
    return _invalid(
        f"user {account_id} exceeded limit {limit} on the number of interface security group memberships"
    )


def missing_source() -> ClientError:
    # "MissingParameter: Missing source specification: include source security group or CIDR information"
    # boto/boto3#1078, crossplane-contrib/provider-aws#1496 (a request that names no peer at all)
    return ClientError(
        "MissingParameter", "Missing source specification: include source security group or CIDR information"
    )


def missing_group_id() -> ClientError:
    # "MissingParameter: Source group ID missing." hashicorp/terraform-provider-aws#38221, aws/aws-sdk-js#417
    return ClientError("MissingParameter", "Source group ID missing.")


def invalid_description() -> ClientError:
    # Quoted verbatim (two spaces after "set:") in many public deploy logs, e.g. AWS CLI transcripts.
    return _invalid(
        "Invalid rule description. Valid descriptions are strings less than 256 characters from the "
        "following set:  a-zA-Z0-9. _-:/()#,@[]+=&;{}!$*"
    )


# --------------------------------------------------------------------------------------------------
# Normalisation and validation


def normalize_protocol(value: Any) -> str:
    """EC2's ``IpProtocol`` normalisation (see module docstring); unknown values are refused."""
    text = "" if value is None else str(value).strip()
    lowered = text.lower()
    if lowered in NAMED_PROTOCOLS or lowered == "-1":
        return lowered
    if lowered.isascii() and lowered.isdigit() and len(lowered) <= 3:  # not "²", not 5,000 digits
        number = int(lowered)
        if number <= 255:
            return PROTOCOL_NAMES.get(str(number), str(number))
    raise unknown_protocol(text)


def _int_or_none(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise _invalid(f"Invalid value '{value}' for portRange.")  # unconfirmed (botocore types it as int)
    return int(value)


def normalize_ports(protocol: str, from_port: Any, to_port: Any) -> tuple[int | None, int | None]:
    """Validate and normalise the (FromPort, ToPort) pair for a normalised ``protocol``."""
    lo, hi = _int_or_none(from_port), _int_or_none(to_port)
    if protocol in PORTED_PROTOCOLS:
        if lo is None or hi is None:
            # aws/aws-sdk-go-v2#1203, chef-boneyard/chef-provisioning-aws#183
            raise _invalid("Invalid value 'Must specify both from and to ports with TCP/UDP.' for portRange.")
        for end, port in (("from", lo), ("to", hi)):
            if not 0 <= port <= 65535:
                # "TCP/UDP (from) port (-1) out of range" aws/aws-cli#1066
                raise _invalid(f"TCP/UDP ({end}) port ({port}) out of range")
        if lo > hi:
            # unconfirmed: no public report of EC2's text for from > to was found
            raise _invalid(f"Invalid TCP/UDP port range ({lo}-{hi}): from port is greater than to port")
        return lo, hi
    if protocol in ICMP_PROTOCOLS:
        if lo is None and hi is None and protocol == "icmpv6":
            return -1, -1
        if lo is None or hi is None:
            # "Invalid value 'Must specify both from and to ports with ICMP.' for portRange." lucidsoftware/cumulus#64
            label = "ICMP" if protocol == "icmp" else "ICMPv6"  # the ICMPv6 wording is unconfirmed
            raise _invalid(
                f"Invalid value 'Must specify both from and to ports with {label}.' for portRange."
            )
        if not -1 <= lo <= 255:
            raise _invalid(f"ICMP type ({lo}) out of range")  # by analogy with the code message
        if not -1 <= hi <= 255:
            # "ICMP code (65535) out of range" terraform-aws-modules/terraform-aws-security-group#7
            raise _invalid(f"ICMP code ({hi}) out of range")
        if lo == -1 and hi != -1:
            # "If you specify all ICMP types, you must specify all ICMP codes" [EC2 API reference]; text unconfirmed
            raise _invalid(f"ICMP code ({hi}) must be -1 when the ICMP type is -1 (all types)")
        return lo, hi
    return None, None  # "-1" and other protocol numbers: every port, nothing stored


def normalize_ipv4_cidr(cidr: Any) -> str:
    """An IPv4 CIDR with the prefix length given; host bits are masked as EC2 does."""
    text = "" if cidr is None else str(cidr)
    if "/" not in text:
        raise malformed_cidr(text)
    try:
        return str(ipaddress.IPv4Network(text, strict=False))
    except ValueError:
        raise malformed_cidr(text) from None


def normalize_ipv6_cidr(cidr: Any) -> str:
    """An IPv6 CIDR, masked and in compressed lower-case form."""
    text = "" if cidr is None else str(cidr)
    if "/" not in text:
        raise malformed_cidr(text)
    try:
        return str(ipaddress.IPv6Network(text, strict=False))
    except ValueError:
        raise malformed_cidr(text) from None


def _description(entry: Mapping[str, Any]) -> str | None:
    value = entry.get("Description")
    if value is None:
        return None
    text = str(value)
    if len(text) > MAX_DESCRIPTION or not _DESCRIPTION_RE.match(text):
        raise invalid_description()
    return text


def rules_from_permissions(
    direction: Direction,
    ip_permissions: Sequence[Mapping[str, Any]],
    *,
    owner_id: str | None = None,
) -> list[Rule]:
    """Expand an Authorize*/Revoke* ``IpPermissions`` list into validated, normalised rules.

    ``owner_id`` is the account used for ``UserIdGroupPairs`` entries without ``UserId`` (the caller's
    account). The caller resolves ``GroupName`` to ``GroupId`` before calling; a pair without ``GroupId``
    is refused. A permission that names no peer adds nothing (EC2 accepts it silently:
    hashicorp/terraform#20530); an empty list is ``MissingParameter``. The same rule twice in one request
    is ``InvalidParameterValue`` "The same permission must not appear multiple times".
    """
    if not ip_permissions:
        raise missing_source()
    rules: list[Rule] = []
    seen: set[RuleKey] = set()
    for perm in ip_permissions:
        protocol = normalize_protocol(perm.get("IpProtocol"))
        lo, hi = normalize_ports(protocol, perm.get("FromPort"), perm.get("ToPort"))
        base: dict[str, Any] = {"direction": direction, "protocol": protocol, "from_port": lo, "to_port": hi}
        for pair in perm.get("UserIdGroupPairs") or ():
            group_id = pair.get("GroupId")
            if not group_id:
                raise missing_group_id()
            owner = pair.get("UserId") or owner_id
            rules.append(
                Rule(**base, group_id=str(group_id), group_owner_id=owner, description=_description(pair))
            )
        for entry in perm.get("IpRanges") or ():
            cidr = normalize_ipv4_cidr(entry.get("CidrIp"))
            rules.append(Rule(**base, cidr_ipv4=cidr, description=_description(entry)))
        for entry in perm.get("Ipv6Ranges") or ():
            cidr = normalize_ipv6_cidr(entry.get("CidrIpv6"))
            rules.append(Rule(**base, cidr_ipv6=cidr, description=_description(entry)))
        for entry in perm.get("PrefixListIds") or ():
            pl = entry.get("PrefixListId")
            if not pl:
                raise ClientError("MissingParameter", "Prefix list ID missing.")  # unconfirmed
            if not _PREFIX_LIST_RE.match(str(pl)):
                raise _invalid(f"Invalid value '{pl}' for prefixListId.")  # unconfirmed
            rules.append(Rule(**base, prefix_list_id=str(pl), description=_description(entry)))
    for rule in rules:
        key = rule_key(rule)
        if key in seen:
            raise same_permission_twice()
        seen.add(key)
    return rules


def permissions_from_rules(rules: Sequence[Rule]) -> list[dict[str, Any]]:
    """Group rules of one direction back into ``IpPermissions`` as DescribeSecurityGroups shows them.

    One entry per (protocol, from, to) in order of first appearance, each with all four peer lists
    (possibly empty); ``FromPort``/``ToPort`` are omitted when the rule has none ("-1" and bare protocol
    numbers). Keys follow the botocore shape order.
    """
    directions = {r.direction for r in rules}
    if len(directions) > 1:
        raise ValueError("permissions_from_rules takes the rules of one direction")
    grouped: dict[tuple[str, int | None, int | None], dict[str, Any]] = {}
    for rule in rules:
        slot = (rule.protocol, rule.from_port, rule.to_port)
        perm = grouped.get(slot)
        if perm is None:
            perm = {"IpProtocol": rule.protocol}
            if rule.from_port is not None:
                perm["FromPort"] = rule.from_port
            if rule.to_port is not None:
                perm["ToPort"] = rule.to_port
            perm.update({"UserIdGroupPairs": [], "IpRanges": [], "Ipv6Ranges": [], "PrefixListIds": []})
            grouped[slot] = perm
        entry: dict[str, Any]
        if rule.group_id is not None:
            entry = (
                {"UserId": rule.group_owner_id, "GroupId": rule.group_id}
                if rule.group_owner_id
                else {"GroupId": rule.group_id}
            )
            perm["UserIdGroupPairs"].append(entry)
        elif rule.cidr_ipv4 is not None:
            entry = {"CidrIp": rule.cidr_ipv4}
            perm["IpRanges"].append(entry)
        elif rule.cidr_ipv6 is not None:
            entry = {"CidrIpv6": rule.cidr_ipv6}
            perm["Ipv6Ranges"].append(entry)
        else:
            entry = {"PrefixListId": rule.prefix_list_id}
            perm["PrefixListIds"].append(entry)
        if rule.description is not None:
            entry["Description"] = rule.description
    return list(grouped.values())


# --------------------------------------------------------------------------------------------------
# Applying authorize/revoke to a group's rules


def check_no_duplicates(existing: Sequence[Rule], adding: Sequence[Rule]) -> None:
    """``InvalidPermission.Duplicate`` naming the first rule in ``adding`` that ``existing`` already has."""
    have = {rule_key(r) for r in existing}
    for rule in adding:
        if rule_key(rule) in have:
            raise duplicate(rule)


def revoke(existing: Sequence[Rule], removing: Sequence[Rule]) -> list[Rule]:
    """``existing`` without ``removing`` (matched by :func:`rule_key`); any miss is ``InvalidPermission.NotFound``."""
    drop = {rule_key(r) for r in removing}
    have = {rule_key(r) for r in existing}
    if not drop <= have:
        raise not_found()
    return [r for r in existing if rule_key(r) not in drop]


def rule_counts(rules: Sequence[Rule], direction: Direction) -> tuple[int, int]:
    """(IPv4, IPv6) rule counts of one direction as the quota counts them.

    A group or prefix-list reference counts once for IPv4 and once for IPv6 [VPCUG quotas, quoted in
    terraform-linters/tflint#268]; a customer-managed prefix list really counts as its max entries, which
    this model does not know, so it counts as one.
    """
    v4 = v6 = 0
    for r in rules:
        if r.direction != direction:
            continue
        if r.cidr_ipv6 is None:
            v4 += 1
        if r.cidr_ipv4 is None:
            v6 += 1
    return v4, v6


def check_rule_quota(
    existing: Sequence[Rule], adding: Sequence[Rule], limit: int = MAX_RULES_PER_DIRECTION
) -> None:
    """``RulesPerSecurityGroupLimitExceeded`` if a direction would exceed ``limit`` IPv4 or IPv6 rules."""
    combined = [*existing, *adding]
    directions: tuple[Direction, ...] = ("ingress", "egress")
    for direction in directions:
        v4, v6 = rule_counts(combined, direction)
        if v4 > limit or v6 > limit:
            raise rules_limit_exceeded()


def check_groups_per_eni(n: int, limit: int = MAX_GROUPS_PER_ENI) -> None:
    """ModifyNetworkInterfaceAttribute: ``SecurityGroupsPerInterfaceLimitExceeded`` above ``limit``."""
    if n > limit:
        raise groups_per_eni_exceeded()


def check_groups_per_new_eni(n: int, account_id: str, limit: int = MAX_GROUPS_PER_ENI) -> None:
    """CreateNetworkInterface: EC2 answers ``InvalidParameterValue`` here (see the error's source)."""
    if n > limit:
        raise groups_per_new_eni_exceeded(account_id, limit)


# --------------------------------------------------------------------------------------------------
# Rules EC2 creates itself


def default_group_rules(
    group_id: str, owner_id: str, *, ipv6: bool = False
) -> tuple[tuple[Rule, ...], tuple[Rule, ...]]:
    """(ingress, egress) of a VPC's ``default`` group: all traffic from itself; all traffic out.

    [VPCUG ``default-security-group.md``]: inbound all protocols and ports from the group itself; outbound
    all to 0.0.0.0/0, and to ::/0 when the VPC has an IPv6 CIDR.
    """
    ingress = (Rule("ingress", "-1", None, None, group_id=group_id, group_owner_id=owner_id),)
    egress: tuple[Rule, ...] = (Rule("egress", "-1", None, None, cidr_ipv4="0.0.0.0/0"),)
    if ipv6:
        egress += (Rule("egress", "-1", None, None, cidr_ipv6="::/0"),)
    return ingress, egress


def new_group_egress() -> Rule:
    """The one outbound rule of a newly created group: all traffic to 0.0.0.0/0 [VPCUG security-group-rules]."""
    return Rule("egress", "-1", None, None, cidr_ipv4="0.0.0.0/0")


def rule_from_doc(doc: Mapping[str, Any]) -> Rule:
    """A ``SecurityGroupRule`` document (DescribeSecurityGroupRules' shape) as a :class:`Rule`.

    EC2 shows ``-1`` ports for "all" and port-less protocols; only tcp/udp/icmp/icmpv6 keep them. The
    document is checked as the API checks a permission (ports in range, CIDRs as EC2 writes them), so
    a rule read from elsewhere than the store (the agent's wire) is never one nft would refuse.
    """
    protocol = normalize_protocol(str(doc["IpProtocol"]))
    from_port, to_port = normalize_ports(protocol, doc.get("FromPort"), doc.get("ToPort"))
    cidr_ipv4, cidr_ipv6 = doc.get("CidrIpv4"), doc.get("CidrIpv6")
    for cidr, normalize in ((cidr_ipv4, normalize_ipv4_cidr), (cidr_ipv6, normalize_ipv6_cidr)):
        if (
            cidr is not None and normalize(cidr) != cidr
        ):  # stored CIDRs are normalised: host bits mean garbage
            raise malformed_cidr(str(cidr))
    referenced = doc.get("ReferencedGroupInfo") or {}
    return Rule(
        direction="egress" if doc["IsEgress"] else "ingress",
        protocol=protocol,
        from_port=from_port,
        to_port=to_port,
        cidr_ipv4=cidr_ipv4,
        cidr_ipv6=cidr_ipv6,
        group_id=referenced.get("GroupId"),
        group_owner_id=referenced.get("UserId"),
        prefix_list_id=doc.get("PrefixListId"),
        description=doc.get("Description"),
    )
