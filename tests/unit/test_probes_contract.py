"""Reachability probes: the ``probes`` section and ``probeResults`` on the wire (strict where a report
is read), the control plane's book of pending probes and latest results, and the agent's connect."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from taskvpc.agent.probes import Prober, connect_from
from taskvpc.agentapi.answer import DesiredState
from taskvpc.agentapi.probes import PROBES, Probe, ProbeResult, results_from_wire, results_to_wire
from taskvpc.agentapi.reports import WireError
from taskvpc.control.probes import GIVE_UP, ProbeBook

ARN = "arn:aws:ecs:us-east-1:123456789012:task/default/" + "1" * 32


def test_the_section_round_trips_and_skips_unreadable_entries() -> None:
    probe = Probe("p1", ARN, "172.31.0.5", 80)
    wire = PROBES.to_wire((probe,))
    assert wire == [{"probeId": "p1", "taskArn": ARN, "address": "172.31.0.5", "port": 80}]
    assert PROBES.from_wire([*wire, {"probeId": "p2", "taskArn": ARN, "address": "x", "port": 0}, 7]) == (
        probe,
    )
    assert probe.task_id == "1" * 32
    assert PROBES.from_wire(None) == ()


def test_results_round_trip_and_a_bad_entry_refuses_the_report() -> None:
    results = (ProbeResult("p1", "connected", 0.5), ProbeResult("p2", "timeout", 1000.0))
    body = results_to_wire(results)
    assert body["tasks"] == []
    assert results_from_wire(body) == results
    assert results_from_wire({"tasks": []}) == ()
    assert [r.reached for r in results] == [True, False]
    for bad in (
        {"probeResults": {}},
        {"probeResults": [{"outcome": "connected", "millis": 1}]},
        {"probeResults": [{"probeId": "p", "outcome": "maybe", "millis": 1}]},
        {"probeResults": [{"probeId": "p", "outcome": "timeout", "millis": -1}]},
        {"probeResults": [{"probeId": "p", "outcome": "timeout", "millis": True}]},
        {"probeResults": [{"probeId": "p", "outcome": "error", "millis": 1, "detail": 3}]},
    ):
        with pytest.raises(WireError):
            results_from_wire(bad)


def test_the_book_hands_probes_to_their_instance_and_keeps_the_latest_result() -> None:
    book = ProbeBook()
    first = book.add("i1", ARN, "172.31.0.5", 80, now=100.0)
    other = book.add("i2", ARN, "172.31.0.6", 80, now=100.0)
    assert book.pending_for("i1", now=101.0) == (first,)
    assert book.record("i2", [ProbeResult(first.probe_id, "connected", 0.3)], now=102.0) == 0  # not i2's
    assert book.record("i1", [ProbeResult(first.probe_id, "connected", 0.3)], now=102.0) == 1
    assert book.pending_for("i1", now=102.0) == ()
    assert book.waiting([first.probe_id, other.probe_id]) == 1
    latest = book.latest(ARN, "172.31.0.5", 80)
    assert latest is not None and (latest.result.outcome, latest.at) == ("connected", 102.0)
    again = book.add("i1", ARN, "172.31.0.5", 80, now=103.0)
    book.record("i1", [ProbeResult(again.probe_id, "timeout", 1000.0)], now=104.0)
    assert book.latest(ARN, "172.31.0.5", 80).result.outcome == "timeout"  # type: ignore[union-attr]
    assert book.pending_for("i2", now=100.0 + GIVE_UP + 1) == ()  # nobody answered: given up


def _answer(*probes: Probe) -> DesiredState:
    return DesiredState(1, True, {PROBES.key: probes})


@pytest.mark.skipif(os.geteuid() != 0, reason="entering a namespace needs CAP_SYS_ADMIN")
def test_the_prober_connects_from_a_namespace_once_per_id() -> None:
    """From this thread's own namespace to a listening and a closed loopback port; each id runs once."""

    async def run() -> list[tuple[ProbeResult, ...]]:
        listening = socket.create_server(("127.0.0.1", 0))
        closed = socket.create_server(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
        closed.close()
        sent: list[tuple[ProbeResult, ...]] = []

        async def send(results: tuple[ProbeResult, ...]) -> None:
            sent.append(results)

        prober = Prober(lambda task_id: "/proc/thread-self/ns/net" if task_id == "1" * 32 else None, send)
        probes = (
            Probe("p1", ARN, "127.0.0.1", listening.getsockname()[1]),
            Probe("p2", ARN, "127.0.0.1", closed_port),
            Probe("p3", ARN.replace("1" * 32, "2" * 32), "127.0.0.1", closed_port),
        )
        prober.submit(_answer(*probes))
        prober.submit(_answer(*probes))  # listed again until answered: not run twice
        for _ in range(100):
            if sent:
                break
            await asyncio.sleep(0.02)
        await prober.close()
        listening.close()
        return sent

    [results] = asyncio.run(run())
    assert [(r.probe_id, r.outcome) for r in results] == [
        ("p1", "connected"),
        ("p2", "refused"),
        ("p3", "error"),
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="entering a namespace needs CAP_SYS_ADMIN")
def test_a_missing_namespace_is_an_error_not_a_crash() -> None:
    outcome, detail = asyncio.run(connect_from("/run/netns/no-such-probe-ns", "127.0.0.1", 9))
    assert outcome == "error" and "namespace" in detail
