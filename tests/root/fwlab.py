"""A firewall lab for root tests and ``bench/firewall.py``: one VPC router, task namespaces, real packets.

:func:`lab` builds, under a name prefix unique to the caller, a VPC router and ``n`` task namespaces with the
real ``NetlinkDriver`` (addresses alternate between two subnets of 10.243.0.0/16 by default), plus optionally a
*fake host*: a namespace ``<prefix>-fh`` whose veth ends in the router as the access port ``<prefix>-host``
and carries 169.254.100.1, exactly as the host end of ``NetlinkDriver.ensure_host_access`` would, but
without touching the host's own namespace or routes (so parallel runs never collide on that address).
Teardown removes every namespace of the prefix (the router's table, veths and routes go with them) and
checks that nothing of the prefix is left.

:class:`Prober` opens, once, in every node (task or fake host) TCP listeners and UDP echo sockets on
:data:`PORTS` and raw sockets for ICMP and for protocol :data:`OTHER_PROTO`; :meth:`Prober.run` then sends
many probes at once (non-blocking, one ``selectors`` loop, no process per probe) and says for each whether
it got through: a TCP handshake, a UDP datagram echoed back, an ICMP message seen by the destination (an
echo request must also get its reply back), a raw datagram of protocol 253 seen by the destination.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import selectors
import socket
import struct
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from taskvpc.agent import netplan
from taskvpc.agent.drivers import netns
from taskvpc.agent.drivers.firewall import FirewallDriver
from taskvpc.agent.drivers.netlink import NetlinkDriver
from taskvpc.agent.netplan import NetConfig, TaskEni
from taskvpc.agentapi.network import Subnet
from taskvpc.netmodel.evaluator import Flow
from tests.root import hostcheck

NET = 243  # tasks are 10.NET.{0,16}.(10 + i): two /20 subnets
HOST_IP = "169.254.100.1"
ROUTER_LINK_IP = "169.254.100.2"
PORTS = range(1, 31)  # every task listens on these, TCP and UDP
OTHER_PROTO = 253  # "use for experimentation" (RFC 3692): conntrack tracks it generically, nobody uses it
ECHO, ECHO_REPLY, UNREACHABLE, TIME_EXCEEDED, TIMESTAMP = 8, 0, 3, 11, 13
SIOCGIFHWADDR = 0x8927


@dataclass
class Node:
    """A namespace packets are sent from and to: a task or the fake host."""

    name: str
    ip: str
    fd: int


@dataclass
class Lab:
    cfg: NetConfig
    vpc_id: str
    enis: list[TaskEni]
    tasks: list[Node]
    host: Node | None
    router_fd: int
    net: NetlinkDriver
    fw: FirewallDriver
    table: str

    def port(self, eni: TaskEni) -> str:
        return netplan.eni_port(self.cfg, eni.eni_id)

    @property
    def host_port(self) -> str:
        return netplan.router_access_port(self.cfg)

    @property
    def nodes(self) -> list[Node]:
        return [*self.tasks, *([self.host] if self.host else [])]

    def router_mac(self, port: str) -> bytes:
        """The MAC of a router port (what a task's frames are addressed to)."""
        with sock_in(self.router_fd, socket.SOCK_DGRAM) as s:
            info = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, struct.pack("256s", port.encode()))
        return info[18:24]

    def flush_conntrack(self) -> None:
        flush_conntrack(self.router_fd)


def subnets(net: int) -> list[Subnet]:
    return [Subnet.of("subnet-0a", f"10.{net}.0.0/20"), Subnet.of("subnet-0b", f"10.{net}.16.0/20")]


def test_eni(n: int, ip: str, gateway: str, tag: str = "task") -> TaskEni:
    """A task ENI with a fresh id and task key, MAC 02:7e:...:n, in a /20."""
    return TaskEni(
        eni_id="eni-" + secrets.token_hex(9)[:17],
        mac=f"02:7e:00:00:00:{n:02x}",
        ip=ip,
        prefix_len=20,
        gateway=gateway,
        task_key=f"{tag}{n}-" + secrets.token_hex(3),
    )


