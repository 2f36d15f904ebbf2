"""Task placement as a pure function: ``place(request, instances, rng) -> Placement``.

Tasks are placed one at a time. For each, every ACTIVE container instance goes through the checks of
:data:`CHECKS` in order; the first check it fails is its reason. The instances that pass all of them are
ranked by the placement strategies (the first strategy decides, the next breaks its ties, and one draw of
``rng`` picks uniformly among what is left: ``ranking.py``), the chosen one takes the task, and its
snapshot is charged (CPU, MEMORY, one task-ENI slot, one more task of the group) before the next task is
placed. When no instance passes, placement stops and
each ACTIVE instance contributes one ``failures`` entry with the reason it failed on; the tasks already
placed stay placed.

Order of the checks, and why (ECS documents the reasons but not their order [U]):

1. ``AGENT`` - a disconnected agent cannot start anything, whatever else is true.
2. ``ATTRIBUTE`` - the task definition's ``requiresAttributes`` (e.g. ``ecs.capability.task-eni``).
3. ``LOCATION`` - the instance's AZ is not one of the subnets' AZs (``awsvpcConfiguration``).
4. ``RESOURCE:CPU``, ``RESOURCE:MEMORY``, ``RESOURCE:PORTS`` (``_UDP``; ``ports.py``), ``RESOURCE:ENI`` -
   capacity, checked before constraints as the
   Developer Guide's ``task-placement.md`` describes ("instances that satisfy the CPU, memory and port
   requirements", then "the task placement constraints").
5. ``MemberOf placement constraint unsatisfied.`` then ``DistinctInstance placement constraint
   unsatisfied.`` - the texts real RunTask/service events carry for these constraints (seen in public
   outputs), rather than ``ATTRIBUTE``.

``distinctInstance`` counts the tasks of the request's *group* already on the instance (running or pending)
and those placed by this call: a real RunTask with ``count=1`` on a one-instance cluster already running a
task of the same group answers ``DistinctInstance placement constraint unsatisfied.``. ``spread`` counts the
group's tasks per value of its field across all instances; ``binpack`` prefers the least remaining CPU or
memory. DRAINING and other non-ACTIVE instances are never candidates and produce no failure entry [I].
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from taskvpc.domain.errors import ClientError, invalid_parameter
from taskvpc.scheduler import ports
from taskvpc.scheduler.model import (
    CPU,
    MEMORY,
    OS_TYPE_ATTRIBUTE,
    InstanceSnapshot,
    Placement,
    PlacementFailure,
    PlacementStrategy,
    TaskRequest,
)
from taskvpc.scheduler.query import ATTRIBUTE_PREFIX, Expr, QuerySyntaxError, parse
from taskvpc.scheduler.ranking import (
    BINPACK_FIELDS,
    SPREAD_INSTANCE_FIELDS,
    Ranking,
    Rng,
    deciding,
    spread_value,
)

MAX_CONSTRAINTS = 10  # "up to 10 constraints for each task" (API RunTaskRequest.placementConstraints)
MAX_STRATEGIES = 5  # "a maximum of 5 strategy rules for each task"
MAX_EXPRESSION_LENGTH = 2000  # PlacementConstraint.expression

# Confirmed texts.
NO_CONTAINER_INSTANCES = "No Container Instances were found in your cluster."
DISTINCT_WITH_EXPRESSION = "distinctInstance expression should not be specified."

REASON_AGENT = "AGENT"
REASON_ATTRIBUTE = "ATTRIBUTE"
REASON_LOCATION = "LOCATION"
REASON_CPU = "RESOURCE:CPU"
REASON_MEMORY = "RESOURCE:MEMORY"
REASON_ENI = "RESOURCE:ENI"
REASON_PORTS = "RESOURCE:PORTS"
REASON_PORTS_UDP = "RESOURCE:PORTS_UDP"
REASON_MEMBER_OF = "MemberOf placement constraint unsatisfied."
REASON_DISTINCT = "DistinctInstance placement constraint unsatisfied."


@dataclass(frozen=True)
class CompiledRequest:
    """A validated request with its ``memberOf`` expressions parsed once."""

    request: TaskRequest
    member_of: tuple[Expr, ...]
    distinct: bool
    strategies: tuple[PlacementStrategy, ...]


class _Ledger:
    """Per-call bookkeeping: how many tasks of the request's group each instance holds."""

    def __init__(self, group: str | None) -> None:
        self.group = group
        self.placed_here: dict[str, int] = {}

    def group_count(self, instance: InstanceSnapshot) -> int:
        if self.group is None:
            return self.placed_here.get(instance.arn, 0)
        return instance.task_groups.get(self.group, 0)

    def charge(self, instance: InstanceSnapshot, request: TaskRequest) -> None:
        instance.remaining[CPU] = instance.remaining.get(CPU, 0) - request.cpu
        instance.remaining[MEMORY] = instance.remaining.get(MEMORY, 0) - request.memory
        if request.needs_eni:
            instance.task_eni_free -= 1
        ports.charge(request.ports, instance.ports)
        if self.group is not None:
            instance.task_groups[self.group] = instance.task_groups.get(self.group, 0) + 1
        instance.pending_tasks_count += 1
        self.placed_here[instance.arn] = self.placed_here.get(instance.arn, 0) + 1


