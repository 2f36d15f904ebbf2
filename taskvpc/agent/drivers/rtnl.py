"""A small synchronous rtnetlink client: pyroute2's message classes on a socket we own.

Why not ``pyroute2.IPRoute``: in pyroute2 0.9 every handle runs its own asyncio event loop, is bound to
the thread that made it, and a request costs about 250 µs there against 20-40 µs for the same message
sent and acknowledged on a plain blocking socket (measured here). Built on IPRoute, a task network took
3.9 ms; on this client, with the router and task steps batched, about 2 ms. pyroute2 still does what it
is good at: encoding and decoding the messages (``ifinfmsg``, ``ifaddrmsg``, ``rtmsg``).

One ``Rtnl`` wraps one ``NETLINK_ROUTE`` socket, which stays in the network namespace it was created in
(see ``netns.create`` / ``netns.netlink_socket_in``). It subscribes to no multicast group, so nothing
queues up between requests. Not thread-safe: one user at a time.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable, Sequence
from typing import Any

from pyroute2.netlink import (
    NETLINK_EXT_ACK,
    NLM_F_ACK,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
)
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import (
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETROUTE,
)
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.marshal import MarshalRtnl
from pyroute2.netlink.rtnl.rtmsg import rtmsg

SOL_NETLINK = 270
_RECV_SIZE = 1 << 16

Msg = Any  # a pyroute2 nlmsg; pyroute2 ships no type information


class Rtnl:
    """Requests and dumps on one rtnetlink socket. ``request`` raises ``NetlinkError`` on a NACK."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((0, 0))
        self._pid = sock.getsockname()[0]
        self._seq = 0
        self._marshal = MarshalRtnl()

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _encode(self, msg: Msg, msg_type: int, flags: int) -> tuple[int, bytes]:
        self._seq = (self._seq + 1) & 0x7FFFFFFF or 1
        msg["header"]["type"] = msg_type
        msg["header"]["flags"] = flags
        msg["header"]["sequence_number"] = self._seq
        msg["header"]["pid"] = self._pid
        msg.encode()
        return self._seq, bytes(msg.data)

    def _collect(self, pending: Iterable[int]) -> dict[int, list[Msg]]:
        """Read until every sequence number in ``pending`` is answered (ACK, error or NLMSG_DONE)."""
        results: dict[int, list[Msg]] = {}
        errors: dict[int, NetlinkError] = {}
        open_seqs = set(pending)
        while open_seqs:
            data = self._sock.recv(_RECV_SIZE)
            for msg in self._marshal.parse(data):
                header = msg["header"]
                seq = header["sequence_number"]
                if seq not in open_seqs:
                    continue  # a late answer to an earlier, abandoned request
                mtype = header["type"]
                if mtype in (NLMSG_ERROR, NLMSG_DONE):
                    error = header.get("error")
                    if error is not None:
                        errors[seq] = error if isinstance(error, NetlinkError) else NetlinkError(errno.EIO)
                    open_seqs.discard(seq)
                    continue
                results.setdefault(seq, []).append(msg)
        if errors:
            raise next(iter(errors.values()))
        return results

    def request(self, msg: Msg, msg_type: int, flags: int = 0) -> list[Msg]:
        """Send one change request and wait for its acknowledgement; return what it echoed (NLM_F_ECHO)."""
        seq, data = self._encode(msg, msg_type, NLM_F_REQUEST | NLM_F_ACK | flags)
        self._sock.send(data)
        return self._collect({seq}).get(seq, [])

    def batch(self, items: Sequence[tuple[Msg, int, int]]) -> None:
        """Send several change requests in one write, then wait for every acknowledgement.

        The kernel processes them in order; the first error found is raised (later ones still ran).
        """
        seqs: list[int] = []
        chunks = []
        for msg, msg_type, flags in items:
            seq, data = self._encode(msg, msg_type, NLM_F_REQUEST | NLM_F_ACK | flags)
            seqs.append(seq)
            chunks.append(data)
        self._sock.send(b"".join(chunks))
        self._collect(seqs)

    def dump(self, msg: Msg, msg_type: int) -> list[Msg]:
        seq, data = self._encode(msg, msg_type, NLM_F_REQUEST | NLM_F_DUMP)
        self._sock.send(data)
        return self._collect({seq}).get(seq, [])

    # -- convenience dumps ------------------------------------------------------------------------

    def links(self) -> list[Msg]:
        return self.dump(ifinfmsg(), RTM_GETLINK)

    def link(self, ifname: str) -> Msg | None:
        msg = ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", ifname)]
        # Without NLM_F_ACK a found link comes back alone and a missing one as an error; with it, both
        # end in an NLMSG_ERROR message, which is what ``_collect`` waits for.
        seq, data = self._encode(msg, RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK)
        self._sock.send(data)
        try:
            answer = self._collect({seq}).get(seq, [])
        except NetlinkError as exc:
            if exc.code in (errno.ENODEV, errno.ENOENT):
                return None
            raise
        return answer[0] if answer else None

    def addrs(self, family: int = socket.AF_INET) -> list[Msg]:
        msg = ifaddrmsg()
        msg["family"] = family
        return self.dump(msg, RTM_GETADDR)

    def routes(self, family: int = socket.AF_INET) -> list[Msg]:
        msg = rtmsg()
        msg["family"] = family
        return self.dump(msg, RTM_GETROUTE)


def attr(msg: Msg, name: str, default: Any = None) -> Any:
    value = msg.get_attr(name)
    return default if value is None else value


__all__ = ["Msg", "NetlinkError", "Rtnl", "attr"]
