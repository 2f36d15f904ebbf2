"""The services taskvpc serves: one manifest each (see ``control/manifest.py``).

Adding a service means writing its package with a ``MANIFEST`` and adding it to ``SERVICES`` below;
nothing else in the API layer changes.
"""

from __future__ import annotations

from taskvpc.control import sts
from taskvpc.control.ec2.manifest import MANIFEST as EC2
from taskvpc.control.ecs.manifest import MANIFEST as ECS
from taskvpc.control.elbv2.manifest import MANIFEST as ELBV2
from taskvpc.control.iam.manifest import MANIFEST as IAM
from taskvpc.control.logs.manifest import MANIFEST as LOGS
from taskvpc.control.manifest import Handler, ServiceManifest

SERVICES: tuple[ServiceManifest, ...] = (ECS, EC2, ELBV2, LOGS, sts.MANIFEST, IAM)

__all__ = ["SERVICES", "Handler", "ServiceManifest"]
