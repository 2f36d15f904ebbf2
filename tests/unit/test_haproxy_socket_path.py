"""HAProxy refuses UNIX socket paths over 97 bytes: under a deep state dir the driver's sockets move to a
short directory of their own, the same one on every start (a restarted agent finds them)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from taskvpc.agent.drivers.haproxy import SOCKET_PATH_MAX, Haproxy


def test_a_shallow_directory_keeps_its_sockets(tmp_path: Path) -> None:
    haproxy = Haproxy(tmp_path / "lbs" / "0123456789abcdef", "ns")
    assert haproxy.admin_socket == haproxy.dir / "admin.sock"
    assert haproxy.master_socket == haproxy.dir / "master.sock"


def test_a_deep_directory_gets_short_stable_sockets() -> None:
    deep = Path("/tmp") / ("d" * 80) / "agent" / "lbs" / "0123456789abcdef"
    one, again = Haproxy(deep, "ns"), Haproxy(deep, "other")
    assert len(str(one.master_socket)) <= SOCKET_PATH_MAX
    assert len(str(one.admin_socket)) <= SOCKET_PATH_MAX
    assert one.admin_socket == again.admin_socket  # a restarted agent computes the same place
    assert Haproxy(deep.with_name("fedcba9876543210"), "ns").socket_dir != one.socket_dir


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed")
def test_haproxy_accepts_the_short_path_and_refuses_the_long_one(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 90) / "lbs" / "0123456789abcdef"
    config = tmp_path / "haproxy.cfg"

    def check(socket: Path) -> subprocess.CompletedProcess[str]:
        config.write_text(f"global\n    stats socket {socket} mode 600 level admin\n")
        return subprocess.run(
            ["haproxy", "-c", "-f", str(config)], capture_output=True, text=True, check=False
        )

    refused = check(deep / "admin.sock")
    assert refused.returncode != 0 and "too long" in (refused.stderr + refused.stdout)
    assert check(Haproxy(deep, "ns").admin_socket).returncode == 0
