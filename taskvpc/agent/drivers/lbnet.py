"""A load balancer's network namespace: its ENIs wired to the VPC router as task ENIs are.

Topology (``P`` the prefix, ``<id>`` the 16 hex digits ending the LB's ARN)::

    router namespace ``P-r-<vpc hex>``                LB namespace ``P-l-<id>``
    ``P<eni hex>`` (one per LB ENI, ifalias = ENI id)  <-- veth -->  ``eth<i>`` = the ENI: its MAC, ip/prefix
    route ``<ip>/32 dev P<eni hex>``, proxy ARP                       table 100+i: default via its subnet's .1
                                                                      rule ``from <ip> lookup 100+i``

The router end is named and configured exactly as a task ENI's port (``netplan.eni_port``), so the VPC's
nftables table enforces the LB's security groups on it (``security.FirewallSync``) and group references to
the LB's groups match its addresses. One namespace holds all the LB's ENIs (one per subnet, in several
AZs): a reply leaves through the ENI its source address belongs to (the source rules), or the router's
strict reverse-path filter would drop it; the main table's default goes out of ``eth0``. A flow an NLB
forwards has its client's address as source when routed: the NLB marks it with the ENI it arrived on and
the rule ``fwmark 100+i lookup 100+i`` sends it (and its replies) back out of that ENI.

LB changes are rare and small (a few links per load balancer), so this driver runs ``ip`` rather than
speaking netlink itself. ``ensure`` converges whatever it finds; ``remove`` treats "absent" as success.
The namespace path is ``netns_dir`` (``/run/netns``, where ``ip -n`` looks).
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from collections.abc import Sequence
from typing import Any

from taskvpc.agent import netplan
from taskvpc.agent.drivers import netns
from taskvpc.agentapi.network import Eni

LB_SYSCTLS = {
    # Several interfaces in one namespace: a packet for eth1's address may arrive while the main table's
    # default leaves by eth0; the source rules route replies, the router checks sources strictly.
    "net/ipv4/conf/all/rp_filter": "0",
    "net/ipv4/conf/default/rp_filter": "0",
    "net/ipv4/conf/all/arp_ignore": "1",
    "net/ipv4/conf/default/arp_ignore": "1",
    "net/ipv4/conf/all/arp_announce": "2",
    "net/ipv4/conf/default/arp_announce": "2",
}
TABLE_BASE = 100
FWMARK_PREF_BASE = 50  # before the source rules: a forwarded flow's source is its client's


def fwmark(index: int) -> int:
    """The firewall mark of flows that arrived on ``eth<index>`` (an NLB marks them): they route by its table."""
    return TABLE_BASE + index


class LbNetError(Exception):
    """``ip`` refused a step; the message is its."""


def lb_netns(cfg: netplan.NetConfig, lb_id: str) -> str:
    return f"{cfg.prefix}-l-{lb_id}"


def _ip(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)
    if check and proc.returncode != 0:
        raise LbNetError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def _json(*args: str) -> list[dict[str, Any]]:
    out = _ip("-j", *args, check=False).strip()
    try:
        value = json.loads(out) if out else []
    except ValueError:
        return []
    return value if isinstance(value, list) else []


class LbNetDriver:
    def __init__(self, cfg: netplan.NetConfig) -> None:
        self.cfg = cfg

    def observe(self) -> list[str]:
        """The LB ids whose namespaces exist on this host (ours: this prefix)."""
        found = []
        head = lb_netns(self.cfg, "")  # (parsing every task's name cost ~8 ms a call at 5,000 tasks)
        for name in netns.list_names(self.cfg.netns_dir):
            if not name.startswith(head):
                continue
            parsed = netplan.parse_netns(self.cfg, name)
            if parsed is not None and parsed[0] == "loadbalancer":
                found.append(parsed[1])
        return sorted(found)

    def exists(self, lb_id: str) -> bool:
        fd = netns.open_ns(lb_netns(self.cfg, lb_id), self.cfg.netns_dir)
        if fd is None:
            return False
        os.close(fd)
        return True

    def ensure(self, lb_id: str, vpc_id: str, enis: Sequence[Eni]) -> None:
        """The LB's namespace with ``eth<i>`` = ``enis[i]``, each wired to the VPC's router (which must exist)."""
        ns, router = lb_netns(self.cfg, lb_id), netplan.router_netns(self.cfg, vpc_id)
        if not self.exists(lb_id):
            fd, sock = netns.create(ns, self.cfg.netns_dir, sysctls=LB_SYSCTLS)
            sock.close()
            os.close(fd)
        _ip("-n", ns, "link", "set", "lo", "up")
        links = {link.get("ifname"): link for link in _json("-n", ns, "link", "show")}
        for index, eni in enumerate(enis):
            self._ensure_eni(ns, router, index, eni, links.get(f"eth{index}"))
        for name in links:  # ENIs the LB no longer has
            if (
                isinstance(name, str)
                and name.startswith("eth")
                and name[3:].isdigit()
                and int(name[3:]) >= len(enis)
            ):
                _ip("-n", ns, "link", "del", name, check=False)
        if enis:
            _ip("-n", ns, "route", "replace", "default", "via", enis[0].gateway, "dev", "eth0")

    def _ensure_eni(self, ns: str, router: str, index: int, eni: Eni, link: dict[str, Any] | None) -> None:
        dev, port = f"eth{index}", netplan.eni_port(self.cfg, eni.network_interface_id)
        peer = {p.get("ifname"): p for p in _json("-n", router, "link", "show", port)}.get(port)
        paired = (
            link is not None
            and peer is not None
            and link.get("address") == eni.mac
            and peer.get("ifalias") == eni.network_interface_id
            and link.get("link_index") == peer.get("ifindex")
        )
        if not paired:
            if link is not None:
                _ip("-n", ns, "link", "del", dev, check=False)
            if peer is not None:
                _ip("-n", router, "link", "del", port, check=False)
            _ip("-n", router, "link", "add", port, "type", "veth", "peer", "name", dev, "netns", ns,
                "address", eni.mac)  # fmt: skip
        _ip("-n", router, "link", "set", port, "alias", eni.network_interface_id, "up")
        _ip("-n", router, "route", "replace", f"{eni.private_ipv4_address}/32", "dev", port)
        fd = netns.open_ns(router, self.cfg.netns_dir)
        if fd is not None:
            try:  # answer ARP for the rest of the subnet at once, as a task's port does
                netns.write_sysctls(fd, {f"net/ipv4/neigh/{port}/proxy_delay": "0",
                                         f"net/ipv4/conf/{port}/proxy_arp": "1"})  # fmt: skip
            finally:
                os.close(fd)
        table = str(TABLE_BASE + index)
        have = {(a.get("local"), a.get("prefixlen")) for i in _json("-n", ns, "addr", "show", "dev", dev)
                for a in i.get("addr_info", []) if a.get("family") == "inet"}  # fmt: skip
        for local, plen in have - {(eni.private_ipv4_address, eni.prefix_length)}:
            _ip("-n", ns, "addr", "del", f"{local}/{plen}", "dev", dev, check=False)
        _ip("-n", ns, "addr", "replace", eni.address, "dev", dev)
        _ip("-n", ns, "link", "set", dev, "up")
        subnet = str(ipaddress.IPv4Interface(eni.address).network)
        _ip("-n", ns, "route", "replace", subnet, "dev", dev, "table", table)
        _ip("-n", ns, "route", "replace", "default", "via", eni.gateway, "dev", dev, "table", table)
        rules = [r for r in _json("-n", ns, "rule", "show") if str(r.get("priority")) == table]
        if [(r.get("src"), str(r.get("table"))) for r in rules] != [(eni.private_ipv4_address, table)]:
            for _ in rules:  # this ENI's table's rule, for whatever address it had
                _ip("-n", ns, "rule", "del", "pref", table, check=False)
            _ip("-n", ns, "rule", "add", "from", eni.private_ipv4_address, "lookup", table, "pref", table)
        pref = str(FWMARK_PREF_BASE + index)
        marked = [r for r in _json("-n", ns, "rule", "show") if str(r.get("priority")) == pref]
        if [(str(r.get("fwmark")), str(r.get("table"))) for r in marked] != [(hex(fwmark(index)), table)]:
            for _ in marked:
                _ip("-n", ns, "rule", "del", "pref", pref, check=False)
            _ip("-n", ns, "rule", "add", "fwmark", str(fwmark(index)), "lookup", table, "pref", pref)

    def remove(self, lb_id: str) -> bool:
        """Delete the namespace (its veths and their router ends go with it); False when absent.
        Processes inside it must be stopped first, or the namespace outlives its name."""
        return netns.remove(lb_netns(self.cfg, lb_id), self.cfg.netns_dir)
