"""nftables text (for ``nft -f -``, nftables 1.0.6) from the firewall IR of :mod:`taskvpc.netmodel.firewall_ir`.

* :func:`render`: the whole table, replaced atomically: ``add table`` + ``delete table`` + the table block in
  one batch, so the old table disappears and the new one appears in a single transaction (the ``add`` makes
  the ``delete`` safe when the table does not exist yet).
* :func:`render_member_update`: add/remove group member addresses (a task starting or stopping, an ENI's
  groups changing). Removals are written ``add element`` + ``delete element`` so a removal of an absent
  address is not an error.
* :func:`render_group_chains`: flush and refill one group's two chains (a rule authorized, revoked or
  modified): the cost follows the group's rules, not the number of ENIs carrying it. The sets its rules
  reference are created if missing and filled with the model's current members.
* :func:`render_eni_chains`: flush and refill the two chains one ENI's port jumps to (its combination's
  jumps to its groups' chains, ``firewall_ir.eni_targets``) and (re)register it in the maps and sets (the
  task starting, its groups modified); by default its groups' chains too.
* :func:`render_eni_delete`: remove one ENI (task stopped): map/set elements, then its own chains if it
  has any (a combination's chains are shared: :func:`render_chains_delete` when the last user goes);
  :func:`render_group_delete`: a group no ENI carries any more.

Every batch is one nft transaction: it applies entirely or not at all.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from taskvpc.netmodel.firewall_ir import (
    COMBO_IN,
    COMBO_OUT,
    EGRESS_MAP,
    ENI_ADDRS,
    INGRESS_MAP,
    PORT_COMBO,
    SELF_PORTS,
    TASK_PORTS,
    Chain,
    EniPort,
    FirewallModel,
    MarkMap,
    NamedSet,
    NftRule,
    Ruleset,
    Target,
    TraceStep,
    VerdictMap,
    eni_chains,
    eni_targets,
    free_number,
    group_chains,
    group_in_chain,
    group_out_chain,
    group_set,
    groups_named_by,
    model_numbers,
)

_PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp"}
_PRIORITY_NAMES = {-300: "raw", 0: "filter"}


def _q(name: str) -> str:
    if '"' in name or "\\" in name:
        raise ValueError(f"bad interface name {name!r}")
    return f'"{name}"'


def _element(parts: tuple[str, ...], type_: str) -> str:
    kinds = type_.split(" . ")
    return " . ".join(_q(p) if kind == "ifname" else p for kind, p in zip(kinds, parts, strict=True))


def rule_text(rule: NftRule) -> str:
    """The statement text of one rule (what follows ``add rule inet T chain``)."""
    out: list[str] = []
    if rule.iif is not None:
        out.append(f"iifname {_q(rule.iif)}")
    if rule.oif is not None:
        out.append(f"oifname {_q(rule.oif)}")
    if rule.iif_set is not None:
        out.append(f"iifname @{rule.iif_set}")
    if rule.oif_set is not None:
        out.append(f"oifname @{rule.oif_set}")
    if rule.ct_states is not None:
        out.append("ct state " + ",".join(sorted(rule.ct_states)))
    if rule.not_l4protos is not None:
        names = ", ".join(_PROTO_NAMES.get(p, str(p)) for p in sorted(rule.not_l4protos))
        out.append(f"meta l4proto != {{ {names} }}")
    if rule.peer is not None:
        p = rule.peer
        if p.set_name is not None:
            out.append(f"{p.family} {p.side} @{p.set_name}")
        elif ipaddress.ip_network(p.cidr or "").prefixlen == 0:
            out.append("meta nfproto ipv4" if p.family == "ip" else "meta nfproto ipv6")
        else:
            out.append(f"{p.family} {p.side} {p.cidr}")
    if rule.icmp is not None:
        icmp = rule.icmp
        natural = rule.peer is None or (icmp.proto == 1) == (rule.peer.family == "ip")
        if natural:
            name = "icmp" if icmp.proto == 1 else "icmpv6"
            out.append(f"{name} type {icmp.type}")
            if icmp.code is not None:
                out.append(f"{name} code {icmp.code}")
        else:  # ICMP of the other IP family: match the transport header's first bytes
            out.append(f"meta l4proto {icmp.proto} @th,0,8 {icmp.type}")
            if icmp.code is not None:
                out.append(f"@th,8,8 {icmp.code}")
    elif rule.dport is not None:
        assert rule.l4proto in (6, 17)
        lo, hi = rule.dport
        out.append(f"{_PROTO_NAMES[rule.l4proto]} dport {lo if lo == hi else f'{lo}-{hi}'}")
    elif rule.l4proto is not None:
        out.append(f"meta l4proto {_PROTO_NAMES.get(rule.l4proto, str(rule.l4proto))}")
    if rule.source_binding is not None:
        out.append(f"iifname . ip saddr . ether saddr @{rule.source_binding}")
    if rule.if_pair_set is not None:
        out.append(f"iifname . oifname @{rule.if_pair_set}")
    if rule.log is not None:
        log = rule.log
        if '"' in log.prefix or "\\" in log.prefix:
            raise ValueError(f"bad log prefix {log.prefix!r}")
        out.append(f"limit rate {log.rate}/second burst {2 * log.rate} packets")
        out.append(f'log prefix "{log.prefix}" group {log.group} snaplen {log.snaplen}')
    if rule.mark_from is not None:
        out.append(f"meta mark set {rule.mark_from[0]} map @{rule.mark_from[1]}")
    if rule.vmap is not None:
        out.append(f"{rule.vmap[0]} vmap @{rule.vmap[1]}")
    if rule.jump is not None:
        out.append(f"jump {rule.jump}")
    if rule.goto is not None:
        out.append(f"goto {rule.goto}")
    if rule.verdict is not None:
        out.append(rule.verdict)
    return " ".join(out)


def trace_text(ruleset: Ruleset, trace: Sequence[TraceStep]) -> list[str]:
    """A trace of :func:`~taskvpc.netmodel.firewall_ir.trace_ir` as the rules read in ``nft list``:
    ``chain: <rule>`` per step, ``-> jump <chain>`` after a verdict map, ``chain: policy drop`` at the end
    of a base chain."""
    lines = []
    for step in trace:
        chain = ruleset.chain(step.chain)
        if not 0 <= step.rule < len(chain.rules):
            lines.append(f"{step.chain}: {step.verdict}")
            continue
        rule = chain.rules[step.rule]
        text = rule_text(rule)
        lines.append(f"{step.chain}: {text} -> {step.verdict}" if rule.vmap else f"{step.chain}: {text}")
    return lines


def _set_block(s: NamedSet) -> list[str]:
    lines = [f"\tset {s.name} {{", f"\t\ttype {s.type}"]
    if s.elements:
        lines.append("\t\telements = { " + ", ".join(_element(e, s.type) for e in s.elements) + " }")
    lines.append("\t}")
    return lines


def _map_block(m: VerdictMap) -> list[str]:
    lines = [f"\tmap {m.name} {{", f"\t\ttype {m.key_type} : verdict"]
    if m.elements:
        quote = _q if m.key_type == "ifname" else str
        items = ", ".join(f"{quote(key)} : jump {chain}" for key, chain in m.elements)
        lines.append(f"\t\telements = {{ {items} }}")
    lines.append("\t}")
    return lines


def _mark_map_block(m: MarkMap) -> list[str]:
    lines = [f"\tmap {m.name} {{", "\t\ttype ifname : mark"]
    if m.elements:
        items = ", ".join(f"{_q(port)} : {number}" for port, number in m.elements)
        lines.append(f"\t\telements = {{ {items} }}")
    lines.append("\t}")
    return lines


def _chain_block(c: Chain) -> list[str]:
    lines = [f"\tchain {c.name} {{"]
    if c.hook is not None:
        prio = _PRIORITY_NAMES.get(c.hook.priority, str(c.hook.priority))
        lines.append(f"\t\ttype filter hook {c.hook.hook} priority {prio}; policy {c.hook.policy};")
    lines.extend("\t\t" + rule_text(r) for r in c.rules)
    lines.append("\t}")
    return lines


def render(ruleset: Ruleset) -> str:
    """The whole table, atomically replacing whatever table of that name exists."""
    t = ruleset.table
    lines = [f"add table inet {t}", f"delete table inet {t}", f"table inet {t} {{"]
    regular = [c for c in ruleset.chains if c.hook is None]
    base = [c for c in ruleset.chains if c.hook is not None]
    for c in regular:
        lines.extend(_chain_block(c))
    for s in ruleset.sets:
        lines.extend(_set_block(s))
    for m in ruleset.maps:
        lines.extend(_map_block(m))
    for mm in ruleset.mark_maps:
        lines.extend(_mark_map_block(mm))
    for c in base:
        lines.extend(_chain_block(c))
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_member_update(table: str, group_id: str, add_ips: list[str], remove_ips: list[str]) -> str:
    """Add and remove member addresses of one group's set (created if missing)."""
    add = sorted({str(ipaddress.IPv4Address(ip)) for ip in add_ips}, key=_ip_key)
    remove = sorted({str(ipaddress.IPv4Address(ip)) for ip in remove_ips}, key=_ip_key)
    if set(add) & set(remove):
        raise ValueError(f"addresses both added and removed: {sorted(set(add) & set(remove))}")
    name = group_set(group_id)
    lines = [f"add set inet {table} {name} {{ type ipv4_addr; }}"]
    if remove:
        elems = ", ".join(remove)
        lines.append(f"add element inet {table} {name} {{ {elems} }}")
        lines.append(f"delete element inet {table} {name} {{ {elems} }}")
    if add:
        lines.append(f"add element inet {table} {name} {{ {', '.join(add)} }}")
    return "\n".join(lines) + "\n"


