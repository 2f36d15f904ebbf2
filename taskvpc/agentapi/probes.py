"""Reachability probes in the agent contract: the ``probes`` section and the report entry ``probeResults``.

The console's reachability matrix asks what the data plane really does, not only what the rules say: the
agent that owns a task's network namespace opens one TCP connection from inside it to an address and port,
and reports how it ended.

* ``probes`` (desired state): the probes the control plane wants this instance to run now, each with an
  id of the control plane's choosing, the source task and the destination ``address:port`` (TCP). A probe
  stays in the section until its result is reported (or the control plane gives up on it), so the agent
  runs each id once and ignores ids it has already run.
* ``probeResults`` (report): one :class:`ProbeResult` per probe run, read strictly (a malformed entry
  refuses the report whole, changing nothing).

Outcomes: ``connected`` (the handshake completed), ``refused`` (a reset: the packet reached the address,
nothing listens there), ``timeout`` (no answer in time: the security groups drop it), ``error`` (the
probe could not run: the task's namespace is gone, no route).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskvpc.agentapi import read
from taskvpc.agentapi.answer import Section, register_section
from taskvpc.agentapi.reports import WireError

Doc = dict[str, Any]
REPORT_KEY = "probeResults"
OUTCOMES = ("connected", "refused", "timeout", "error")
REACHED = frozenset({"connected", "refused"})  # the SYN got through: the groups allowed it
MAX_RESULTS = 1_000  # per report
TIMEOUT = 1.0  # seconds the agent waits for a handshake


@dataclass(frozen=True, slots=True)
class Probe:
    probe_id: str
    task_arn: str  # the source: its network namespace is where the connection starts
    address: str
    port: int

    @property
    def task_id(self) -> str:
        return self.task_arn.rsplit("/", 1)[-1]

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> Probe | None:
        probe_id = read.string(doc.get("probeId"))
        task_arn = read.string(doc.get("taskArn"))
        address = read.string(doc.get("address"))
        port = read.integer(doc.get("port"))
        if probe_id is None or task_arn is None or address is None or port is None or not 0 < port < 65536:
            return None
        return cls(probe_id, task_arn, address, port)

    def to_wire(self) -> Doc:
        return {
            "probeId": self.probe_id,
            "taskArn": self.task_arn,
            "address": self.address,
            "port": self.port,
        }


def _parse(value: Any) -> tuple[Probe, ...]:
    parsed = (Probe.from_wire(v) for v in read.mappings(value))
    return tuple(p for p in parsed if p is not None)


def _dump(values: tuple[Probe, ...]) -> list[Doc]:
    return [v.to_wire() for v in values]


def _none() -> tuple[Probe, ...]:
    return ()


PROBES: Section[tuple[Probe, ...]] = register_section(Section("probes", _parse, _dump, _none))


# ---- the report entry --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProbeResult:
    probe_id: str
    outcome: str  # one of OUTCOMES
    millis: float  # how long the connect took (or waited)
    detail: str = ""  # the error's text, for ``error``

    @property
    def reached(self) -> bool:
        return self.outcome in REACHED

    def to_wire(self) -> Doc:
        return {
            "probeId": self.probe_id,
            "outcome": self.outcome,
            "millis": self.millis,
            "detail": self.detail,
        }

    @classmethod
    def from_wire(cls, doc: Any) -> ProbeResult:
        if not isinstance(doc, Mapping) or not isinstance(doc.get("probeId"), str):
            raise WireError("each probeResults entry needs a probeId.")
        outcome = doc.get("outcome")
        if outcome not in OUTCOMES:
            raise WireError(f"outcome must be one of {', '.join(OUTCOMES)}.")
        millis = doc.get("millis")
        if isinstance(millis, bool) or not isinstance(millis, int | float) or millis < 0:
            raise WireError("millis must be a number of milliseconds.")
        detail = doc.get("detail", "")
        if not isinstance(detail, str):
            raise WireError("detail must be a string.")
        return cls(doc["probeId"], outcome, float(millis), detail[:200])


def results_to_wire(results: tuple[ProbeResult, ...]) -> Doc:
    """A report body carrying only probe results (no task reports)."""
    return {"tasks": [], REPORT_KEY: [r.to_wire() for r in results]}


def results_from_wire(payload: Mapping[str, Any]) -> tuple[ProbeResult, ...]:
    """The ``probeResults`` of a report body; none when it has no such member."""
    value = payload.get(REPORT_KEY)
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_RESULTS:
        raise WireError(f"{REPORT_KEY} must be a list of at most {MAX_RESULTS} results.")
    return tuple(ProbeResult.from_wire(item) for item in value)
