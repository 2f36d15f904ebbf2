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
4. targets new to the table (a combination's port set and chains, a logging ENI's own chains), a logging
   ENI's own chains whose groups changed, then the dispatch chains if the combinations changed;
5. ENIs that are new or changed: their elements;
6. targets and groups nothing uses any more (after the dispatch and jumps to them are gone).

Deletions come first so an address handed from a stopped task to a new one never sits in a set twice.
With no previous model (first load, agent restart, a failed incremental batch), or a change of what the
whole table hangs on (table name, host port or address), the whole table is rendered and replaced
atomically.
"""

from __future__ import annotations

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
)
from taskvpc.netmodel.nft_compile import (
    _dispatch,
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
    parts: list[str] = []
    changed: list[EniPort] = []  # new, or registered differently: their elements are (re)added
    for eni_id, eni in before.items():
        if eni_id not in after or not _same_identity(eni, after[eni_id]):
            parts.append(render_eni_delete(old.table, eni, own_chains=False))
        elif eni_targets(eni) != eni_targets(after[eni_id]):
            parts.append(_text(_unport(old.table, eni)))
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
    new_targets = {eni_targets(e) for e in new.enis}
    lines: list[str] = []
    refilled: set[Target] = set()
    for eni in changed:  # a new target, or a logging ENI's own chains (its groups may have changed)
        target = eni_targets(eni)
        if target not in refilled and (target not in old_targets or target.port_set is None):
            refilled.add(target)
            lines.extend(_target_add(new.table, target, eni_chains(new, eni)))
    if {t for t in old_targets if t.port_set} != {t for t in new_targets if t.port_set}:
        lines.extend(_dispatch(new.table, new_targets))
    for eni in changed:
        lines.extend(_registrations(new.table, eni, "add"))
    for target in sorted(old_targets - new_targets, key=lambda t: t.out_chain):
        lines.extend(_target_delete(new.table, target))
    parts.append(_text(lines))
    for gid in sorted(old_carried - set(new_carried)):
        parts.append(render_group_delete(new.table, gid))
    return "".join(parts)


def _text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""
