"""Launch types and capacity providers, pure: strategy validation, how a strategy splits tasks, the
Fargate platform. Sources: ECS API reference (CapacityProviderStrategyItem, CreateCapacityProvider,
RunTask ``platformVersion``) and the developer guide (Fargate platform versions, capacity providers).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from taskvpc.domain.errors import invalid_parameter

EC2, FARGATE, FARGATE_SPOT = "EC2", "FARGATE", "FARGATE_SPOT"
FARGATE_PROVIDERS = frozenset({FARGATE, FARGATE_SPOT})  # reserved, present in every account
LATEST_PLATFORM = "1.4.0"  # what LATEST resolves to for Linux (developer guide, platform versions)
PLATFORM_VERSIONS = frozenset({"LATEST", "1.4.0", "1.3.0"})
PLATFORM_FAMILY = "Linux"
EPHEMERAL_STORAGE_GIB = 20  # the default a Fargate task gets (API reference, EphemeralStorage)
FARGATE_CAPACITY_ATTRIBUTE = "taskvpc.fargate-capacity"  # an agent started as Fargate capacity
MAX_BASE, MAX_WEIGHT = 100_000, 1_000  # API reference, CapacityProviderStrategyItem
MAX_STRATEGY_ITEMS = 20  # API reference, capacityProviderStrategy ("up to 20")

_PROVIDER_NAME = re.compile(r"[a-zA-Z0-9_-]{1,255}")

NOT_ASSOCIATED = (
    "The specified capacity provider strategy cannot contain a capacity provider that is not associated "
    "with the cluster. Associate the capacity provider with the cluster or specify a valid capacity "
    "provider and try again."
)  # real text (public CreateService/RunTask outputs)
MIXED = (
    "A capacity provider strategy cannot contain a mix of capacity providers using Auto Scaling groups "
    "and Fargate providers. Specify one or the other and try again."
)  # real text (public outputs)


def check_provider_name(name: str) -> None:
    if not _PROVIDER_NAME.fullmatch(name):
        raise invalid_parameter(
            "The capacity provider name can contain up to 255 letters (uppercase and lowercase), numbers, "
            "underscores, and hyphens."
        )  # unconfirmed wording
    if name.lower().startswith(("aws", "ecs", "fargate")):
        raise invalid_parameter(
            'The capacity provider name cannot be prefixed with "aws", "ecs", or "fargate".'
        )  # unconfirmed wording (the API reference's rule)


def normalized_strategy(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The strategy with ``base`` and ``weight`` defaulted to 0, checked."""
    if len(items) > MAX_STRATEGY_ITEMS:
        raise invalid_parameter(
            f"capacityProviderStrategy can have at most {MAX_STRATEGY_ITEMS} items."
        )  # patterned
    out = []
    names: set[str] = set()
    for item in items:
        name = item["capacityProvider"]
        base, weight = int(item.get("base") or 0), int(item.get("weight") or 0)
        if not 0 <= base <= MAX_BASE or not 0 <= weight <= MAX_WEIGHT:
            raise invalid_parameter(
                f"The capacity provider strategy base must be between 0 and {MAX_BASE} and the weight "
                f"between 0 and {MAX_WEIGHT}."
            )  # unconfirmed wording
        if name in names:
            raise invalid_parameter(
                "The specified capacity provider strategy contains duplicate capacity providers."
            )  # unconfirmed wording
        names.add(name)
        out.append({"capacityProvider": name, "weight": weight, "base": base})
    if sum(1 for i in out if i["base"] > 0) > 1:
        raise invalid_parameter(
            "Only one capacity provider in a capacity provider strategy can have a base defined."
        )  # unconfirmed wording
    if out and all(i["weight"] == 0 for i in out):
        raise invalid_parameter(
            "At least one capacity provider in a capacity provider strategy must have a weight greater than 0."
        )  # unconfirmed wording
    fargate = {i["capacityProvider"] in FARGATE_PROVIDERS for i in out}
    if len(fargate) > 1:
        raise invalid_parameter(MIXED)
    return out


def split(strategy: Sequence[Mapping[str, Any]], count: int, existing: Mapping[str, int]) -> list[str]:
    """The provider of each of ``count`` new tasks: ``base`` first, then by weight, given the tasks each
    provider already has (developer guide, capacity provider strategies)."""
    have = {i["capacityProvider"]: existing.get(i["capacityProvider"], 0) for i in strategy}
    chosen: list[str] = []
    for _ in range(count):
        pick = next(
            (i["capacityProvider"] for i in strategy if have[i["capacityProvider"]] < i["base"]), None
        )
        if pick is None:
            weighted = [i for i in strategy if i["weight"] > 0]
            pick = min(
                weighted,
                key=lambda i: ((have[i["capacityProvider"]] + 1) / i["weight"], i["capacityProvider"]),
            )["capacityProvider"]
        have[pick] += 1
        chosen.append(pick)
    return chosen


def resolve_platform_version(launch_type: str, version: str | None) -> str | None:
    if launch_type != FARGATE:
        if version is not None:
            # real text (aws/aws-cdk issues quoting RunTask/CreateService)
            raise invalid_parameter("The platform version must be null when specifying an EC2 launch type.")
        return None
    if version is None or version == "LATEST":
        return LATEST_PLATFORM
    if version not in PLATFORM_VERSIONS:
        raise invalid_parameter(f"The specified platform version {version} does not exist.")  # unconfirmed
    return version
