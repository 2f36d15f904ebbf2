"""What an unauthenticated peer may cost the server: sizes, counts and times, in one place.

The HTTP front door (``api/server.py``) enforces them on the socket before any request reaches the
application; the ASGI adapter (``api/asgi.py``) applies the body limits again, so the application obeys
them under any server. Everything here is cheap to check: no limit needs the request to be parsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from taskvpc.api.service_models import service_spec
from taskvpc.control.registry import SERVICES

KIB = 1024
MIB = 1024 * KIB

# Body limits per protocol. ECS caps a task definition at 64 KiB and its other requests are smaller;
# EC2/ELBv2/STS query bodies are a few KiB (RunInstances' user data is at most 16 KiB). 1 MiB is far
# above any real request of either and still cheap to hash. Agents report every task of their instance
# in one body, hence more room there. Anything else (health, reset) has no body worth the name.
JSON_BODY_LIMIT = 1 * MIB
QUERY_BODY_LIMIT = 1 * MIB
AGENT_BODY_LIMIT = 8 * MIB
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
        prefix = headers.get("x-amz-target", "").partition(".")[0]
        return _json_body_limits().get(prefix, JSON_BODY_LIMIT)
    if content_type == "application/x-www-form-urlencoded":
        return QUERY_BODY_LIMIT
    return OTHER_BODY_LIMIT


@cache
def _json_body_limits() -> dict[str, int]:
    """JSON target prefix -> body limit, for the served services whose manifests need more than the
    protocol's (``ServiceManifest.max_body``)."""
    return {
        str(service_spec(m.model).target_prefix): m.max_body
        for m in SERVICES
        if m.max_body is not None and m.protocol == "json"
    }
