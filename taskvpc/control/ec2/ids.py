"""EC2 resource ids: ``vpc-``, ``subnet-``, ``sg-``, ``eni-``, ``sgr-`` plus 17 lower-case hex digits.

New ids are derived from the request context's UUID generator (injected, so tests can fix them).
An id is well formed when it is the prefix and 8 or 17 lower-case hex digits (EC2's short and long
formats); anything else is ``Invalid...Malformed`` before any lookup, as EC2 checks shape first.
"""

from __future__ import annotations

import hashlib
import re

from taskvpc.control.context import RequestContext
from taskvpc.control.ec2 import errors

# Resource type (TagSpecification ResourceType / DescribeTags resource-type) -> id prefix.
RESOURCE_PREFIX = {
    "vpc": "vpc",
    "subnet": "subnet",
    "security-group": "sg",
    "security-group-rule": "sgr",
    "network-interface": "eni",
}
PREFIX_RESOURCE = {prefix: kind for kind, prefix in RESOURCE_PREFIX.items()}

_SHAPE = {prefix: re.compile(rf"{prefix}-(?:[0-9a-f]{{8}}|[0-9a-f]{{17}})") for prefix in PREFIX_RESOURCE}


def new_id(ctx: RequestContext, prefix: str) -> str:
    digest = hashlib.sha256(ctx.new_id().encode()).hexdigest()
    return f"{prefix}-{digest[:17]}"


def random_bytes(ctx: RequestContext, n: int) -> bytes:
    """``n`` bytes (n <= 32) drawn from the context's generator, for MACs and address picks."""
    return hashlib.sha256(b"bytes:" + ctx.new_id().encode()).digest()[:n]


def is_well_formed(prefix: str, value: str) -> bool:
    return _SHAPE[prefix].fullmatch(value) is not None


def check(prefix: str, values: list[str]) -> None:
    """Raise ``Invalid...Malformed`` for the first id that is not of the prefix's shape."""
    for value in values:
        if not is_well_formed(prefix, value):
            raise errors.malformed(prefix, value)


def resource_type_of(resource_id: str) -> str | None:
    """The resource type an id names (``sg-...`` -> ``security-group``), None when not ours."""
    prefix = resource_id.partition("-")[0]
    kind = PREFIX_RESOURCE.get(prefix)
    if kind is None or not is_well_formed(prefix, resource_id):
        return None
    return kind
