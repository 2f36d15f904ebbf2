"""Who is calling: principals and the credentials that prove them.

SigV4 verification asks a :class:`CredentialResolver` for an access key's record (``resolve``); the record
carries the secret to check the signature with, the principal the request then acts as, and for
temporary credentials the session token the request must carry and when they expire. Today one resolver
holds the account's root key; IAM users, roles and STS sessions add records, not new code paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from taskvpc.domain.arns import PARTITION, root_principal_arn


@dataclass(frozen=True, slots=True)
class Principal:
    """An identity as ``sts get-caller-identity`` reports it."""

    arn: str
    user_id: str  # the account id for root, AIDA... for a user, AROA...:<session> for a role session
    account_id: str

    @classmethod
    def root(cls, account_id: str, region: str = "") -> Principal:
        return cls(root_principal_arn(account_id, region), account_id, account_id)

    @classmethod
    def user(cls, account_id: str, name: str, unique_id: str) -> Principal:
        return cls(f"arn:{PARTITION}:iam::{account_id}:user/{name}", unique_id, account_id)

    @classmethod
    def assumed_role(cls, account_id: str, role: str, session: str, role_id: str) -> Principal:
        return cls(
            f"arn:{PARTITION}:sts::{account_id}:assumed-role/{role}/{session}",
            f"{role_id}:{session}",
            account_id,
        )


@dataclass(frozen=True, slots=True)
class Credential:
    """One access key: long-term (``AKIA...``) or temporary (``ASIA...``, with a token and an expiry)."""

    access_key_id: str
    secret: str
    principal: Principal
    session_token: str | None = None
    expires_at: datetime | None = None

    @property
    def temporary(self) -> bool:
        return self.session_token is not None


class CredentialResolver(Protocol):
    """Access key id -> its credential record, or None for a key nobody issued."""

    def resolve(self, access_key_id: str) -> Credential | None: ...


class StaticCredentials:
    """An in-memory resolver: the root key from the settings, plus whatever a caller adds."""

    def __init__(self, credentials: Iterable[Credential] = ()) -> None:
        self._by_key = {credential.access_key_id: credential for credential in credentials}

    def add(self, credential: Credential) -> None:
        self._by_key[credential.access_key_id] = credential

    def resolve(self, access_key_id: str) -> Credential | None:
        return self._by_key.get(access_key_id)