def task_eni(i: int, tag: str, net: int = NET) -> TaskEni:
    """Task ``i`` of a lab: subnets alternate, addresses 10.net.{0,16}.(10 + i), MACs 02:7e:...:(i + 1)."""
    third = 0 if i % 2 == 0 else 16
    return test_eni(i + 1, f"10.{net}.{third}.{10 + i}", f"10.{net}.{third}.1", tag)


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


def _fake_host(cfg: NetConfig, router_ns: str, net: int) -> str:
    """A namespace standing in for the host on the VPC's access link (see the module docstring)."""
    name = f"{cfg.prefix}-fh"
    _ip("netns", "add", name)
    port = netplan.router_access_port(cfg)
    _ip("-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", router_ns)
    _ip("-n", name, "link", "set", "lo", "up")
    _ip("-n", name, "link", "set", "eth0", "up")
    _ip("-n", name, "addr", "add", f"{HOST_IP}/32", "dev", "eth0")
    for cidr in (s.cidr_block for s in subnets(net)):
        _ip("-n", name, "route", "add", cidr, "via", ROUTER_LINK_IP, "dev", "eth0", "onlink")
    _ip("-n", router_ns, "link", "set", port, "up")
    _ip("-n", router_ns, "addr", "add", f"{ROUTER_LINK_IP}/32", "dev", port)
    _ip("-n", router_ns, "route", "add", f"{HOST_IP}/32", "dev", port)
    return name


def _open(name: str, cfg: NetConfig) -> int:
    fd = netns.open_ns(name, cfg.netns_dir)
    assert fd is not None, name
    return fd


@contextlib.contextmanager
def lab(head: str, n: int, fake_host: bool = False, tag: str = "fw", net: int = NET) -> Iterator[Lab]:
    """A router, ``n`` tasks and maybe a fake host under prefix ``head`` + 4 hex digits; gone afterwards.

    Tasks are in 10.``net``.0.0/20 and 10.``net``.16.0/20 (labs with different ``net`` never share one)."""
    cfg = NetConfig(prefix=head + secrets.token_hex(2))
    fds: list[int] = []
    try:
        with NetlinkDriver(cfg) as nl, FirewallDriver(cfg) as fw:
            vpc_id = "vpc-" + secrets.token_hex(9)[:17]
            nl.ensure_vpc_router(vpc_id, subnets(net))
            router_ns = netplan.router_netns(cfg, vpc_id)
            fds.append(router_fd := _open(router_ns, cfg))
            enis = [task_eni(i, tag, net) for i in range(n)]
            tasks = []
            for eni in enis:
                nl.ensure_task_network(vpc_id, eni)
                name = netplan.task_netns(cfg, eni.task_key)
                fds.append(fd := _open(name, cfg))
                tasks.append(Node(name, eni.ip, fd))
            host = None
            if fake_host:
                name = _fake_host(cfg, router_ns, net)
                fds.append(fd := _open(name, cfg))
                host = Node(name, HOST_IP, fd)
            yield Lab(cfg, vpc_id, enis, tasks, host, router_fd, nl, fw, cfg.prefix + "sg")
    finally:
        for fd in fds:
            os.close(fd)
        hostcheck.scrub(cfg.prefix)
        left = hostcheck.wait_clean(cfg.prefix)
        assert not left, f"left behind: {left}"


# -- sockets and packets ---------------------------------------------------------------------------------


def sock_in(ns_fd: int, kind: int, proto: int = 0, family: int = socket.AF_INET) -> socket.socket:
    """A socket of namespace ``ns_fd`` (sockets stay in the namespace they were made in)."""
    with netns.entered(ns_fd):
        return socket.socket(family, kind, proto)


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total >> 16) + (total & 0xFFFF)
    return int(~total & 0xFFFF)


