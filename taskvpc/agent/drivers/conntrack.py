"""Forgetting a task's tracked connections in its VPC router (ctnetlink, no conntrack tool needed).

The router accepts ``ct state established`` before any security-group rule, and conntrack entries outlive
the veth they came through. When a task's address is released and handed to a new task, an entry of the
old task's (a UDP stream still arriving, say) would carry packets to the new task without its groups ever
being asked. So the agent deletes every entry whose original or reply tuple has the address as source or
destination, when a task's network goes away and before a new one is made.

ctnetlink deletes by exact tuple only: the entries are dumped, and those naming the address are deleted
with the original tuple the dump gave back, attribute bytes unchanged.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE = 1, 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY = 1, 2
CTA_TUPLE_IP, CTA_IP_V4_SRC, CTA_IP_V4_DST = 1, 1, 2
NLA_TYPE_MASK = 0x3FFF

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


def forget_address(sock: socket.socket, ip: str) -> int:
    """Delete every IPv4 entry naming ``ip`` (either direction); ``sock``: a NETLINK_NETFILTER socket of the
    router's namespace. Returns how many were deleted."""
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
