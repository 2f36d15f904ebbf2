"""The smallest nftables batch that turns the table of one firewall model into the table of another.

The agent keeps, per VPC, the :class:`FirewallModel` it last loaded; every change (a task starting or
stopping, a rule authorized or revoked, an ENI's groups modified) is a new model, and :func:`render_update`
writes only what differs:

* ENIs that went away (or whose port, address or MAC changed): :func:`render_eni_delete`;
* group member addresses that changed: :func:`render_member_update`, one group at a time;
* ENIs that are new, or whose compiled chains differ: :func:`render_eni_chains`.

Deletions come first so an address handed from a stopped task to a new one never sits in a set twice.
With no previous model (first load, agent restart, a failed incremental batch), or a change of what the
whole table hangs on (table name, host port or address), the whole table is rendered and replaced
atomically. An ENI's chains depend only on its port, its groups' rules and the prefix lists, so only ENIs
carrying a changed group are recompiled, and only those whose compiled chains really differ are rewritten:
the cost of an update follows the change, not the number of ENIs.
"""

from __future__ import annotations

from taskvpc.netmodel.firewall_ir import EniPort, FirewallModel, compile_ir, eni_chains, group_members
from taskvpc.netmodel.nft_compile import render, render_eni_chains, render_eni_delete, render_member_update


def _same_identity(a: EniPort, b: EniPort) -> bool:
    return (a.port, a.ip, a.mac.lower()) == (b.port, b.ip, b.mac.lower())


def _whole_table_needed(old: FirewallModel | None, new: FirewallModel) -> bool:
    return old is None or (old.table, old.host_port, old.host_ip) != (new.table, new.host_port, new.host_ip)


def _chains_differ(old: FirewallModel, new: FirewallModel, eni: EniPort) -> bool:
    return eni_chains(old, eni) != eni_chains(new, eni)


def render_update(old: FirewallModel | None, new: FirewallModel) -> str:
    """nft text taking the table from ``old`` to ``new`` in one transaction ("" when nothing changes)."""
    if _whole_table_needed(old, new):
        return render(compile_ir(new))
    assert old is not None
    changed_groups = {g for g in {*old.groups, *new.groups} if old.groups.get(g) != new.groups.get(g)}
    prefix_lists_changed = old.prefix_lists != new.prefix_lists
    before = {e.eni_id: e for e in old.enis}
    after = {e.eni_id: e for e in new.enis}
    parts: list[str] = []
    for eni_id, eni in before.items():
        if eni_id not in after or not _same_identity(eni, after[eni_id]):
            parts.append(render_eni_delete(old.table, eni))
    old_members, new_members = group_members(old), group_members(new)
    for gid in sorted(set(old_members) | set(new_members)):
        was, now = set(old_members.get(gid, ())), set(new_members.get(gid, ()))
        if was != now:
            parts.append(render_member_update(new.table, gid, sorted(now - was), sorted(was - now)))
    for eni_id, eni in after.items():
        previous = before.get(eni_id)
        if (
            previous is None
            or not _same_identity(previous, eni)
            or previous.group_ids != eni.group_ids
            or (
                (prefix_lists_changed or changed_groups & set(eni.group_ids))
                and _chains_differ(old, new, eni)
            )
        ):
            parts.append(render_eni_chains(new, eni_id))
    return "".join(parts)