def _ip_key(ip: str) -> int:
    return int(ipaddress.ip_address(ip))


def _find(model: FirewallModel, eni_id: str) -> EniPort:
    for eni in model.enis:
        if eni.eni_id == eni_id:
            return eni
    raise KeyError(eni_id)


def _port_elements(table: str, eni: EniPort, verb: str, number: int | None) -> list[str]:
    """The ENI's port where the dispatch finds it: its combination's ``number`` in ``port_combo``, or (a
    logging ENI, ``number`` None) the verdict maps, jumping to its own chains (which must exist)."""
    target, port = eni_targets(eni), _q(eni.port)
    if target.combo is not None:
        assert number is not None, eni
        value = f" : {number}" if verb == "add" else ""
        return [f"{verb} element inet {table} {PORT_COMBO} {{ {port}{value} }}"]
    return [
        f"{verb} element inet {table} {EGRESS_MAP} {{ {port} : jump {target.out_chain} }}",
        f"{verb} element inet {table} {INGRESS_MAP} {{ {port} : jump {target.in_chain} }}",
    ]


def _set_elements(table: str, eni: EniPort, verb: str) -> list[str]:
    port = _q(eni.port)
    return [
        f"{verb} element inet {table} {TASK_PORTS} {{ {port} }}",
        f"{verb} element inet {table} {ENI_ADDRS} {{ {port} . {eni.ip} . {eni.mac.lower()} }}",
        f"{verb} element inet {table} {SELF_PORTS} {{ {port} . {port} }}",
    ]


