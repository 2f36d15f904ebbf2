"""Per-ENI firewall updates: the nft batch for one change, computed from what the table holds.

:class:`TableState` is one router table as the agent loaded it: the registered ENIs (with the groups and
reject logging loaded for them), the ENIs carrying each group, the members of each group set and the rules
loaded into each carried group's chains, and the ENIs jumping to each target chain pair (a combination of
groups', or a logging ENI's own, ``firewall_ir.eni_targets``). Each change (:meth:`~TableState.add_eni`,
:meth:`~TableState.remove_eni`, :meth:`~TableState.set_groups`, :meth:`~TableState.set_log_rejects`,
:meth:`~TableState.set_rules`) updates it and returns the nft batch for that change alone:

* a task starting: its address added to its groups' sets, its map and set elements (its port's
  combination number in ``port_combo``); chains only when its combination of groups (or a group) is new
  to the table (with the combination's number in ``combo_out``/``combo_in``: :attr:`TableState.numbers`
  gives it one no loaded combination holds, kept while the combination is loaded), or its REJECTs are
  logged;
* a task stopping: the same taken away (and the chains of a combination or group it was the last to use);
* an ENI's groups modified: the set elements of the groups it joined or left, its map elements pointed
  at its new combination's chains;
* a rule changed: the chains of that group only.

The work and the batch follow the ENI and its groups, never the number of ENIs in the VPC: nothing here
walks every ENI (``nft_update.render_update`` diffs two whole models, which does), and the common batch
(a task with the groups of another) is elements only, so libnftables, which reads every chain of the table
back before a transaction, has few to read. The statements are the
same :mod:`~taskvpc.netmodel.nft_compile` writes for a whole table, so a table built by updates is the
table :meth:`~TableState.whole` renders (tests/unit/test_nft_eni.py checks it against the evaluator and
``compile_ir``). Every batch is one nft transaction: it applies entirely or not at all; when one is refused
the caller loads :meth:`~TableState.whole` instead (the state already describes the wanted table).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from taskvpc.netmodel.evaluator import GroupRules
from taskvpc.netmodel.firewall_ir import (
    Chain,
    EniPort,
    FirewallModel,
    RemotePeer,
    Target,
    compile_ir,
    eni_chains,
    eni_targets,
    free_number,
    group_chains,
    group_members,
    group_set,
    groups_named_by,
    model_numbers,
)
from taskvpc.netmodel.nft_compile import (
    _ip_key,
    _port_elements,
    _refill,
    _registrations,
    _set_elements,
    _target_add,
    _target_delete,
    _unport,
    render,
    render_group_delete,
)


@dataclass
class TableState:
    table: str
    host_port: str
    host_ip: str = "169.254.100.1"
    rules: dict[str, GroupRules] = field(default_factory=dict)  # the desired rules of every known group
    enis: dict[str, EniPort] = field(default_factory=dict)  # registered, as loaded, by ENI id
    by_ip: dict[str, str] = field(default_factory=dict)  # address -> ENI id
    carriers: dict[str, set[str]] = field(default_factory=dict)  # group -> ENI ids carrying it
    members: dict[str, set[str]] = field(default_factory=dict)  # group -> addresses in set g_<group>
    chains: dict[str, tuple[Chain, Chain]] = field(default_factory=dict)  # carried group -> loaded chains
    jumpers: dict[Target, set[str]] = field(default_factory=dict)  # loaded targets -> the ENIs using them
    numbers: dict[str, int] = field(default_factory=dict)  # loaded combination -> its number (mark)
    overlay_port: str | None = None  # the router's VXLAN device (agent/overlay.py); a change: whole()
    remote: tuple[RemotePeer, ...] = ()  # the VPC's members on other hosts, in their groups' sets

    # -- the whole table ------------------------------------------------------------------------------

    def model(self) -> FirewallModel:
        return FirewallModel(
            self.table,
            tuple(e for _, e in sorted(self.enis.items())),
            dict(self.rules),
            self.host_port,
            self.host_ip,
            overlay_port=self.overlay_port,
            remote=self.remote,
            combo_numbers=dict(self.numbers),
        )

    def whole(self) -> str:
        """The whole table (first load, or after a refused batch); what is loaded is then exactly that."""
        model = self.model()
        text = render(compile_ir(model))
        self.members = {gid: set(ips) for gid, ips in group_members(model).items()}
        self.chains = {gid: group_chains(model, gid) for gid in self.carriers}
        self.jumpers = {}
        for eni in self.enis.values():
            self.jumpers.setdefault(eni_targets(eni), set()).add(eni.eni_id)
        self.numbers = model_numbers(model)  # those of the loaded combinations kept, the others given
        return text

    # -- changes --------------------------------------------------------------------------------------

    def add_eni(self, eni: EniPort) -> str:
        """Register ``eni`` (or bring its registration up to date); the batch, "" when nothing changes."""
        current = self.enis.get(eni.eni_id)
        if current == eni:
            return ""
        if current is not None and _same_identity(current, eni):
            return self.set_groups(eni.eni_id, eni.group_ids) + self.set_log_rejects(
                eni.eni_id, eni.log_rejects
            )
        lines: list[str] = []
        if current is not None:
            lines.extend(self._remove(current))
        holder = self.by_ip.get(eni.ip)
        if holder is not None and holder != eni.eni_id:  # a stale registration holding the address goes
            lines.extend(self._remove(self.enis[holder]))
        self.enis[eni.eni_id] = eni
        self.by_ip[eni.ip] = eni.eni_id
        groups = _unique(eni.group_ids)
        for gid in groups:
            self.carriers.setdefault(gid, set()).add(eni.eni_id)
        for gid in groups:  # chains before the jumps to them
            if gid not in self.chains:
                lines.extend(self._load_group(gid))
        for gid in groups:
            lines.extend(self._add_member(gid, eni.ip))
        lines.extend(self._attach(eni))
        lines.extend(_registrations(self.table, eni, "add", self._number(eni)))
        return _batch(lines)

    def remove_eni(self, eni_id: str) -> str:
        eni = self.enis.get(eni_id)
        return _batch(self._remove(eni)) if eni is not None else ""

    def set_groups(self, eni_id: str, group_ids: tuple[str, ...]) -> str:
        """The ENI's groups modified: only the sets of groups it joins or leaves, and its own chains."""
        before = self.enis.get(eni_id)
        if before is None or before.group_ids == group_ids:
            return ""
        old, new = _unique(before.group_ids), _unique(group_ids)
        joined = [g for g in new if g not in old]
        left = [g for g in old if g not in new]
        eni = self.enis[eni_id] = replace(before, group_ids=group_ids)
        lines: list[str] = []
        for gid in joined:
            self.carriers.setdefault(gid, set()).add(eni_id)
            if gid not in self.chains:
                lines.extend(self._load_group(gid))
        for gid in left:
            self.carriers[gid].discard(eni_id)
            lines.extend(self._remove_member(gid, eni.ip))
        for gid in joined:
            lines.extend(self._add_member(gid, eni.ip))
        lines.extend(self._retarget(before, eni))
        for gid in left:
            lines.extend(self._drop_group_if_unused(gid))
        return _batch(lines)

    def set_log_rejects(self, eni_id: str, log_rejects: bool) -> str:
        before = self.enis.get(eni_id)
        if before is None or before.log_rejects == log_rejects:
            return ""
        eni = self.enis[eni_id] = replace(before, log_rejects=log_rejects)
        return _batch(self._retarget(before, eni))

    def set_rules(self, rules: Mapping[str, GroupRules]) -> str:
        """New desired rules: the chains of the carried groups whose rules changed are refilled."""
        before, self.rules = self.rules, dict(rules)
        lines: list[str] = []
        for gid in sorted(self.chains):
            if before.get(gid) != self.rules.get(gid):
                chains = group_chains(self._rules_model(), gid)
                if chains != self.chains[gid]:
                    lines.extend(self._load_group(gid))
        return _batch(lines)

    def set_remote(self, remote: tuple[RemotePeer, ...]) -> str:
        """The members on other hosts changed: only the elements of existing sets that differ."""
        before, after = _remote_members(self.remote), _remote_members(remote)
        self.remote = remote
        lines: list[str] = []
        for gid in sorted(self.members):
            local = {self.enis[e].ip for e in self.carriers.get(gid, ())}
            was, now = before.get(gid, set()) - local, after.get(gid, set()) - local
            for ip in sorted(was - now):
                lines.extend(self._remove_member(gid, ip))
            for ip in sorted(now - was):
                lines.extend(self._add_member(gid, ip))
        return _batch(lines)

    # -- pieces ---------------------------------------------------------------------------------------

    def _rules_model(self) -> FirewallModel:
        """A model with the rules and no ENIs: what compiling one group's or one ENI's chains reads."""
        return FirewallModel(self.table, (), self.rules, self.host_port, self.host_ip)

    def _number(self, eni: EniPort) -> int | None:
        combo = eni_targets(eni).combo
        return None if combo is None else self.numbers[combo]

    def _attach(self, eni: EniPort) -> list[str]:
        """The target judging ``eni`` (chains, a combination's number), loaded if no ENI uses it yet."""
        target = eni_targets(eni)
        users = self.jumpers.setdefault(target, set())
        users.add(eni.eni_id)
        if len(users) > 1:
            return []
        number = None
        if target.combo is not None:
            number = self.numbers[target.combo] = free_number(target.combo, self.numbers.values())
        return _target_add(self.table, target, eni_chains(self._rules_model(), eni), number)

    def _detach(self, eni: EniPort) -> list[str]:
        """``eni`` uses its target no more: it goes with its last user (its number freed)."""
        target = eni_targets(eni)
        users = self.jumpers.get(target, set())
        users.discard(eni.eni_id)
        if users:
            return []
        self.jumpers.pop(target, None)
        number = self.numbers.pop(target.combo, None) if target.combo is not None else None
        return _target_delete(self.table, target, number)

    def _retarget(self, before: EniPort, after: EniPort) -> list[str]:
        """Move the ENI's port from ``before``'s target to ``after``'s."""
        if eni_targets(before) == eni_targets(after):  # a logging ENI's own chains: its groups changed
            changed = after.log_rejects and before.group_ids != after.group_ids
            return _refill(self.table, eni_chains(self._rules_model(), after)) if changed else []
        lines = _unport(self.table, before, self._number(before))
        lines.extend(self._attach(after))
        lines.extend(_port_elements(self.table, after, "add", self._number(after)))
        lines.extend(self._detach(before))
        return lines

    def _remove(self, eni: EniPort) -> list[str]:
        lines = [*_unport(self.table, eni, self._number(eni)), *_set_elements(self.table, eni, "add")]
        lines.extend(_set_elements(self.table, eni, "delete"))
        lines.extend(self._detach(eni))
        del self.enis[eni.eni_id]
        if self.by_ip.get(eni.ip) == eni.eni_id:
            del self.by_ip[eni.ip]
        groups = _unique(eni.group_ids)
        for gid in groups:
            self.carriers.get(gid, set()).discard(eni.eni_id)
            lines.extend(self._remove_member(gid, eni.ip))
        for gid in groups:
            lines.extend(self._drop_group_if_unused(gid))
        return lines

    def _load_group(self, gid: str) -> list[str]:
        """(Re)fill a group's chains; the sets its rules name are created (with their members) if missing."""
        model = self._rules_model()
        lines: list[str] = []
        for named in sorted(groups_named_by(model, [gid])):
            lines.extend(self._ensure_set(named))
        chains = group_chains(model, gid)
        lines.extend(_refill(self.table, chains))
        self.chains[gid] = chains
        return lines

    def _drop_group_if_unused(self, gid: str) -> list[str]:
        """A group no ENI carries any more: its chains go (no jump to them is left), then the sets neither
        a carried group nor a rule of one names (as a whole load would not have them)."""
        if self.carriers.get(gid):
            return []
        self.carriers.pop(gid, None)
        if self.chains.pop(gid, None) is None:
            return []
        lines = render_group_delete(self.table, gid).splitlines()
        named = groups_named_by(self._rules_model(), self.chains)  # by the carried groups' rules: few
        for candidate in sorted({gid, *groups_named_by(self._rules_model(), [gid])}):
            if candidate in self.members and candidate not in self.carriers and candidate not in named:
                del self.members[candidate]
                name = group_set(candidate)
                lines.append(f"add set inet {self.table} {name} {{ type ipv4_addr; }}")
                lines.append(f"delete set inet {self.table} {name}")
        return lines

    def _ensure_set(self, gid: str) -> list[str]:
        if gid in self.members:
            return []
        ips = {self.enis[e].ip for e in self.carriers.get(gid, ())}
        ips |= _remote_members(self.remote).get(gid, set())
        self.members[gid] = ips
        lines = [f"add set inet {self.table} {group_set(gid)} {{ type ipv4_addr; }}"]
        if ips:
            lines.append(f"add element inet {self.table} {group_set(gid)} {{ {_ips(ips)} }}")
        return lines

    def _add_member(self, gid: str, ip: str) -> list[str]:
        if gid not in self.members:
            return self._ensure_set(gid)  # filled from the carriers, this ENI included
        if ip in self.members[gid]:
            return []
        self.members[gid].add(ip)
        return [f"add element inet {self.table} {group_set(gid)} {{ {ip} }}"]

    def _remove_member(self, gid: str, ip: str) -> list[str]:
        if ip not in self.members.get(gid, ()):
            return []
        self.members[gid].discard(ip)
        name = group_set(gid)
        return [  # add first: deleting an element that is not there would refuse the whole batch
            f"add element inet {self.table} {name} {{ {ip} }}",
            f"delete element inet {self.table} {name} {{ {ip} }}",
        ]


def _same_identity(a: EniPort, b: EniPort) -> bool:
    return (a.port, a.ip, a.mac.lower()) == (b.port, b.ip, b.mac.lower())


def _remote_members(remote: Iterable[RemotePeer]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for peer in remote:
        for gid in peer.group_ids:
            out.setdefault(gid, set()).add(peer.ip)
    return out


def _unique(group_ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(group_ids))


def _ips(ips: Iterable[str]) -> str:
    return ", ".join(sorted(ips, key=_ip_key))


def _batch(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""
