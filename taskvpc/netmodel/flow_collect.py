"""Flow-log collection, the pure part: conntrack deltas and dropped packets -> per-ENI flow records.

Pure (plain values in, record dicts out; the caller owns clocks and sockets). The agent feeds a
:class:`FlowWindows` per VPC router with

* :class:`CtDelta`: one conntrack entry's packet/byte counters since they were last read and zeroed
  (a ``CTRZERO`` dump each tick, or the final counters of a ``DESTROY`` event);
* :class:`Drop`: one packet a security group dropped, as the router's NFLOG rule logged it, naming the
  ENI whose groups refused it and the direction (``in``: its ingress rules; ``out``: its egress rules);

and closes each ENI's window when its aggregation interval has passed (:meth:`FlowWindows.close_due`).

How records follow AWS (VPC User Guide ``flow-logs.md``, ``flow-logs-records-examples.md``):

* a record is unidirectional and per ENI: a connection between a local ENI and a peer gives that ENI two
  records per window, one per direction (``flow-direction`` egress for what it sent, ingress for what
  it received); when both ends are ENIs of this router, each gets its own two;
* stateful groups: the replies of an accepted flow are ACCEPT; a flow an ENI's inbound rules refuse is
  one REJECT record on that ENI (its packets are the SYNs sent, retransmissions included); the sender's
  egress was allowed, so the sender's ENI, when it is one of ours, records those packets as ACCEPT
  egress, as on AWS where they did leave its ENI;
* ICMP has ports 0 (the examples show ``0 0 1``);
* an ENI whose window saw nothing writes NODATA; a window in which the collector lost data (a netlink
  ``ENOBUFS``) writes SKIPDATA, never a silent gap;
* not logged: traffic to the Amazon-provided addresses (169.254.169.254, 169.254.169.123) and to
  169.254.170.2 (the task metadata endpoint lives on the router, as it never crosses an ENI on ECS).

TCP counts are corrected for segmentation offloads (:func:`wire_counts`): conntrack counts a 64 KiB
GSO super-packet once, a wire carries some 45 packets with a header each.

``start``/``end`` are the window's bounds clipped to what conntrack knows of the flow (its start
timestamp, and its end for a destroyed entry), whole seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

NOT_LOGGED = frozenset({"169.254.169.254", "169.254.169.123", "169.254.170.2"})
ICMP_PROTOCOLS = frozenset({1, 58})

Record = dict[str, object]


@dataclass(frozen=True, slots=True)
class WatchedEni:
    """An ENI of this router that some flow log covers, and what its flow logs want."""

    eni_id: str
    ip: str
    interval: float  # seconds: the aggregation interval (60/600, or a test's override)
    accept: bool  # some flow log wants ACCEPT (traffic type ACCEPT or ALL)
    reject: bool  # some flow log wants REJECT (REJECT or ALL)
    fields: Mapping[str, object] = field(default_factory=dict)  # known per ENI (ECS task ARN, ...)


@dataclass(frozen=True, slots=True)
class CtDelta:
    """A conntrack entry's counters since they were last zeroed. Original direction src -> dst; the reply
    direction is the reply tuple (equal to the swapped original without NAT)."""

    protocol: int
    src: str
    dst: str
    sport: int
    dport: int
    reply_src: str
    reply_dst: str
    reply_sport: int
    reply_dport: int
    orig_packets: int
    orig_bytes: int
    reply_packets: int
    reply_bytes: int
    started: float | None = None  # the entry's start timestamp, epoch seconds, when known
    stopped: float | None = None  # set for a DESTROY event


@dataclass(frozen=True, slots=True)
class Drop:
    """One packet dropped by ``eni_id``'s security groups (``direction`` in/out), as logged."""

    eni_id: str
    direction: str  # "in" | "out"
    protocol: int
    src: str
    dst: str
    sport: int
    dport: int
    length: int  # IP total length
    tcp_flags: int
    time: float


@dataclass(slots=True)
class _Counts:
    packets: int = 0
    bytes: int = 0
    first: float = 0.0
    last: float = 0.0
    tcp_flags: int = 0


# (action, direction, protocol, src, dst, sport, dport)
_Key = tuple[str, str, int, str, str, int, int]


