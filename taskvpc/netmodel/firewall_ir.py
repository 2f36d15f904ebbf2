"""Security groups as a firewall IR: what the router namespace's nftables table must contain.

Input is a :class:`FirewallModel` (the VPC's task ENIs with their router-side ports, the group rules, the
host access port); :func:`compile_ir` turns it into a :class:`Ruleset` of plain dataclasses that
:mod:`taskvpc.netmodel.nft_compile` renders as nftables text and :func:`evaluate_ir` interprets packet by
packet, so the fast unit tier can check the compiled rules against :mod:`taskvpc.netmodel.evaluator`;
:func:`trace_ir` lists the rules a packet acts on, chain by chain (``nft_compile.trace_text`` prints them).

Layout of the one ``inet`` table (per VPC, in its router namespace, where every task<->task and host<->task
packet is routed and connection tracking is available):

* sets ``g_<sgid>`` (``ipv4_addr``): the current private IPs of every ENI carrying the group. Group
  references compile to ``ip saddr @g_<sgid>`` / ``ip daddr @g_<sgid>``, so a task starting or stopping is
  an element add/delete, never a rule change.
* per group two regular chains: ``gout_<sg>`` (its egress rules; a match ``goto``\\s ``to_task``, the
  destination's ingress check) and ``gin_<sg>`` (its ingress rules; a match ``accept``\\s). They are shared
  by every ENI carrying the group, so authorizing or revoking a rule rewrites one chain, whatever the
  number of tasks in the group.
* per distinct combination of groups two regular chains, shared by every ENI carrying exactly those
  groups: ``cout_<combo>`` (``jump gout_<sg>`` for each of the groups, then ``drop``: the union of their
  egress rules) and ``cin_<combo>`` (``jump gin_<sg>`` for each, then ``drop``); ``<combo>`` names the
  groups in order (``cout_sg_a__sg_b``; a hash when the ids are long or unusual). Each combination has a
  number (:func:`combo_numbers`: stable while it exists). A data map ``port_combo`` (``ifname : mark``)
  gives each ENI's port its combination's number, and the verdict maps ``combo_out``/``combo_in``
  (``mark : verdict``) the number's chains. Regular chains ``egress_dispatch`` / ``ingress_dispatch`` hold
  one rule each: ``meta mark set iifname map @port_combo meta mark vmap @combo_out`` (``oifname``,
  ``combo_in``): two hash lookups per new flow, whatever the number of ENIs or combinations. A task
  starting or stopping is then only elements of sets and of the data map; a combination's chains and its
  two verdict-map elements are made when it first appears and go with its last ENI. Why not a verdict map
  from port to chain: libnftables reads every chain of the table back before each transaction (chains per
  ENI made every start and stop cost more with every ENI: 3.5 ms each at 5,000), and the kernel validates
  the whole table on each commit that adds a ``jump`` element to a map (0.7 ms at 5,000); a data-map
  element (a number) is no jump. The packet mark is the router's scratch register: nothing else in the
  router namespace reads it (no ``ip rule fwmark`` there; the NLBs' marks are in their own namespaces,
  ``drivers/lbnet.py``), and a packet leaving into another namespace (a task, the host, an underlay)
  has it cleared on the way (the kernel scrubs ``skb->mark`` crossing namespaces).
* an ENI whose REJECTs are logged (flow logs, below) has chains of its own, ``out_<eni>``/``in_<eni>``
  (the log prefix names the ENI), reached through the verdict maps ``egress_ports`` (``iifname`` ->
  ``jump out_<eni>``) and ``ingress_ports`` (``oifname`` -> ``jump in_<eni>``), which hold only those.
* set ``self_ports`` (``ifname . ifname``): ``"<port>" . "<port>"`` per ENI; the forward chain accepts
  ``iifname . oifname`` in it before the egress dispatch: traffic to self never reaches a security group
  (the evaluator allows it); a task never routes to itself in practice, this only keeps the two in step.
* regular chain ``to_task``: ``oifname vmap @ingress_ports``, ``oifname @task_ports jump ingress_dispatch`` (the destination
  ENI's ingress check), then ``drop`` (a port not registered yet, or any more, is never reachable).
* base chain ``antispoof`` (hook prerouting, priority raw, policy accept): a packet from a task port passes
  only if (``iifname . ip saddr . ether saddr``) is in ``eni_addrs`` (EC2's source/destination check);
  anything else from a task port (another IP or MAC, IPv6) is dropped before conntrack sees it. ARP never
  reaches ``inet`` hooks and needs no rule here: the router routes every task address by its own /32
  through that task's port, so a forged ARP announcement changes nothing about where traffic goes.
* base chain ``forward`` (hook forward, priority filter, policy drop): ``ct state established,related
  accept``; ``ct state invalid drop`` except for ICMP (below); ``oifname <host port> drop`` (a NEW flow
  from a task to the host is never allowed: tasks must not reach the host's services, whatever their
  egress rules say; the host's own flows to tasks get their replies through the first rule); egress
  dispatch, ``iifname vmap @egress_ports`` then ``iifname @task_ports jump egress_dispatch`` (a task's packet ends there:
  accepted by an ingress rule or dropped); ``iifname <host port>
  goto to_task``; anything else meets the policy. The host's traffic carries the source 169.254.100.1
  (``host_ip``) and is subject to the destination's ingress rules only, like any address outside the
  VPC's ENIs.

Across hosts (``overlay_port``, the router's VXLAN device, ``taskvpc/agent/overlay.py``): the group sets
also hold the VPC's members on other hosts (``remote``); ``to_task`` accepts a packet leaving through the
overlay port (its egress rules passed here, its ingress rules are the receiving host's), the forward chain
sends a NEW packet arriving from the overlay to ``to_task`` (the local destination's ingress rules), and
drops the host's packets into the overlay (a remote task would answer its own host) and overlay-to-overlay
relaying.

ICMP that conntrack cannot place is judged by the rules like a new flow, not dropped as ``invalid``: an
error (type 3, 11, ...) quoting no tracked flow, or a reply type (echo reply 0, timestamp reply 14) with no
request before it. EC2 (and the evaluator) let such a message through when a rule allows its type; the
proof-by-difference test found the old blanket ``ct state invalid drop`` refusing them. Errors about a
tracked flow are ``related`` and pass whatever the rules say, as EC2's replies do.

Established flows survive revokes: only NEW packets reach the rules, so (as EC2 does for tracked flows)
revoking a rule stops new connections and leaves established ones until conntrack forgets them.

Flow logs: for an ENI with ``log_rejects`` (a flow log with traffic type REJECT or ALL covers it), the
final ``drop`` of its own ``in_<eni>`` and ``out_<eni>`` (what its groups refuse) is preceded by a rate-limited
``log group`` rule (:class:`RejectLog`): NFLOG hands the dropped packet's first bytes to the agent, with
the prefix ``"<eni-id> in"``/``"<eni-id> out"`` naming whose groups refused it. Only those two drops log:
not the policy, the anti-spoofing or the host-port drops, which are no security group's doing.

Not compiled: prefix lists (the model carries their CIDRs if the caller knows them, otherwise such rules
match nothing, as in the evaluator); IPv6 task addresses (ENIs are IPv4 here; IPv6 CIDR rules still
compile, for completeness). Traffic addressed to the router namespace itself (hook input) is out of scope.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from taskvpc.netmodel.evaluator import GroupRules
from taskvpc.netmodel.security_groups import Rule, normalize_protocol

Family = Literal["ip", "ip6"]
Verdict = Literal["accept", "drop", "return"]

PROTO_NUMBERS: dict[str, int] = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58}
ICMP_L4PROTOS = frozenset({1, 58})
PRIORITY_RAW = -300
PRIORITY_FILTER = 0

REJECT_LOG_GROUP = 7  # the NFLOG group of the router namespace (groups are per network namespace)
REJECT_LOG_RATE = 100  # logged drops per second per ENI and direction (burst twice that)
REJECT_LOG_SNAPLEN = 64  # IP and TCP/UDP/ICMP headers are all the collector reads

EGRESS_MAP = "egress_ports"
INGRESS_MAP = "ingress_ports"
EGRESS_DISPATCH = "egress_dispatch"
PORT_COMBO = "port_combo"  # ifname : mark, a port's combination number
COMBO_OUT = "combo_out"  # mark : verdict, a combination number's egress chain
COMBO_IN = "combo_in"
INGRESS_DISPATCH = "ingress_dispatch"
TASK_PORTS = "task_ports"
ENI_ADDRS = "eni_addrs"
SELF_PORTS = "self_ports"


# --------------------------------------------------------------------------------------------------
# Input


@dataclass(frozen=True)
class EniPort:
    """A task ENI as the router sees it: its router-side port (``netplan.eni_port``), IPv4 address, MAC."""

    eni_id: str
    port: str
    ip: str
    mac: str
    group_ids: tuple[str, ...]
    log_rejects: bool = False  # a flow log wants this ENI's REJECTs: its group drops are logged


@dataclass(frozen=True)
class RemotePeer:
    """A task ENI of the VPC on another host, reached through the overlay port: its address counts in
    the sets of its groups (a group reference matches members on every host)."""

    ip: str
    group_ids: tuple[str, ...]


@dataclass(frozen=True)
class FirewallModel:
    table: str
    enis: tuple[EniPort, ...]
    groups: Mapping[str, GroupRules]
    host_port: str
    host_ip: str = "169.254.100.1"
    prefix_lists: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # The router's VXLAN device (agent/overlay.py) and the VPC's members behind it. A packet leaving
    # a task for the overlay is judged by the sender's egress rules here and by the receiver's ingress
    # rules on its own host; one arriving from the overlay meets the destination's ingress rules.
    overlay_port: str | None = None
    remote: tuple[RemotePeer, ...] = ()
    # Numbers already given to combinations (``Target.combo`` -> number; :func:`combo_numbers`): a table
    # updated in place keeps them. Combinations not named here get their preferred number.
    combo_numbers: Mapping[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# The IR


@dataclass(frozen=True)
class Peer:
    """``<family> saddr|daddr`` in ``cidr`` or in the named set ``set_name`` (exactly one is set)."""

    side: Literal["saddr", "daddr"]
    family: Family
    cidr: str | None = None
    set_name: str | None = None


@dataclass(frozen=True)
class IcmpMatch:
    """ICMP type (and code when not None) of protocol ``proto`` (1 or 58)."""

    proto: int
    type: int
    code: int | None


@dataclass(frozen=True)
class RejectLog:
    """``limit rate <rate>/second burst <2 rate> packets log prefix "<prefix>" group <group> snaplen``: the
    packet goes on to the next rule either way (a log statement is no verdict)."""

    prefix: str
    group: int = REJECT_LOG_GROUP
    rate: int = REJECT_LOG_RATE
    snaplen: int = REJECT_LOG_SNAPLEN


@dataclass(frozen=True)
class NftRule:
    """One nftables rule: every non-None match must hold, then ``verdict`` (or the vmap's) applies.

    ``not_l4protos``: the packet's layer-4 protocol is none of these.
    ``source_binding``: ``iifname . ip saddr . ether saddr`` is an element of that set.
    ``if_pair_set``: ``iifname . oifname`` is an element of that set.
    ``mark_from``: (``"iifname"`` or ``"oifname"``, data map name): ``meta mark set <key> map @<map>``; a
    key not in the map ends the rule there (as in nft: the rest of it does not apply).
    ``vmap``: (``"iifname"``, ``"oifname"`` or ``"meta mark"``, map name): jump to the chain the map names
    for the key, if any.
    At most one of ``vmap``, ``jump``, ``goto`` and ``verdict`` is set; ``log`` (with none of them) only
    logs, and the packet goes on.
    """

    iif: str | None = None
    oif: str | None = None
    iif_set: str | None = None
    oif_set: str | None = None
    ct_states: frozenset[str] | None = None
    peer: Peer | None = None
    l4proto: int | None = None
    dport: tuple[int, int] | None = None
    icmp: IcmpMatch | None = None
    not_l4protos: frozenset[int] | None = None
    source_binding: str | None = None
    if_pair_set: str | None = None
    mark_from: tuple[Literal["iifname", "oifname"], str] | None = None
    vmap: tuple[Literal["iifname", "oifname", "meta mark"], str] | None = None
    jump: str | None = None  # ``jump chain``: run it, come back here if it ends or returns
    goto: str | None = None  # ``goto chain``: run it in place of the rest of this chain
    verdict: Verdict | None = None
    log: RejectLog | None = None


@dataclass(frozen=True)
class Hook:
    hook: Literal["prerouting", "forward"]
    priority: int
    policy: Literal["accept", "drop"]


@dataclass(frozen=True)
class Chain:
    name: str
    rules: tuple[NftRule, ...]
    hook: Hook | None = None


@dataclass(frozen=True)
class NamedSet:
    """``type`` is an nft type expression, e.g. ``ipv4_addr`` or ``ifname . ipv4_addr . ether_addr``;
    elements are tuples of the key's components."""

    name: str
    type: str
    elements: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class VerdictMap:
    """``<key_type> : verdict`` map; elements ``(key, chain)`` mean ``key : jump chain`` (a port, quoted,
    for ``ifname``; a number for ``mark``)."""

    name: str
    elements: tuple[tuple[str, str], ...]
    key_type: Literal["ifname", "mark"] = "ifname"


@dataclass(frozen=True)
class MarkMap:
    """``ifname : mark`` data map; elements ``(port, number)``."""

    name: str
    elements: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Ruleset:
    table: str
    sets: tuple[NamedSet, ...]
    maps: tuple[VerdictMap, ...]
    chains: tuple[Chain, ...]
    mark_maps: tuple[MarkMap, ...] = ()

    def chain(self, name: str) -> Chain:
        for c in self.chains:
            if c.name == name:
                return c
        raise KeyError(name)


# --------------------------------------------------------------------------------------------------
# Names

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
_PLAIN_ID = re.compile(r"[A-Za-z0-9]+(-[A-Za-z0-9]+)*")


def ident(text: str) -> str:
    """An nft identifier from an AWS id (``sg-0ab`` -> ``sg_0ab``)."""
    return _UNSAFE.sub("_", text)


def group_set(group_id: str) -> str:
    return "g_" + ident(group_id)


def in_chain(eni_id: str) -> str:
    return "in_" + ident(eni_id)


def out_chain(eni_id: str) -> str:
    return "out_" + ident(eni_id)


def group_in_chain(group_id: str) -> str:
    return "gin_" + ident(group_id)


def group_out_chain(group_id: str) -> str:
    return "gout_" + ident(group_id)


# A combination's chains are named by its groups' idents joined by ``__`` when every id is plain
# (``sg-0ab``: no ``__`` inside its ident, so the join is unambiguous) and the name stays short, else by a
# hash, under other prefixes (``cxout_``/``cxin_``) so the two kinds never meet.


def _combo_name(group_ids: Sequence[str]) -> tuple[str, str]:
    """(the kind's prefix part, the name): ``""`` and the joined idents, or ``"x"`` and a hash."""
    groups = list(dict.fromkeys(group_ids))
    if all(_PLAIN_ID.fullmatch(g) for g in groups) and sum(len(g) + 2 for g in groups) <= 200:
        return "", "__".join(ident(g) for g in groups)
    return "x", hashlib.blake2b("\n".join(groups).encode(), digest_size=10).hexdigest()


def combo_out_chain(group_ids: Sequence[str]) -> str:
    kind, name = _combo_name(group_ids)
    return f"c{kind}out_{name}"


def combo_in_chain(group_ids: Sequence[str]) -> str:
    kind, name = _combo_name(group_ids)
    return f"c{kind}in_{name}"


def combo_key(group_ids: Sequence[str]) -> str:
    """The combination's name as ``Target.combo`` (the key of its number)."""
    kind, name = _combo_name(group_ids)
    return f"c{kind}_{name}"


@dataclass(frozen=True)
class Target:
    """Where an ENI's packets are judged: its (egress, ingress) chains, and the combination they belong
    to (its name, the key of its number), or None when its port is in the verdict maps (a logging ENI's
    own)."""

    out_chain: str
    in_chain: str
    combo: str | None


@functools.lru_cache(maxsize=1 << 16)
def eni_targets(eni: EniPort) -> Target:
    """The chains judging the ENI: its combination's, or its own when its REJECTs are logged (the log
    prefix names the ENI). Cached: whole-model diffs ask it for every ENI."""
    if eni.log_rejects:
        return Target(out_chain(eni.eni_id), in_chain(eni.eni_id), None)
    groups = eni.group_ids
    return Target(combo_out_chain(groups), combo_in_chain(groups), combo_key(groups))


_NUMBERS = 1 << 31  # marks 1 .. 2**31-1; 0 (an unmarked packet) is never a combination's


def preferred_number(combo: str) -> int:
    """A combination's number unless another holds it: from its name, so tables rendered from models
    (``compile_ir``, ``nft_update``) agree without passing numbers around (a clash is rare: 1,000
    combinations clash with probability 2.3e-4, and is resolved by :func:`free_number`)."""
    digest = int.from_bytes(hashlib.blake2b(combo.encode(), digest_size=4).digest(), "big")
    return digest % (_NUMBERS - 1) + 1


def free_number(combo: str, taken: Container[int]) -> int:
    """The combination's preferred number, or the next one no other combination holds."""
    number = preferred_number(combo)
    while number in taken:
        number = number % (_NUMBERS - 1) + 1
    return number


def combo_numbers(targets: Iterable[Target], given: Mapping[str, int]) -> dict[str, int]:
    """The number of each combination among ``targets``: ``given``'s if it names one, else a free one
    (the others in name order, so the result does not depend on the order of ``targets``)."""
    combos = sorted({t.combo for t in targets if t.combo is not None})
    numbers = {c: given[c] for c in combos if c in given}
    taken = set(numbers.values())
    for combo in combos:
        if combo not in numbers:
            numbers[combo] = number = free_number(combo, taken)
            taken.add(number)
    return numbers


def model_numbers(model: FirewallModel) -> dict[str, int]:
    return combo_numbers((eni_targets(e) for e in model.enis), model.combo_numbers)


def dispatch_chains() -> tuple[Chain, Chain]:
    """(``egress_dispatch``, ``ingress_dispatch``): the port's combination number, then its chains."""
    return (
        Chain(EGRESS_DISPATCH, (NftRule(mark_from=("iifname", PORT_COMBO), vmap=("meta mark", COMBO_OUT)),)),
        Chain(INGRESS_DISPATCH, (NftRule(mark_from=("oifname", PORT_COMBO), vmap=("meta mark", COMBO_IN)),)),
    )


TO_TASK = "to_task"


# --------------------------------------------------------------------------------------------------
# Compiling


@functools.lru_cache(maxsize=1 << 16)
def _ip_key(ip: str) -> int:
    """Sort key of an address; cached, as the same ENI addresses are sorted on every update."""
    return int(ipaddress.ip_address(ip))


def group_members(model: FirewallModel) -> dict[str, tuple[str, ...]]:
    """Group id -> sorted IPs of the ENIs carrying it (every group carried or referenced, maybe empty)."""
    members: dict[str, set[str]] = {gid: set() for gid in referenced_groups(model)}
    for eni in model.enis:
        for gid in eni.group_ids:
            members.setdefault(gid, set()).add(eni.ip)
    for peer in model.remote:  # only into sets that exist for local reasons: others are never read
        for gid in peer.group_ids:
            if gid in members:
                members[gid].add(peer.ip)
    return {gid: tuple(sorted(ips, key=_ip_key)) for gid, ips in sorted(members.items())}


def referenced_groups(model: FirewallModel, enis: Sequence[EniPort] | None = None) -> set[str]:
    """Groups named as peers by the rules of the groups ``enis`` (default: all ENIs) carry."""
    return groups_named_by(
        model, {gid for eni in (model.enis if enis is None else enis) for gid in eni.group_ids}
    )


def groups_named_by(model: FirewallModel, group_ids: Iterable[str]) -> set[str]:
    """Groups named as peers by the rules of ``group_ids``."""
    out: set[str] = set()
    for gid in group_ids:
        group = model.groups.get(gid)
        if group is not None:
            out.update(r.group_id for r in (*group.ingress, *group.egress) if r.group_id is not None)
    return out


def _peers(rule: Rule, side: Literal["saddr", "daddr"], model: FirewallModel) -> list[Peer]:
    if rule.cidr_ipv4 is not None:
        return [Peer(side, "ip", cidr=rule.cidr_ipv4)]
    if rule.cidr_ipv6 is not None:
        return [Peer(side, "ip6", cidr=rule.cidr_ipv6)]
    if rule.group_id is not None:
        return [Peer(side, "ip", set_name=group_set(rule.group_id))]
    assert rule.prefix_list_id is not None
    cidrs = model.prefix_lists.get(rule.prefix_list_id, ())
    return [Peer(side, "ip6" if ":" in c else "ip", cidr=str(ipaddress.ip_network(c))) for c in cidrs]


def compile_rule(rule: Rule, model: FirewallModel, verdict: Verdict) -> list[NftRule]:
    """The nft rules for one SG rule (one per peer CIDR; none for an empty prefix list)."""
    side: Literal["saddr", "daddr"] = "saddr" if rule.direction == "ingress" else "daddr"
    protocol = normalize_protocol(rule.protocol)
    l4proto: int | None = None
    dport: tuple[int, int] | None = None
    icmp: IcmpMatch | None = None
    if protocol != "-1":
        l4proto = PROTO_NUMBERS.get(protocol)
        if l4proto is None:
            l4proto = int(protocol)
        if protocol in ("tcp", "udp"):
            assert rule.from_port is not None and rule.to_port is not None
            if (rule.from_port, rule.to_port) != (0, 65535):
                dport = (rule.from_port, rule.to_port)
        elif protocol in ("icmp", "icmpv6") and rule.from_port is not None and rule.from_port != -1:
            icmp = IcmpMatch(l4proto, rule.from_port, None if rule.to_port in (None, -1) else rule.to_port)
    return [
        NftRule(peer=p, l4proto=l4proto, dport=dport, icmp=icmp, verdict=verdict)
        for p in _peers(rule, side, model)
    ]


def carried_groups(model: FirewallModel, enis: Sequence[EniPort] | None = None) -> list[str]:
    """The groups ``enis`` (default: all ENIs) carry, sorted: each has its two chains in the table."""
    return sorted({gid for eni in (model.enis if enis is None else enis) for gid in eni.group_ids})


def group_chains(model: FirewallModel, group_id: str) -> tuple[Chain, Chain]:
    """(``gout_<sg>``, ``gin_<sg>``): one group's rules, shared by every ENI carrying it.

    An egress match goes on to the destination's ingress check (``goto to_task``); an ingress match
    accepts. No match ends the chain and returns to the ENI's, which tries its next group.
    """
    group = model.groups.get(group_id)
    out_rules: list[NftRule] = []
    in_rules: list[NftRule] = []
    if group is not None:
        for rule in group.egress:
            out_rules.extend(
                replace(r, verdict=None, goto=TO_TASK) for r in compile_rule(rule, model, "accept")
            )
        for rule in group.ingress:
            in_rules.extend(compile_rule(rule, model, "accept"))
    return (
        Chain(group_out_chain(group_id), tuple(out_rules)),
        Chain(group_in_chain(group_id), tuple(in_rules)),
    )


def eni_chains(model: FirewallModel, eni: EniPort) -> tuple[Chain, Chain]:
    """The chains ``eni_targets(eni)`` names: a jump to each of the ENI's groups' chains, then ``drop``.

    They depend only on the ENI's groups (and, for a logging ENI, its id), so a rule change never
    touches them, and every ENI with the same groups and no logging shares them.
    """
    groups = list(dict.fromkeys(eni.group_ids))
    target = eni_targets(eni)
    out_name, in_name = target.out_chain, target.in_chain
    out_rules = [
        *(NftRule(jump=group_out_chain(gid)) for gid in groups),
        *reject_log(eni, "out"),
        NftRule(verdict="drop"),
    ]
    in_rules = [
        *(NftRule(jump=group_in_chain(gid)) for gid in groups),
        *reject_log(eni, "in"),
        NftRule(verdict="drop"),
    ]
    return Chain(out_name, tuple(out_rules)), Chain(in_name, tuple(in_rules))


def target_chains(model: FirewallModel) -> list[Chain]:
    """Every chain the ENIs' ports jump to, each once (combinations shared), in pairs sorted by name."""
    pairs: dict[str, tuple[Chain, Chain]] = {}
    for eni in model.enis:
        if eni_targets(eni).out_chain not in pairs:
            pairs[eni_targets(eni).out_chain] = eni_chains(model, eni)
    return [c for key in sorted(pairs) for c in pairs[key]]


def reject_log(eni: EniPort, direction: Literal["in", "out"]) -> tuple[NftRule, ...]:
    """The log rule before an ENI chain's final drop, when the ENI's REJECTs are wanted."""
    return (NftRule(log=RejectLog(f"{eni.eni_id} {direction}")),) if eni.log_rejects else ()


def to_task_chain(overlay_port: str | None = None) -> Chain:
    """Where a flow goes once its source may send it: the destination ENI's ingress check.

    A destination port that is not registered (a task adopted but not yet registered, an orphan being
    removed) is dropped: the router's only other ports are the host's (new flows there are dropped
    before) and ``lo``, so an unregistered port is never reachable without rules.
    """
    overlay = (NftRule(oif=overlay_port, verdict="accept"),) if overlay_port else ()  # ingress: there
    return Chain(
        TO_TASK,
        (
            *overlay,
            NftRule(vmap=("oifname", INGRESS_MAP)),
            NftRule(oif_set=TASK_PORTS, jump=INGRESS_DISPATCH),
            NftRule(verdict="drop"),
        ),
    )


def base_chains(model: FirewallModel) -> tuple[Chain, Chain]:
    antispoof = Chain(
        "antispoof",
        (
            NftRule(source_binding=ENI_ADDRS, verdict="accept"),
            NftRule(iif_set=TASK_PORTS, verdict="drop"),
        ),
        Hook("prerouting", PRIORITY_RAW, "accept"),
    )
    forward = Chain(
        "forward",
        (
            NftRule(ct_states=frozenset({"established", "related"}), verdict="accept"),
            NftRule(ct_states=frozenset({"invalid"}), not_l4protos=ICMP_L4PROTOS, verdict="drop"),
            NftRule(oif=model.host_port, verdict="drop"),
            *_overlay_guards(model),
            NftRule(if_pair_set=SELF_PORTS, verdict="accept"),  # traffic to self (see the module doc)
            NftRule(vmap=("iifname", EGRESS_MAP)),
            NftRule(iif_set=TASK_PORTS, jump=EGRESS_DISPATCH),
            NftRule(iif=model.host_port, goto=TO_TASK),
            *((NftRule(iif=model.overlay_port, goto=TO_TASK),) if model.overlay_port else ()),
        ),
        Hook("forward", PRIORITY_FILTER, "drop"),
    )
    return antispoof, forward


def _overlay_guards(model: FirewallModel) -> tuple[NftRule, ...]:
    """The host reaches only its own tasks (a remote task would answer its own host), and nothing
    from the overlay goes back into it (no relaying between other hosts)."""
    if not model.overlay_port:
        return ()
    return (
        NftRule(iif=model.host_port, oif=model.overlay_port, verdict="drop"),
        NftRule(iif=model.overlay_port, oif=model.overlay_port, verdict="drop"),
    )


def _check(model: FirewallModel) -> None:
    seen_ports: set[str] = {model.host_port, *((model.overlay_port,) if model.overlay_port else ())}
    seen_ips: set[str] = {model.host_ip}
    seen_ids: set[str] = set()
    for eni in model.enis:
        if eni.port in seen_ports or eni.ip in seen_ips or ident(eni.eni_id) in seen_ids:
            raise ValueError(f"ENI {eni.eni_id}: port, address or id used twice")
        ipaddress.IPv4Address(eni.ip)
        seen_ports.add(eni.port)
        seen_ips.add(eni.ip)
        seen_ids.add(ident(eni.eni_id))


def compile_ir(model: FirewallModel) -> Ruleset:
    _check(model)
    sets = [
        NamedSet(group_set(gid), "ipv4_addr", tuple((ip,) for ip in ips))
        for gid, ips in group_members(model).items()
    ]
    sets.append(NamedSet(TASK_PORTS, "ifname", tuple((e.port,) for e in model.enis)))
    sets.append(
        NamedSet(
            ENI_ADDRS,
            "ifname . ipv4_addr . ether_addr",
            tuple((e.port, e.ip, e.mac.lower()) for e in model.enis),
        )
    )
    sets.append(NamedSet(SELF_PORTS, "ifname . ifname", tuple((e.port, e.port) for e in model.enis)))
    numbers = model_numbers(model)
    combos = sorted(numbers.items(), key=lambda item: item[1])
    chain_of = {t.combo: t for t in (eni_targets(e) for e in model.enis) if t.combo is not None}
    logged = [e for e in model.enis if eni_targets(e).combo is None]
    maps = (
        VerdictMap(EGRESS_MAP, tuple((e.port, eni_targets(e).out_chain) for e in logged)),
        VerdictMap(INGRESS_MAP, tuple((e.port, eni_targets(e).in_chain) for e in logged)),
        VerdictMap(COMBO_OUT, tuple((str(n), chain_of[c].out_chain) for c, n in combos), "mark"),
        VerdictMap(COMBO_IN, tuple((str(n), chain_of[c].in_chain) for c, n in combos), "mark"),
    )
    ports = tuple((e.port, numbers[combo]) for e in model.enis if (combo := eni_targets(e).combo) is not None)
    chains: list[Chain] = []
    for gid in carried_groups(model):
        chains.extend(group_chains(model, gid))
    chains.extend(target_chains(model))
    chains.extend(dispatch_chains())
    chains.append(to_task_chain(model.overlay_port))
    chains.extend(base_chains(model))
    return Ruleset(model.table, tuple(sets), maps, tuple(chains), (MarkMap(PORT_COMBO, ports),))


# --------------------------------------------------------------------------------------------------
# Interpreting


@dataclass(frozen=True)
class Packet:
    """One IPv4/IPv6 packet at the router. ``protocol``: an IP protocol number."""

    iif: str
    oif: str
    saddr: str
    daddr: str
    ether_saddr: str
    protocol: int
    dport: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    ct_state: Literal["new", "established", "related", "invalid"] = "new"


def _family(addr: str) -> Family:
    return "ip6" if ":" in addr else "ip"


def _matches(rule: NftRule, pkt: Packet, rs: Ruleset, sets: Mapping[str, set[tuple[str, ...]]]) -> bool:
    if rule.iif is not None and pkt.iif != rule.iif:
        return False
    if rule.oif is not None and pkt.oif != rule.oif:
        return False
    if rule.iif_set is not None and (pkt.iif,) not in sets[rule.iif_set]:
        return False
    if rule.oif_set is not None and (pkt.oif,) not in sets[rule.oif_set]:
        return False
    if rule.ct_states is not None and pkt.ct_state not in rule.ct_states:
        return False
    if rule.peer is not None:
        p = rule.peer
        if _family(pkt.saddr) != p.family:
            return False
        addr = pkt.saddr if p.side == "saddr" else pkt.daddr
        if p.set_name is not None:
            if (str(ipaddress.ip_address(addr)),) not in sets[p.set_name]:
                return False
        elif ipaddress.ip_address(addr) not in ipaddress.ip_network(p.cidr or ""):
            return False
    if rule.l4proto is not None and pkt.protocol != rule.l4proto:
        return False
    if rule.not_l4protos is not None and pkt.protocol in rule.not_l4protos:
        return False
    if rule.dport is not None and (pkt.dport is None or not rule.dport[0] <= pkt.dport <= rule.dport[1]):
        return False
    if rule.icmp is not None:
        if pkt.protocol != rule.icmp.proto or pkt.icmp_type != rule.icmp.type:
            return False
        if rule.icmp.code is not None and pkt.icmp_code != rule.icmp.code:
            return False
    if rule.if_pair_set is not None and (pkt.iif, pkt.oif) not in sets[rule.if_pair_set]:
        return False
    if rule.source_binding is not None:
        if _family(pkt.saddr) != "ip":
            return False
        key = (pkt.iif, str(ipaddress.ip_address(pkt.saddr)), pkt.ether_saddr.lower())
        if key not in sets[rule.source_binding]:
            return False
    return True


@dataclass(frozen=True)
class TraceStep:
    """One step of a packet through the ruleset: rule ``rule`` of ``chain`` matched and did ``verdict``.

    ``verdict`` is ``accept``, ``drop``, ``return``, ``jump <chain>`` or ``goto <chain>``; at the end of a base chain
    ``rule`` is -1 and ``verdict`` is ``policy accept``/``policy drop``; falling off the end of a regular
    chain is ``rule`` = its length and ``verdict`` = ``end``.
    """

    chain: str
    rule: int
    verdict: str

    def __str__(self) -> str:
        where = f"{self.chain}[{self.rule}]" if self.rule >= 0 else self.chain
        return f"{where} {self.verdict}"


@dataclass(frozen=True)
class _Tables:
    sets: Mapping[str, set[tuple[str, ...]]]
    maps: Mapping[str, Mapping[str, str]]
    mark_maps: Mapping[str, Mapping[str, int]]
    mark: list[int]  # the packet's mark, as the rules set it


def _run(chain: Chain, pkt: Packet, rs: Ruleset, t: _Tables, depth: int, trace: list[TraceStep]) -> str:
    """``accept``/``drop`` if a terminal verdict was reached, ``continue`` on return or end of chain."""
    if depth > 16:
        raise RuntimeError("jump depth exceeded")
    for index, rule in enumerate(chain.rules):
        if not _matches(rule, pkt, rs, t.sets):
            continue
        if rule.mark_from is not None:
            found = t.mark_maps[rule.mark_from[1]].get(pkt.iif if rule.mark_from[0] == "iifname" else pkt.oif)
            if found is None:
                continue
            t.mark[0] = found
            if rule.vmap is None:
                trace.append(TraceStep(chain.name, index, "mark set"))
                continue
        if rule.vmap is not None:
            key, name = rule.vmap
            looked_up = {"iifname": pkt.iif, "oifname": pkt.oif}.get(key, str(t.mark[0]))
            target = t.maps[name].get(looked_up)
            if target is None:
                continue
            trace.append(TraceStep(chain.name, index, f"jump {target}"))
            result = _run(rs.chain(target), pkt, rs, t, depth + 1, trace)
            if result != "continue":
                return result
            continue
        if rule.jump is not None:
            trace.append(TraceStep(chain.name, index, f"jump {rule.jump}"))
            result = _run(rs.chain(rule.jump), pkt, rs, t, depth + 1, trace)
            if result != "continue":
                return result
            continue
        if rule.goto is not None:  # the target's end is this chain's end
            trace.append(TraceStep(chain.name, index, f"goto {rule.goto}"))
            return _run(rs.chain(rule.goto), pkt, rs, t, depth + 1, trace)
        if rule.verdict is not None:
            trace.append(TraceStep(chain.name, index, rule.verdict))
            return "continue" if rule.verdict == "return" else rule.verdict
    if chain.hook is None:
        trace.append(TraceStep(chain.name, len(chain.rules), "end"))
    return "continue"


def trace_ir(ruleset: Ruleset, packet: Packet) -> list[TraceStep]:
    """Every rule ``packet`` (routed from ``iif`` to ``oif``) takes an action at, in order, as nft would.

    The last step is the verdict: ``drop`` (or ``policy drop``) where the packet died, otherwise the last
    base chain's ``accept``/``policy accept``.
    """
    tables = _Tables(
        {s.name: set(s.elements) for s in ruleset.sets},
        {m.name: dict(m.elements) for m in ruleset.maps},
        {m.name: dict(m.elements) for m in ruleset.mark_maps},
        [0],
    )
    trace: list[TraceStep] = []
    for hook in ("prerouting", "forward"):
        bases = sorted((c for c in ruleset.chains if c.hook and c.hook.hook == hook), key=_priority)
        for base in bases:
            assert base.hook is not None
            result = _run(base, packet, ruleset, tables, 0, trace)
            if result == "continue":
                result = base.hook.policy
                trace.append(TraceStep(base.name, -1, f"policy {result}"))
            if result == "drop":
                return trace
    return trace


def evaluate_ir(ruleset: Ruleset, packet: Packet) -> bool:
    """Does ``packet`` (routed from ``iif`` to ``oif``) pass the base chains of ``ruleset``?"""
    trace = trace_ir(ruleset, packet)
    return not trace or not trace[-1].verdict.endswith("drop")


def _priority(chain: Chain) -> int:
    return chain.hook.priority if chain.hook else 0
