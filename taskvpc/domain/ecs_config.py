"""The ``/etc/ecs/ecs.config`` keys an instance's user data sets, as the ECS agent would read them.

User data for ECS is usually one of two forms, and both are read here:

* the file itself: ``ECS_CLUSTER=web`` lines (what ``--user-data 'ECS_CLUSTER=web'`` gives);
* a shell script that writes it: ``echo ECS_CLUSTER=web >> /etc/ecs/ecs.config`` (quoted or not),
  or a here-document into that file.

Only ``KEY=value`` assignments whose key starts with ``ECS_`` count; the script is never run. A value may be
quoted (``ECS_CLUSTER="web"``). Later assignments win, as in the file.
"""

from __future__ import annotations

import json
import re

_ECHO = re.compile(r"^echo\s+(?:-e\s+)?(.*?)\s*>>?\s*/etc/ecs/ecs\.config\s*$")
_ASSIGNMENT = re.compile(r"^(?:export\s+)?(ECS_[A-Z0-9_]+)=(.*)$")
DEFAULT_CLUSTER = "default"


def parse(user_data: str) -> dict[str, str]:
    """Every ``ECS_*`` assignment in the user data (file lines or ``echo`` lines of a script)."""
    found: dict[str, str] = {}
    for line in user_data.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        echoed = _ECHO.match(stripped)
        assignment = _ASSIGNMENT.match(_unquote(echoed.group(1) if echoed else stripped))
        if assignment:
            found[assignment.group(1)] = _unquote(assignment.group(2).strip())
    return found


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def cluster(config: dict[str, str]) -> str:
    return config.get("ECS_CLUSTER") or DEFAULT_CLUSTER


def json_object(config: dict[str, str], key: str) -> dict[str, str]:
    """A key whose value is a JSON object of strings (``ECS_CONTAINER_INSTANCE_TAGS``,
    ``ECS_INSTANCE_ATTRIBUTES``); ``{}`` when absent or not such an object (the ECS agent refuses to
    start then; an instance here starts without them rather than not at all)."""
    raw = config.get(key)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}