def _registrations(table: str, eni: EniPort, verb: str, number: int | None) -> list[str]:
    return _port_elements(table, eni, verb, number) + _set_elements(table, eni, verb)


def _unport(table: str, eni: EniPort, number: int | None) -> list[str]:
    """Take the ENI's port out of the dispatch (safe if absent: added first, with the number it has)."""
    return _port_elements(table, eni, "add", number) + _port_elements(table, eni, "delete", number)


def _target_add(table: str, target: Target, chains: Sequence[Chain], number: int | None) -> list[str]:
    """Make (or refill) a target: its chains, and a combination's number in the verdict maps."""
    lines = _refill(table, chains)
    if target.combo is not None:
        lines.append(f"add element inet {table} {COMBO_OUT} {{ {number} : jump {target.out_chain} }}")
        lines.append(f"add element inet {table} {COMBO_IN} {{ {number} : jump {target.in_chain} }}")
    return lines


def _target_delete(table: str, target: Target, number: int | None) -> list[str]:
    """Remove a target no port is dispatched to any more: a combination's number leaves the verdict maps
    (safe if absent), then the chains go."""
    lines: list[str] = []
    if target.combo is not None:
        for name, chain in ((COMBO_OUT, target.out_chain), (COMBO_IN, target.in_chain)):
            lines.append(f"add chain inet {table} {chain}")
            lines.append(f"add element inet {table} {name} {{ {number} : jump {chain} }}")
            lines.append(f"delete element inet {table} {name} {{ {number} }}")
    return lines + render_chains_delete(table, (target.out_chain, target.in_chain)).splitlines()


def number_in(model: FirewallModel, target: Target) -> int | None:
    """``target``'s combination number in ``model`` (whether or not an ENI of the model has it)."""
    if target.combo is None:
        return None
    numbers = model_numbers(model)
    if target.combo in numbers:
        return numbers[target.combo]
    return model.combo_numbers.get(target.combo) or free_number(target.combo, set(numbers.values()))