@dataclass(slots=True)
class _Window:
    start: float
    flows: dict[_Key, _Counts] = field(default_factory=dict)
    lost: bool = False


def window_start(now: float, interval: float) -> float:
    """The start of the window ``now`` falls in: windows are aligned to multiples of the interval."""
    return now - (now % interval)


class FlowWindows:
    """Open windows of the watched ENIs of one router; see the module docstring."""

    def __init__(self) -> None:
        self._enis: dict[str, WatchedEni] = {}
        self._by_ip: dict[str, WatchedEni] = {}
        self._windows: dict[str, _Window] = {}

    @property
    def enis(self) -> Mapping[str, WatchedEni]:
        return self._enis

    def watch(self, enis: Iterable[WatchedEni], now: float) -> None:
        """The ENIs to collect for from now on; a newly watched ENI's first window opens at ``now``, an
        ENI no longer watched has its open window dropped (its flow logs are gone)."""
        wanted = {e.eni_id: e for e in enis}
        for eni_id in list(self._windows):
            if eni_id not in wanted:
                del self._windows[eni_id]
        for eni_id, eni in wanted.items():
            if eni_id not in self._windows:
                self._windows[eni_id] = _Window(window_start(now, eni.interval))
        self._enis = wanted
        self._by_ip = {e.ip: e for e in wanted.values()}

    def lost(self) -> None:
        """The collector lost events (netlink ``ENOBUFS``): every open window ends as SKIPDATA."""
        for window in self._windows.values():
            window.lost = True

    def _add(
        self, eni: WatchedEni, key: _Key, packets: int, octets: int, first: float, last: float, flags: int = 0
    ) -> None:
        window = self._windows.get(eni.eni_id)
        if window is None or packets <= 0:
            return
        counts = window.flows.get(key)
        if counts is None:
            counts = window.flows[key] = _Counts(first=first, last=last)
        counts.packets += packets
        counts.bytes += octets
        counts.first = min(counts.first, first)
        counts.last = max(counts.last, last)
        counts.tcp_flags |= flags

    def add_conntrack(self, delta: CtDelta, now: float) -> None:
        """ACCEPT records from one entry's counters, for each end that is a watched ENI wanting ACCEPT."""
        if delta.dst in NOT_LOGGED or delta.src in NOT_LOGGED:
            return
        sport, dport = _ports(delta.protocol, delta.sport, delta.dport)
        rsport, rdport = _ports(delta.protocol, delta.reply_sport, delta.reply_dport)
        orig = (delta.protocol, delta.src, delta.dst, sport, dport)
        reply = (delta.protocol, delta.reply_src, delta.reply_dst, rsport, rdport)
        last = delta.stopped if delta.stopped is not None else now
        for end, sent, received in ((delta.src, orig, reply), (delta.reply_src, reply, orig)):
            eni = self._by_ip.get(end)
            if eni is None or not eni.accept:
                continue
            window = self._windows.get(eni.eni_id)
            if window is None:
                continue
            first = max(window.start, delta.started) if delta.started is not None else window.start
            orig_counts = wire_counts(delta.protocol, delta.orig_packets, delta.orig_bytes)
            reply_counts = wire_counts(delta.protocol, delta.reply_packets, delta.reply_bytes)
            out_counts, in_counts = (
                (orig_counts, reply_counts) if sent is orig else (reply_counts, orig_counts)
            )
            self._add(eni, ("ACCEPT", "egress", *sent), *out_counts, first, last)
            self._add(eni, ("ACCEPT", "ingress", *received), *in_counts, first, last)

    def add_drop(self, drop: Drop) -> None:
        """A REJECT on the refusing ENI; when an inbound refusal's sender is a watched ENI, its packets
        left that ENI (its egress allowed them): ACCEPT egress there."""
        if drop.dst in NOT_LOGGED or drop.src in NOT_LOGGED:
            return
        sport, dport = _ports(drop.protocol, drop.sport, drop.dport)
        flow = (drop.protocol, drop.src, drop.dst, sport, dport)
        flags = drop.tcp_flags if drop.protocol == 6 else 0
        eni = self._enis.get(drop.eni_id)
        direction = "ingress" if drop.direction == "in" else "egress"
        if eni is not None and eni.reject:
            self._add(eni, ("REJECT", direction, *flow), 1, drop.length, drop.time, drop.time, flags)
        sender = self._by_ip.get(drop.src)
        if drop.direction == "in" and sender is not None and sender.accept and sender.eni_id != drop.eni_id:
            self._add(sender, ("ACCEPT", "egress", *flow), 1, drop.length, drop.time, drop.time, flags)

    def window_end(self, eni_id: str) -> float:
        """When the ENI's open window closes."""
        return self._windows[eni_id].start + self._enis[eni_id].interval

    def close_due(
        self, now: float, *, force: bool = False, only: Iterable[str] | None = None
    ) -> dict[str, tuple[int, int, list[Record]]]:
        """(start, end, records) of every window whose interval has passed by ``now`` (with ``force``: every
        open window, or those of ``only``, e.g. when the agent stops or an ENI's flow logs go), by ENI
        id; a closed window is followed by the one ``now`` falls in. A window that ended more than one
        interval ago (the collector was stopped meanwhile) reports what it had; the gap is not filled."""
        out: dict[str, tuple[int, int, list[Record]]] = {}
        chosen = set(self._windows) if only is None else set(only) & set(self._windows)
        for eni_id in sorted(chosen):
            window, eni = self._windows[eni_id], self._enis[eni_id]
            end = window.start + eni.interval
            if now < end and not force:
                continue
            closed_at = min(end, now)
            start_s, end_s = int(window.start), max(int(window.start), int(closed_at))
            out[eni_id] = (start_s, end_s, self._records(eni, window, start_s, end_s))
            self._windows[eni_id] = _Window(window_start(now, eni.interval) if now >= end else now)
        return out

    def _records(self, eni: WatchedEni, window: _Window, start_s: int, end_s: int) -> list[Record]:
        base: Record = {**eni.fields}
        if window.lost:
            return [{**base, "start": start_s, "end": end_s, "log-status": "SKIPDATA"}]
        if not window.flows:
            return [{**base, "start": start_s, "end": end_s, "log-status": "NODATA"}]
        records = []
        for (action, direction, protocol, src, dst, sport, dport), counts in sorted(window.flows.items()):
            records.append(
                {
                    **base,
                    "srcaddr": src,
                    "dstaddr": dst,
                    "srcport": sport,
                    "dstport": dport,
                    "protocol": protocol,
                    "packets": counts.packets,
                    "bytes": counts.bytes,
                    "start": max(start_s, int(counts.first)),
                    "end": max(max(start_s, int(counts.first)), min(end_s, int(counts.last) + 1)),
                    "action": action,
                    "log-status": "OK",
                    "tcp-flags": (counts.tcp_flags or None)
                    if protocol == 6
                    else None,  # only NFLOG sees flags
                    "type": "IPv4",
                    "pkt-srcaddr": src,
                    "pkt-dstaddr": dst,
                    "flow-direction": direction,
                }
            )
        return records


