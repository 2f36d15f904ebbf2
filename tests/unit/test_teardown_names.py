"""What ``taskvpc down`` and a starting agent count as one prefix's (exact boundaries), and the lock
that keeps a second agent off a prefix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from taskvpc.agent import netplan
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


def test_a_prefix_that_is_no_prefix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError), prefix_lock("../etc", tmp_path):
        pass
    with pytest.raises(ValueError):
        Scope("TV-1")
    assert not list(tmp_path.iterdir())
