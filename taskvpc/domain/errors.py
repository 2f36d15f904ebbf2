"""Typed errors raised by the pure core; only ``taskvpc.wire`` renders them for a protocol.

Every client mistake is a :class:`ClientError` carrying the AWS error code, the exact message AWS uses,
and the HTTP status AWS answers with. Anything else that escapes a handler is our fault and is rendered
as the protocol's internal error (never a traceback).
"""

from __future__ import annotations


class ClientError(Exception):
    """A request the caller got wrong: rendered with ``code``, ``message`` and ``http_status``."""

    def __init__(self, code: str, message: str, http_status: int = 400, sender_fault: bool = True) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status
        self.sender_fault = sender_fault

    def __repr__(self) -> str:
        return f"ClientError({self.code!r}, {self.message!r}, {self.http_status})"


# ECS exception types (JSON 1.1 ``__type``); the constructors keep call sites short and uniform.
def ecs_client_exception(message: str) -> ClientError:
    return ClientError("ClientException", message)


def invalid_parameter(message: str) -> ClientError:
    return ClientError("InvalidParameterException", message)


def cluster_not_found(message: str = "Cluster not found.") -> ClientError:
    return ClientError("ClusterNotFoundException", message)


def resource_not_found(message: str) -> ClientError:
    return ClientError("ResourceNotFoundException", message)


class ServerError(Exception):
    """Our own failure (never the caller's); rendered as the protocol's internal error, status 500."""
