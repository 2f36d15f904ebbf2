"""ARNs of the resources taskvpc serves, built and taken apart in one place.

An ARN's partition follows from its region (``cn-north-1`` is ``aws-cn``, ``us-gov-west-1``
``aws-us-gov``, ...), as AWS writes them; an ARN names a resource here only when its partition, region
and account are the caller's (:meth:`Arn.is_local`), so another account's ARN is never a local resource.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PARTITION = "aws"

# Region-name patterns per partition (botocore's endpoints.json ``regionRegex``), most specific first:
# ``us-gov-`` and ``us-iso-`` would otherwise read as the commercial ``us-`` partition.
_PARTITIONS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.ASCII))
    for name, pattern in (
        ("aws-us-gov", r"us-gov-\w+-\d+"),
        ("aws-iso", r"us-iso-\w+-\d+"),
        ("aws-iso-b", r"us-isob-\w+-\d+"),
        ("aws-iso-f", r"us-isof-\w+-\d+"),
        ("aws-iso-e", r"eu-isoe-\w+-\d+"),
        ("aws-eusc", r"eusc-de-\w+-\d+"),
        ("aws-cn", r"cn-\w+-\d+"),
    )
)


def partition_of(region: str) -> str:
    """The partition a region belongs to; ``aws`` for the commercial regions and anything else."""
    for name, pattern in _PARTITIONS:
        if pattern.fullmatch(region):
            return name
    return PARTITION


@dataclass(frozen=True, slots=True)
class Arn:
    service: str
    region: str
    account_id: str
    resource: str  # everything after the account: 'cluster/default', 'task-definition/web:3'
    partition: str = ""  # '' means the region's own (what every ARN taskvpc builds has)

    def __str__(self) -> str:
        partition = self.partition or partition_of(self.region)
        return f"arn:{partition}:{self.service}:{self.region}:{self.account_id}:{self.resource}"

    def is_local(self, region: str, account_id: str) -> bool:
        """Whether this ARN can name a resource of ``account_id`` in ``region`` (partition included)."""
        partition = self.partition or partition_of(self.region)
        return self.region == region and self.account_id == account_id and partition == partition_of(region)

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
    return Arn(service=parts[2], region=parts[3], account_id=parts[4], resource=parts[5], partition=parts[1])


def foreign_arn(identifier: str, region: str, account_id: str) -> bool:
    """True for an ARN (anything starting ``arn:``) that cannot name a resource of this account and region."""
    if not identifier.startswith("arn:"):
        return False
    arn = parse_arn(identifier)
    return arn is None or not arn.is_local(region, account_id)


def ecs_arn(region: str, account_id: str, resource: str) -> str:
    return str(Arn("ecs", region, account_id, resource))


def cluster_arn(region: str, account_id: str, name: str) -> str:
    return ecs_arn(region, account_id, f"cluster/{name}")


def task_definition_arn(region: str, account_id: str, family: str, revision: int) -> str:
    return ecs_arn(region, account_id, f"task-definition/{family}:{revision}")


def root_principal_arn(account_id: str, region: str = "") -> str:
    """The account's root user; IAM ARNs carry no region, but the partition of the one asked about."""
    return f"arn:{partition_of(region)}:iam::{account_id}:root"


def ec2_arn(region: str, account_id: str, resource: str) -> str:
    return str(Arn("ec2", region, account_id, resource))


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
