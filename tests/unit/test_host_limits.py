"""The agent's open-file limit and the local agent's task-ENI default follow the machine, not a constant."""

from __future__ import annotations

import resource
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskvpc.agent import limits
from taskvpc.cli import local_agent


@pytest.fixture
def nofile() -> Iterator[tuple[int, int]]:
    saved = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield saved
    resource.setrlimit(resource.RLIMIT_NOFILE, saved)


def test_the_soft_open_file_limit_goes_up_to_the_hard_one(nofile: tuple[int, int]) -> None:
    _soft, hard = nofile
    if hard == resource.RLIM_INFINITY or hard < 64:
        pytest.skip("needs a finite hard limit to lower the soft one below")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard // 2, hard))
    assert limits.raise_open_files() == (hard // 2, hard)
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    assert limits.raise_open_files() == (hard, hard)  # already there: unchanged, never lowered


def meminfo(tmp_path: Path, kib: int) -> str:
    path = tmp_path / "meminfo"
    path.write_text(f"MemTotal:       {kib} kB\nMemFree:        1000 kB\n")
    return str(path)


def test_the_default_task_eni_limit_is_what_the_memory_holds(tmp_path: Path) -> None:
    assert local_agent.machine_task_enis(meminfo(tmp_path, 24 * 1024 * 1024)) == 12288  # 24 GiB / 2 MiB
    assert local_agent.machine_task_enis(meminfo(tmp_path, 1024 * 1024)) == local_agent.FLOOR_TASK_ENIS
    assert local_agent.machine_task_enis(str(tmp_path / "missing")) == local_agent.FLOOR_TASK_ENIS
