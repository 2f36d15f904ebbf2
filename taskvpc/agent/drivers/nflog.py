"""NFLOG over raw netlink: the packets a router's security groups dropped, for REJECT flow records.

The router's nftables table logs an ENI's group drops with ``log prefix "<eni-id> in|out" group 7
snaplen 64`` (``netmodel.firewall_ir.RejectLog``; rate-limited there). NFLOG groups belong to a network
namespace, so the agent binds group 7 with a socket made inside each router namespace it collects for.
pyroute2 has no NFLOG module, and the protocol is small: one config message binds the group and asks
for the first bytes of each packet; each logged packet arrives as ``NFULNL_MSG_PACKET`` with its prefix
and payload (the IP header onward).
"""

from __future__ import annotations

import errno
import socket
import struct
import time
from collections.abc import Iterator

from taskvpc.agent.drivers import conntrack as ct, netns
from taskvpc.netmodel.firewall_ir import REJECT_LOG_SNAPLEN
from taskvpc.netmodel.flow_collect import Drop

NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET, NFULNL_MSG_CONFIG = 0, 1
NFULA_CFG_CMD, NFULA_CFG_MODE = 1, 2
NFULNL_CFG_CMD_BIND = 1
NFULNL_COPY_PACKET = 2
NFULA_TIMESTAMP, NFULA_PAYLOAD, NFULA_PREFIX = 3, 9, 10
RCVBUF = 4 << 20


def _attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _config(group: int, attrs: bytes, seq: int) -> bytes:
    body = struct.pack("=BB", socket.AF_UNSPEC, 0) + struct.pack("!H", group) + attrs
    flags = ct.NLM_F_REQUEST | ct.NLM_F_ACK
    return (
        ct._HEADER.pack(
            ct._HEADER.size + len(body), (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG, flags, seq, 0
        )
        + body
    )


def _ack(sock: socket.socket) -> None:
    data = sock.recv(65536)
    _, kind, _, _, _ = ct._HEADER.unpack_from(data)
    if kind == ct.NLMSG_ERROR:
        (code,) = struct.unpack_from("=i", data, ct._HEADER.size)
        if code:
            raise OSError(-code, f"nflog bind: {errno.errorcode.get(-code, code)}")


def open_group(ns_fd: int, group: int, snaplen: int = REJECT_LOG_SNAPLEN) -> socket.socket:
    """A non-blocking socket of namespace ``ns_fd`` receiving NFLOG ``group``'s packets (first
    ``snaplen`` bytes). OSError(EBUSY) when another socket of that namespace holds the group."""
    sock = netns.netlink_socket_in(ns_fd, ct.NETLINK_NETFILTER)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.bind((0, 0))
        sock.send(_config(group, _attr(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_BIND])), 1))
        _ack(sock)
        mode = struct.pack("!IBB", snaplen, NFULNL_COPY_PACKET, 0)
        sock.send(_config(group, _attr(NFULA_CFG_MODE, mode), 2))
        _ack(sock)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def parse_packet(payload: bytes, now: float) -> Drop | None:
    """One ``NFULNL_MSG_PACKET`` (after ``nfgenmsg``) as a :class:`Drop`; None when its prefix is not
    ``"<eni-id> in|out"`` or it carries no IPv4 header."""
    prefix = b""
    packet = b""
    stamp = now
    for kind, value, _ in ct._attrs(payload):
        if kind == NFULA_PREFIX:
            prefix = value.rstrip(b"\0")
        elif kind == NFULA_PAYLOAD:
            packet = value
        elif kind == NFULA_TIMESTAMP and len(value) == 16:
            seconds, micros = struct.unpack("!QQ", value)
            stamp = seconds + micros / 1e6
    parts = prefix.decode(errors="replace").split()
    if len(parts) != 2 or parts[1] not in ("in", "out") or len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    header = (packet[0] & 0x0F) * 4
    (length,) = struct.unpack_from("!H", packet, 2)
    protocol = packet[9]
    sport = dport = flags = 0
    if protocol in (6, 17) and len(packet) >= header + 4:
        sport, dport = struct.unpack_from("!HH", packet, header)
    if protocol == 6 and len(packet) >= header + 14:
        flags = packet[header + 13] & 0x3F
    return Drop(
        eni_id=parts[0],
        direction=parts[1],
        protocol=protocol,
        src=socket.inet_ntoa(packet[12:16]),
        dst=socket.inet_ntoa(packet[16:20]),
        sport=sport,
        dport=dport,
        length=length,
        tcp_flags=flags,
        time=stamp,
    )


def _messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + ct._HEADER.size <= len(data):
        length, kind, _, _, _ = ct._HEADER.unpack_from(data, offset)
        if length < ct._HEADER.size:
            return
        yield kind, data[offset + ct._HEADER.size : offset + length]
        offset += (length + 3) & ~3


def read_drops(sock: socket.socket) -> tuple[list[Drop], bool]:
    """The logged packets waiting on ``sock`` (non-blocking) and whether some were lost (ENOBUFS)."""
    out: list[Drop] = []
    lost = False
    while True:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            return out, lost
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                lost = True
                continue
            raise
        now = time.time()
        for kind, payload in _messages(data):
            if kind == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET:
                drop = parse_packet(payload[ct._NFGEN.size :], now)
                if drop is not None:
                    out.append(drop)
