"""Host ports of ``bridge`` and ``host`` tasks: what a task needs, and the bindings it gets at placement.

An instance registers the ports it keeps for itself (``PORTS``/``PORTS_UDP``, ECS's defaults 22, 2375,
2376, 51678, 51679) and each task it runs holds its containers' host ports. A ``host``-mode mapping
binds ``hostPort`` (= ``containerPort``, which registration fills in); a ``bridge`` mapping with a
``hostPort`` binds that port (static), one without (or with 0) gets a free port of the dynamic range
when the task is placed, as the ECS agent's ``ECS_DYNAMIC_HOST_PORT_RANGE`` default does (49153-65535).
A static port an instance already holds fails placement with ``RESOURCE:PORTS`` (``RESOURCE:PORTS_UDP``
for UDP). ``awsvpc`` tasks bind on their own ENI and hold no host port; ``none`` has no mappings.

The result is ECS's ``networkBindings`` per container: ``{bindIP, containerPort, hostPort, protocol}``.
``containerPortRange`` mappings are not bound here (recorded only).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DYNAMIC_RANGE = (49153, 65535)
RESOURCE_FOR = {"tcp": "PORTS", "udp": "PORTS_UDP"}  # registered resource of each protocol


@dataclass(frozen=True, slots=True)
class PortNeeds:
    """The host ports one task takes: static ``(protocol, port)`` pairs and the protocols of its
    dynamic mappings."""

    static: frozenset[tuple[str, int]] = frozenset()
    dynamic: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.static or self.dynamic)


@dataclass
class HostPorts:
    """The ports an instance holds, by protocol (its reserved ones and its tasks')."""

    used: dict[str, set[int]] = field(default_factory=lambda: {"tcp": set(), "udp": set()})

    def add(self, protocol: str, port: int) -> None:
        self.used.setdefault(protocol, set()).add(port)

    def holds(self, protocol: str, port: int) -> bool:
        return port in self.used.get(protocol, set())

    def copy(self) -> HostPorts:
        return HostPorts({p: set(ports) for p, ports in self.used.items()})


def _mappings(containers: Sequence[Mapping[str, Any]]) -> Iterable[tuple[int, Mapping[str, Any]]]:
    for index, container in enumerate(containers):
        for mapping in container.get("portMappings") or ():
            if isinstance(mapping, Mapping) and isinstance(mapping.get("containerPort"), int):
                yield index, mapping


def _host_port(mode: str, mapping: Mapping[str, Any]) -> int | None:
    """The static host port of a mapping, or None for a dynamic one."""
    port = mapping.get("hostPort")
    if mode == "host":
        return int(port) if isinstance(port, int) and port > 0 else int(mapping["containerPort"])
    return int(port) if isinstance(port, int) and port > 0 else None


def port_needs(mode: str, containers: Sequence[Mapping[str, Any]]) -> PortNeeds:
    if mode not in ("bridge", "host"):
        return PortNeeds()
    static: set[tuple[str, int]] = set()
    dynamic: list[str] = []
    for _, mapping in _mappings(containers):
        protocol = str(mapping.get("protocol") or "tcp")
        port = _host_port(mode, mapping)
        if port is None:
            dynamic.append(protocol)
        else:
            static.add((protocol, port))
    return PortNeeds(frozenset(static), tuple(dynamic))


def conflict(needs: PortNeeds, ports: HostPorts) -> str | None:
    """The resource (``PORTS``/``PORTS_UDP``) a static port of ``needs`` collides on, if any."""
    for protocol, port in sorted(needs.static):
        if ports.holds(protocol, port):
            return RESOURCE_FOR.get(protocol, "PORTS")
    for protocol in set(needs.dynamic):
        low, high = DYNAMIC_RANGE
        free = (high - low + 1) - sum(1 for p in ports.used.get(protocol, ()) if low <= p <= high)
        if free < needs.dynamic.count(protocol):
            return RESOURCE_FOR.get(protocol, "PORTS")
    return None


def charge(needs: PortNeeds, ports: HostPorts) -> None:
    """Hold a placed task's static ports (its dynamic ones are chosen by :func:`bind`)."""
    for protocol, port in needs.static:
        ports.add(protocol, port)


def bind(mode: str, containers: Sequence[Mapping[str, Any]], ports: HostPorts) -> list[list[dict[str, Any]]]:
    """``networkBindings`` for each container; the ports taken are added to ``ports`` (a dynamic port is
    the lowest free one of the range, so a stopped task's port is the first to be used again)."""
    bindings: list[list[dict[str, Any]]] = [[] for _ in containers]
    if mode not in ("bridge", "host"):
        return bindings
    for index, mapping in _mappings(containers):
        protocol = str(mapping.get("protocol") or "tcp")
        port = _host_port(mode, mapping)
        if port is None:
            low, high = DYNAMIC_RANGE
            port = next(p for p in range(low, high + 1) if not ports.holds(protocol, p))
        ports.add(protocol, port)
        bindings[index].append(
            {
                "bindIP": "0.0.0.0",
                "containerPort": int(mapping["containerPort"]),
                "hostPort": port,
                "protocol": protocol,
            }
        )
    return bindings


def held_by(bindings: Iterable[Mapping[str, Any]], ports: HostPorts) -> None:
    """Add the host ports of a running task's ``networkBindings`` to ``ports``."""
    for binding in bindings:
        port = binding.get("hostPort")
        if isinstance(port, int):
            ports.add(str(binding.get("protocol") or "tcp"), port)