def icmp_message(kind: int, code: int, ident: int, token: bytes, inner_src: str) -> bytes:
    """An ICMP message ending in ``token``; errors (3, 11) quote a plausible IPv4/UDP header first."""
    if kind in (UNREACHABLE, TIME_EXCEEDED):
        inner = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 28, ident, 0, 64, 17, 0, socket.inet_aton(inner_src), b"\xc0\0\2\x4d"
        )
        body = struct.pack("!I", 0) + inner + struct.pack("!HHHH", ident, 9, 8, 0) + token
    elif kind == TIMESTAMP:
        body = struct.pack("!HH", ident, 1) + bytes(12) + token
    else:
        body = struct.pack("!HH", ident, 1) + token
    header = struct.pack("!BBH", kind, code, 0)
    return struct.pack("!BBH", kind, code, checksum(header + body)) + body


def ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An IPv4 packet carrying a UDP datagram (UDP checksum 0: "none", valid for IPv4)."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        0,
        0x4000,
        64,
        17,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + udp


def flush_conntrack(ns_fd: int) -> None:
    """Forget every connection the namespace tracks (ctnetlink IPCTNL_MSG_CT_DELETE without a tuple)."""
    netlink_netfilter, nlm_f_request, nlm_f_ack, ct_delete = 12, 1, 4, (1 << 8) | 2
    with sock_in(ns_fd, socket.SOCK_RAW, netlink_netfilter, socket.AF_NETLINK) as nl:
        nl.bind((0, 0))
        for family in (socket.AF_INET, socket.AF_INET6):
            nl.send(
                struct.pack("=IHHII", 20, ct_delete, nlm_f_request | nlm_f_ack, 1, 0)
                + bytes([family, 0, 0, 0])
            )
            reply = nl.recv(4096)
            (code,) = struct.unpack_from("=i", reply, 16)
            if code not in (0, -errno.ENOENT):
                raise OSError(-code, f"conntrack flush: {os.strerror(-code)}")


# -- probes ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """Send ``flow`` (its addresses are the nodes') from node ``src`` to node ``dst``."""

    src: int
    dst: int
    flow: Flow


@dataclass
class _Pending:
    probe: Probe
    token: bytes
    sock: socket.socket | None = None
    reached: bool = False
    replied: bool = False
    result: str | None = None  # "ok", "timeout" or what went wrong


