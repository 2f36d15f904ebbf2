"""A removed task's memory cgroup takes its cached pages with it (``cgroups.release_memory``).

Without the reclaim, the page cache a container's processes charged stays charged to the removed
cgroup, which then lingers as a dying memory cgroup (with its kernel shrinker map) until memory
pressure. The tests charge a cgroup with the page cache of a file its process wrote, then check that
the file's pages are no longer cached once the cgroup is released / removed: `fincore` counts them.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskvpc.agent.runtime import cgroups

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (cgroups)")

WRITTEN_MIB = 8


def _memory_dir(path: str) -> Path:
    root = cgroups.CGROUP_ROOT
    return root / path if cgroups.is_unified(root) else root / "memory" / path


@pytest.fixture
def cgroup() -> Iterator[str]:
    path = f"taskvpc-tcm{secrets.token_hex(3)}/task"
    if not _memory_dir("").is_dir():
        pytest.skip("no memory controller here")
    if cgroups.is_unified(cgroups.CGROUP_ROOT):
        cgroups._enable_controllers(cgroups.CGROUP_ROOT, path)
    _memory_dir(path).mkdir(parents=True, exist_ok=True)
    try:
        yield path
    finally:
        cgroups.remove(path.split("/")[0])
        assert cgroups.existing(path.split("/")[0]) == []


def _cached_pages(file: Path) -> int:
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "PAGES", str(file)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.split()[0])


def _write_inside(path: str, file: Path) -> None:
    """Run a process in cgroup ``path`` that writes (and syncs) a file, charging its page cache there."""
    procs = _memory_dir(path) / "cgroup.procs"
    script = (
        f"echo $$ > {procs} && dd if=/dev/zero of={file} bs=1M count={WRITTEN_MIB} conv=fsync status=none"
    )
    subprocess.run(["sh", "-c", script], check=True)


def test_a_released_cgroup_no_longer_holds_the_pages_its_process_cached(cgroup: str, tmp_path: Path) -> None:
    file = tmp_path / "written"
    _write_inside(cgroup, file)
    assert _cached_pages(file) >= WRITTEN_MIB * 256 // 2  # cached, and charged to the cgroup

    cgroups.release_memory(cgroup)

    assert _cached_pages(file) < 64


def test_removing_a_task_cgroup_releases_its_memory_first(cgroup: str, tmp_path: Path) -> None:
    file = tmp_path / "written"
    _write_inside(cgroup, file)
    assert _cached_pages(file) >= WRITTEN_MIB * 256 // 2

    cgroups.remove(cgroup)

    assert not _memory_dir(cgroup).exists()
    assert _cached_pages(file) < 64  # without the release the pages stay, charged to a dying cgroup


def test_a_cgroup_with_a_process_is_left_alone(cgroup: str) -> None:
    sleeper = subprocess.Popen(
        ["sh", "-c", f"echo $$ > {_memory_dir(cgroup) / 'cgroup.procs'} && exec sleep 30"]
    )
    try:
        procs = _memory_dir(cgroup) / "cgroup.procs"
        for _ in range(500):
            if str(sleeper.pid) in procs.read_text().split():
                break
            time.sleep(0.01)
        assert str(sleeper.pid) in procs.read_text().split()
        cgroups.release_memory(cgroup)  # EBUSY on v1: best effort, no error
        assert _memory_dir(cgroup).is_dir()
    finally:
        sleeper.kill()
        sleeper.wait()
