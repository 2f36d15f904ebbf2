"""The agent <-> control-plane contract (docs/agent-api.md), pure and versioned.

Both ends import it: the control plane writes answers with ``to_wire`` and reads reports with
``from_wire``; the agent does the opposite; the test fakes use the same values, so the two ends cannot
drift. Nothing here does I/O (an import contract in pyproject.toml keeps it so).

* :mod:`.answer`: the desired-state answer, assembled from registered sections
* :mod:`.tasks`: the ``tasks`` section (containers, volumes, limits)
* :mod:`.network`: ENIs (with the subnet gateway computed once), VPC routers, security groups
* :mod:`.reports`: what the agent reports
* :mod:`.delta`: desired-state deltas (``since``/``have``) and how the agent merges them
"""

from __future__ import annotations

VERSION = 2
# 2.1: desired-state deltas, opted into per poll with ``since`` (agentapi/delta.py); 2.2: keyed ``updates``
# of whole sections (a load balancer's entry alone), opted into with ``keyed``
REVISION = 2
PREFIX = f"/_taskvpc/agent/v{VERSION}/"