Check = Callable[[CompiledRequest, InstanceSnapshot, _Ledger], bool]

# The filter pipeline, in order: (reason, passes?). The first failing check names the instance's reason.
CHECKS: tuple[tuple[str, Check], ...] = (
    (REASON_AGENT, lambda c, i, led: i.agent_connected),
    (
        REASON_ATTRIBUTE,
        lambda c, i, led: (
            i.attributes.get(OS_TYPE_ATTRIBUTE, c.request.os_type) == c.request.os_type
            and all(r.satisfied_by(i) for r in c.request.required_attributes)
        ),
    ),
    (
        REASON_LOCATION,
        lambda c, i, led: c.request.allowed_azs is None or i.availability_zone in c.request.allowed_azs,
    ),
    (REASON_CPU, lambda c, i, led: i.remaining.get(CPU, 0) >= c.request.cpu),
    (REASON_MEMORY, lambda c, i, led: i.remaining.get(MEMORY, 0) >= c.request.memory),
    (REASON_PORTS, lambda c, i, led: ports.conflict(c.request.ports, i.ports) != "PORTS"),
    (REASON_PORTS_UDP, lambda c, i, led: ports.conflict(c.request.ports, i.ports) != "PORTS_UDP"),
    (REASON_ENI, lambda c, i, led: not c.request.needs_eni or i.task_eni_free >= 1),
    (REASON_MEMBER_OF, lambda c, i, led: all(e.evaluate(i) for e in c.member_of)),
    (REASON_DISTINCT, lambda c, i, led: not c.distinct or led.group_count(i) == 0),
)


# --------------------------------------------------------------------------------------------------- validation


def compile_request(request: TaskRequest) -> CompiledRequest:
    """Validate constraints and strategies as ECS does; raises ``InvalidParameterException``.

    Only ``DISTINCT_WITH_EXPRESSION`` is a confirmed text; the other messages are ours [U].
    """
    constraints = request.placement_constraints
    if len(constraints) > MAX_CONSTRAINTS:
        raise invalid_parameter(
            f"Too many placement constraints: {len(constraints)}; at most {MAX_CONSTRAINTS} are allowed."
        )
    if len(request.placement_strategy) > MAX_STRATEGIES:
        raise invalid_parameter(
            f"Too many placement strategies: {len(request.placement_strategy)}; "
            f"at most {MAX_STRATEGIES} are allowed."
        )
    member_of: list[Expr] = []
    distinct = False
    for c in constraints:
        if c.type == "distinctInstance":
            if c.expression is not None:
                raise invalid_parameter(DISTINCT_WITH_EXPRESSION)
            distinct = True
        elif c.type == "memberOf":
            member_of.append(compile_expression(c.expression))
        else:
            raise invalid_parameter(f"Invalid placement constraint type: {c.type}")
    for s in request.placement_strategy:
        _validate_strategy(s)
    return CompiledRequest(request, tuple(member_of), distinct, request.placement_strategy)


def compile_expression(expression: str | None) -> Expr:
    """Parse a ``memberOf`` (or ``--filter``) expression; a bad one is ``InvalidParameterException`` [U text]."""
    if not expression:
        raise invalid_parameter("memberOf constraint requires an expression.")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise invalid_parameter(
            f"Placement constraint expression is longer than {MAX_EXPRESSION_LENGTH} characters."
        )
    try:
        return parse(expression)
    except QuerySyntaxError as exc:
        raise invalid_parameter(f"Invalid expression: {expression!r}: {exc}.") from None


def _validate_strategy(s: PlacementStrategy) -> None:
    if s.type == "random":
        return
    if s.type == "binpack":
        if (s.field or "").lower() not in BINPACK_FIELDS:
            raise invalid_parameter(
                f"Invalid field for binpack placement strategy: {s.field}. Valid values are cpu and memory."
            )
        return
    if s.type == "spread":
        name = s.field or ""
        if name.lower() in SPREAD_INSTANCE_FIELDS:
            return
        if name.startswith(ATTRIBUTE_PREFIX) and len(name) > len(ATTRIBUTE_PREFIX):
            return
        raise invalid_parameter(
            f"Invalid field for spread placement strategy: {s.field}. "
            "Valid values are instanceId, host, or attribute:<name>."
        )
    raise invalid_parameter(f"Invalid placement strategy type: {s.type}")


