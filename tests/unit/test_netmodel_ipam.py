"""IPAM (taskvpc.netmodel.ipam): CIDR validation, reserved addresses, address choice, MACs, DNS, default VPC."""

from __future__ import annotations

import ipaddress
import random

import pytest
from hypothesis import given, settings, strategies as st

from taskvpc.domain.errors import ClientError
from taskvpc.netmodel.ipam import (
    availability_zones,
    choose_address,
    default_vpc_layout,
    first_free,
    is_valid_mac,
    new_mac,
    private_dns_name,
    random_candidates,
    reserved_addresses,
    usable_count,
    validate_subnet_cidr,
    validate_vpc_cidr,
)


def refused(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    return exc.value.code, exc.value.message


# --------------------------------------------------------------------------------------------------
# VPC and subnet CIDRs


@pytest.mark.parametrize("cidr", ["10.0.0.0/16", "172.31.0.0/16", "192.168.0.0/28", "10.1.2.0/24"])
def test_vpc_cidr_accepted(cidr: str) -> None:
    assert validate_vpc_cidr(cidr) == ipaddress.IPv4Network(cidr)


@pytest.mark.parametrize("cidr", ["10.0.0.0/8", "172.16.0.0/12", "10.0.0.0/15", "10.0.0.0/29", "10.0.0.0/32"])
def test_vpc_cidr_out_of_range(cidr: str) -> None:
    with pytest.raises(ClientError) as e:
        validate_vpc_cidr(cidr)
    assert refused(e) == ("InvalidVpc.Range", f"The CIDR '{cidr}' is invalid.")


@pytest.mark.parametrize(
    "cidr", ["10.0.0.1/16", "SomeRandomString", "10.0.0.0", "10.0.0.0/33", "300.0.0.0/16", "10.0.0.0/-1", ""]
)
def test_vpc_cidr_not_a_cidr_block(cidr: str) -> None:
    with pytest.raises(ClientError) as e:
        validate_vpc_cidr(cidr)
    assert refused(e) == (
        "InvalidParameterValue",
        f"Value ({cidr}) for parameter cidrBlock is invalid. This is not a valid CIDR block.",
    )


def test_subnet_inside_vpc_accepted() -> None:
    assert str(validate_subnet_cidr(["10.0.0.0/16"], ["10.0.0.0/24"], "10.0.1.0/24")) == "10.0.1.0/24"
    # a secondary VPC CIDR counts too
    assert str(validate_subnet_cidr(["10.0.0.0/16", "10.1.0.0/16"], [], "10.1.5.0/28")) == "10.1.5.0/28"
    # the whole VPC as one subnet
    assert str(validate_subnet_cidr(["10.0.0.0/16"], [], "10.0.0.0/16")) == "10.0.0.0/16"


@pytest.mark.parametrize("cidr", ["10.1.0.0/24", "10.0.0.0/15", "10.0.0.0/29", "9.255.255.0/24"])
def test_subnet_outside_vpc_or_wrong_size(cidr: str) -> None:
    with pytest.raises(ClientError) as e:
        validate_subnet_cidr(["10.0.0.0/16"], [], cidr)
    assert refused(e) == ("InvalidSubnet.Range", f"The CIDR '{cidr}' is invalid.")


@pytest.mark.parametrize("cidr", ["10.0.1.0/24", "10.0.0.0/16", "10.0.1.128/25", "10.0.0.0/23"])
def test_subnet_overlap_conflicts(cidr: str) -> None:
    with pytest.raises(ClientError) as e:
        validate_subnet_cidr(["10.0.0.0/16"], ["10.0.1.0/24"], cidr)
    assert refused(e) == ("InvalidSubnet.Conflict", f"The CIDR '{cidr}' conflicts with another subnet")


def test_subnet_with_host_bits_is_not_a_cidr_block() -> None:
    with pytest.raises(ClientError) as e:
        validate_subnet_cidr(["10.0.0.0/16"], [], "10.0.1.5/24")
    assert e.value.code == "InvalidParameterValue"


subnet_candidates = st.builds(
    lambda prefix, offset: str(
        ipaddress.IPv4Network(
            (int(ipaddress.IPv4Address("10.0.0.0")) + (offset << (32 - prefix)) % 65536, prefix)
        )
    ),
    st.integers(16, 28),
    st.integers(0, 4095),
)


@given(st.lists(subnet_candidates, max_size=40))
def test_subnet_validation_never_accepts_overlaps(candidates: list[str]) -> None:
    accepted: list[str] = []
    for cidr in candidates:
        try:
            validate_subnet_cidr(["10.0.0.0/16"], accepted, cidr)
        except ClientError as e:
            assert e.code == "InvalidSubnet.Conflict"
            assert any(ipaddress.ip_network(cidr).overlaps(ipaddress.ip_network(a)) for a in accepted)
        else:
            accepted.append(cidr)
    nets = [ipaddress.ip_network(a) for a in accepted]
    for i, a in enumerate(nets):
        for b in nets[i + 1 :]:
            assert not a.overlaps(b)


# --------------------------------------------------------------------------------------------------
# Reserved addresses and counts


def test_reserved_addresses_are_the_five_aws_keeps() -> None:
    assert reserved_addresses("10.0.0.0/24") == {"10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.255"}
    assert reserved_addresses("10.0.0.16/28") == {
        "10.0.0.16",
        "10.0.0.17",
        "10.0.0.18",
        "10.0.0.19",
        "10.0.0.31",
    }


@pytest.mark.parametrize(("cidr", "n"), [("10.0.0.0/28", 11), ("10.0.0.0/24", 251), ("10.0.0.0/16", 65531)])
def test_usable_count(cidr: str, n: int) -> None:
    assert usable_count(cidr) == n


# --------------------------------------------------------------------------------------------------
# choose_address


def test_lowest_free_address_first() -> None:
    assert choose_address("10.0.1.0/24", []) == "10.0.1.4"
    assert choose_address("10.0.1.0/24", ["10.0.1.4", "10.0.1.5", "10.0.1.7"]) == "10.0.1.6"
    # used addresses outside the subnet or reserved are ignored
    assert choose_address("10.0.1.0/24", ["10.0.2.4", "10.0.1.1"]) == "10.0.1.4"


def test_requested_address() -> None:
    assert choose_address("10.0.1.0/24", ["10.0.1.4"], requested="10.0.1.184") == "10.0.1.184"
    assert choose_address("10.0.1.0/24", [], requested="10.0.1.254") == "10.0.1.254"


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        (
            "10.0.2.5",
            ("InvalidParameterValue", "Address 10.0.2.5 does not fall within the subnet's address range"),
        ),
        ("10.0.1.2", ("InvalidParameterValue", "Address 10.0.1.2 is in subnet's reserved address range")),
        ("10.0.1.0", ("InvalidParameterValue", "Address 10.0.1.0 is in subnet's reserved address range")),
        ("10.0.1.255", ("InvalidParameterValue", "Address 10.0.1.255 is in subnet's reserved address range")),
        ("10.0.1.9", ("InvalidIPAddress.InUse", "The specified address is already in use.")),
        ("10.0.1.300", ("InvalidParameterValue", "invalid value for parameter address: 10.0.1.300")),
    ],
)
def test_requested_address_refused(requested: str, expected: tuple[str, str]) -> None:
    with pytest.raises(ClientError) as e:
        choose_address("10.0.1.0/24", ["10.0.1.9"], requested=requested)
    assert refused(e) == expected


