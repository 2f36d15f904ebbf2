"""Forgetting a task's tracked connections in its VPC router (ctnetlink, no conntrack tool needed).

The router accepts ``ct state established`` before any security-group rule, and conntrack entries outlive
the veth they came through. When a task's address is released and handed to a new task, an entry of the
old task's (a UDP stream still arriving, say) would carry packets to the new task without its groups ever
being asked. So the agent deletes every entry whose original or reply tuple has the address as source or
destination, when a task's network goes away and before a new one is made.

A delete carrying a ``CTA_FILTER`` (and no full tuple) is a flush of the entries the filter matches, done
in the kernel: one message per tuple direction and side (original/reply x source/destination), nothing
dumped to user space, and nothing walked at all when the namespace tracks no connection (the router's
count is read first). Kernels without filtered flushes refuse the half tuple (``EINVAL``); there the
entries are dumped, and those naming the address deleted with the original tuple the dump gave back,
attribute bytes unchanged. Dumping walks the whole conntrack hash (shared by every namespace: ~4 ms even
when empty), which is what made each task start and stop cost that much.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_GET_STATS = 1, 2, 5
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY = 1, 2
CTA_TUPLE_IP, CTA_IP_V4_SRC, CTA_IP_V4_DST = 1, 1, 2
CTA_FILTER, CTA_FILTER_ORIG_FLAGS, CTA_FILTER_REPLY_FLAGS = 25, 1, 2
CTA_FILTER_FLAG_IP_SRC, CTA_FILTER_FLAG_IP_DST = 1 << 0, 1 << 1
CTA_STATS_GLOBAL_ENTRIES = 1
NLA_TYPE_MASK, NLA_F_NESTED = 0x3FFF, 0x8000

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_NFGEN = struct.Struct("=BBH")  # nfgenmsg: family, version, res_id (network order, unused)
_ATTR = struct.Struct("=HH")


def _attrs(data: bytes) -> Iterator[tuple[int, bytes, bytes]]:
    """(type, payload, the whole attribute as sent) of each netlink attribute in ``data``."""
    offset = 0
    while offset + _ATTR.size <= len(data):
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size:
            return
        yield (
            kind & NLA_TYPE_MASK,
            data[offset + _ATTR.size : offset + length],
            data[offset : offset + length],
        )
        offset += (length + 3) & ~3


def _attr(kind: int, payload: bytes) -> bytes:
    length = _ATTR.size + len(payload)
    return _ATTR.pack(length, kind) + payload + b"\0" * (-length % 4)


def _tuple_addresses(tuple_payload: bytes) -> set[bytes]:
    found: set[bytes] = set()
    for kind, payload, _ in _attrs(tuple_payload):
        if kind == CTA_TUPLE_IP:
            found.update(p for k, p, _ in _attrs(payload) if k in (CTA_IP_V4_SRC, CTA_IP_V4_DST))
    return found


def _message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    payload = _NFGEN.pack(socket.AF_INET, 0, 0) + body
    return (
        _HEADER.pack(_HEADER.size + len(payload), (NFNL_SUBSYS_CTNETLINK << 8) | kind, flags, seq, 0)
        + payload
    )


def _replies(sock: socket.socket) -> Iterator[tuple[int, bytes]]:
    """(type, payload after nlmsghdr) of every message until DONE or an error/ack."""
    while True:
        data = sock.recv(1 << 20)
        offset = 0
        while offset + _HEADER.size <= len(data):
            length, kind, _, _, _ = _HEADER.unpack_from(data, offset)
            if length < _HEADER.size:
                return
            payload = data[offset + _HEADER.size : offset + length]
            offset += (length + 3) & ~3
            if kind == NLMSG_DONE:
                return
            yield kind, payload
            if kind == NLMSG_ERROR:
                return


def _check_ack(sock: socket.socket) -> None:
    for kind, payload in _replies(sock):
        if kind == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", payload)
            if code not in (0, -errno.ENOENT):  # ENOENT: it expired meanwhile
                raise OSError(-code, f"conntrack delete: {errno.errorcode.get(-code, code)}")


def _entries(sock: socket.socket) -> Iterator[tuple[bytes, set[bytes]]]:
    """(original tuple attribute as sent, addresses of both tuples) of every IPv4 entry."""
    sock.send(_message(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, 1, b""))
    for kind, payload in _replies(sock):
        if kind == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", payload)
            if code:
                raise OSError(-code, f"conntrack dump: {errno.errorcode.get(-code, code)}")
            continue
        original = b""
        addresses: set[bytes] = set()
        for attr, value, raw in _attrs(payload[_NFGEN.size :]):
            if attr == CTA_TUPLE_ORIG:
                original = raw
            if attr in (CTA_TUPLE_ORIG, CTA_TUPLE_REPLY):
                addresses |= _tuple_addresses(value)
        if original:
            yield original, addresses


def tracked(sock: socket.socket) -> int:
    """How many entries the socket's namespace tracks (its own count: no walk of the table)."""
    sock.send(_message(IPCTNL_MSG_CT_GET_STATS, NLM_F_REQUEST, 1, b""))
    for kind, payload in _replies(sock):
        if kind == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", payload)
            raise OSError(-code, f"conntrack stats: {errno.errorcode.get(-code, code)}")
        for attr, value, _ in _attrs(payload[_NFGEN.size :]):
            if attr == CTA_STATS_GLOBAL_ENTRIES:
                return int.from_bytes(value[:4], "big")
    raise OSError(errno.EPROTO, "conntrack stats: no entry count")


