"""Segmentation offloads of one interface, through the ethtool ioctl (no ethtool binary here).

Why flow logs care: conntrack counts ``sk_buff``s, and a sender with TSO/GSO hands a veth one 64 KiB
super-packet where a NIC would put some 45 frames on the wire. With TSO and GSO off on the sending
interface the kernel cuts packets to the MTU before they leave it, and the router counts exactly what a
wire would carry, at a large cost in throughput (``bench/flowlogs.py``). The agent therefore leaves
offloads on and corrects TCP counts instead (``netmodel.flow_collect.wire_counts``); the bench uses
this driver to compare the two.
"""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct

from taskvpc.agent.drivers import netns

SIOCETHTOOL = 0x8946
ETHTOOL_GTSO, ETHTOOL_STSO = 0x1E, 0x1F
ETHTOOL_GGSO, ETHTOOL_SGSO = 0x23, 0x24


class _EthtoolValue(ctypes.Structure):
    _fields_ = [("cmd", ctypes.c_uint32), ("data", ctypes.c_uint32)]


def _ethtool(sock: socket.socket, ifname: str, cmd: int, data: int = 0) -> int:
    value = _EthtoolValue(cmd, data)
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(value)).ljust(40, b"\0")
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
    return int(value.data)


def set_segmentation(ns_fd: int | None, ifname: str, enabled: bool) -> None:
    """TSO and GSO of ``ifname`` in namespace ``ns_fd`` (None: this thread's) on or off."""
    if ns_fd is None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    else:
        with netns.entered(ns_fd):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    with sock:
        _ethtool(sock, ifname, ETHTOOL_STSO, int(enabled))
        _ethtool(sock, ifname, ETHTOOL_SGSO, int(enabled))


def segmentation(ns_fd: int | None, ifname: str) -> tuple[bool, bool]:
    """(TSO, GSO) of ``ifname`` (tests)."""
    if ns_fd is None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    else:
        with netns.entered(ns_fd):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    with sock:
        return bool(_ethtool(sock, ifname, ETHTOOL_GTSO)), bool(_ethtool(sock, ifname, ETHTOOL_GGSO))
