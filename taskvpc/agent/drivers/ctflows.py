"""Conntrack accounting for flow logs (ctnetlink, no conntrack tool: none is installed here).

Two sources, both in a VPC router's namespace, both giving counters *since the last zeroing*:

* :func:`dump_and_zero`: ``IPCTNL_MSG_CT_GET_CTRZERO`` as a dump: every entry with its counters, which
  the kernel zeroes atomically as it answers, so each dump is the exact delta since the previous one,
  however long a flow lives;
* :func:`destroy_socket` + :func:`read_events`: ``DESTROY`` events (multicast group 3) carry an entry's
  last counters when conntrack forgets it, so a flow that ends between two dumps is not lost.

Counters exist only with ``net.netfilter.nf_conntrack_acct=1`` in that namespace *when the entry is
made*; :func:`enable_accounting` sets it (with ``nf_conntrack_timestamp=1`` for start/stop times and
``nf_conntrack_events=1``: with the default 2 the kernel adds the event extension only to entries made
while a listener exists). What conntrack counts is what netfilter sees: one ``sk_buff`` is one packet,
so a GSO/GRO super-packet counts once (``agent.flowlogs`` turns segmentation offloads off where it must
count wire packets).
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator

from taskvpc.agent.drivers import conntrack as ct, netns
from taskvpc.netmodel.flow_collect import CtDelta

IPCTNL_MSG_CT_NEW, IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_GET_CTRZERO = 0, 2, 3
NFNLGRP_CONNTRACK_DESTROY = 3
CTA_COUNTERS_ORIG, CTA_COUNTERS_REPLY, CTA_TIMESTAMP = 9, 10, 20
CTA_COUNTERS_PACKETS, CTA_COUNTERS_BYTES, CTA_COUNTERS32_PACKETS, CTA_COUNTERS32_BYTES = 1, 2, 3, 4
CTA_TIMESTAMP_START, CTA_TIMESTAMP_STOP = 1, 2
CTA_TUPLE_PROTO, CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 2, 1, 2, 3
SYSCTLS = {
    "net/netfilter/nf_conntrack_acct": "1",
    "net/netfilter/nf_conntrack_timestamp": "1",
    "net/netfilter/nf_conntrack_events": "1",
}
RCVBUF = 8 << 20


def enable_accounting(ns_fd: int) -> None:
    """Counters, timestamps and events for the entries the namespace makes from now on."""
    netns.write_sysctls(ns_fd, SYSCTLS)


def _tuple(payload: bytes) -> tuple[int, str, str, int, int]:
    protocol, src, dst, sport, dport = 0, "", "", 0, 0
    for kind, value, _ in ct._attrs(payload):
        if kind == ct.CTA_TUPLE_IP:
            for k, v, _ in ct._attrs(value):
                if k == ct.CTA_IP_V4_SRC and len(v) == 4:
                    src = socket.inet_ntoa(v)
                elif k == ct.CTA_IP_V4_DST and len(v) == 4:
                    dst = socket.inet_ntoa(v)
        elif kind == CTA_TUPLE_PROTO:
            for k, v, _ in ct._attrs(value):
                if k == CTA_PROTO_NUM and v:
                    protocol = v[0]
                elif k == CTA_PROTO_SRC_PORT and len(v) >= 2:
                    (sport,) = struct.unpack_from("!H", v)
                elif k == CTA_PROTO_DST_PORT and len(v) >= 2:
                    (dport,) = struct.unpack_from("!H", v)
    return protocol, src, dst, sport, dport


def _counters(payload: bytes) -> tuple[int, int]:
    packets = octets = 0
    for kind, value, _ in ct._attrs(payload):
        if kind == CTA_COUNTERS_PACKETS and len(value) == 8:
            (packets,) = struct.unpack("!Q", value)
        elif kind == CTA_COUNTERS_BYTES and len(value) == 8:
            (octets,) = struct.unpack("!Q", value)
        elif kind == CTA_COUNTERS32_PACKETS and len(value) == 4:
            (packets,) = struct.unpack("!I", value)
        elif kind == CTA_COUNTERS32_BYTES and len(value) == 4:
            (octets,) = struct.unpack("!I", value)
    return packets, octets


def parse_entry(payload: bytes) -> CtDelta | None:
    """A ctnetlink entry (the payload after ``nfgenmsg``) as a delta; None without IPv4 tuples."""
    orig = reply = None
    counts = {CTA_COUNTERS_ORIG: (0, 0), CTA_COUNTERS_REPLY: (0, 0)}
    started = stopped = None
    for kind, value, _ in ct._attrs(payload):
        if kind == ct.CTA_TUPLE_ORIG:
            orig = _tuple(value)
        elif kind == ct.CTA_TUPLE_REPLY:
            reply = _tuple(value)
        elif kind in counts:
            counts[kind] = _counters(value)
        elif kind == CTA_TIMESTAMP:
            for k, v, _ in ct._attrs(value):
                if len(v) == 8:
                    (ns,) = struct.unpack("!Q", v)
                    if k == CTA_TIMESTAMP_START and ns:
                        started = ns / 1e9
                    elif k == CTA_TIMESTAMP_STOP and ns:
                        stopped = ns / 1e9
    if orig is None or reply is None or not orig[1] or not reply[1]:
        return None
    return CtDelta(
        protocol=orig[0],
        src=orig[1],
        dst=orig[2],
        sport=orig[3],
        dport=orig[4],
        reply_src=reply[1],
        reply_dst=reply[2],
        reply_sport=reply[3],
        reply_dport=reply[4],
        orig_packets=counts[CTA_COUNTERS_ORIG][0],
        orig_bytes=counts[CTA_COUNTERS_ORIG][1],
        reply_packets=counts[CTA_COUNTERS_REPLY][0],
        reply_bytes=counts[CTA_COUNTERS_REPLY][1],
        started=started,
        stopped=stopped,
    )


def _messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + ct._HEADER.size <= len(data):
        length, kind, _, _, _ = ct._HEADER.unpack_from(data, offset)
        if length < ct._HEADER.size:
            return
        yield kind, data[offset + ct._HEADER.size : offset + length]
        offset += (length + 3) & ~3


def dump_and_zero(sock: socket.socket) -> list[CtDelta]:
    """Every IPv4 entry's counters since the last zeroing, zeroing them (``sock``: NETLINK_NETFILTER in
    the router's namespace, used for nothing else)."""
    sock.send(ct._message(IPCTNL_MSG_CT_GET_CTRZERO, ct.NLM_F_REQUEST | ct.NLM_F_DUMP, 1, b""))
    out: list[CtDelta] = []
    for kind, payload in ct._replies(sock):
        if kind == ct.NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", payload)
            if code:
                raise OSError(-code, f"conntrack dump: {errno.errorcode.get(-code, code)}")
            continue
        delta = parse_entry(payload[ct._NFGEN.size :])
        if delta is not None:
            out.append(delta)
    return out


def destroy_socket(ns_fd: int) -> socket.socket:
    """A socket of the namespace ``ns_fd`` subscribed to conntrack DESTROY events (non-blocking)."""
    sock = netns.netlink_socket_in(ns_fd, ct.NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.bind((0, 1 << (NFNLGRP_CONNTRACK_DESTROY - 1)))
    sock.setblocking(False)
    return sock


def read_events(sock: socket.socket) -> tuple[list[CtDelta], bool]:
    """The DESTROY events waiting on ``sock`` (non-blocking) and whether some were lost (ENOBUFS)."""
    out: list[CtDelta] = []
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
        for kind, payload in _messages(data):
            if kind & 0xFF == IPCTNL_MSG_CT_DELETE:
                delta = parse_entry(payload[ct._NFGEN.size :])
                if delta is not None:
                    out.append(delta)
