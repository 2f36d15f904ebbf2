"""The bridge driver: ``bridge`` and ``none`` tasks, each in a namespace of its own.

``bridge`` (ECS's default on Linux, Docker's ``docker0``): the instance has one Linux bridge per prefix
(``P-br``) with a private /24 chosen from the prefix (``bridge_subnet``) that must not overlap any route
of the instance (refused with a clear message if it would). A task's namespace ``P-b-<task id>`` gets a
veth onto the bridge (``eth0``, the next free address, default route via the bridge's ``.1``).

Port mappings are NAT, as Docker's published ports: an ``ip`` nftables table of the prefix
(``P_bridge``) holds one map per protocol ``host port -> task address . container port``; its
``prerouting`` and ``output`` chains DNAT any packet to a local address of the instance whose port is in
the map, so a mapping answers on every address of the instance, 127.0.0.1 included. Loopback needs two
more things, both scoped to our bridge: ``route_localnet`` on it (the kernel otherwise drops a packet
from 127.0.0.1 routed out of a non-loopback device) and a masquerade of such packets to the bridge's
address (the task could not answer 127.0.0.1). Outbound traffic of bridge tasks is masqueraded too.
A mapping reached from elsewhere and a task's outbound traffic are forwarded, so the bridge turns
``net.ipv4.ip_forward`` on in the instance's namespace (the one the agent runs in) and its removal puts
the old value back (``drivers/forwarding.py``).

``none``: a namespace with only ``lo`` up.

The driver runs ``ip``/``nft`` processes (a few per task start, not per packet) through ``nsenter`` so
that every namespace directory works, and is idempotent: ``ensure_*`` twice is one ``ensure_*``,
``remove_*`` of what is gone succeeds.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import zlib
from collections.abc import Iterable, Sequence

from taskvpc.agent.drivers import forwarding, netns
from taskvpc.agent.netplan import IFNAMSIZ, NetConfig
from taskvpc.agentapi.tasks import PortBinding


class BridgeError(Exception):
    pass


def bridge_name(cfg: NetConfig) -> str:
    return f"{cfg.prefix}-br"


def table_name(cfg: NetConfig) -> str:
    return f"{cfg.prefix}_bridge"


def task_netns(cfg: NetConfig, task_id: str) -> str:
    return f"{cfg.prefix}-b-{task_id}"


def host_veth(cfg: NetConfig, task_id: str) -> str:
    """The bridge end of a task's veth: ``P`` ``v`` and the end of a hash of the task id."""
    digest = f"{zlib.crc32(task_id.encode()):08x}"
    return (cfg.prefix + "v" + digest)[:IFNAMSIZ]


def bridge_subnet(cfg: NetConfig) -> ipaddress.IPv4Network:
    """A /24 of 10.254.0.0/16 picked by the prefix, so two prefixes rarely share one."""
    return ipaddress.IPv4Network(f"10.254.{zlib.crc32(cfg.prefix.encode()) % 256}.0/24")


def collision(subnet: ipaddress.IPv4Network, routes: Iterable[tuple[str, str]], own_dev: str) -> str | None:
    """The first ``(destination, device)`` route overlapping ``subnet`` not through our bridge."""
    for dst, dev in routes:
        if dst == "default" or dev == own_dev:
            continue
        try:
            net = ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False)
        except ValueError:
            continue
        if net.overlaps(subnet):
            return f"{dst} dev {dev}"
    return None


def free_address(subnet: ipaddress.IPv4Network, used: Iterable[str]) -> str:
    taken = set(used) | {str(subnet.network_address + 1)}
    for host in subnet.hosts():
        if str(host) not in taken:
            return str(host)
    raise BridgeError(f"the bridge subnet {subnet} has no free address")


def nft_table(cfg: NetConfig) -> str:
    """The prefix's NAT table; the maps start empty (``ensure_table`` keeps elements of a live table)."""
    br, subnet, name = bridge_name(cfg), bridge_subnet(cfg), table_name(cfg)
    dnat = "".join(f"    fib daddr type local dnat ip to {p} dport map @{p}_ports\n" for p in ("tcp", "udp"))
    return (
        f"table ip {name} {{\n"
        "  map tcp_ports { type inet_service : ipv4_addr . inet_service; }\n"
        "  map udp_ports { type inet_service : ipv4_addr . inet_service; }\n"
        "  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n"
        f"{dnat}  }}\n"
        "  chain output {\n    type nat hook output priority -100; policy accept;\n"
        f"{dnat}  }}\n"
        "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n"
        f'    oifname "{br}" ip saddr 127.0.0.0/8 masquerade\n'
        f'    ip saddr {subnet} oifname != "{br}" masquerade\n'
        "  }\n}\n"
    )


def element_commands(cfg: NetConfig, address: str, bindings: Sequence[PortBinding], add: bool) -> str:
    """Add (replacing) or delete the map elements of one task's bindings, as one nft script."""
    lines = []
    for b in bindings:
        target = f"ip {table_name(cfg)} {b.protocol}_ports"
        value = f"{b.host_port} : {address} . {b.container_port}"
        lines.append(f"add element {target} {{ {value} }}")  # exists afterwards either way
        lines.append(f"delete element {target} {{ {b.host_port} }}")
        if add:
            lines.append(f"add element {target} {{ {value} }}")
    return "\n".join(lines) + "\n"


def _is_prefix(name: str) -> bool:
    try:
        NetConfig(prefix=name)
    except ValueError:
        return False
    return True