TCP_MSS = 1448  # an MTU of 1500 less 20 (IP) + 20 (TCP) + 12 (the timestamp option Linux sends)
TCP_HEADERS = 52


def wire_counts(protocol: int, packets: int, octets: int) -> tuple[int, int]:
    """(packets, bytes) a wire would carry for what conntrack counted: ``packets`` sk_buffs of ``octets``.

    With TSO/GSO a TCP sender hands the veth super-packets of up to 64 KiB, each counted once with one
    header; a NIC would cut them into MSS-sized segments, each with its own header. TCP builds those
    super-packets as whole multiples of the MSS, so the payload divided by the MSS is the segment count
    (the control packets, with no payload, are one segment each: at least ``packets``). An sk_buff that
    is already wire-sized (offloads off, small writes, any other protocol) is left as counted: then the
    payload never exceeds ``packets`` segments and the formula gives back the counts unchanged.
    """
    if protocol != 6 or packets <= 0:
        return packets, octets
    payload = max(0, octets - packets * TCP_HEADERS)
    segments = max(packets, -(-payload // TCP_MSS))
    return segments, octets + (segments - packets) * TCP_HEADERS


def _ports(protocol: int, sport: int, dport: int) -> tuple[int, int]:
    return (0, 0) if protocol in ICMP_PROTOCOLS else (sport, dport)