# --------------------------------------------------------------------------------------------------- placement


def first_failure(
    compiled: CompiledRequest, instance: InstanceSnapshot, ledger: _Ledger | None = None
) -> str | None:
    """The reason ``instance`` cannot take one more task of ``compiled``, or ``None`` if it can."""
    led = ledger if ledger is not None else _Ledger(compiled.request.group)
    for reason, passes in CHECKS:
        if not passes(compiled, instance, led):
            return reason
    return None


def failure_detail(compiled: CompiledRequest, instance: InstanceSnapshot, reason: str) -> str | None:
    """What a failure says beyond its reason: for ``ATTRIBUTE``, the attributes the instance lacks (the
    API's ``Failure.detail``; ECS's own text for it was not found: taskvpc's, # unconfirmed)."""
    if reason != REASON_ATTRIBUTE:
        return None
    missing = [
        r.name if r.value is None else f"{r.name}={r.value}"
        for r in compiled.request.required_attributes
        if not r.satisfied_by(instance)
    ]
    wrong_os = f"{OS_TYPE_ATTRIBUTE}={compiled.request.os_type}"
    if instance.attributes.get(OS_TYPE_ATTRIBUTE, compiled.request.os_type) != compiled.request.os_type:
        missing += [] if wrong_os in missing else [wrong_os]
    return f"Missing attribute{'s' if len(missing) > 1 else ''}: {', '.join(missing)}" if missing else None


def check_instance(request: TaskRequest, instance: InstanceSnapshot) -> str | None:
    """For StartTask (no strategies, an explicit instance): why ``instance`` cannot take the task, if so."""
    return first_failure(compile_request(request), instance)


def instance_failure(request: TaskRequest, instance: InstanceSnapshot) -> PlacementFailure | None:
    """``check_instance`` as a ``failures`` entry, with its detail."""
    compiled = compile_request(request)
    reason = first_failure(compiled, instance)
    if reason is None:
        return None
    return PlacementFailure(instance.arn, reason, failure_detail(compiled, instance, reason))


def place(request: TaskRequest, instances: Iterable[InstanceSnapshot], rng: Rng) -> Placement:
    """Place ``request.count`` tasks on ``instances`` (which are not modified).

    Placing a task changes only the instance chosen (its resources, ports and group count), so each
    instance's verdict is worked out once and then only the chosen one's again (an instance that cannot
    take one more is never charged again, so its verdict stands too). The strategies' order is kept up
    to date by :class:`~taskvpc.scheduler.ranking.Ranking`, and each task takes one draw of ``rng``.
    """
    compiled = compile_request(request)
    pool = sorted((i.copy() for i in instances), key=lambda i: i.arn)
    active = [i for i in pool if i.status == "ACTIVE"]
    if not active:
        raise _no_instances()
    ledger = _Ledger(request.group)
    verdicts = {id(i): _verdict(compiled, i, ledger) for i in active}
    spread_fields = {s.field or "" for s in deciding(compiled.strategies) if s.type == "spread"}
    counts = {f: _spread_counts(f, pool, ledger) for f in sorted(spread_fields)}
    ranking = Ranking(compiled.strategies, [i for i in active if verdicts[id(i)] is None], counts)
    assignments: list[str] = []
    failures: list[PlacementFailure] = []
    for _ in range(request.count):
        if not ranking.alive:
            failures = [f for f in (verdicts[id(i)] for i in active) if f is not None]
            break
        n = ranking.choose(rng)
        chosen = ranking.candidates[n]
        ledger.charge(chosen, request)
        ranking.charged(n)
        assignments.append(chosen.arn)
        verdict = verdicts[id(chosen)] = _verdict(compiled, chosen, ledger)
        if verdict is not None:
            ranking.remove(n)
    return Placement(tuple(assignments), tuple(failures))


def _verdict(
    compiled: CompiledRequest, instance: InstanceSnapshot, ledger: _Ledger
) -> PlacementFailure | None:
    reason = first_failure(compiled, instance, ledger)
    if reason is None:
        return None
    return PlacementFailure(instance.arn, reason, failure_detail(compiled, instance, reason))


def _no_instances() -> ClientError:
    return invalid_parameter(NO_CONTAINER_INSTANCES)


def _spread_counts(field: str, pool: list[InstanceSnapshot], ledger: _Ledger) -> dict[str | None, int]:
    counts: dict[str | None, int] = {}
    for instance in pool:
        value = spread_value(field, instance)
        counts[value] = counts.get(value, 0) + ledger.group_count(instance)
    return counts
