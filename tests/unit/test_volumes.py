"""Task volumes: the pure resolution to bind mounts, directory preparation and removal with the task."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskvpc.agent import taskplan as tp, volumes
from taskvpc.agent.runtime import Mount
from taskvpc.domain.lifecycle import DesiredStatus

TASK_ID = "0123456789abcdef0123456789abcdef"
ARN = f"arn:aws:ecs:us-east-1:000000000000:task/default/{TASK_ID}"
STATE = Path("/var/lib/taskvpc/agent")


def ctr(
    name: str,
    mounts: tuple[tuple[str, str, bool], ...] = (),
    volumes_from: tuple[tuple[str, bool], ...] = (),
) -> tp.DesiredContainer:
    return tp.DesiredContainer(
        name,
        mount_points=tuple(tp.MountPoint(v, p, ro) for v, p, ro in mounts),
        volumes_from=tuple(tp.VolumeFrom(c, ro) for c, ro in volumes_from),
    )


def task(*containers: tp.DesiredContainer, vols: tuple[tp.Volume, ...] = ()) -> tp.DesiredTask:
    return tp.DesiredTask(ARN, DesiredStatus.RUNNING, containers, volumes=vols)


TASK_VOL = STATE / "tasks" / TASK_ID / ".volumes"
HOST = tp.Volume("host", source_path="/srv/data")
EMPTY = tp.Volume("empty")
SCOPED = tp.Volume("scoped", docker=tp.DockerVolumeConfig(tp.VolumeScope.TASK))
SHARED = tp.Volume("shared", docker=tp.DockerVolumeConfig(tp.VolumeScope.SHARED, autoprovision=True))
PRESET = tp.Volume("preset", docker=tp.DockerVolumeConfig(tp.VolumeScope.SHARED, autoprovision=False))


def test_each_kind_of_volume_resolves_to_its_host_path() -> None:
    app = ctr(
        "app",
        mounts=(
            ("host", "/data", True),
            ("empty", "/scratch", False),
            ("scoped", "/cache/", False),
            ("shared", "/shared", False),
            ("preset", "/preset", True),
        ),
    )
    plan = volumes.plan_mounts(task(app, vols=(HOST, EMPTY, SCOPED, SHARED, PRESET)), "app", STATE)
    assert set(plan.mounts) == {
        Mount("/srv/data", "/data", True),
        Mount(str(TASK_VOL / "empty"), "/scratch", False),
        Mount(str(TASK_VOL / "scoped"), "/cache", False),  # the trailing slash is dropped
        Mount(str(STATE / "volumes" / "shared"), "/shared", False),
        Mount(str(STATE / "volumes" / "preset"), "/preset", True),
    }
    assert set(plan.create) == {
        Path("/srv/data"),
        TASK_VOL / "empty",
        TASK_VOL / "scoped",
        STATE / "volumes" / "shared",
    }
    assert plan.require == (("preset", STATE / "volumes" / "preset"),)  # no autoprovision: must exist


def test_containers_of_a_task_share_its_task_volumes_but_tasks_do_not() -> None:
    a, b = ctr("a", mounts=(("empty", "/x", False),)), ctr("b", mounts=(("empty", "/y", True),))
    one = task(a, b, vols=(EMPTY,))
    [mount_a] = volumes.plan_mounts(one, "a", STATE).mounts
    [mount_b] = volumes.plan_mounts(one, "b", STATE).mounts
    assert mount_a.source == mount_b.source and (mount_a.read_only, mount_b.read_only) == (False, True)
    other = tp.DesiredTask(
        ARN.replace(TASK_ID, "f" * 32), DesiredStatus.RUNNING, (a,), volumes=(EMPTY, SHARED)
    )
    assert volumes.plan_mounts(other, "a", STATE).mounts[0].source != mount_a.source


def test_volumes_from_gives_the_source_mounts_and_read_only_forces_read_only() -> None:
    db = ctr("db", mounts=(("host", "/data", False), ("empty", "/logs", True)))
    app = ctr("app", volumes_from=(("db", False),))
    reader = ctr("reader", volumes_from=(("db", True),))
    t = task(db, app, reader, vols=(HOST, EMPTY))
    assert set(volumes.plan_mounts(t, "app", STATE).mounts) == {
        Mount("/srv/data", "/data", False),
        Mount(str(TASK_VOL / "empty"), "/logs", True),  # read-only at the source stays read-only
    }
    assert {m.read_only for m in volumes.plan_mounts(t, "reader", STATE).mounts} == {True}


def test_volumes_from_is_transitive_and_own_mount_points_win_on_the_same_path() -> None:
    db = ctr("db", mounts=(("host", "/data", False),))
    mid = ctr("mid", volumes_from=(("db", True),))
    top = ctr("top", mounts=(("empty", "/data", False),), volumes_from=(("mid", False),))
    t = task(db, mid, top, vols=(HOST, EMPTY))
    assert volumes.plan_mounts(t, "mid", STATE).mounts == (Mount("/srv/data", "/data", True),)
    assert volumes.plan_mounts(t, "top", STATE).mounts == (Mount(str(TASK_VOL / "empty"), "/data", False),)


def test_a_volumes_from_cycle_ends() -> None:
    a = ctr("a", mounts=(("host", "/a", False),), volumes_from=(("b", False),))
    b = ctr("b", mounts=(("empty", "/b", False),), volumes_from=(("a", False),))
    plan = volumes.plan_mounts(task(a, b, vols=(HOST, EMPTY)), "a", STATE)
    assert {m.destination for m in plan.mounts} == {"/a", "/b"}


def test_parents_are_mounted_before_their_children() -> None:
    app = ctr("app", mounts=(("host", "/srv/www/static", False), ("empty", "/srv", False)))
    plan = volumes.plan_mounts(task(app, vols=(HOST, EMPTY)), "app", STATE)
    assert [m.destination for m in plan.mounts] == ["/srv", "/srv/www/static"]


@pytest.mark.parametrize(
    ("vols", "app", "reason"),
    [
        (
            (),
            ctr("app", mounts=(("nope", "/x", False),)),
            "CannotCreateContainerError: Unknown volume 'nope'.",
        ),
        (
            (HOST, EMPTY),
            ctr("app", mounts=(("host", "/x", False), ("empty", "/x/", False))),
            "CannotCreateContainerError: Error response from daemon: Duplicate mount point: /x",
        ),
        ((), ctr("app", volumes_from=(("ghost", False),)), "no container named 'ghost' in the task"),
        (
            (tp.Volume("e", unsupported="efsVolumeConfiguration"),),
            ctr("app", mounts=(("e", "/x", False),)),
            "volume 'e': efsVolumeConfiguration is not supported by taskvpc",
        ),
        (
            (tp.Volume("n", docker=tp.DockerVolumeConfig(driver="rexray/ebs")),),
            ctr("app", mounts=(("n", "/x", False),)),
            "driver 'rexray/ebs' is not supported by taskvpc",
        ),
        (
            (tp.Volume("n", docker=tp.DockerVolumeConfig(driver_opts=(("type", "nfs"),))),),
            ctr("app", mounts=(("n", "/x", False),)),
            "driver 'local' with driverOpts is not supported",
        ),
        ((tp.Volume("../../etc"),), ctr("app", mounts=(("../../etc", "/x", False),)), "invalid volume name"),
        (
            (tp.Volume("rel", source_path="data"),),
            ctr("app", mounts=(("rel", "/x", False),)),
            "host.sourcePath 'data' must be an absolute path",
        ),
    ],
)
def test_volumes_that_cannot_be_provided_fail_with_a_reason(
    vols: tuple[tp.Volume, ...], app: tp.DesiredContainer, reason: str
) -> None:
    with pytest.raises(volumes.VolumeError) as info:
        volumes.plan_mounts(task(app, vols=vols), "app", STATE)
    assert reason in info.value.reason


def test_unmounted_volumes_are_not_checked_or_made() -> None:
    app = ctr("app")
    plan = volumes.plan_mounts(
        task(app, vols=(tp.Volume("e", unsupported="efsVolumeConfiguration"), PRESET)), "app", STATE
    )
    assert plan == volumes.MountPlan()


def test_prepare_makes_directories_and_checks_required_ones(tmp_path: Path) -> None:
    existing_file = tmp_path / "config.txt"
    existing_file.write_text("x")
    made = tmp_path / "a" / "b"
    volumes.prepare(volumes.MountPlan(create=(made, existing_file), require=(("ok", tmp_path),)))
    assert made.is_dir() and existing_file.read_text() == "x"
    with pytest.raises(volumes.VolumeError) as info:
        volumes.prepare(volumes.MountPlan(require=(("preset", tmp_path / "missing"),)))
    assert info.value.reason == (
        "ResourceInitializationError: initialize volume: volume detection failed, "
        "volume 'preset' does not exist and autoprovision is set to false"
    )
    blocked = volumes.MountPlan(create=(existing_file / "below-a-file",))
    with pytest.raises(volumes.VolumeError, match="cannot create volume directory"):
        volumes.prepare(blocked)


def test_task_volumes_go_with_the_task_and_shared_ones_stay(tmp_path: Path) -> None:
    app = ctr("app", mounts=(("empty", "/e", False), ("shared", "/s", False)))
    t = task(app, vols=(EMPTY, SHARED))
    volumes.prepare(volumes.plan_mounts(t, "app", tmp_path))
    task_volume = volumes.task_volume_dir(tmp_path, TASK_ID, "empty")
    shared = volumes.shared_volume_dir(tmp_path, "shared")
    (task_volume / "file").write_text("gone soon")
    (shared / "file").write_text("kept")
    log = tmp_path / "tasks" / TASK_ID / "app" / "log"
    log.parent.mkdir(parents=True)
    log.write_text("output")
    volumes.remove_task_volumes(tmp_path, TASK_ID)
    assert not task_volume.exists() and (shared / "file").read_text() == "kept"
    assert log.read_text() == "output"  # logs go with purge_task, not here
    volumes.remove_task_volumes(tmp_path, TASK_ID)  # absent already is fine
