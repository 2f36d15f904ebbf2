"""The desired-state answer: a generation and the sections features contribute.

Each section is a :class:`Section`: its key in the answer and how its typed value goes to and comes from
the wire. ``DesiredState.from_wire`` reads every registered section (a missing one reads as its empty
value; a key no section claims is ignored, so an older agent reads a newer answer), and ``to_wire`` writes
them back. A new capability defines its section in its own module and registers it with one line
(:func:`register_section`); on the control plane a contributor fills it (``taskvpc.control.agent``).

Reading is all or nothing: ``from_wire`` raises on what it cannot read at all (a task without an ARN, a VPC
without an id); the agent then ignores the whole answer, since acting on half of one would stop every
task the unreadable half lists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from taskvpc.agentapi import read
from taskvpc.agentapi.network import SecurityGroup, Vpc
from taskvpc.agentapi.tasks import DesiredTask
from taskvpc.netmodel.evaluator import GroupRules

T = TypeVar("T")
Doc = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Section(Generic[T]):
    key: str
    from_wire: Callable[[Any], T]
    to_wire: Callable[[T], Any]
    empty: Callable[[], T]


SECTIONS: dict[str, Section[Any]] = {}


def register_section(section: Section[T]) -> Section[T]:
    # the answer's own members (generation, changed, and the delta members of agentapi/delta.py)
    reserved = (
        "generation",
        "changed",
        "version",
        "delta",
        "removedTasks",
        "taskCount",
        "digests",
        "updates",
    )
    if section.key in SECTIONS or section.key in reserved:
        raise ValueError(f"section {section.key!r} is registered already")
    SECTIONS[section.key] = section
    return section


@dataclass(frozen=True, slots=True)
class Instance:
    status: str = "ACTIVE"  # ACTIVE | DRAINING | INACTIVE (deregistered: the agent stops everything)
    container_instance_arn: str = ""
    cluster: str = ""

    @classmethod
    def from_wire(cls, doc: Any) -> Instance:
        if doc is None:
            return cls()
        if not isinstance(doc, Mapping):
            raise TypeError(f"instance is an object, not {type(doc).__name__}")
        return cls(
            read.string(doc.get("status")) or "ACTIVE",
            read.text(doc.get("containerInstanceArn")),
            read.text(doc.get("cluster")),
        )

    def to_wire(self) -> Doc:
        return {
            "status": self.status,
            "containerInstanceArn": self.container_instance_arn,
            "cluster": self.cluster,
        }


def _entries(parse: Callable[[Mapping[str, Any]], T | None]) -> Callable[[Any], tuple[T, ...]]:
    def parse_all(value: Any) -> tuple[T, ...]:
        parsed = (parse(v) for v in read.as_list(value) if isinstance(v, Mapping))
        return tuple(v for v in parsed if v is not None)

    return parse_all


def _dump(values: tuple[Any, ...]) -> list[Doc]:
    return [v.to_wire() for v in values]


def _none() -> tuple[Any, ...]:
    return ()


INSTANCE: Section[Instance] = register_section(
    Section("instance", Instance.from_wire, Instance.to_wire, Instance)
)
VPCS: Section[tuple[Vpc, ...]] = register_section(Section("vpcs", _entries(Vpc.from_wire), _dump, _none))
TASKS: Section[tuple[DesiredTask, ...]] = register_section(
    Section("tasks", _entries(DesiredTask.from_wire), _dump, _none)
)
SECURITY_GROUPS: Section[tuple[SecurityGroup, ...]] = register_section(
    Section("securityGroups", _entries(SecurityGroup.from_wire), _dump, _none)
)


@dataclass(frozen=True, slots=True)
class DesiredState:
    generation: int
    changed: bool = True
    sections: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, section: Section[T]) -> T:
        value = self.sections.get(section.key)
        return section.empty() if value is None else value

    @classmethod
    def of(cls, generation: int, changed: bool = True, **values: Any) -> DesiredState:
        """``DesiredState.of(3, tasks=(...), vpcs=(...))``: keyword names are section keys."""
        return cls(generation, changed, {SECTIONS[k].key: v for k, v in values.items()})

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> DesiredState:
        generation = doc.get("generation") or 0
        if not isinstance(generation, int) or isinstance(generation, bool):
            raise TypeError("generation is an integer")
        sections = {key: section.from_wire(doc.get(key)) for key, section in SECTIONS.items()}
        return cls(generation, read.flag(doc.get("changed"), True), sections)

    def to_wire(self) -> Doc:
        doc: Doc = {"generation": self.generation, "changed": self.changed}
        for key, section in SECTIONS.items():
            doc[key] = section.to_wire(self[section])
        return doc

    # -- the core sections, for readers ------------------------------------------------------------

    @property
    def instance_status(self) -> str:
        return self[INSTANCE].status

    @property
    def vpcs(self) -> tuple[Vpc, ...]:
        return self[VPCS]

    @property
    def tasks(self) -> tuple[DesiredTask, ...]:
        return self[TASKS]

    @property
    def security_groups(self) -> dict[str, dict[str, GroupRules]]:
        """Per VPC of the answer, the rules of every group its task ENIs carry."""
        by_vpc: dict[str, dict[str, GroupRules]] = {v.vpc_id: {} for v in self.vpcs}
        for group in self[SECURITY_GROUPS]:
            by_vpc.setdefault(group.vpc_id, {})[group.group_id] = GroupRules(
                group.group_id, group.ingress, group.egress
            )
        return by_vpc

    def eni_groups(self) -> dict[str, tuple[str, ...]]:
        """Each task ENI's current security groups."""
        return {t.eni.network_interface_id: t.eni.security_group_ids for t in self.tasks if t.eni is not None}

    def skipped_rules(self) -> Iterator[tuple[str, str]]:
        for group in self[SECURITY_GROUPS]:
            for error in group.skipped:
                yield group.group_id, error