def filtered_flush(ip: str, reply: bool, side: int) -> bytes:
    """The body of a delete that flushes the entries whose original (or ``reply``) tuple has ``ip`` as
    ``side`` (CTA_IP_V4_SRC or CTA_IP_V4_DST); only the fields the filter's flags name are compared."""
    tuple_attr = CTA_TUPLE_REPLY if reply else CTA_TUPLE_ORIG
    ip_tuple = _attr(
        tuple_attr | NLA_F_NESTED, _attr(CTA_TUPLE_IP | NLA_F_NESTED, _attr(side, socket.inet_aton(ip)))
    )
    flag = CTA_FILTER_FLAG_IP_SRC if side == CTA_IP_V4_SRC else CTA_FILTER_FLAG_IP_DST
    flags = (0, flag) if reply else (flag, 0)
    return ip_tuple + _attr(
        CTA_FILTER | NLA_F_NESTED,
        _attr(CTA_FILTER_ORIG_FLAGS, struct.pack("=I", flags[0]))
        + _attr(CTA_FILTER_REPLY_FLAGS, struct.pack("=I", flags[1])),
    )


def _flush_filtered(sock: socket.socket, ip: str) -> bool:
    """Flush the entries naming ``ip`` in the kernel; False when this kernel cannot (nothing done)."""
    for seq, (reply, side) in enumerate(
        ((False, CTA_IP_V4_SRC), (False, CTA_IP_V4_DST), (True, CTA_IP_V4_SRC), (True, CTA_IP_V4_DST)), 2
    ):
        sock.send(
            _message(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq, filtered_flush(ip, reply, side))
        )
        try:
            _check_ack(sock)
        except OSError as exc:
            if exc.errno == errno.EINVAL and seq == 2:
                return False  # no filtered flush here: the half tuple is refused as an exact one
            raise
    return True


def forget_address(sock: socket.socket, ip: str) -> int:
    """Delete every IPv4 entry naming ``ip`` (either direction); ``sock``: a NETLINK_NETFILTER socket of the
    router's namespace. Returns how many were deleted (with a filtered flush: the namespace's count before
    less after, so flows made or ended meanwhile blur it; it is for logs)."""
    before = tracked(sock)
    if before == 0:
        return 0
    if _flush_filtered(sock, ip):
        return max(0, before - tracked(sock))
    return _forget_dumped(sock, ip)


def _forget_dumped(sock: socket.socket, ip: str) -> int:
    address = socket.inet_aton(ip)
    doomed = [original for original, addresses in _entries(sock) if address in addresses]
    for seq, original in enumerate(doomed, start=2):
        sock.send(_message(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq, original))
        _check_ack(sock)
    return len(doomed)


def count_address(sock: socket.socket, ip: str) -> int:
    """How many IPv4 entries name ``ip`` (tests)."""
    address = socket.inet_aton(ip)
    return sum(1 for _, addresses in _entries(sock) if address in addresses)
