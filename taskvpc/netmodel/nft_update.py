"""The smallest nftables batch that turns the table of one firewall model into the table of another.

The agent keeps, per VPC, the :class:`FirewallModel` it last loaded; every change (a task starting or
stopping, a rule authorized or revoked, an ENI's groups modified) is a new model, and :func:`render_update`
writes only what differs, in an order nft accepts within one transaction:

1. ENIs that went away (or whose port, address or MAC changed): their elements
   (:func:`render_eni_delete`); an ENI whose target (combination of groups, or own chains) changed: its
   port taken out of the old target's dispatch;
2. group member addresses that changed: :func:`render_member_update`, one group at a time;
3. groups newly carried, or whose compiled chains differ: :func:`render_group_chains` (one group's rules,
   however many ENIs carry it);
4. targets nothing uses any more (their combination number leaves ``combo_out``/``combo_in``, so a new
   combination may take it), then targets new to the table (a combination's chains and number, a
   logging ENI's own chains), and a logging ENI's own chains whose groups changed;
5. ENIs that are new or changed: their elements (a port's combination number in ``port_combo``);
6. groups nothing uses any more (after the jumps to them are gone).

A combination keeps the number ``old`` gave it (``new.combo_numbers`` aside): the table made is the one
``compile_ir`` renders for ``new`` with those numbers (the same as ``new``'s own unless two
combinations' preferred numbers clash, ``firewall_ir.preferred_number``).

Deletions come first so an address handed from a stopped task to a new one never sits in a set twice.
With no previous model (first load, agent restart, a failed incremental batch), or a change of what the
whole table hangs on (table name, host port or address), the whole table is rendered and replaced
atomically.
"""

from __future__ import annotations

from dataclasses import replace

from taskvpc.netmodel.firewall_ir import (
    EniPort,
    FirewallModel,
    Target,
    carried_groups,
    compile_ir,
    eni_chains,
    eni_targets,
    group_chains,
    group_members,
    model_numbers,
)
from taskvpc.netmodel.nft_compile import (
    _registrations,
    _target_add,
    _target_delete,
    _unport,
    render,
    render_eni_delete,
    render_group_chains,
    render_group_delete,
    render_member_update,
)


def _same_identity(a: EniPort, b: EniPort) -> bool:
    return (a.port, a.ip, a.mac.lower()) == (b.port, b.ip, b.mac.lower())


def _whole_table_needed(old: FirewallModel | None, new: FirewallModel) -> bool:
    return old is None or (old.table, old.host_port, old.host_ip, old.overlay_port) != (
        new.table,
        new.host_port,
        new.host_ip,
        new.overlay_port,
    )


def render_update(old: FirewallModel | None, new: FirewallModel) -> str:
    """nft text taking the table from ``old`` to ``new`` in one transaction ("" when nothing changes)."""
    if _whole_table_needed(old, new):
        return render(compile_ir(new))
    assert old is not None
    if old == new:  # most desired-state answers (a task's status moved) change nothing here
        return ""
    before = {e.eni_id: e for e in old.enis}
    after = {e.eni_id: e for e in new.enis}
    old_numbers = model_numbers(old)
    new_targets = {eni_targets(e) for e in new.enis}
    kept = {t.combo for t in new_targets if t.combo is not None} & set(old_numbers)
    new = replace(new, combo_numbers={**{c: old_numbers[c] for c in kept}, **new.combo_numbers})
    new_numbers = model_numbers(new)
    parts: list[str] = []
    changed: list[EniPort] = []  # new, or registered differently: their elements are (re)added
    for eni_id, eni in before.items():
        if eni_id not in after or not _same_identity(eni, after[eni_id]):
            number = old_numbers.get(eni_targets(eni).combo or "")
            parts.append(render_eni_delete(old.table, eni, own_chains=False, number=number))
        elif eni_targets(eni) != eni_targets(after[eni_id]):
            parts.append(_text(_unport(old.table, eni, old_numbers.get(eni_targets(eni).combo or ""))))
    for eni_id, eni in after.items():
        previous = before.get(eni_id)
        if (
            previous is None
            or not _same_identity(previous, eni)
            or (previous.group_ids, previous.log_rejects) != (eni.group_ids, eni.log_rejects)
        ):
            changed.append(eni)
    old_members, new_members = group_members(old), group_members(new)
    for gid in sorted(set(old_members) | set(new_members)):
        was, now = set(old_members.get(gid, ())), set(new_members.get(gid, ()))
        if was != now:
            parts.append(render_member_update(new.table, gid, sorted(now - was), sorted(was - now)))
    old_carried, new_carried = set(carried_groups(old)), carried_groups(new)
    lists_changed = old.prefix_lists != new.prefix_lists
    for gid in new_carried:
        if gid not in old_carried or (
            (lists_changed or old.groups.get(gid) != new.groups.get(gid))
            and group_chains(old, gid) != group_chains(new, gid)
        ):
            parts.append(render_group_chains(new, gid))
    old_targets = {eni_targets(e) for e in old.enis}
    lines: list[str] = []
    for target in sorted(old_targets - new_targets, key=lambda t: t.out_chain):  # no port uses them
        lines.extend(_target_delete(new.table, target, old_numbers.get(target.combo or "")))
    refilled: set[Target] = set()
    for eni in changed:  # a new target, or a logging ENI's own chains (its groups may have changed)
        target = eni_targets(eni)
        if target not in refilled and (target not in old_targets or target.combo is None):
            refilled.add(target)
            number = new_numbers.get(target.combo or "")
            lines.extend(_target_add(new.table, target, eni_chains(new, eni), number))
    for eni in changed:
        lines.extend(_registrations(new.table, eni, "add", new_numbers.get(eni_targets(eni).combo or "")))
    parts.append(_text(lines))
    for gid in sorted(old_carried - set(new_carried)):
        parts.append(render_group_delete(new.table, gid))
    return "".join(parts)


def _text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""
