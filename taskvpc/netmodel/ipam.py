"""IPv4 address management for VPCs and subnets, the way EC2 does it.

* VPC and subnet CIDR validation (/16 to /28, subnets inside the VPC, no overlapping subnets).
* The five addresses AWS reserves in every subnet: the network address, +1 (VPC router), +2 (DNS),
  +3 (reserved for future use) and the broadcast address [VPCUG ``subnet-sizing.md``]. A /28 leaves 11.
* Address choice for a new ENI: a requested address is checked, otherwise the lowest free address (or a
  caller-supplied deterministic "random" pick). Cost is O(len(used) log len(used)), never O(subnet size);
  or, without the used set at all, a few uniform candidates of which the store keeps the first free one
  (:func:`random_candidates`, :func:`first_free`).
* EC2-style MAC addresses, private DNS names, and the default-VPC layout of a region.

Sources for error texts are cited next to each message as ``owner/repo#number`` of a public report that
quotes real EC2; ``# unconfirmed`` marks text written by analogy.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Final

from taskvpc.domain.errors import ClientError

MIN_PREFIX: Final = 16  # VPC and subnet CIDRs are /16 .. /28 [VPCUG subnet-sizing]
MAX_PREFIX: Final = 28
RESERVED_PER_SUBNET: Final = 5
DEFAULT_VPC_CIDR: Final = "172.31.0.0/16"
DEFAULT_SUBNET_PREFIX: Final = 20

# --------------------------------------------------------------------------------------------------
# Errors (EC2 codes and texts)


def invalid_cidr_block(cidr: str) -> ClientError:
    # An EC2 plugin's test against real AWS (CreateSubnet with "SomeRandomString") asserts "AWS Error: Value
    # (SomeRandomString) for parameter cidrBlock is invalid. This is not a valid CIDR block."; moto uses it too.
    # A CIDR with host bits set is refused the same way [I: the console says "Invalid CIDR" for
    # 192.168.1.0/22, QT-DevOps/DevOpsIssues#201; not normalised like security-group CIDRs are].
    return ClientError(
        "InvalidParameterValue",
        f"Value ({cidr}) for parameter cidrBlock is invalid. This is not a valid CIDR block.",
    )


def invalid_vpc_range(cidr: str) -> ClientError:
    # "InvalidVpc.Range: The CIDR '10.0.0.0/8' is invalid." grycap/im#1011, trailofbits/algo#340
    return ClientError("InvalidVpc.Range", f"The CIDR '{cidr}' is invalid.")


def invalid_subnet_range(cidr: str) -> ClientError:
    # "InvalidSubnet.Range: The CIDR '10.10.1.0/24' is invalid." pulumi/pulumi-awsx#111, kubernetes/kops#15841
    return ClientError("InvalidSubnet.Range", f"The CIDR '{cidr}' is invalid.")


def subnet_conflict(cidr: str) -> ClientError:
    # "InvalidSubnet.Conflict: The CIDR '10.0.1.0/24' conflicts with another subnet" (no final period)
    # hashicorp/terraform#33470, LinkedInLearning/learning-terraform-3087701#148, waterbear-cloud/paco#40
    return ClientError("InvalidSubnet.Conflict", f"The CIDR '{cidr}' conflicts with another subnet")


def invalid_address_value(address: str) -> ClientError:
    # "InvalidParameterValue: invalid value for parameter address: XXXX" hashicorp/terraform-provider-aws#23114
    return ClientError("InvalidParameterValue", f"invalid value for parameter address: {address}")


def address_not_in_subnet(address: str) -> ClientError:
    # RunInstances: "InvalidParameterValue: Address 172.31.32.2 does not fall within the subnet's address
    # range" (public README errata quoting the Go SDK error). CreateNetworkInterface is reported without the
    # address ("Address does not fall within the subnet's address range") # unconfirmed for ENIs
    return ClientError(
        "InvalidParameterValue", f"Address {address} does not fall within the subnet's address range"
    )


def address_reserved(address: str) -> ClientError:
    # RunInstances: "Address 192.168.0.2 is in subnet's reserved address range" (public troubleshooting
    # notes quoting botocore's ClientError)
    return ClientError("InvalidParameterValue", f"Address {address} is in subnet's reserved address range")


def address_in_use() -> ClientError:
    # "InvalidIPAddress.InUse: The specified address is already in use." pulumi/pulumi#10923 (CreateNetworkInterface)
    return ClientError("InvalidIPAddress.InUse", "The specified address is already in use.")


def subnet_full(subnet_id: str | None = None) -> ClientError:
    """``InsufficientFreeAddressesInSubnet``; with a subnet id the RunInstances text, else the generic one.

    For CreateNetworkInterface EC2 answers differently; see :func:`subnet_full_for_new_eni`.
    """
    if subnet_id is not None:
        # "There are not enough free addresses in subnet 'subnet-12345678' to satisfy the requested number of
        # instances." (RunInstances; AWS ANS exam text and openshift CI log patterns quote it)
        return ClientError(
            "InsufficientFreeAddressesInSubnet",
            f"There are not enough free addresses in subnet '{subnet_id}' to satisfy the requested number of instances.",
        )
    # AssignPrivateIpAddresses: "InsufficientFreeAddressesInSubnet: The specified subnet does not have enough
    # free addresses to satisfy the request." aws/amazon-vpc-cni-k8s#1773
    return ClientError(
        "InsufficientFreeAddressesInSubnet",
        "The specified subnet does not have enough free addresses to satisfy the request.",
    )


def subnet_full_for_new_eni() -> ClientError:
    # CreateNetworkInterface on a full subnet: "InvalidParameterValue: There aren't sufficient free Ipv4
    # addresses or prefixes" aws/amazon-vpc-cni-k8s#3105; AWS support quoted in cilium/cilium#31016
    return ClientError("InvalidParameterValue", "There aren't sufficient free Ipv4 addresses or prefixes")


# --------------------------------------------------------------------------------------------------
# CIDR validation

_DOTTED_CIDR: Final = re.compile(r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$")


def _parse_cidr(cidr: str) -> ipaddress.IPv4Network:
    """A strict IPv4 CIDR ``a.b.c.d/n`` with no host bits set, or ``InvalidParameterValue``.

    Leading zeros ("10.01.0.0/16") are refused; EC2 accepts and normalises them (hashicorp/terraform#2340),
    an edge we do not reproduce.
    """
    if not isinstance(cidr, str) or not _DOTTED_CIDR.match(cidr):
        raise invalid_cidr_block(str(cidr))
    try:
        return ipaddress.IPv4Network(cidr, strict=True)
    except ValueError:
        raise invalid_cidr_block(cidr) from None


def validate_vpc_cidr(cidr: str) -> ipaddress.IPv4Network:
    """Check a CreateVpc / AssociateVpcCidrBlock ``CidrBlock``: a network address, /16 to /28."""
    net = _parse_cidr(cidr)
    if not MIN_PREFIX <= net.prefixlen <= MAX_PREFIX:
        raise invalid_vpc_range(cidr)
    return net


def validate_subnet_cidr(
    vpc_cidrs: Sequence[str], existing_subnet_cidrs: Sequence[str], cidr: str
) -> ipaddress.IPv4Network:
    """Check a CreateSubnet ``CidrBlock`` against the VPC's CIDRs and its other subnets.

    /16 to /28 and inside one of the VPC's CIDR blocks, else ``InvalidSubnet.Range``; overlapping any
    existing subnet of the VPC, else ``InvalidSubnet.Conflict``.
    """
    net = _parse_cidr(cidr)
    if not MIN_PREFIX <= net.prefixlen <= MAX_PREFIX:
        raise invalid_subnet_range(cidr)
    if not any(net.subnet_of(_network(v)) for v in vpc_cidrs):
        raise invalid_subnet_range(cidr)
    if any(net.overlaps(_network(s)) for s in existing_subnet_cidrs):
        raise subnet_conflict(cidr)
    return net


# --------------------------------------------------------------------------------------------------
# Reserved addresses and address choice


def _network(cidr: str | ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    net = cidr if isinstance(cidr, ipaddress.IPv4Network) else ipaddress.IPv4Network(cidr, strict=True)
    if net.num_addresses < 8:
        raise ValueError(f"{net} is too small for a subnet (AWS reserves 5 addresses)")
    return net


def _usable_bounds(net: ipaddress.IPv4Network) -> tuple[int, int]:
    """First and last usable address as integers (inclusive)."""
    base = int(net.network_address)
    return base + 4, int(net.broadcast_address) - 1


def reserved_addresses(cidr: str | ipaddress.IPv4Network) -> frozenset[str]:
    """The five addresses AWS keeps: network, router (+1), DNS (+2), future use (+3), broadcast."""
    net = _network(cidr)
    base = int(net.network_address)
    ints = (base, base + 1, base + 2, base + 3, int(net.broadcast_address))
    return frozenset(str(ipaddress.IPv4Address(i)) for i in ints)


def usable_count(cidr: str | ipaddress.IPv4Network) -> int:
    """Addresses an ENI can get: size minus the five reserved (a /28 gives 11, a /24 251)."""
    return _network(cidr).num_addresses - RESERVED_PER_SUBNET


def choose_address(
    cidr: str,
    used: Collection[str],
    requested: str | None = None,
    pick: Callable[[int], int] | None = None,
    *,
    subnet_id: str | None = None,
) -> str:
    """Choose the private IPv4 address for a new ENI in subnet ``cidr``.

    * ``requested`` (CreateNetworkInterface ``PrivateIpAddress``): must parse, lie in the subnet, not be
      one of the five reserved addresses and not be in ``used``; it is returned as given (canonical form).
    * otherwise, with ``pick=None``: the lowest free non-reserved address (deterministic, like a DHCP pool);
    * otherwise ``pick(n)`` must return an index in ``[0, n)`` into the ``n`` free addresses in ascending
      order; a seeded RNG gives EC2's random-looking choice while staying reproducible.

    ``used`` may contain addresses outside the subnet or reserved ones; they are ignored. A full subnet
    raises ``InsufficientFreeAddressesInSubnet`` (see :func:`subnet_full`; ``subnet_id`` selects the text).
    The cost is O(u log u) in the number of used addresses, whatever the subnet size.
    """
    net = _network(cidr)
    first, last = _usable_bounds(net)
    used_ints = sorted({n for n in map(_address_int, used) if first <= n <= last})

    if requested is not None:
        try:
            want = ipaddress.IPv4Address(requested)
        except ValueError:
            raise invalid_address_value(requested) from None
        if want not in net:
            raise address_not_in_subnet(requested)
        w = int(want)
        if not first <= w <= last:
            raise address_reserved(requested)
        if _contains_sorted(used_ints, w):
            raise address_in_use()
        return str(want)

    free = (last - first + 1) - len(used_ints)
    if free <= 0:
        raise subnet_full(subnet_id)
    k = 0 if pick is None else pick(free)
    if not 0 <= k < free:
        raise ValueError(f"pick({free}) returned {k}, outside [0, {free})")
    # The k-th free address: start at first + k and step over every used address at or below it.
    candidate = first + k
    for u in used_ints:
        if u <= candidate:
            candidate += 1
        else:
            break
    return str(ipaddress.IPv4Address(candidate))


def _address_int(address: str) -> int:
    """A dotted-quad address as an integer: the store's canonical form parsed directly (``ipaddress``
    takes ~8 us per address, which made every choice in a subnet of 5,000 used addresses cost 40 ms);
    anything else through ``ipaddress``, which refuses what it must."""
    parts = address.split(".")
    if len(parts) == 4 and all(
        p.isascii() and p.isdigit() and len(p) <= 3 and (p == "0" or p[0] != "0") for p in parts
    ):
        a, b, c, d = (int(p) for p in parts)
        if max(a, b, c, d) <= 255:
            return (a << 24) | (b << 16) | (c << 8) | d
    return int(ipaddress.IPv4Address(address))


def random_candidates(cidr: str, pick: Callable[[int], int], count: int) -> list[str]:
    """``count`` addresses drawn uniformly (``pick(n)``: an index in ``[0, n)``) from the subnet's usable
    ones, used or not, in draw order.

    With :func:`first_free` this is a choice *without the set of used addresses*: the caller asks its
    store which candidates are taken and keeps the first free one. That is rejection sampling, so the
    result is uniform over the free addresses, as ``choose_address(..., pick=...)`` is; in a crowded subnet
    (every candidate taken) the caller falls back to :func:`choose_address`. Cost O(count).
    """
    first, last = _usable_bounds(_network(cidr))
    size = last - first + 1
    out = []
    for _ in range(count):
        k = pick(size)
        if not 0 <= k < size:
            raise ValueError(f"pick({size}) returned {k}, outside [0, {size})")
        out.append(str(ipaddress.IPv4Address(first + k)))
    return out


def first_free(candidates: Sequence[str], used: Collection[str]) -> str | None:
    """The first of ``candidates`` not in ``used`` (the taken ones among them), or None."""
    return next((c for c in candidates if c not in used), None)


def _contains_sorted(values: Sequence[int], x: int) -> bool:
    lo, hi = 0, len(values)
    while lo < hi:
        mid = (lo + hi) // 2
        if values[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo < len(values) and values[lo] == x


# --------------------------------------------------------------------------------------------------
# MAC addresses and DNS names

_MAC_RE: Final = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def new_mac(random_bytes: bytes) -> str:
    """An EC2-style MAC from 6 random bytes: unicast, locally administered, ``0e:89:76:28:07:b3`` form.

    The first octet gets bit 0x02 set and bit 0x01 cleared; the other 46 bits are the input's. Two inputs
    give the same MAC exactly when they differ only in those two bits, so the caller (which owns the
    randomness and the set of MACs in use) retries on the rare collision.
    """
    if len(random_bytes) != 6:
        raise ValueError(f"need 6 bytes, got {len(random_bytes)}")
    octets = bytes([(random_bytes[0] | 0x02) & 0xFE]) + random_bytes[1:]
    return ":".join(f"{b:02x}" for b in octets)


def is_valid_mac(mac: str) -> bool:
    """Lower-case colon form of a unicast, locally administered MAC (what :func:`new_mac` produces)."""
    if not isinstance(mac, str) or not _MAC_RE.match(mac):
        return False
    first = int(mac[:2], 16)
    return bool(first & 0x02) and not first & 0x01


def private_dns_name(ip: str, region: str) -> str:
    """``ip-10-0-1-184.ec2.internal`` in us-east-1, ``ip-10-0-1-184.<region>.compute.internal`` elsewhere."""
    host = "ip-" + str(ipaddress.IPv4Address(ip)).replace(".", "-")
    if region == "us-east-1":
        return f"{host}.ec2.internal"
    return f"{host}.{region}.compute.internal"


# --------------------------------------------------------------------------------------------------
# Availability zones and the default VPC

# AZ letters a new account typically sees, with zone ids. Letter -> zone-id mapping is randomised per account
# in the older regions, so the pairing below is one plausible mapping, not a fact about every account.
# us-west-1: accounts see two of a/b/c (b and c in badjware/aws-cloud-gaming#7, a and c in
# cloudfoundry/bosh-bootloader#162); ap-northeast-1 has no "b" for new accounts; ca-central-1 skips "c".
_AZS: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "us-east-1": tuple((c, f"use1-az{i}") for i, c in enumerate("abcdef", start=1)),
    "us-east-2": (("a", "use2-az1"), ("b", "use2-az2"), ("c", "use2-az3")),
    "us-west-1": (("b", "usw1-az1"), ("c", "usw1-az3")),
    "us-west-2": tuple((c, f"usw2-az{i}") for i, c in enumerate("abcd", start=1)),
    "ca-central-1": (("a", "cac1-az1"), ("b", "cac1-az2"), ("d", "cac1-az4")),
    "sa-east-1": (("a", "sae1-az1"), ("b", "sae1-az2"), ("c", "sae1-az3")),
    "eu-west-1": (("a", "euw1-az1"), ("b", "euw1-az2"), ("c", "euw1-az3")),
    "eu-west-2": (("a", "euw2-az1"), ("b", "euw2-az2"), ("c", "euw2-az3")),
    "eu-west-3": (("a", "euw3-az1"), ("b", "euw3-az2"), ("c", "euw3-az3")),
    "eu-central-1": (("a", "euc1-az1"), ("b", "euc1-az2"), ("c", "euc1-az3")),
    "eu-north-1": (("a", "eun1-az1"), ("b", "eun1-az2"), ("c", "eun1-az3")),
    "ap-south-1": (("a", "aps1-az1"), ("b", "aps1-az2"), ("c", "aps1-az3")),
    "ap-southeast-1": (("a", "apse1-az1"), ("b", "apse1-az2"), ("c", "apse1-az3")),
    "ap-southeast-2": (("a", "apse2-az1"), ("b", "apse2-az2"), ("c", "apse2-az3")),
    "ap-northeast-1": (("a", "apne1-az4"), ("c", "apne1-az1"), ("d", "apne1-az2")),
    "ap-northeast-2": tuple((c, f"apne2-az{i}") for i, c in enumerate("abcd", start=1)),
}
_DIRECTIONS: Final = {
    "east": "e",
    "west": "w",
    "north": "n",
    "south": "s",
    "central": "c",
    "northeast": "ne",
    "northwest": "nw",
    "southeast": "se",
    "southwest": "sw",
}


@dataclass(frozen=True)
class AvailabilityZone:
    name: str  # us-east-1a
    zone_id: str  # use1-az1


@dataclass(frozen=True)
class DefaultSubnet:
    availability_zone: str
    availability_zone_id: str
    cidr_block: str


@dataclass(frozen=True)
class DefaultVpcLayout:
    region: str
    cidr_block: str
    subnets: tuple[DefaultSubnet, ...]


def _zone_id_prefix(region: str) -> str:
    """``us-east-1`` -> ``use1``, ``ap-southeast-2`` -> ``apse2`` (AWS's zone-id naming)."""
    parts = region.split("-")
    if len(parts) == 3 and parts[2].isdigit():
        return parts[0] + _DIRECTIONS.get(parts[1], parts[1][:1]) + parts[2]
    if len(parts) == 4 and parts[3].isdigit():
        # us-gov-west-1 -> usgw1, us-gov-east-1 -> usge1 (GovCloud zone ids); the ISO partitions'
        # regions are named the same way here (unconfirmed)
        return parts[0] + parts[1][:1] + _DIRECTIONS.get(parts[2], parts[2][:1]) + parts[3]
    return re.sub(r"[^a-z0-9]", "", region)


def availability_zones(region: str) -> tuple[AvailabilityZone, ...]:
    """The region's AZs in letter order; an unknown region gets three (a, b, c)."""
    table = _AZS.get(region)
    if table is None:
        prefix = _zone_id_prefix(region)
        table = tuple((c, f"{prefix}-az{i}") for i, c in enumerate("abc", start=1))
    return tuple(AvailabilityZone(f"{region}{letter}", zone_id) for letter, zone_id in table)


def default_vpc_layout(region: str) -> DefaultVpcLayout:
    """The default VPC: ``172.31.0.0/16`` and one /20 per AZ, handed out in AZ-letter order.

    Real default VPCs number their /20s in an order that is not strictly alphabetical by AZ (it follows
    the account's zone ids); alphabetical is what we do, and no client depends on the pairing.
    """
    vpc = ipaddress.IPv4Network(DEFAULT_VPC_CIDR)
    blocks = vpc.subnets(new_prefix=DEFAULT_SUBNET_PREFIX)
    subnets = tuple(
        DefaultSubnet(az.name, az.zone_id, str(block))
        for az, block in zip(availability_zones(region), blocks, strict=False)
    )
    return DefaultVpcLayout(region=region, cidr_block=DEFAULT_VPC_CIDR, subnets=subnets)
