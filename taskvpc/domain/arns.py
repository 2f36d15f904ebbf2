"""ARNs of the resources taskvpc serves, built and taken apart in one place."""

from __future__ import annotations

from dataclasses import dataclass

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
