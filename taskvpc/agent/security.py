"""Security groups on this host: the desired state's groups and ENIs -> each VPC router's nftables table.

The control plane sends, per VPC, the rules of every group the host's task ENIs carry, and each task ENI's
current groups (docs/agent-api.md). :class:`FirewallSync` keeps, per VPC, a
:class:`~taskvpc.netmodel.nft_eni.TableState`: what its table holds. Each change is one batch for that
change alone (``nft_eni``): a task starting or stopping is its own set elements (its port, its address in
its groups' sets; chains only for a combination of groups new to the table), an ENI's groups modified
touches the sets of the groups it joined or left, a rule change the chains of its group. Nothing walks every ENI of the VPC. The whole table is loaded only the first
time a VPC needs one after a start (which is how the agent reconciles a table it finds: replaced
atomically, so established connections keep flowing through the swap) or after a refused batch.

An ENI is registered *before* its veth exists: until then the forward chain's policy drops its traffic,
so a task is never reachable without its rules. Group references match the addresses of this host's ENIs
and of the VPC's members on other hosts that the overlay reports (``set_overlay``, agent/overlay.py).

Not thread-safe: the agent calls it only from the data plane's single worker thread.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from taskvpc.agent import netplan
from taskvpc.netmodel.evaluator import GroupRules
from taskvpc.netmodel.firewall_ir import EniPort, FirewallModel, RemotePeer
from taskvpc.netmodel.nft_eni import TableState

log = logging.getLogger(__name__)

TABLE = "taskvpc"


class NftLoader(Protocol):
    """What :class:`FirewallSync` needs of ``drivers.firewall.FirewallDriver``."""

    def apply(self, vpc_id: str, nft_text: str) -> None: ...

    def forget_flows(self, vpc_id: str, ip: str) -> int: ...


@dataclass
class _Vpc:
    state: TableState
    loaded: bool = False  # the table holds what ``state`` says (False: the next load is the whole table)


class FirewallSync:
    def __init__(self, loader: NftLoader, cfg: netplan.NetConfig, table: str = TABLE) -> None:
        self.loader = loader
        self.cfg = cfg
        self.table = table
        self._vpcs: dict[str, _Vpc] = {}
        self._eni_groups: dict[str, tuple[str, ...]] = {}  # desired groups per ENI id
        self._reject_logged: frozenset[str] = frozenset()  # ENIs a flow log wants REJECTs of
        self.updates = 0  # batches loaded (tests, metrics)
        self.last_update_seconds = 0.0

    def _vpc(self, vpc_id: str) -> _Vpc:
        vpc = self._vpcs.get(vpc_id)
        if vpc is None:
            state = TableState(self.table, netplan.router_access_port(self.cfg), self.cfg.host_link_addr)
            vpc = self._vpcs[vpc_id] = _Vpc(state)
        return vpc

    def model(self, vpc_id: str) -> FirewallModel:
        """The VPC's whole table as a model (tests; what a whole reload renders)."""
        return self._vpc(vpc_id).state.model()

    # -- desired state --------------------------------------------------------------------------------

    def set_desired(
        self, groups: Mapping[str, Mapping[str, GroupRules]], eni_groups: Mapping[str, tuple[str, ...]]
    ) -> list[str]:
        """New groups per VPC (a VPC left out keeps its rules) and groups per ENI (an ENI left out keeps
        its groups); loads each VPC's changes, returns the VPCs it changed. Only ENIs whose groups differ
        from what is loaded, and groups whose rules differ, cost anything."""
        moved = {e: g for e, g in eni_groups.items() if self._eni_groups.get(e) != g}
        self._eni_groups.update(moved)
        changed = []
        for vpc_id, vpc in list(self._vpcs.items()):
            vpc_groups = groups.get(vpc_id)
            state = vpc.state

            def change(
                state: TableState = state, vpc_groups: Mapping[str, GroupRules] | None = vpc_groups
            ) -> str:
                parts = [state.set_rules(vpc_groups)] if vpc_groups is not None else []
                parts.extend(state.set_groups(e, g) for e, g in moved.items() if e in state.enis)
                return "".join(parts)

            if not vpc.loaded and not state.enis:
                change()  # no table wanted yet: only remembered
                continue
            try:  # one VPC's trouble must not keep the others' changes out
                if self._load(vpc_id, vpc, change):
                    changed.append(vpc_id)
            except Exception as exc:
                log.error("firewall update failed vpc=%s error=%r", vpc_id, exc)
        for vpc_id, vpc_groups in groups.items():
            if vpc_id not in self._vpcs:
                self._vpc(vpc_id).state.set_rules(vpc_groups)
        return changed

    def set_reject_logging(self, eni_ids: frozenset[str]) -> list[str]:
        """The ENIs whose security-group drops are logged for flow logs (``agent.flowlogs``); loads the
        ENIs whose logging changed, returns the VPCs it changed."""
        if eni_ids == self._reject_logged:
            return []
        flipped = eni_ids ^ self._reject_logged
        self._reject_logged = frozenset(eni_ids)
        changed = []
        for vpc_id, vpc in self._vpcs.items():
            mine = [e for e in flipped if e in vpc.state.enis]
            if not mine:
                continue

            def change(state: TableState = vpc.state, mine: list[str] = mine) -> str:
                return "".join(state.set_log_rejects(e, e in self._reject_logged) for e in sorted(mine))

            try:
                if self._load(vpc_id, vpc, change):
                    changed.append(vpc_id)
            except Exception as exc:
                log.error("firewall update failed vpc=%s error=%r", vpc_id, exc)
        return changed

    def add_eni(self, vpc_id: str, eni: EniPort, *, new_network: bool = False) -> None:
        """Register an ENI (before its veth exists) and load its chains. ``new_network``: its address may
        have served another task: forget the router's connections naming it first."""
        vpc = self._vpc(vpc_id)
        if new_network:
            self._forget_flows(vpc_id, eni.ip)
        self._eni_groups.setdefault(eni.eni_id, eni.group_ids)
        wanted = replace(
            eni, group_ids=self._eni_groups[eni.eni_id], log_rejects=eni.eni_id in self._reject_logged
        )
        self._load(vpc_id, vpc, lambda: vpc.state.add_eni(wanted))

    def add_enis(self, vpc_id: str, enis: list[EniPort]) -> None:
        """Register several new networks' ENIs in one transaction (``add_eni(..., new_network=True)``
        each): fewer transactions (each pays a fixed cost; with chains per ENI, libnftables read them all
        back before every one: 0.4 ms at 100 ENIs, 5 ms at 3,000)."""
        vpc = self._vpc(vpc_id)
        wanted = []
        for eni in enis:
            self._forget_flows(vpc_id, eni.ip)
            self._eni_groups.setdefault(eni.eni_id, eni.group_ids)
            wanted.append(
                replace(
                    eni, group_ids=self._eni_groups[eni.eni_id], log_rejects=eni.eni_id in self._reject_logged
                )
            )
        self._load(vpc_id, vpc, lambda: "".join(vpc.state.add_eni(w) for w in wanted))

    def remove_enis(self, vpc_id: str, eni_ids: list[str]) -> None:
        """``remove_eni`` of several ENIs of one VPC, in one transaction."""
        vpc = self._vpcs.get(vpc_id)
        if vpc is None:
            return
        gone = [vpc.state.enis[e] for e in eni_ids if e in vpc.state.enis]
        for eni_id in eni_ids:
            self._eni_groups.pop(eni_id, None)
        if gone:
            self._load(vpc_id, vpc, lambda: "".join(vpc.state.remove_eni(e.eni_id) for e in gone))
        for eni in gone:
            self._forget_flows(vpc_id, eni.ip)

    def remove_eni(self, vpc_id: str | None, eni_id: str) -> None:
        """Unregister an ENI (after its veth is gone) and forget its connections; unknown ones are ignored."""
        self._eni_groups.pop(eni_id, None)
        for vid, vpc in self._vpcs.items():
            if (vpc_id is None or vid == vpc_id) and (gone := vpc.state.enis.get(eni_id)) is not None:
                self._load(vid, vpc, functools.partial(vpc.state.remove_eni, eni_id))
                self._forget_flows(vid, gone.ip)

    def _forget_flows(self, vpc_id: str, ip: str) -> None:
        try:
            self.loader.forget_flows(vpc_id, ip)
        except Exception as exc:  # the rules are right; only old flows might linger until they expire
            log.warning("conntrack cleanup failed vpc=%s ip=%s error=%r", vpc_id, ip, exc)

    def remove_port(self, vpc_id: str | None, port: str) -> None:
        """Unregister whichever ENI uses router port ``port`` (a task found on the host, not desired)."""
        for vid, vpc in list(self._vpcs.items()) if vpc_id is None else [(vpc_id, self._vpc(vpc_id))]:
            for eni in list(vpc.state.enis.values()):
                if eni.port == port:
                    self.remove_eni(vid, eni.eni_id)

    def set_overlay(self, vpc_id: str, port: str | None, remote: tuple[RemotePeer, ...]) -> None:
        """The VPC's overlay port and members on other hosts (agent/overlay.py): the members' addresses
        in the group sets (a batch of elements); a new overlay port reloads the whole table."""
        vpc = self._vpc(vpc_id)
        if vpc.state.overlay_port != port:
            vpc.state.overlay_port = port
            vpc.loaded = False
        if vpc.loaded or vpc.state.enis:
            self._load(vpc_id, vpc, lambda: vpc.state.set_remote(remote))
        else:
            vpc.state.set_remote(remote)  # no table wanted yet: only remembered

    def forget_vpc(self, vpc_id: str) -> None:
        """The router (and its table) went away; the desired groups stay (a new task may bring it back)."""
        vpc = self._vpc(vpc_id)
        old = vpc.state
        vpc.state = TableState(old.table, old.host_port, old.host_ip, rules=old.rules)
        vpc.state.overlay_port, vpc.state.remote = old.overlay_port, old.remote
        vpc.loaded = False

    # -- apply ----------------------------------------------------------------------------------------

    def sync(self, vpc_id: str) -> bool:
        """Load the whole table if it is not known to be loaded; whether anything was loaded."""
        vpc = self._vpc(vpc_id)
        return self._load(vpc_id, vpc, lambda: "")

    def _load(self, vpc_id: str, vpc: _Vpc, change: Callable[[], str]) -> bool:
        """Make ``change`` (it updates the table state and returns its batch) and load it; the whole table
        instead when the table is not known to hold the state (first load, a refused batch)."""
        started = time.perf_counter()
        text = change()
        if not vpc.loaded:
            text = vpc.state.whole()
        if not text:
            return False
        try:
            self.loader.apply(vpc_id, text)
        except Exception as exc:
            if not vpc.loaded:
                raise
            # The table is not what we last loaded (deleted by hand, router remade): replace it whole.
            log.warning("incremental firewall update failed, reloading vpc=%s error=%r", vpc_id, exc)
            vpc.loaded = False
            self.loader.apply(vpc_id, vpc.state.whole())
        vpc.loaded = True
        self.updates += 1
        self.last_update_seconds = time.perf_counter() - started
        return True
