"""Security groups on this host: the desired state's groups and ENIs -> each VPC router's nftables table.

The control plane sends, per VPC, the rules of every group the host's task ENIs carry, and each task ENI's
current groups (docs/agent-api.md). :class:`FirewallSync` keeps, per VPC, the ENIs whose network exists on
this host and the :class:`FirewallModel` it last loaded; every change becomes a new model and the batch
:func:`taskvpc.netmodel.nft_update.render_update` computes from the two (incremental; the whole table only
on the first load of a VPC after a start, which is how the agent reconciles a table it finds: replaced
atomically, so established connections keep flowing through the swap).

An ENI is registered *before* its veth exists: until then the forward chain's policy drops its traffic,
so a task is never reachable without its rules. Group references match the addresses of the ENIs of this
host's router only: tasks on other hosts sit behind other routers, with no path to these.

Not thread-safe: the agent calls it only from the data plane's single worker thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from taskvpc.agent import netplan
from taskvpc.netmodel.evaluator import GroupRules
from taskvpc.netmodel.firewall_ir import EniPort, FirewallModel, compile_ir
from taskvpc.netmodel.nft_compile import render
from taskvpc.netmodel.nft_update import render_update

log = logging.getLogger(__name__)

TABLE = "taskvpc"


class NftLoader(Protocol):
    """What :class:`FirewallSync` needs of ``drivers.firewall.FirewallDriver``."""

    def apply(self, vpc_id: str, nft_text: str) -> None: ...

    def forget_flows(self, vpc_id: str, ip: str) -> int: ...


@dataclass
class _Vpc:
    groups: dict[str, GroupRules] = field(default_factory=dict)
    enis: dict[str, EniPort] = field(default_factory=dict)  # present on this host, by ENI id
    applied: FirewallModel | None = None


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
        return self._vpcs.setdefault(vpc_id, _Vpc())

    def model(self, vpc_id: str) -> FirewallModel:
        vpc = self._vpc(vpc_id)
        enis = tuple(
            EniPort(
                e.eni_id,
                e.port,
                e.ip,
                e.mac,
                self._eni_groups.get(e.eni_id, e.group_ids),
                e.eni_id in self._reject_logged,
            )
            for _, e in sorted(vpc.enis.items())
        )
        return FirewallModel(
            table=self.table,
            enis=enis,
            groups=dict(vpc.groups),
            host_port=netplan.router_access_port(self.cfg),
            host_ip=self.cfg.host_link_addr,
        )

    # -- desired state --------------------------------------------------------------------------------

    def set_desired(
        self, groups: Mapping[str, Mapping[str, GroupRules]], eni_groups: Mapping[str, tuple[str, ...]]
    ) -> list[str]:
        """New groups per VPC and groups per ENI; syncs every VPC with a table, returns those it changed."""
        self._eni_groups.update(eni_groups)
        for vpc_id, vpc_groups in groups.items():
            self._vpc(vpc_id).groups = dict(vpc_groups)
        changed = []
        for vpc_id, vpc in list(self._vpcs.items()):
            if vpc.applied is None and not vpc.enis:
                continue  # no table wanted yet
            try:  # one VPC's trouble must not keep the others' changes out
                if self.sync(vpc_id):
                    changed.append(vpc_id)
            except Exception as exc:
                log.error("firewall update failed vpc=%s error=%r", vpc_id, exc)
        return changed

    def set_reject_logging(self, eni_ids: frozenset[str]) -> list[str]:
        """The ENIs whose security-group drops are logged for flow logs (``agent.flowlogs``); syncs every
        VPC with a table, returns those it changed."""
        if eni_ids == self._reject_logged:
            return []
        self._reject_logged = frozenset(eni_ids)
        return self.set_desired({}, {})

    def add_eni(self, vpc_id: str, eni: EniPort, *, new_network: bool = False) -> None:
        """Register an ENI (before its veth exists) and load its chains. ``new_network``: its address may
        have served another task: forget the router's connections naming it first."""
        vpc = self._vpc(vpc_id)
        for other in list(vpc.enis.values()):  # a stale registration holding the address goes
            if other.ip == eni.ip and other.eni_id != eni.eni_id:
                del vpc.enis[other.eni_id]
        if new_network:
            self._forget_flows(vpc_id, eni.ip)
        vpc.enis[eni.eni_id] = eni
        self._eni_groups.setdefault(eni.eni_id, eni.group_ids)
        self.sync(vpc_id)

    def remove_eni(self, vpc_id: str | None, eni_id: str) -> None:
        """Unregister an ENI (after its veth is gone) and forget its connections; unknown ones are ignored."""
        self._eni_groups.pop(eni_id, None)
        for vid, vpc in self._vpcs.items():
            if (vpc_id is None or vid == vpc_id) and (gone := vpc.enis.pop(eni_id, None)) is not None:
                self.sync(vid)
                self._forget_flows(vid, gone.ip)

    def _forget_flows(self, vpc_id: str, ip: str) -> None:
        try:
            self.loader.forget_flows(vpc_id, ip)
        except Exception as exc:  # the rules are right; only old flows might linger until they expire
            log.warning("conntrack cleanup failed vpc=%s ip=%s error=%r", vpc_id, ip, exc)

    def remove_port(self, vpc_id: str | None, port: str) -> None:
        """Unregister whichever ENI uses router port ``port`` (a task found on the host, not desired)."""
        for vpc in self._vpcs.values() if vpc_id is None else [self._vpc(vpc_id)]:
            for eni in list(vpc.enis.values()):
                if eni.port == port:
                    self.remove_eni(vpc_id, eni.eni_id)

    def forget_vpc(self, vpc_id: str) -> None:
        """The router (and its table) went away; the desired groups stay (a new task may bring it back)."""
        vpc = self._vpc(vpc_id)
        vpc.enis.clear()
        vpc.applied = None

    # -- apply ----------------------------------------------------------------------------------------

    def sync(self, vpc_id: str) -> bool:
        """Load what changed since the last load (the whole table the first time); whether anything did."""
        vpc = self._vpc(vpc_id)
        new = self.model(vpc_id)
        started = time.perf_counter()
        try:
            text = render_update(vpc.applied, new)
            if not text:
                return False
            self.loader.apply(vpc_id, text)
        except Exception as exc:
            if vpc.applied is None:
                raise
            # The table is not what we last loaded (deleted by hand, router remade): replace it whole.
            log.warning("incremental firewall update failed, reloading vpc=%s error=%r", vpc_id, exc)
            vpc.applied = None
            self.loader.apply(vpc_id, render(compile_ir(new)))
        vpc.applied = new
        self.updates += 1
        self.last_update_seconds = time.perf_counter() - started
        return True
