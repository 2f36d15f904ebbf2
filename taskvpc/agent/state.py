"""What the agent keeps on disk about itself: ``<state>/agent.json``.

The instance id is stable per host (docs/agent-api.md: registering again with the same ``instanceId``
returns the same container instance), so it is made once and kept. The container instance ARN and
availability zone are cached from the last registration, for logs and for the first registration after a
restart. Per-container state lives under ``<state>/tasks/`` and belongs to the runtime.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

STATE_FILE = "agent.json"


def new_instance_id() -> str:
    """An EC2-style instance id: ``i-`` and 17 hex digits."""
    return "i-" + secrets.token_hex(9)[:17]


@dataclass(frozen=True, slots=True)
class AgentState:
    instance_id: str
    cluster: str | None = None
    container_instance_arn: str | None = None
    availability_zone: str | None = None

    def registered(self, cluster: str, arn: str, zone: str | None) -> AgentState:
        return replace(self, cluster=cluster, container_instance_arn=arn, availability_zone=zone)


def prepare_state_dir(state_dir: Path) -> None:
    """Create the state directory; traversable (0711) so a container user can reach its task's files."""
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "tasks").mkdir(exist_ok=True)
    for path in (state_dir, state_dir / "tasks"):
        os.chmod(path, os.stat(path).st_mode | 0o111)


def load_state(state_dir: Path) -> AgentState:
    """The saved state, or a new one (with a new instance id) saved at once."""
    path = state_dir / STATE_FILE
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
        return AgentState(
            instance_id=str(doc["instance_id"]),
            cluster=doc.get("cluster"),
            container_instance_arn=doc.get("container_instance_arn"),
            availability_zone=doc.get("availability_zone"),
        )
    except (FileNotFoundError, ValueError, KeyError):
        state = AgentState(new_instance_id())
        save_state(state_dir, state)
        return state


def save_state(state_dir: Path, state: AgentState) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STATE_FILE
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(asdict(state), indent=1))
    os.replace(tmp, path)
