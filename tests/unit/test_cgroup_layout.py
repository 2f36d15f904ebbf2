"""Where a container's cgroup goes (nested in its task's only when the task has task-level limits), and
the mask of /sys/firmware: two ways to a lower kernel cost per container."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from hypothesis import given, strategies as st

from taskvpc.agent import teardown
from taskvpc.agent.runtime import ContainerSpec, Mount, oci

# ECS's rules: container names [A-Za-z0-9_-]; task ids may also hold '.' (agentapi.tasks._TASK_ID_RE)
names = st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True)
task_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,30}", fullmatch=True)


def test_a_task_cgroup_only_for_task_level_limits() -> None:
    assert not oci.has_task_cgroup(None, None)
    assert oci.has_task_cgroup(256, None)
    assert oci.has_task_cgroup(None, 512)
    assert oci.has_task_cgroup(1024, 2048)


def test_paths_of_both_layouts() -> None:
    assert oci.cgroups_path("/taskvpc/", "t1", "web", nested=True) == "/taskvpc/t1/web"
    assert oci.cgroups_path("taskvpc", "t1", "web", nested=False) == "/taskvpc/t1.web"
    assert oci.container_cgroup_paths("a/b", "t1", "web") == ("/a/b/t1/web", "/a/b/t1.web")


@given(task_ids, names)
def test_the_task_of_a_container_cgroup_in_either_layout(task_id: str, name: str) -> None:
    for nested in (True, False):
        rel = oci.cgroups_path("p", task_id, name, nested=nested).split("/")[2:]
        assert oci.task_of_cgroup(rel) == task_id
    assert oci.task_of_cgroup([]) is None


# ---------------------------------------------------------------------------------------------- /sys/firmware


def _config(spec: ContainerSpec, empty_dir: str | None) -> dict:  # type: ignore[type-arg]
    return oci.build_spec(
        dataclasses.replace(spec, command=("true",)),
        oci.NoImageDefaults(),
        netns_path=None,
        cgroups_parent="p",
        hostname="h",
        empty_dir=empty_dir,
    )


def test_sys_firmware_is_masked_by_a_read_only_bind_of_the_empty_dir() -> None:
    config = _config(ContainerSpec("t", "c"), "/state/empty")
    mounts = [m["destination"] for m in config["mounts"]]
    assert mounts.index("/sys/firmware") > mounts.index("/sys")  # (mounted over the container's sysfs)
    mask = next(m for m in config["mounts"] if m["destination"] == "/sys/firmware")
    assert mask["type"] == "bind" and mask["source"] == "/state/empty" and "ro" in mask["options"]
    masked = config["linux"]["maskedPaths"]
    assert "/sys/firmware" not in masked and masked == [p for p in oci.MASKED_PATHS if p != "/sys/firmware"]


def test_runc_s_tmpfs_mask_stays_where_a_bind_would_not_be_safe_or_wanted() -> None:
    cases = [
        _config(ContainerSpec("t", "c"), None),  # no empty directory given
        _config(ContainerSpec("t", "c", capabilities_add=("SYS_ADMIN",)), "/state/empty"),  # could remount it
        _config(ContainerSpec("t", "c", mounts=(Mount("/host/fw", "/sys/firmware"),)), "/state/empty"),
    ]
    for config in cases:
        assert "/sys/firmware" in config["linux"]["maskedPaths"]
        assert not any(m["source"] == "/state/empty" for m in config["mounts"])
    privileged = _config(ContainerSpec("t", "c", privileged=True), "/state/empty")
    assert "maskedPaths" not in privileged["linux"]
    assert not any(m["source"] == "/state/empty" for m in privileged["mounts"])


def test_down_finds_the_tasks_of_both_layouts_by_their_cgroups(tmp_path: Path) -> None:
    """``taskvpc down`` names a task with processes in ``<task>/<name>`` or in ``<task>.<name>``."""
    root = tmp_path / "cg"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu memory pids\n")  # (a fake unified hierarchy)
    for rel in ("tvtx/t1/app", "tvtx/t2.app", "tvtx/t3.idle"):
        (root / rel).mkdir(parents=True)
        (root / rel / "cgroup.procs").write_text(f"{os.getpid()}\n" if "idle" not in rel else "")
    (tmp_path / "netns").mkdir()
    scope = teardown.Scope("tvu1", netns_dir=str(tmp_path / "netns"), cgroup_root=root, cgroup_parent="tvtx")
    assert teardown.scan(scope).task_ids == {"t1", "t2"}