class BridgeDriver:
    def __init__(self, cfg: NetConfig) -> None:
        self.cfg = cfg

    # -- processes ---------------------------------------------------------------------------------

    def _run(self, *argv: str, ns: str | None = None, stdin: str | None = None, check: bool = True) -> str:
        if ns is not None:
            argv = ("nsenter", f"--net={netns.path_of(ns, self.cfg.netns_dir)}", *argv)
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30, check=False)
        if check and done.returncode != 0:
            raise BridgeError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
        return done.stdout

    def _link_exists(self, name: str, ns: str | None = None) -> bool:
        return bool(json.loads(self._run("ip", "-j", "link", "show", name, ns=ns, check=False) or "[]"))

    # -- instance ----------------------------------------------------------------------------------

    def ensure_bridge(self) -> None:
        br, subnet = bridge_name(self.cfg), bridge_subnet(self.cfg)
        routes = json.loads(self._run("ip", "-j", "-4", "route", "show", "table", "all") or "[]")
        clash = collision(subnet, ((r.get("dst", ""), r.get("dev", "")) for r in routes), br)
        if clash is not None:
            raise BridgeError(
                f"bridge subnet {subnet} of prefix {self.cfg.prefix!r} overlaps the route {clash}; "
                "use another --net-prefix"
            )
        if not self._link_exists(br):
            self._run("ip", "link", "add", br, "type", "bridge")
        self._run("ip", "addr", "replace", f"{subnet.network_address + 1}/{subnet.prefixlen}", "dev", br)
        self._run("ip", "link", "set", br, "up")
        with open(f"/proc/sys/net/ipv4/conf/{br}/route_localnet", "w") as f:
            f.write("1")
        forwarding.enable(self.cfg.prefix)
        listed = self._run("nft", "list", "table", "ip", table_name(self.cfg), check=False)
        if "tcp_ports" not in listed:
            self._run("nft", "-f", "-", stdin=nft_table(self.cfg))

    def remove_bridge(self) -> str | None:
        """The bridge, its NAT table and the forwarding it turned on; what became of the forwarding."""
        self._run("nft", "delete", "table", "ip", table_name(self.cfg), check=False)
        if self._link_exists(bridge_name(self.cfg)):
            self._run("ip", "link", "del", bridge_name(self.cfg))
        return forwarding.restore(self.cfg.prefix, self._other_bridges())

    def _other_bridges(self) -> list[str]:
        """Prefixes of the other taskvpc bridges in this namespace (``P-br`` of a valid prefix)."""
        found = []
        for link in json.loads(self._run("ip", "-j", "link", "show", "type", "bridge", check=False) or "[]"):
            name = str(link.get("ifname", ""))
            prefix = name[: -len("-br")]
            if name.endswith("-br") and prefix != self.cfg.prefix and _is_prefix(prefix):
                found.append(prefix)
        return found

    # -- tasks -------------------------------------------------------------------------------------

    def _addresses(self) -> dict[str, str]:
        """Task id -> eth0 address of every bridge task namespace of the prefix."""
        head = f"{self.cfg.prefix}-b-"
        found = {}
        for name in netns.list_names(self.cfg.netns_dir):
            if name.startswith(head):
                out = self._run("ip", "-j", "-4", "addr", "show", "dev", "eth0", ns=name, check=False)
                for link in json.loads(out or "[]"):
                    for a in link.get("addr_info", []):
                        found[name[len(head) :]] = a["local"]
        return found

    def _ensure_netns(self, name: str) -> None:
        if name not in netns.list_names(self.cfg.netns_dir):
            fd, sock = netns.create(name, self.cfg.netns_dir)
            sock.close()
            os.close(fd)
        self._run("ip", "link", "set", "lo", "up", ns=name)

    def ensure_isolated(self, task_id: str) -> str:
        """A ``none`` task: its namespace, loopback only."""
        name = task_netns(self.cfg, task_id)
        self._ensure_netns(name)
        return netns.path_of(name, self.cfg.netns_dir)

    def ensure_task(self, task_id: str, bindings: Sequence[PortBinding]) -> str:
        """A ``bridge`` task's namespace, veth and port mappings; returns the namespace's path."""
        self.ensure_bridge()
        name, veth, subnet = (
            task_netns(self.cfg, task_id),
            host_veth(self.cfg, task_id),
            bridge_subnet(self.cfg),
        )
        self._ensure_netns(name)
        address = self._addresses().get(task_id)
        if address is None:
            address = free_address(subnet, self._addresses().values())
            if not self._link_exists("eth0", ns=name):
                if self._link_exists(veth):
                    self._run("ip", "link", "del", veth)
                self._run(
                    "ip",
                    "link",
                    "add",
                    veth,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    netns.path_of(name, self.cfg.netns_dir),
                )
            self._run("ip", "addr", "replace", f"{address}/{subnet.prefixlen}", "dev", "eth0", ns=name)
        self._run("ip", "link", "set", veth, "master", bridge_name(self.cfg), "up")
        self._run("ip", "link", "set", "eth0", "up", ns=name)
        self._run("ip", "route", "replace", "default", "via", str(subnet.network_address + 1), ns=name)
        if bindings:
            self._run("nft", "-f", "-", stdin=element_commands(self.cfg, address, bindings, add=True))
        return netns.path_of(name, self.cfg.netns_dir)

    def remove_task(self, task_id: str, bindings: Sequence[PortBinding]) -> None:
        address = self._addresses().get(task_id)
        if bindings and address is not None:
            self._run(
                "nft", "-f", "-", stdin=element_commands(self.cfg, address, bindings, add=False), check=False
            )
        netns.remove(task_netns(self.cfg, task_id), self.cfg.netns_dir)  # its veth goes with it
