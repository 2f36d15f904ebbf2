"""ARNs of the resources taskvpc serves, built and taken apart in one place."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PARTITION = "aws"


@dataclass(frozen=True, slots=True)
class Arn:
    service: str
    region: str
    account_id: str
    resource: str  # everything after the account: 'cluster/default', 'task-definition/web:3'

    def __str__(self) -> str:
        return f"arn:{PARTITION}:{self.service}:{self.region}:{self.account_id}:{self.resource}"

    @property
    def resource_type(self) -> str:
        return self.resource.partition("/")[0]

    @property
    def resource_id(self) -> str:
        return self.resource.partition("/")[2]


def parse_arn(text: str) -> Arn | None:
    parts = text.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or not parts[1] or not parts[2] or not parts[5]:
        return None
    return Arn(service=parts[2], region=parts[3], account_id=parts[4], resource=parts[5])


def ecs_arn(region: str, account_id: str, resource: str) -> str:
    return str(Arn("ecs", region, account_id, resource))


def cluster_arn(region: str, account_id: str, name: str) -> str:
    return ecs_arn(region, account_id, f"cluster/{name}")


def task_definition_arn(region: str, account_id: str, family: str, revision: int) -> str:
    return ecs_arn(region, account_id, f"task-definition/{family}:{revision}")


def root_principal_arn(account_id: str) -> str:
    return f"arn:{PARTITION}:iam::{account_id}:root"


def container_instance_arn(region: str, account_id: str, cluster: str, instance_id: str) -> str:
    """Long format (``container-instance/<cluster>/<id>``), as ECS writes it since 2018."""
    return ecs_arn(region, account_id, f"container-instance/{cluster}/{instance_id}")


def task_arn(region: str, account_id: str, cluster: str, task_id: str) -> str:
    """Long format: ``task/<cluster>/<32 hex id>``."""
    return ecs_arn(region, account_id, f"task/{cluster}/{task_id}")


def container_arn(region: str, account_id: str, cluster: str, task_id: str, container_id: str) -> str:
    """Long format: ``container/<cluster>/<task id>/<container uuid>`` (real DescribeTasks outputs)."""
    return ecs_arn(region, account_id, f"container/{cluster}/{task_id}/{container_id}")


def last_path_part(identifier: str) -> str:
    """The id at the end of an ARN (``.../<cluster>/<id>`` or ``.../<id>``), or the identifier itself."""
    if identifier.startswith("arn:"):
        return identifier.rsplit("/", 1)[-1]
    return identifier


def match_identifiers(
    identifiers: Iterable[str], rows_by_id: Mapping[str, Any], arn_for_id: Callable[[str], str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Split ``identifiers`` (ids or full ARNs) into (identifier -> row found) and (identifier -> ARN to
    name in a ``MISSING`` failure). An ARN matches only when it is exactly the row's ``arn``."""
    found: dict[str, Any] = {}
    missing: dict[str, str] = {}
    for identifier in identifiers:
        row = rows_by_id.get(last_path_part(identifier))
        if row is not None and (not identifier.startswith("arn:") or identifier == row["arn"]):
            found[identifier] = row
        else:
            missing[identifier] = identifier if identifier.startswith("arn:") else arn_for_id(identifier)
    return found, missing