class Prober:
    """Listeners and raw sockets in every node, opened once; :meth:`run` sends probes in parallel."""

    def __init__(self, nodes: Sequence[Node]) -> None:
        self.nodes = list(nodes)
        self.sel = selectors.DefaultSelector()
        self._owned: list[socket.socket] = []
        self._tokens: dict[bytes, _Pending] = {}
        for index, node in enumerate(self.nodes):
            for port in PORTS:
                tcp = self._own(sock_in(node.fd, socket.SOCK_STREAM))
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind(("0.0.0.0", port))
                tcp.listen(64)
                self._watch(tcp, ("accept", index))
                udp = self._own(sock_in(node.fd, socket.SOCK_DGRAM))
                udp.bind(("0.0.0.0", port))
                self._watch(udp, ("echo", index))
            self._watch(self._own(sock_in(node.fd, socket.SOCK_RAW, socket.IPPROTO_ICMP)), ("icmp", index))
            self._watch(self._own(sock_in(node.fd, socket.SOCK_RAW, OTHER_PROTO)), ("other", index))
        self._raw = {
            (key.data[0], key.data[1]): key.fileobj
            for key in self.sel.get_map().values()
            if key.data[0] in ("icmp", "other")
        }

    def _own(self, sock: socket.socket) -> socket.socket:
        self._owned.append(sock)
        return sock

    def _watch(self, sock: socket.socket, data: tuple[str, int], events: int = selectors.EVENT_READ) -> None:
        sock.setblocking(False)
        self.sel.register(sock, events, data)

    def close(self) -> None:
        self.sel.close()
        for sock in self._owned:
            sock.close()

    def __enter__(self) -> Prober:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one round ---------------------------------------------------------------------------------

    def run(self, probes: Sequence[Probe], timeout: float) -> list[str]:
        """Send every probe at once; each result is "ok", "timeout" or a short reason it failed."""
        pending = [_Pending(p, secrets.token_bytes(8)) for p in probes]
        self._tokens = {p.token: p for p in pending}
        for i, p in enumerate(pending):
            self._start(i, p)
        deadline = time.monotonic() + timeout
        while any(p.result is None for p in pending) and (left := deadline - time.monotonic()) > 0:
            for key, _ in self.sel.select(left):
                self._handle(key.fileobj, key.data, pending)  # type: ignore[arg-type]
        for p in pending:
            if p.result is None:
                p.result = "timeout" if not p.reached else "no reply"
            self._drop(p)
        self._tokens = {}
        return [p.result or "timeout" for p in pending]

    def _start(self, index: int, p: _Pending) -> None:
        flow, src, dst = p.probe.flow, self.nodes[p.probe.src], self.nodes[p.probe.dst]
        assert (flow.src_ip, flow.dst_ip) == (src.ip, dst.ip), (flow, src, dst)
        if flow.protocol == "tcp":
            p.sock = sock_in(src.fd, socket.SOCK_STREAM)
            p.sock.setblocking(False)
            p.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
            p.sock.connect_ex((dst.ip, flow.dst_port or 0))
            self.sel.register(p.sock, selectors.EVENT_WRITE, ("tcp", index))
        elif flow.protocol == "udp":
            p.sock = sock_in(src.fd, socket.SOCK_DGRAM)
            p.sock.setblocking(False)
            p.sock.connect((dst.ip, flow.dst_port or 0))
            p.sock.send(p.token)
            self.sel.register(p.sock, selectors.EVENT_READ, ("udp", index))
        elif flow.protocol == "icmp":
            assert flow.icmp_type is not None and flow.icmp_code is not None
            msg = icmp_message(flow.icmp_type, flow.icmp_code, secrets.randbits(16), p.token, dst.ip)
            self._raw[("icmp", p.probe.src)].sendto(msg, (dst.ip, 0))  # type: ignore[union-attr]
        elif flow.protocol == str(OTHER_PROTO):
            self._raw[("other", p.probe.src)].sendto(p.token, (dst.ip, 0))  # type: ignore[union-attr]
        else:
            raise ValueError(f"cannot probe protocol {flow.protocol}")

    def _drop(self, p: _Pending) -> None:
        if p.sock is not None:
            self.sel.unregister(p.sock)
            p.sock.close()
            p.sock = None

    def _handle(self, sock: socket.socket, data: tuple[str, int], pending: list[_Pending]) -> None:
        what, index = data
        if what == "accept":
            with contextlib.suppress(BlockingIOError):
                sock.accept()[0].close()
        elif what == "echo":
            with contextlib.suppress(BlockingIOError):
                payload, peer = sock.recvfrom(2048)
                sock.sendto(payload, peer)
        elif what == "tcp":
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            pending[index].result = "ok" if err == 0 else errno.errorcode.get(err, str(err))
            self._drop(pending[index])
        elif what == "udp":
            try:
                answer = sock.recv(2048)
                pending[index].result = "ok" if answer == pending[index].token else "bad echo"
            except BlockingIOError:
                return
            except OSError as exc:
                pending[index].result = errno.errorcode.get(exc.errno or 0, str(exc))
            self._drop(pending[index])
        else:
            self._raw_arrived(what, index, sock)

    def _raw_arrived(self, what: str, node: int, sock: socket.socket) -> None:
        try:
            packet = sock.recv(4096)
        except BlockingIOError:
            return
        p = self._tokens.get(packet[-8:])
        if p is None:
            return
        if what == "other":
            if node == p.probe.dst:
                p.result = "ok"
            return
        kind = packet[(packet[0] & 0x0F) * 4]
        if node == p.probe.dst and kind == p.probe.flow.icmp_type:
            p.reached = True
        elif node == p.probe.src and kind == ECHO_REPLY and p.probe.flow.icmp_type == ECHO:
            p.replied = True
        if p.reached and (p.replied or p.probe.flow.icmp_type != ECHO):
            p.result = "ok"
