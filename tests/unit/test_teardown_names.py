"""What ``taskvpc down`` and a starting agent count as one prefix's (exact boundaries), and the lock
that keeps a second agent off a prefix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from taskvpc.agent import netplan, prefix as prefix_module
from taskvpc.agent.prefix import PrefixBusy, cgroup_parent, prefix_lock
from taskvpc.agent.teardown import Scope

PREFIXES = st.from_regex(r"[a-z][a-z0-9]{1,6}", fullmatch=True)


@given(PREFIXES, PREFIXES)
def test_names_of_one_prefix_never_match_another(mine: str, other: str) -> None:
    if mine == other:
        return
    me, them = netplan.NetConfig(prefix=mine), netplan.NetConfig(prefix=other)
    vpc, task = "vpc-0123456789abcdef0", "0123456789abcdef0123456789abcdef"
    assert netplan.parse_netns(me, netplan.router_netns(them, vpc)) is None
    assert netplan.parse_netns(me, netplan.task_netns(them, task)) is None
    assert netplan.host_link_re(me).fullmatch(netplan.host_link(them, vpc)) is None
    assert cgroup_parent(mine) != cgroup_parent(other)


def test_a_longer_prefix_is_not_ours() -> None:
    cfg = netplan.NetConfig(prefix="tvpc")
    assert netplan.parse_netns(cfg, "tvpcx-t-abc") is None
    assert netplan.parse_netns(cfg, "tvpc-t-abc") == ("task", "abc")
    assert cgroup_parent("tvpc") == "taskvpc" and cgroup_parent("tvpcx") == "taskvpc-tvpcx"


def test_one_holder_per_prefix(tmp_path: Path) -> None:
    with prefix_lock("tva", tmp_path):
        busy = rf"an agent with prefix 'tva' is running \(pid {os.getpid()}\)"
        with pytest.raises(PrefixBusy, match=busy), prefix_lock("tva", tmp_path):
            pass
        with prefix_lock("tvb", tmp_path):  # another prefix is another lock
            pass
    with prefix_lock("tva", tmp_path):  # released with its holder
        pass


def test_the_lock_file_goes_with_its_holder(tmp_path: Path) -> None:
    with prefix_lock("tva", tmp_path):
        assert (tmp_path / "tva.lock").read_text() == f"{os.getpid()}\n"
    assert not (tmp_path / "tva.lock").exists()  # /run does not fill with finished prefixes' files


def test_a_lock_taken_on_a_removed_file_is_taken_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the removal opens: we open the file, its holder lets go and removes it, we lock the
    name-less file. The lock must end on the file the name now points at."""
    real_flock = prefix_module.fcntl.flock
    raced: list[int] = []

    def flock_after_a_release(fd: int, operation: int) -> None:
        if not raced:
            raced.append(fd)
            (tmp_path / "tva.lock").unlink()  # the holder released and removed it...
            (tmp_path / "tva.lock").write_text("")  # ...and a third process created it anew
        real_flock(fd, operation)

    monkeypatch.setattr(prefix_module.fcntl, "flock", flock_after_a_release)
    (tmp_path / "tva.lock").write_text("")
    with prefix_lock("tva", tmp_path):
        named = os.stat(tmp_path / "tva.lock")
        held = [os.fstat(int(fd.name)) for fd in Path("/proc/self/fd").iterdir() if _is_lock(fd, named)]
        assert held, "the lock is held on the file the name points at"
    assert raced


def _is_lock(fd: Path, named: os.stat_result) -> bool:
    try:
        found = os.stat(fd)
    except OSError:
        return False
    return (found.st_dev, found.st_ino) == (named.st_dev, named.st_ino)


def test_a_prefix_that_is_no_prefix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError), prefix_lock("../etc", tmp_path):
        pass
    with pytest.raises(ValueError):
        Scope("TV-1")
    assert not list(tmp_path.iterdir())
