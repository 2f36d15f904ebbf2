"""Plain HTTP request/response values that the sans-I/O codecs consume and produce."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One buffered HTTP request. ``headers`` keys are lower-case; repeated headers are joined by ','."""

    method: str
    path: str  # raw (still percent-encoded) path, without the query string
    query_string: str  # raw query string, without '?'
    headers: dict[str, str]
    body: bytes = b""


@dataclass(slots=True)
class HttpResponse:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