def _referenced_sets(model: FirewallModel, group_ids: Sequence[str]) -> list[str]:
    """Create (and fill with the model's members) the sets the rules of ``group_ids`` name."""
    t = model.table
    wanted = groups_named_by(model, group_ids)
    members: dict[str, list[str]] = {gid: [] for gid in wanted}
    for other in model.enis:  # one pass, only the groups these rules name
        for gid in wanted.intersection(other.group_ids):
            members[gid].append(other.ip)
    lines: list[str] = []
    for gid in sorted(wanted):
        name = group_set(gid)
        lines.append(f"add set inet {t} {name} {{ type ipv4_addr; }}")
        if members[gid]:
            ips = sorted(set(members[gid]), key=_ip_key)
            lines.append(f"add element inet {t} {name} {{ {', '.join(ips)} }}")
    return lines


def _refill(table: str, chains: Sequence[Chain]) -> list[str]:
    lines: list[str] = []
    for c in chains:
        lines.append(f"add chain inet {table} {c.name}")
        lines.append(f"flush chain inet {table} {c.name}")
    for c in chains:
        lines.extend(f"add rule inet {table} {c.name} {rule_text(r)}" for r in c.rules)
    return lines


def render_group_chains(model: FirewallModel, group_id: str) -> str:
    """Flush and refill ``gout_<sg>``/``gin_<sg>`` (a rule of the group authorized, revoked or modified):
    one group's rules, whatever the number of ENIs carrying it. The sets they name are created if missing."""
    lines = _referenced_sets(model, [group_id])
    lines.extend(_refill(model.table, group_chains(model, group_id)))
    return "\n".join(lines) + "\n"


def render_group_delete(table: str, group_id: str) -> str:
    """Remove a group's chains (no ENI may jump to them any more; safe if already gone)."""
    return render_chains_delete(table, (group_out_chain(group_id), group_in_chain(group_id)))


def render_chains_delete(table: str, names: Sequence[str]) -> str:
    """Remove chains nothing jumps to any more (safe if already gone)."""
    lines: list[str] = []
    for name in names:
        lines.append(f"add chain inet {table} {name}")
        lines.append(f"flush chain inet {table} {name}")
        lines.append(f"delete chain inet {table} {name}")
    return "\n".join(lines) + "\n"


def render_eni_chains(
    model: FirewallModel, eni_id: str, *, with_groups: bool = True, previous: EniPort | None = None
) -> str:
    """Flush and refill ``out_<eni>``/``in_<eni>`` and register the ENI in the maps and sets.

    The table (from :func:`render`) must exist. ``with_groups``: also (re)load the chains of the ENI's
    groups (needed when one of them is new to the table; :mod:`nft_update` loads those itself). Group
    membership of the ENI's own address is not changed here: pair with :func:`render_member_update`.
    ``previous``: the ENI as loaded, when its groups or logging changed: its port is taken out of its old
    target's dispatch first. The old target itself stays.
    """
    eni = _find(model, eni_id)
    t = model.table
    lines: list[str] = []
    if previous is not None and eni_targets(previous) != eni_targets(eni):
        lines.extend(_unport(t, previous, number_in(model, eni_targets(previous))))
    groups = list(dict.fromkeys(eni.group_ids))
    if with_groups:
        lines.extend(_referenced_sets(model, groups))
        for gid in groups:
            lines.extend(_refill(t, group_chains(model, gid)))
    else:
        for gid in groups:  # must exist for the jumps; their rules are loaded separately
            lines.append(f"add chain inet {t} {group_out_chain(gid)}")
            lines.append(f"add chain inet {t} {group_in_chain(gid)}")
    number = number_in(model, eni_targets(eni))
    lines.extend(_target_add(t, eni_targets(eni), eni_chains(model, eni), number))
    lines.extend(_registrations(t, eni, "add", number))
    return "\n".join(lines) + "\n"


def render_eni_delete(table: str, eni: EniPort, *, own_chains: bool = True, number: int | None = None) -> str:
    """Remove one ENI: its set and map elements (safe if already gone), then, if ``own_chains`` and it
    has chains of its own (its REJECTs logged), those. A combination's chains and number stay.
    ``number``: its combination's number as loaded (default: the preferred one)."""
    target = eni_targets(eni)
    if target.combo is not None and number is None:
        number = free_number(target.combo, ())
    lines = [f"add chain inet {table} {target.out_chain}", f"add chain inet {table} {target.in_chain}"]
    lines.extend(_registrations(table, eni, "add", number))
    lines.extend(_registrations(table, eni, "delete", number))
    if own_chains and target.combo is None:
        lines.extend(_target_delete(table, target, None))
    return "\n".join(lines) + "\n"
