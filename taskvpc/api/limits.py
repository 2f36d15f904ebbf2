"""What an unauthenticated peer may cost the server: sizes, counts and times, in one place.

The HTTP front door (``api/server.py``) enforces them on the socket before any request reaches the
application; the ASGI adapter (``api/asgi.py``) applies the body limits again, so the application obeys
them under any server. Everything here is cheap to check: no limit needs the request to be parsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB

# Body limits per protocol. ECS caps a task definition at 64 KiB and its other requests are smaller;
# EC2/ELBv2/STS query bodies are a few KiB (RunInstances' user data is at most 16 KiB). 1 MiB is far
# above any real request of either and still cheap to hash. Agents report every task of their instance
# in one body, hence more room there. Anything else (health, reset) has no body worth the name.
JSON_BODY_LIMIT = 1 * MIB
QUERY_BODY_LIMIT = 1 * MIB
AGENT_BODY_LIMIT = 8 * MIB
# A full PutLogEvents batch is 1 MiB of message bytes (+26 per event) *before* JSON encoding: 10,000
# events' framing and escaping (a control character becomes six bytes) take it well past 1 MiB.
LOGS_BODY_LIMIT = 8 * MIB
LOGS_TARGET_PREFIX = "Logs_20140328."
OTHER_BODY_LIMIT = 64 * KIB
AGENT_PATHS = "/_taskvpc/agent/"  # every version of the agent API


@dataclass(frozen=True, slots=True)
class Limits:
    max_request_line: int = 8 * KIB  # method, path and query string
    max_head_bytes: int = 32 * KIB  # request line and every header, as sent
    max_headers: int = 100
    head_timeout: float = 10.0  # connection (or a keep-alive request's first byte) to the end of headers
    body_timeout: float = 30.0  # end of headers to the end of the body
    keep_alive_timeout: float = 5.0  # idle between two requests of one connection
    max_connections: int = 1000  # open connections, authenticated or not


def body_limit(path: str, headers: Mapping[str, str]) -> int:
    """The largest body a request to ``path`` with these (lower-case) headers may carry."""
    if path.startswith(AGENT_PATHS):
        return AGENT_BODY_LIMIT
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type.startswith("application/x-amz-json"):
        if headers.get("x-amz-target", "").startswith(LOGS_TARGET_PREFIX):
            return LOGS_BODY_LIMIT
        return JSON_BODY_LIMIT
    if content_type == "application/x-www-form-urlencoded":
        return QUERY_BODY_LIMIT
    return OTHER_BODY_LIMIT
