"""Which mounts ``taskvpc down`` removes: those under the state dir it is given, and the container root
file systems of the prefix's tasks wherever their state dir is (a ``down`` given another state dir than
the agent had must not leave a task's overlay mounted)."""

from __future__ import annotations

from pathlib import Path

from taskvpc.agent.teardown import mount_points

TASK = "1db44621c87d44be9a591565aea5c3a6"
OTHER = "9f0e3b5a2c4d4e6f8a1b2c3d4e5f6a7b"


def _line(point: str) -> str:
    return f"101 29 0:52 / {point} rw,relatime shared:1 - overlay overlay rw,lowerdir=/x"


MOUNTINFO = "\n".join(
    [
        "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda rw",
        _line(f"/elsewhere/state/agent/tasks/{TASK}/app/rootfs"),
        _line(f"/elsewhere/state/agent/tasks/{OTHER}/app/rootfs"),
        _line("/srv/taskvpc/agent/tasks/abc/web/rootfs"),
        _line("/srv/taskvpc/agent/tasks/abc/web/rootfs/proc"),
        _line("/srv/taskvpc-other/agent/tasks/def/web/rootfs"),
        _line("/srv/taskvpc/agent/my\\040dir"),
    ]
)


def test_mounts_under_the_state_dir_deepest_first() -> None:
    assert mount_points(MOUNTINFO, Path("/srv/taskvpc"), set()) == [
        "/srv/taskvpc/agent/tasks/abc/web/rootfs/proc",
        "/srv/taskvpc/agent/tasks/abc/web/rootfs",
        "/srv/taskvpc/agent/my dir",
    ]


def test_a_found_task_s_mounts_are_removed_whatever_state_dir_down_was_given() -> None:
    assert mount_points(MOUNTINFO, Path("/tmp/empty-state"), {TASK}) == [
        f"/elsewhere/state/agent/tasks/{TASK}/app/rootfs"
    ]
    assert mount_points(MOUNTINFO, None, {TASK}) == [f"/elsewhere/state/agent/tasks/{TASK}/app/rootfs"]


def test_nothing_of_other_tasks_or_state_dirs() -> None:
    assert mount_points(MOUNTINFO, None, set()) == []
    found = mount_points(MOUNTINFO, Path("/srv/taskvpc"), {TASK})
    assert not any(OTHER in p or "taskvpc-other" in p for p in found)
    assert mount_points("garbage\n\n", Path("/srv/taskvpc"), {TASK}) == []
