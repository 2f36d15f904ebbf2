"""ELBv2 (query protocol): known to taskvpc so its clients get ELBv2-shaped answers, with no operation
served yet - every call answers NotImplemented until the load-balancer issue adds handlers here."""

from __future__ import annotations

from taskvpc.control.manifest import ServiceManifest

MANIFEST = ServiceManifest(
    model="elbv2",
    signing_name="elasticloadbalancing",
    protocol="query",
    regional=True,
    handlers={},
)
