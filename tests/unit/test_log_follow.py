"""LogFollower: a container's output followed across rotations, in order, nothing lost or repeated."""

from __future__ import annotations

import os
from pathlib import Path

from taskvpc.agent.runtime.logs import LogFollower


def container(tmp_path: Path) -> Path:
    directory = tmp_path / "app"
    directory.mkdir()
    (directory / "pid").write_text("{}")
    return directory


def rotate(directory: Path) -> None:
    """What the shim does: log.1 -> log.2, log -> log.1, a new log."""
    if (directory / "log.1").exists():
        os.rename(directory / "log.1", directory / "log.2")
    os.rename(directory / "log", directory / "log.1")
    (directory / "log").write_bytes(b"")


def append(directory: Path, text: str) -> None:
    with open(directory / "log", "ab") as handle:
        handle.write(text.encode())


def test_starts_with_what_rotation_kept_then_follows(tmp_path: Path) -> None:
    d = container(tmp_path)
    (d / "log.2").write_text("one\n")
    (d / "log.1").write_text("two\n")
    (d / "log").write_text("three\n")
    follower = LogFollower(d)
    assert follower.read() == b"one\ntwo\nthree\n"
    assert follower.read() == b""
    append(d, "four\n")
    assert follower.read() == b"four\n"
    assert not follower.done


def test_nothing_is_lost_or_repeated_across_rotations(tmp_path: Path) -> None:
    d = container(tmp_path)
    (d / "log").write_text("")
    follower = LogFollower(d)
    seen = b""
    expected = ""
    for i in range(30):
        line = f"line {i}\n"
        append(d, line)
        expected += line
        if i % 4 == 3:
            append(d, "")
            rotate(d)  # the follower still holds the old file: it reads it out, then the new one
        if i % 3 == 0:
            seen += follower.read()
    seen += follower.read()
    assert seen.decode() == expected


def test_done_once_the_exit_code_is_written_and_the_rest_read(tmp_path: Path) -> None:
    d = container(tmp_path)
    (d / "log").write_text("start\n")
    follower = LogFollower(d)
    assert follower.read() == b"start\n" and not follower.done
    append(d, "last words\n")
    (d / "exit_code").write_text("0\n")
    assert follower.read() == b"last words\n"
    assert follower.done and follower.read() == b""


def test_a_removed_container_is_done(tmp_path: Path) -> None:
    d = container(tmp_path)
    (d / "log").write_text("kept\n")
    (d / "pid").unlink()  # remove() deletes the state, keeps the log
    follower = LogFollower(d)
    assert follower.read() == b"kept\n" and follower.done


def test_a_container_that_has_not_written_yet(tmp_path: Path) -> None:
    d = container(tmp_path)
    follower = LogFollower(d)
    assert follower.read() == b"" and not follower.done
    append(d, "hello\n")
    assert follower.read() == b"hello\n"


def test_a_log_truncated_in_place_is_followed_from_its_start(tmp_path: Path) -> None:
    d = container(tmp_path)
    (d / "log").write_text("a long first line\n")
    follower = LogFollower(d)
    assert follower.read() == b"a long first line\n"
    with open(d / "log", "wb") as handle:  # rotation with logMaxFiles=1: same file, O_TRUNC
        handle.write(b"new\n")
    assert follower.read() == b"new\n"
