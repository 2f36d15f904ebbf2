"""NLB listeners -> one nftables table of DNAT maps (pure text, one atomic ``nft -f`` batch).

Per listener a new flow to the NLB address picks a target with ``numgen random mod <total weight>`` over
a map of weight ranges (kube-proxy's nftables backend picks the same way); conntrack keeps established
flows on their target, so dropping a target from the map drains it (notes §1, measured). With
``preserve_client_ip.enabled = false`` replies must come back through the NLB, so flows it DNATed are
SNATed to the NLB's own address; a listener that preserves the client's address is DNAT only (the agent
loads such listeners in the VPC's router, whose conntrack every reply crosses: ``agent/nlb.py``). ``TCP_UDP`` gives one rule per protocol. TLS listeners terminate TLS and
cannot be a DNAT: :func:`compile_table` refuses them (the data plane needs a proxy for those).

An NLB with ENIs in several subnets receives flows on each of them; after the DNAT the main table would
route every flow (and its replies) out of the first ENI with another ENI's address as source, which the
router's strict reverse-path check drops. ``marks`` (interface, mark) tag each new flow's conntrack entry
with the mark of the interface it arrived on and copy it to every packet of the flow, both directions,
before routing: an ``ip rule fwmark`` per ENI (``drivers/lbnet.py``) sends it out by the ENI it came in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from taskvpc.netmodel import elb_health


@dataclass(frozen=True, slots=True)
class Backend:
    address: str
    port: int
    weight: int = 1


@dataclass(frozen=True, slots=True)
class NlbListener:
    port: int
    protocol: str  # TCP | UDP | TCP_UDP
    targets: tuple[Backend, ...]
    preserve_client_ip: bool = False


def pick_targets(targets: Sequence[tuple[str, int, str]]) -> tuple[Backend, ...]:
    """The targets an NLB sends new flows to, from (address, port, health state): the healthy ones, or all
    registered non-draining ones when none is healthy (NLB fails open, also on an all-initial group)."""
    live = [(a, p, s) for a, p, s in targets if s not in (elb_health.DRAINING, elb_health.UNUSED)]
    if any(s == elb_health.HEALTHY for _, _, s in live):
        live = [t for t in live if t[2] == elb_health.HEALTHY]
    return tuple(Backend(a, p) for a, p, _ in live)


def _map(targets: Sequence[Backend]) -> tuple[int, str]:
    entries, low = [], 0
    for target in targets:
        high = low + target.weight
        key = str(low) if target.weight == 1 else f"{low}-{high - 1}"
        entries.append(f"{key} : {target.address} . {target.port}")
        low = high
    return low, ", ".join(entries)


def _listener_rules(
    lines: list[str],
    snat: list[str],
    listener: NlbListener,
    proto: str,
    address: str,
    targets: Sequence[Backend],
) -> None:
    match = f"ip daddr {address} {proto} dport {listener.port}"
    if not targets:
        refuse = "reject with tcp reset" if proto == "tcp" else "drop"
        lines.append(f"    {match} {refuse}")
        return
    total, entries = _map(targets)
    lines.append(f"    {match} dnat ip to numgen random mod {total} map {{ {entries} }}")
    if not listener.preserve_client_ip:
        # nft needs the layer-4 protocol before it can read a port out of the conntrack tuple.
        snat.append(
            f"    meta l4proto {proto} ct original ip daddr {address} ct original proto-dst {listener.port} "
            f"ct status dnat snat ip to {address}"
        )


def table_name(lb_id: str) -> str:
    return f"tvnlb_{lb_id}"


def _mark_chain(marks: Sequence[tuple[str, int]]) -> list[str]:
    if not marks:
        return []
    entries = ", ".join(f'"{dev}" : {mark}' for dev, mark in marks)
    return [
        "  chain ingress_mark {",
        "    type filter hook prerouting priority mangle; policy accept;",
        f"    ct state new ct mark set iifname map {{ {entries} }}",
        "    meta mark set ct mark",
        "  }",
    ]


def compile_table(
    lb_id: str,
    lb_address: str | Sequence[str],
    listeners: Sequence[NlbListener],
    marks: Sequence[tuple[str, int]] = (),
) -> str:
    """The NLB's table; ``lb_address`` is its address, or one per ENI (each gets the same listeners);
    ``marks`` the (interface, fwmark) a flow arriving there carries (none: one ENI, nothing to steer)."""
    addresses = (lb_address,) if isinstance(lb_address, str) else tuple(lb_address)
    lines = [
        f"table ip {table_name(lb_id)} {{",
        *_mark_chain(marks),
        "  chain prerouting {",
        "    type nat hook prerouting priority dstnat; policy accept;",
    ]
    snat: list[str] = []
    for listener in sorted(listeners, key=lambda li: (li.port, li.protocol)):
        if listener.protocol == "TLS":
            raise ValueError("a TLS listener terminates TLS: it cannot be compiled to a DNAT")
        protocols = ("tcp", "udp") if listener.protocol == "TCP_UDP" else (listener.protocol.lower(),)
        targets = [t for t in listener.targets if t.weight > 0]
        for proto in protocols:
            for address in addresses:
                _listener_rules(lines, snat, listener, proto, address, targets)
    lines.append("  }")
    lines.extend(
        [
            "  chain postrouting {",
            "    type nat hook postrouting priority srcnat; policy accept;",
            *snat,
            "  }",
            "}",
        ]
    )
    return "\n".join(lines) + "\n"


def delete_batch(lb_id: str) -> str:
    """One batch deleting the NLB's table, whether or not it exists (create-if-missing, delete)."""
    name = table_name(lb_id)
    return f"table ip {name}\ndelete table ip {name}\n"


def replace_batch(
    lb_id: str,
    lb_address: str | Sequence[str],
    listeners: Sequence[NlbListener],
    marks: Sequence[tuple[str, int]] = (),
) -> str:
    """One atomic batch replacing the NLB's table (create-if-missing, delete, add): flows keep their
    conntrack entries, so a target left out stops getting NEW flows only."""
    return delete_batch(lb_id) + compile_table(lb_id, lb_address, listeners, marks)