def test_full_subnet() -> None:
    full = [f"10.0.0.{i}" for i in range(4, 15)]
    with pytest.raises(ClientError) as e:
        choose_address("10.0.0.0/28", full, subnet_id="subnet-0abc")
    assert refused(e) == (
        "InsufficientFreeAddressesInSubnet",
        "There are not enough free addresses in subnet 'subnet-0abc' to satisfy the requested number of instances.",
    )
    with pytest.raises(ClientError) as e:
        choose_address("10.0.0.0/28", full)
    assert e.value.code == "InsufficientFreeAddressesInSubnet"


def test_pick_must_stay_in_range() -> None:
    with pytest.raises(ValueError):
        choose_address("10.0.0.0/28", [], pick=lambda n: n)


def test_cost_does_not_depend_on_subnet_size(monkeypatch: pytest.MonkeyPatch) -> None:
    # A /8 has 16.7M addresses; walking it would take seconds. We only walk the used list: counted in
    # addresses made, not timed (a timing bound fails on a loaded machine).
    used = [str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("10.0.0.4")) + i)) for i in range(20000)]
    made = 0
    real = ipaddress.IPv4Address.__init__

    def counting(self: ipaddress.IPv4Address, address: object) -> None:
        nonlocal made
        made += 1
        real(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(ipaddress.IPv4Address, "__init__", counting)
    assert choose_address("10.0.0.0/8", used) == str(ipaddress.IPv4Address("10.0.78.36"))
    assert choose_address("10.0.0.0/8", used, pick=lambda n: n - 1) == "10.255.255.254"
    assert made < 3 * len(used)


small_subnets = st.builds(
    lambda prefix, offset: ipaddress.IPv4Network(((10 << 24) + (offset << (32 - prefix)), prefix)),
    st.integers(24, 28),
    st.integers(0, 255),
)


@given(small_subnets, st.data())
def test_choose_never_reserved_used_or_outside(net: ipaddress.IPv4Network, data: st.DataObject) -> None:
    all_addrs = [str(a) for a in net]
    used = data.draw(st.sets(st.sampled_from(all_addrs), max_size=len(all_addrs)))
    reserved = reserved_addresses(net)
    free = sorted((a for a in all_addrs if a not in used and a not in reserved), key=ipaddress.IPv4Address)
    use_pick = data.draw(st.booleans())
    index = data.draw(st.integers(0, max(0, len(free) - 1)))
    try:
        got = choose_address(str(net), used, pick=(lambda n: index) if use_pick else None)
    except ClientError as e:
        assert e.code == "InsufficientFreeAddressesInSubnet"
        assert not free
        return
    assert ipaddress.IPv4Address(got) in net
    assert got not in used and got not in reserved
    # the pick index addresses the free list in ascending order; no pick means the lowest
    assert got == free[index if use_pick else 0]


@settings(max_examples=25, deadline=None)
@given(st.integers(24, 28), st.randoms(use_true_random=False))
def test_allocating_until_exhaustion(prefix: int, rng: random.Random) -> None:
    cidr = f"10.9.0.0/{prefix}"
    used: list[str] = []
    for _ in range(usable_count(cidr)):
        used.append(choose_address(cidr, used, pick=lambda n: rng.randrange(n)))
    assert len(set(used)) == len(used) == usable_count(cidr)
    assert not set(used) & reserved_addresses(cidr)
    with pytest.raises(ClientError) as e:
        choose_address(cidr, used, pick=lambda n: rng.randrange(n))
    assert e.value.code == "InsufficientFreeAddressesInSubnet"


def test_a_28_has_eleven() -> None:
    used: list[str] = []
    while True:
        try:
            used.append(choose_address("192.168.5.16/28", used))
        except ClientError:
            break
    assert len(used) == 11 == usable_count("192.168.5.16/28")
    assert used[0] == "192.168.5.20" and used[-1] == "192.168.5.30"


# --------------------------------------------------------------------------------------------------
# MACs and DNS names


def test_mac_format_like_ec2() -> None:
    assert new_mac(bytes.fromhex("0e89762807b3")) == "0e:89:76:28:07:b3"
    assert new_mac(bytes.fromhex("ffffffffffff")) == "fe:ff:ff:ff:ff:ff"
    assert new_mac(bytes(6)) == "02:00:00:00:00:00"
    with pytest.raises(ValueError):
        new_mac(b"12345")


@pytest.mark.parametrize(
    ("mac", "ok"),
    [
        ("0e:89:76:28:07:b3", True),
        ("02:00:00:00:00:00", True),
        ("0E:89:76:28:07:B3", False),  # EC2 prints lower case
        ("00:89:76:28:07:b3", False),  # universally administered
        ("03:89:76:28:07:b3", False),  # multicast
        ("0e-89-76-28-07-b3", False),
        ("0e:89:76:28:07", False),
    ],
)
def test_is_valid_mac(mac: str, ok: bool) -> None:
    assert is_valid_mac(mac) is ok


@given(st.binary(min_size=6, max_size=6), st.binary(min_size=6, max_size=6))
def test_macs_local_unicast_and_unique(a: bytes, b: bytes) -> None:
    ma, mb = new_mac(a), new_mac(b)
    assert is_valid_mac(ma) and is_valid_mac(mb)
    first = int(ma[:2], 16)
    assert first & 0x02 and not first & 0x01

    def significant(x: bytes) -> bytes:  # the 46 bits new_mac keeps
        return bytes([x[0] & 0xFC]) + x[1:]

    assert (ma == mb) == (significant(a) == significant(b))


def test_private_dns_names() -> None:
    assert private_dns_name("10.0.1.184", "us-east-1") == "ip-10-0-1-184.ec2.internal"
    assert private_dns_name("10.0.1.184", "eu-west-1") == "ip-10-0-1-184.eu-west-1.compute.internal"


# --------------------------------------------------------------------------------------------------
# Availability zones and the default VPC


def test_default_vpc_us_east_1() -> None:
    layout = default_vpc_layout("us-east-1")
    assert layout.cidr_block == "172.31.0.0/16"
    assert [s.cidr_block for s in layout.subnets] == [
        "172.31.0.0/20",
        "172.31.16.0/20",
        "172.31.32.0/20",
        "172.31.48.0/20",
        "172.31.64.0/20",
        "172.31.80.0/20",
    ]
    assert [s.availability_zone for s in layout.subnets] == [f"us-east-1{c}" for c in "abcdef"]
    assert layout.subnets[0].availability_zone_id == "use1-az1"


@pytest.mark.parametrize(
    ("region", "names", "zone_id"),
    [
        ("us-west-1", ["us-west-1b", "us-west-1c"], "usw1-az1"),
        ("us-east-2", ["us-east-2a", "us-east-2b", "us-east-2c"], "use2-az1"),
        ("us-west-2", ["us-west-2a", "us-west-2b", "us-west-2c", "us-west-2d"], "usw2-az1"),
        ("eu-central-1", ["eu-central-1a", "eu-central-1b", "eu-central-1c"], "euc1-az1"),
        ("ap-southeast-1", ["ap-southeast-1a", "ap-southeast-1b", "ap-southeast-1c"], "apse1-az1"),
        ("me-central-1", ["me-central-1a", "me-central-1b", "me-central-1c"], "mec1-az1"),
        ("xx-northwest-7", ["xx-northwest-7a", "xx-northwest-7b", "xx-northwest-7c"], "xxnw7-az1"),
    ],
)
def test_availability_zones(region: str, names: list[str], zone_id: str) -> None:
    azs = availability_zones(region)
    assert [a.name for a in azs] == names
    assert azs[0].zone_id == zone_id
    assert len({a.zone_id for a in azs}) == len(azs)
    layout = default_vpc_layout(region)
    assert [s.availability_zone for s in layout.subnets] == names
    nets = [ipaddress.IPv4Network(s.cidr_block) for s in layout.subnets]
    assert all(n.prefixlen == 20 and n.subnet_of(ipaddress.IPv4Network("172.31.0.0/16")) for n in nets)
    assert len(set(nets)) == len(nets)


# --------------------------------------------------------------------------------------------------
# Choice without the used set: uniform candidates, the store says which are taken


@given(small_subnets, st.data())
def test_first_free_random_candidate_is_a_free_usable_address(
    net: ipaddress.IPv4Network, data: st.DataObject
) -> None:
    all_addrs = [str(a) for a in net]
    used = data.draw(st.sets(st.sampled_from(all_addrs), max_size=len(all_addrs)))
    draws = iter(data.draw(st.lists(st.integers(0, 2**32), min_size=16, max_size=16)))
    candidates = random_candidates(str(net), lambda n: next(draws) % n, 16)
    usable = set(all_addrs) - reserved_addresses(net)
    assert len(candidates) == 16 and set(candidates) <= usable
    got = first_free(candidates, used & set(candidates))
    if got is None:  # every candidate taken: the caller falls back to choose_address
        assert set(candidates) <= used
    else:
        assert got in usable and got not in used
        assert got == next(c for c in candidates if c not in used)


def test_random_candidates_cover_the_usable_range_in_order() -> None:
    # index k is the k-th usable address: 0 the first after the three the VPC keeps, n-1 the last
    n = usable_count("10.0.0.0/28")
    indexes = iter(range(n))
    assert random_candidates("10.0.0.0/28", lambda size: next(indexes), n) == [
        f"10.0.0.{i}" for i in range(4, 15)
    ]
    with pytest.raises(ValueError):
        random_candidates("10.0.0.0/28", lambda size: size, 1)


def test_rejection_sampling_is_uniform_over_the_free_addresses() -> None:
    # A /28 with 8 of its 11 addresses taken: the first free candidate of a uniform stream lands on each
    # of the 3 free ones about equally often (2,000 draws each way; a skew toward low addresses fails).
    usable = [f"10.0.0.{i}" for i in range(4, 15)]
    rng = random.Random(7)
    used = set(rng.sample(usable, 8))
    counts: dict[str, int] = {}
    for _ in range(6000):
        got = first_free(random_candidates("10.0.0.0/28", rng.randrange, 64), used)
        assert got is not None
        counts[got] = counts.get(got, 0) + 1
    assert set(counts) == set(usable) - used
    assert all(1700 < c < 2300 for c in counts.values()), counts


@given(st.integers(0, 2**32 - 1))
def test_used_addresses_read_as_ipaddress_reads_them(n: int) -> None:
    text = str(ipaddress.IPv4Address(n))
    net = ipaddress.IPv4Network((n & 0xFFFFFF00, 24))
    first_usable = str(ipaddress.IPv4Address(int(net.network_address) + 4))
    taken = choose_address(str(net), [text, first_usable])  # the fast path parses both the same way
    assert taken not in (text, first_usable)
    for odd in ("010.0.0.1", "1.2.3", "1.2.3.256", "\u0663.1.1.1"):  # refused, as by ipaddress
        with pytest.raises(ValueError):
            choose_address(str(net), [odd])
