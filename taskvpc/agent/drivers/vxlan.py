"""The overlay driver: a VXLAN device in a VPC's router namespace, its static entries, the underlay guard.

What is made (``taskvpc/agent/overlay.py`` plans it; names and numbers there):

* ``<P>-vx`` in the router namespace ``<P>-r-<vpc>``: a VXLAN device created *from the agent's own
  namespace* and born in the router's (``ip link add … netns``), so its UDP socket (port 4789, bound to
  the underlay address) stays in the agent's namespace while the device sits with the router's ports.
  ``nolearning``, no group or remote: nothing is flooded and nothing learnt; the MAC is the host's
  ``vtep_mac``, the MTU the underlay device's minus the 50 bytes of encapsulation.
* per remote member: ``<ip>/32 dev <P>-vx`` and a permanent neighbour ``<ip> -> vtep_mac(host)``; per
  remote host a permanent FDB entry ``vtep_mac(host) -> dst <host>``.
* in the agent's namespace, the table ``inet <P>_overlay``: a VXLAN packet is accepted only from a
  known host, with a known VNI, carrying IPv4 whose source that host owns (the control plane's
  placement); anything else to port 4789 is dropped before it is decapsulated.

With ``underlay_netns`` (``taskvpc agent --underlay-netns``, what ``taskvpc up`` gives its local agent) the
underlay is that namespace instead of the agent's own: the devices are created from it (their sockets
stay there), the underlay address and MTU are looked up there and the guard is loaded there, so the
agent's namespace (the machine's, for ``up``'s agent) gets no VXLAN socket, route or guard at all.

iproute2 and nft do the work (a few calls per change; members change at task start and stop only).
Every ``ensure_*`` converges what it finds; ``remove_*`` treats absence as success.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from typing import Any

from taskvpc.agent.drivers import netns


class OverlayError(Exception):
    """iproute2 or nft refused a change; the message is theirs."""


def _run(*command: str, stdin: str | None = None) -> str:
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise OverlayError(f"{' '.join(command[:6])}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _json(*command: str) -> list[dict[str, Any]]:
    out = _run(*command).strip()
    return json.loads(out) if out else []


@dataclass(frozen=True)
class SeenDevice:
    vni: int | None
    local: str | None
    mac: str
    mtu: int
    up: bool
    learning: bool


@dataclass(frozen=True)
class SeenOverlay:
    """What a router namespace holds of the overlay (``device`` None: no VXLAN device)."""

    device: SeenDevice | None
    routes: frozenset[str] = frozenset()  # /32 destinations through the device
    neighbours: dict[str, str] = field(default_factory=dict)  # ip -> MAC (permanent ones)
    fdb: dict[str, str] = field(default_factory=dict)  # MAC -> underlay destination


class VxlanDriver:
    """Runs in the agent's namespace, the underlay unless ``underlay_netns`` names another; ``netns_dir``
    must be /run/netns (``ip -n``)."""

    def __init__(self, netns_dir: str = netns.DEFAULT_NETNS_DIR, underlay_netns: str | None = None) -> None:
        self.netns_dir = netns_dir
        self.underlay_netns = underlay_netns

    def _ip(self) -> tuple[str, ...]:
        """``ip`` in the underlay's namespace."""
        return ("ip",) if self.underlay_netns is None else ("ip", "-n", self.underlay_netns)

    def _nft(self) -> tuple[str, ...]:
        """``nft`` in the underlay's namespace."""
        if self.underlay_netns is None:
            return ("nft",)
        return ("nsenter", f"--net={netns.path_of(self.underlay_netns, self.netns_dir)}", "nft")

    def router_id(self, router_ns: str) -> int | None:
        """The router namespace's identity (its inode: a namespace made again is another one), or None."""
        try:
            return os.stat(netns.path_of(router_ns, self.netns_dir)).st_ino
        except OSError:
            return None

    def underlay_mtu(self, address: str) -> int | None:
        """The MTU of the device holding ``address`` in this namespace (None: no such address here)."""
        for link in _json(*self._ip(), "-j", "addr", "show"):
            if any(a.get("local") == address for a in link.get("addr_info", [])):
                return int(link["mtu"])
        return None

    def observe(self, router_ns: str, device: str) -> SeenOverlay:
        # the device only: the router holds a veth per task of its VPC (listing them all cost ~0.3 s of
        # the data plane's thread per pass with 5,000 tasks)
        try:
            links = _json("ip", "-n", router_ns, "-j", "-d", "link", "show", "dev", device)
        except OverlayError as exc:
            if "does not exist" in str(exc):
                return SeenOverlay(None)
            raise
        if not links:
            return SeenOverlay(None)
        link = links[0]
        data = (link.get("linkinfo") or {}).get("info_data") or {}
        seen = SeenDevice(
            data.get("id"),
            data.get("local"),
            str(link.get("address", "")).lower(),
            int(link.get("mtu", 0)),
            "UP" in link.get("flags", []),
            bool(data.get("learning", True)),
        )
        routes = frozenset(
            r["dst"]
            for r in _json("ip", "-n", router_ns, "-j", "route", "show", "dev", device)
            if "/" not in r.get("dst", "/")
        )
        neighbours = {
            n["dst"]: str(n.get("lladdr", "")).lower()
            for n in _json("ip", "-n", router_ns, "-j", "neigh", "show", "dev", device)
            if "PERMANENT" in n.get("state", [])
        }
        fdb = {
            str(f["mac"]).lower(): f["dst"]
            for f in _json("bridge", "-n", router_ns, "-j", "fdb", "show", "dev", device)
            if f.get("dst") and "permanent" in str(f.get("state", "permanent"))
        }
        return SeenOverlay(seen, routes, neighbours, fdb)

    def create_device(
        self, router_ns: str, device: str, vni: int, local: str, mac: str, mtu: int, port: int
    ) -> None:
        """(Re)make the device: created here, born in ``router_ns``, up, no proxy ARP on it."""
        self.remove_device(router_ns, device)
        _run(
            *self._ip(), "link", "add", device, "netns", router_ns, "address", mac, "mtu", str(mtu),
            "type", "vxlan", "id", str(vni), "local", local, "dstport", str(port), "nolearning",
        )  # fmt: skip
        fd = netns.open_ns(router_ns, self.netns_dir)
        if fd is not None:
            try:
                netns.write_sysctls(fd, {f"net/ipv4/conf/{device}/proxy_arp": "0"})
            finally:
                os.close(fd)
        _run("ip", "-n", router_ns, "link", "set", device, "up")

    def remove_device(self, router_ns: str, device: str) -> bool:
        done = subprocess.run(
            ["ip", "-n", router_ns, "link", "del", device], capture_output=True, text=True, check=False
        )
        return done.returncode == 0

    def batch(self, router_ns: str, ip_lines: list[str], fdb_lines: list[str]) -> None:
        """``ip -batch`` and ``bridge -batch`` lines inside ``router_ns`` (routes, neighbours, FDB)."""
        if fdb_lines:  # FDB before neighbours: a neighbour never points at a MAC with nowhere to go
            _run("bridge", "-n", router_ns, "-force", "-batch", "-", stdin="\n".join(fdb_lines) + "\n")
        if ip_lines:
            _run("ip", "-n", router_ns, "-force", "-batch", "-", stdin="\n".join(ip_lines) + "\n")

    # -- the underlay guard ----------------------------------------------------------------------------

    def load_guard(self, nft_text: str) -> None:
        """Replace the underlay guard table (text from ``overlay.guard_text``) in one transaction."""
        _run(*self._nft(), "-f", "-", stdin=nft_text)

    def remove_guard(self, table: str) -> bool:
        try:
            done = subprocess.run(
                [*self._nft(), "delete", "table", "inet", table], capture_output=True, text=True, check=False
            )
        except OSError:  # no nft here: no table either
            return False
        return done.returncode == 0
