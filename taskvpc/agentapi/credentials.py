"""The ``credentials`` section: each task role's current credentials, for the agent's 169.254.170.2.

The control plane vends them (``taskvpc.control.task_credentials``) and sends the current ones in every
answer, changed or not: a rotation reaches the agent within one poll, and the agent serves the newest under
the task's unchanging ``AWS_CONTAINER_CREDENTIALS_RELATIVE_URI``. ``expiration`` is RFC 3339, as AWS's
credentials endpoint echoes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from taskvpc.agentapi import read
from taskvpc.agentapi.answer import Section, register_section

Doc = dict[str, Any]


@dataclass(frozen=True, slots=True)
class TaskCredentials:
    task_arn: str
    role_arn: str
    access_key_id: str
    secret_access_key: str
    token: str
    expiration: str  # RFC 3339, e.g. 2026-12-05T13:00:00Z
    role_type: str = "TaskApplication"  # or TaskExecution (never given to containers)

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> TaskCredentials | None:
        arn, key = read.string(doc.get("taskArn")), read.string(doc.get("accessKeyId"))
        if arn is None or key is None:
            return None
        return cls(
            task_arn=arn,
            role_arn=read.text(doc.get("roleArn")),
            access_key_id=key,
            secret_access_key=read.text(doc.get("secretAccessKey")),
            token=read.text(doc.get("sessionToken")),
            expiration=read.text(doc.get("expiration")),
            role_type=read.string(doc.get("roleType")) or "TaskApplication",
        )

    def to_wire(self) -> Doc:
        return {
            "taskArn": self.task_arn,
            "roleArn": self.role_arn,
            "accessKeyId": self.access_key_id,
            "secretAccessKey": self.secret_access_key,
            "sessionToken": self.token,
            "expiration": self.expiration,
            "roleType": self.role_type,
        }


def _parse(value: Any) -> tuple[TaskCredentials, ...]:
    parsed = (TaskCredentials.from_wire(v) for v in read.as_list(value) if isinstance(v, Mapping))
    return tuple(c for c in parsed if c is not None)


def _dump(values: tuple[TaskCredentials, ...]) -> list[Doc]:
    return [v.to_wire() for v in values]


def _none() -> tuple[TaskCredentials, ...]:
    return ()


CREDENTIALS: Section[tuple[TaskCredentials, ...]] = register_section(
    Section("credentials", _parse, _dump, _none)
)
