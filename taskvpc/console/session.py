"""The console's session: a signed cookie naming the access key the user signed in with, and its CSRF token.

The cookie holds no secret of the user's: only the access key id (re-resolved on every request, so a key
deleted or made inactive ends its sessions at once), the CSRF token of the session and when it was
issued. It is signed with HMAC-SHA256 under a key the server holds (in memory: a restart signs everyone
out). Plain functions with the clock and the key as arguments, so they are tested without a server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

COOKIE = "taskvpc_console"
MAX_AGE = 8 * 3600  # seconds a session lasts from sign-in


@dataclass(frozen=True, slots=True)
class Session:
    access_key_id: str
    csrf: str
    issued_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest())


def encode(session: Session, key: bytes) -> str:
    """The cookie value: ``<payload>.<mac>``, both URL-safe base64 (no characters a cookie must quote)."""
    doc = {"k": session.access_key_id, "c": session.csrf, "t": session.issued_at}
    payload = _b64(json.dumps(doc, separators=(",", ":")).encode())
    return f"{payload}.{_mac(key, payload)}"


def decode(value: str, key: bytes, now: float) -> Session | None:
    """The session a cookie value carries, or None when it is forged, malformed or expired."""
    payload, dot, mac = value.partition(".")
    if not dot or len(value) > 4096 or not hmac.compare_digest(mac, _mac(key, payload)):
        return None
    try:
        doc = json.loads(_unb64(payload))
        session = Session(str(doc["k"]), str(doc["c"]), int(doc["t"]))
    except (ValueError, KeyError, TypeError):
        return None
    if not session.issued_at <= now < session.issued_at + MAX_AGE:
        return None
    return session


def set_cookie(value: str, secure: bool) -> str:
    """The Set-Cookie header of a new session: script cannot read it, no other site's request carries it."""
    flags = f"Path=/console; Max-Age={MAX_AGE}; HttpOnly; SameSite=Strict"
    return f"{COOKIE}={value}; {flags}{'; Secure' if secure else ''}"


def clear_cookie() -> str:
    return f"{COOKIE}=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict"


def cookie_value(header: str) -> str | None:
    """The console cookie's value in a Cookie header, if there is one."""
    for part in header.split(";"):
        name, eq, value = part.strip().partition("=")
        if eq and name == COOKIE:
            return value
    return None


def same_origin(headers: dict[str, str], scheme: str) -> bool:
    """Whether a state-changing request comes from the console's own pages (OWASP: verify the origin):
    its Origin must be this server's (scheme and Host), or, without Origin, the browser's Fetch
    Metadata must say same-origin. A request with neither is refused: every current browser sends one."""
    host = headers.get("host", "")
    origin = headers.get("origin")
    if origin is not None:
        return bool(host) and origin == f"{scheme}://{host}"
    return headers.get("sec-fetch-site") == "same-origin"


def csrf_matches(session: Session, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(presented.encode(), session.csrf.encode())
