"""What an EC2 instance's launch tells its agent: the ``/etc/ecs/ecs.config`` keys of its user data, its
subnet, its image's OS family and the cgroup its tasks go in (``taskvpc agent --ecs-config FILE
--subnet-id ID --os-family F --cgroup-parent PATH``). A Windows family makes the agent register as Windows
and refuse every container (:meth:`InstanceConfig.container_refusal`).

The host supervisor of ``taskvpc up`` writes the user data to a file in the instance's state dir and
starts the agent with these flags. Keys honoured: ``ECS_CLUSTER`` (the cluster to join),
``ECS_INSTANCE_ATTRIBUTES`` (custom attributes, a JSON object), ``ECS_RESERVED_MEMORY`` (MiB kept from
tasks), ``ECS_CONTAINER_INSTANCE_TAGS`` (a JSON object) and ``ECS_CONTAINER_INSTANCE_PROPAGATE_TAGS_FROM``
(``ec2_instance``: the EC2 instance's tags too; both sent with the registration); the others are accepted and ignored, as taskvpc has nothing they would change (e.g.
``ECS_ENABLE_TASK_ENI``: awsvpc is always on). The agent reads it once, at start, as the ECS agent does.

It is held in :data:`CURRENT` because registration is built deep inside ``run_agent``; ``main`` sets it
once before the agent starts and nothing changes it afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskvpc.domain import ecs_config


@dataclass(frozen=True)
class InstanceConfig:
    ecs: dict[str, str] = field(default_factory=dict)
    subnet_id: str | None = None
    os_family: str | None = None  # ECS's value: LINUX, WINDOWS_SERVER_2022_FULL, ...
    cgroup_parent: str | None = None  # where the tasks' cgroups go: inside the instance's (its limits)

    @property
    def cluster(self) -> str | None:
        return self.ecs.get("ECS_CLUSTER") or None

    @property
    def windows(self) -> bool:
        return bool(self.os_family and self.os_family.startswith("WINDOWS"))

    def container_refusal(self) -> str | None:
        """Why this host cannot start any container, or None. A Windows AMI's instance registers as
        Windows (so only Windows task definitions place there), but its containers would need a Windows
        kernel; this machine's is Linux, so each one stops with this reason instead of a runc error."""
        if not self.windows:
            return None
        return (
            f"CannotStartContainerError: Windows containers ({self.os_family}) cannot run on this host: "
            "taskvpc runs every instance on the machine's Linux kernel"
        )

    @property
    def reserved_memory(self) -> int:
        value = self.ecs.get("ECS_RESERVED_MEMORY", "")
        return int(value) if value.isdigit() else 0

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        """The registration body with what the launch says (custom attributes, subnet, OS)."""
        attributes = dict(body.get("attributes") or {})
        attributes.update(ecs_config.json_object(self.ecs, "ECS_INSTANCE_ATTRIBUTES"))
        if self.windows:
            attributes["ecs.os-type"] = "windows"
            attributes["ecs.os-family"] = self.os_family
        result = {**body, "attributes": attributes}
        tags = ecs_config.json_object(self.ecs, "ECS_CONTAINER_INSTANCE_TAGS")
        if tags:
            result["tags"] = tags
        if self.ecs.get("ECS_CONTAINER_INSTANCE_PROPAGATE_TAGS_FROM") == "ec2_instance":
            result["propagateTagsFrom"] = "ec2_instance"  # the control plane adds the EC2 instance's tags
        if self.subnet_id:
            result["subnetId"] = self.subnet_id
        if self.reserved_memory and isinstance(result.get("resources"), dict):
            resources = dict(result["resources"])
            resources["MEMORY"] = max(0, int(resources.get("MEMORY", 0)) - self.reserved_memory)
            result["resources"] = resources
        return result


CURRENT = InstanceConfig()


def load(
    ecs_config_path: str | None,
    subnet_id: str | None,
    os_family: str | None,
    cgroup_parent: str | None = None,
) -> InstanceConfig:
    text = Path(ecs_config_path).read_text() if ecs_config_path else ""
    return InstanceConfig(ecs_config.parse(text), subnet_id, os_family, cgroup_parent)
