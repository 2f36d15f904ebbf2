"""A service's manifest: everything taskvpc needs to serve one AWS service, in one record.

A service lives in its own package (``control/ecs``, ``control/ec2``, ...) and describes itself there in a
``MANIFEST``; ``control/registry.py`` lists the manifests, and that line is the only one a new service adds
outside its own files. The API layer reads the rest from here: which requests are the service's (SigV4
signing name), how to read and write them (botocore model + protocol codec), whether its region's default
VPC must exist first, and which use case answers each operation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from taskvpc.control.context import RequestContext

# A use case: the request context and the operation's decoded input -> the operation's output.
Handler = Callable[[RequestContext, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class ServiceManifest:
    model: str  # botocore's service name ("elbv2"); the service's name everywhere in taskvpc
    signing_name: str  # the SigV4 credential scope's service ("elasticloadbalancing")
    protocol: str  # a key of taskvpc.wire.protocols.PROTOCOLS; must match the model's metadata
    # Regional services see their region's default VPC laid out before their first request there (as
    # in a new AWS account); global ones (STS, IAM) do not.
    regional: bool
    handlers: Mapping[str, Handler]  # operation name -> use case; other operations answer NotImplemented
    # The service-2 document when it is not botocore's own (tests, services botocore does not ship).
    document: Mapping[str, Any] | None = None
    # A body limit above its protocol's (api/limits.py), for services whose requests need it; it is
    # checked before authentication, so only raise it where a real request needs the room.
    max_body: int | None = None
    # Store tables this service owns (taskvpc/store/schema.py) and the migrations that made them.
    tables: tuple[str, ...] = ()
    migrations: tuple[str, ...] = ()
    # What the service adds to an agent's desired-state answer. Today sections are registered with
    # taskvpc.agentapi.answer.register_section and filled by @contributes in taskvpc.control.agent; a
    # service's own sections belong here once one has any (none does yet).
    desired_state: tuple[Callable[..., Any], ...] = ()
