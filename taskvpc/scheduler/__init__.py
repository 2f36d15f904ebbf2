"""Pure task placement over a cluster snapshot: constraints, strategies, the cluster query language."""

from taskvpc.scheduler.model import (
    InstanceSnapshot,
    Placement,
    PlacementConstraint,
    PlacementFailure,
    PlacementStrategy,
    RequiredAttribute,
    TaskRequest,
    constraints_from_api,
    required_from_api,
    strategies_from_api,
)
from taskvpc.scheduler.placement import (
    check_instance,
    compile_expression,
    compile_request,
    instance_failure,
    place,
)
from taskvpc.scheduler.query import QuerySyntaxError, parse

__all__ = [
    "InstanceSnapshot",
    "Placement",
    "PlacementConstraint",
    "PlacementFailure",
    "PlacementStrategy",
    "QuerySyntaxError",
    "RequiredAttribute",
    "TaskRequest",
    "check_instance",
    "compile_expression",
    "compile_request",
    "constraints_from_api",
    "instance_failure",
    "parse",
    "place",
    "required_from_api",
    "strategies_from_api",
]
