"""Which mounts a clean mount namespace drops (``mountns.to_detach``), from ``/proc/self/mountinfo`` text.

The namespaces themselves are made in ``tests/root/test_runc_mountns.py``.
"""

from __future__ import annotations

from hypothesis import assume, given, strategies as st

from taskvpc.agent.runtime import mountns

TASKS = "/var/lib/taskvpc/tasks"


def line(mount_id: int, root: str, point: str, fs_type: str, optional: str = "shared:1") -> str:
    return f"{mount_id} 1 0:{mount_id} {root} {point} rw,relatime {optional} - {fs_type} src rw"


HOST = [
    line(1, "/", "/", "ext4"),
    line(2, "/", "/proc", "proc"),
    line(3, "/", "/run", "tmpfs"),
    line(4, "/netns", "/run/netns", "tmpfs"),  # iproute2's bind of /run/netns onto itself
    line(5, "net:[4026532174]", "/run/netns/tvpc-a", "nsfs"),
    line(6, "net:[4026532175]", "/run/netns/tvpc-b", "nsfs"),
    line(7, "/", f"{TASKS}/t1/web/rootfs", "overlay"),
    line(8, "/", "/var/lib/taskvpc", "ext4"),
    line(9, "/", "/sys/fs/cgroup", "cgroup2"),
]


def test_the_netns_directory_goes_in_one_detach_and_old_overlays_under_the_tasks_dir() -> None:
    assert mountns.to_detach("\n".join(HOST), [TASKS]) == ["/run/netns", f"{TASKS}/t1/web/rootfs"]


def test_a_directory_holding_anything_but_namespace_files_stays_and_its_namespace_files_go() -> None:
    lines = [
        *HOST,
        line(10, "/netns", "/run/netns/sub", "tmpfs"),  # not only namespace files below /run/netns
        line(11, "net:[1]", "/run/docker/netns/x", "nsfs"),  # on /run itself: /run must stay
    ]
    assert mountns.to_detach("\n".join(lines), [TASKS]) == [
        "/run/netns/tvpc-a",
        "/run/netns/tvpc-b",
        "/run/docker/netns/x",
        f"{TASKS}/t1/web/rootfs",
    ]


def test_the_tasks_directory_itself_and_its_parents_stay_mounted() -> None:
    lines = [line(1, "/", "/", "ext4"), line(2, "/", TASKS, "tmpfs"), line(3, "/", f"{TASKS}/x/y", "tmpfs")]
    assert mountns.to_detach("\n".join(lines), [TASKS + "/"]) == [f"{TASKS}/x/y"]
    assert mountns.to_detach("\n".join(lines), ["/"]) == []


def test_a_directory_of_namespace_files_above_the_tasks_dir_stays() -> None:
    lines = [line(1, "/", "/", "ext4"), line(2, "/s", "/srv", "tmpfs"), line(3, "net:[1]", "/srv/ns", "nsfs")]
    assert mountns.to_detach("\n".join(lines), ["/srv/state/tasks"]) == ["/srv/ns"]


def test_escaped_mount_points_and_lines_without_a_type_are_read() -> None:
    lines = [line(1, "/", "/", "ext4"), line(2, "net:[1]", "/run/my\\040ns", "nsfs"), "garbage"]
    assert mountns.to_detach("\n".join(lines), []) == ["/run/my ns"]


def test_host_path_crosses_into_the_agents_mount_namespace() -> None:
    assert mountns.host_path("/run/netns/x", pid=42) == "/proc/42/root/run/netns/x"
    assert mountns.host_path("relative", pid=42) == "relative"


def _covered(point: str, chosen: list[str]) -> bool:
    return any(point == c or point.startswith(c + "/") for c in chosen)


segment = st.sampled_from(["a", "b", "netns", "tasks", "x"])
paths = st.lists(segment, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts))
mounts = st.lists(
    st.tuples(
        paths, st.sampled_from(["/", "/sub", "net:[1]"]), st.sampled_from(["nsfs", "tmpfs", "overlay"])
    ),
    max_size=25,
)


@given(mounts, st.sampled_from(["/a/tasks", "/tasks", "/b"]))
def test_every_namespace_file_and_mount_under_the_tasks_dir_goes_and_nothing_else(
    table: list[tuple[str, str, str]], tasks: str
) -> None:
    files = [p for p, _, kind in table if kind == "nsfs"]  # a namespace file has nothing below it
    points = [p for p, _, _ in table]
    assume(not any(_covered(tasks, [f]) or sum(_covered(p, [f]) for p in points) > 1 for f in files))
    text = "\n".join(line(i + 2, root, point, kind) for i, (point, root, kind) in enumerate(table))
    chosen = mountns.to_detach(line(1, "/", "/", "ext4") + "\n" + text, [tasks])
    assert "/" not in chosen
    for point in chosen:  # none below another one (that one's detach takes it along)
        assert not _covered(point, [c for c in chosen if c != point])
    for point, _root, kind in table:
        must_go = kind == "nsfs" or point.startswith(tasks + "/")
        if must_go:
            assert _covered(point, chosen), (point, chosen)
        elif _covered(point, chosen):  # only a bind mount holding nothing but namespace files
            holder = next(c for c in chosen if point == c or point.startswith(c + "/"))
            below = [(p, k) for p, _, k in table if p.startswith(holder + "/")]
            assert point.startswith(tasks + "/") or (
                point == holder and below and all(k == "nsfs" for _, k in below)
            ), (point, chosen)
    assert not _covered(tasks, chosen)  # the shims' files stay where they are
