"""The credential resolver behind SigV4 for IAM users' access keys and STS sessions, and what each
credential's principal is granted (its policies), both cached: an entry stands while this process has
committed no IAM change and the stored IAM generation (other processes' changes, re-read at most every
RECHECK_SECONDS) is the one it was loaded under.

The root key (from the settings) resolves without a store read and is never restricted. A user's key
resolves to the user while it is Active; an ``ASIA...`` key to its STS session until the session is
gone (its expiry is SigV4's to check, so an expired session answers ExpiredToken, not an unknown key).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection

from taskvpc.control.iam.policies import policy_document
from taskvpc.control.identity import Credential, Principal
from taskvpc.domain.iam.document import Policy, parse_policy
from taskvpc.store import iam_repo
from taskvpc.store.db import Database

_MAX_CACHED = 10_000
RECHECK_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Grants:
    """What a principal's requests are evaluated against."""

    kind: str  # "user" | "role" | "root"
    name: str  # the user's or the role's name ("" for root)
    identity: tuple[Policy, ...]
    session: tuple[Policy, ...] | None  # None: no session policy (restricts nothing)
    issued_at: float | None = None  # STS sessions: aws:TokenIssueTime

    @property
    def unrestricted(self) -> bool:
        return self.kind == "root"


ROOT_GRANTS = Grants("root", "", (), None)


def principal_policies(conn: Connection, account_id: str, kind: str, name: str) -> tuple[Policy, ...]:
    """The user's or role's inline policies and the default versions of its attached managed ones."""
    texts = [text for _, text, _ in iam_repo.list_documents(conn, kind, name)]
    for arn in iam_repo.attached(conn, kind, name):
        text = policy_document(conn, account_id, arn)
        if text is not None:
            texts.append(text)
    return tuple(parse_policy(text) for text in texts)


class IamCredentials:
    """A :class:`~taskvpc.control.identity.CredentialResolver` over the store, plus each credential's
    grants. Thread-safe: the API may resolve from worker threads."""

    def __init__(self, db: Database, account_id: str, root: Credential) -> None:
        self.db = db
        self.account_id = account_id
        self.root = root
        self._lock = threading.Lock()
        # key id -> ((local changes, stored generation) when loaded, credential, grants)
        self._credentials: dict[str, tuple[tuple[int, int | None], Credential | None, Grants | None]] = {}
        self._checked_local, self._checked_at = -1, float("-inf")
        self._generation: int | None = None

    def forget(self) -> None:
        """Drop every cached credential (the store was wiped)."""
        with self._lock:
            self._credentials.clear()
            self._checked_at = float("-inf")

    def _state(self, conn: Connection) -> tuple[int, int | None]:
        """(this process's IAM changes, the stored generation): what cached entries must match. The stored
        generation is re-read when this process changed IAM or after RECHECK_SECONDS (other hosts' changes
        are seen that late: IAM itself is eventually consistent)."""
        local = iam_repo.local_changes()
        now = time.monotonic()
        with self._lock:
            if local == self._checked_local and now - self._checked_at < RECHECK_SECONDS:
                return local, self._generation
        generation = iam_repo.generation(conn)
        with self._lock:
            self._checked_local, self._generation, self._checked_at = local, generation, now
        return local, generation

    def resolve(self, access_key_id: str) -> Credential | None:
        return self.lookup(access_key_id)[0]

    def lookup(self, access_key_id: str) -> tuple[Credential | None, Grants | None]:
        """The key's credential record and its principal's grants; (None, None) for an unknown key."""
        if access_key_id == self.root.access_key_id:
            return self.root, ROOT_GRANTS
        if not access_key_id.startswith(("AKIA", "ASIA")) or len(access_key_id) > 32:
            return None, None
        local = iam_repo.local_changes()
        with self._lock:
            hit = self._credentials.get(access_key_id)
            fresh = local == self._checked_local and time.monotonic() - self._checked_at < RECHECK_SECONDS
            if hit is not None and fresh and hit[0] == (local, self._generation):
                return hit[1], hit[2]
        with self.db.read() as conn:
            state = self._state(conn)
            with self._lock:
                hit = self._credentials.get(access_key_id)
            if hit is not None and hit[0] == state and state[1] is not None:
                return hit[1], hit[2]
            found = self._load(conn, access_key_id)
        if state[1] is not None:  # an empty store (no generation yet, or wiped) is never cached
            with self._lock:
                if len(self._credentials) >= _MAX_CACHED:
                    self._credentials.clear()
                self._credentials[access_key_id] = (state, *found)
        return found

    def _load(self, conn: Connection, key_id: str) -> tuple[Credential | None, Grants | None]:
        if key_id.startswith("AKIA"):
            row = iam_repo.access_key(conn, key_id)
            if row is None or row[2] != "Active":
                return None, None
            user_name, secret, _ = row
            user = iam_repo.get_entity(conn, "user", user_name)
            if user is None:
                return None, None
            principal = Principal(user["Arn"], user["UserId"], self.account_id)
            grants = Grants(
                "user", user_name, principal_policies(conn, self.account_id, "user", user_name), None
            )
            return Credential(key_id, secret, principal), grants
        session = iam_repo.session(conn, key_id)
        if session is None:
            return None, None
        secret, token, expires_at, body = session
        principal = Principal(**body["principal"])
        credential = Credential(key_id, secret, principal, token, datetime.fromtimestamp(expires_at, UTC))
        kind, name = body["kind"], body["name"]
        if kind == "root":
            return credential, ROOT_GRANTS
        identity = principal_policies(conn, self.account_id, kind, name)
        texts = body.get("session_policies")
        session_policies = None if texts is None else tuple(parse_policy(t) for t in texts)
        return credential, Grants(kind, name, identity, session_policies, body.get("issued_at"))
