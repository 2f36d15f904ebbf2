"""Following a container's output as it is written: ``taskvpc logs --follow``.

The runtimes keep a container's output in ``<container dir>/log``; the shim rotates it by renaming
``log`` to ``log.1`` (``log.1`` to ``log.2``, ...) and starting a new ``log``. A :class:`LogFollower`
holds the file it is reading open, so a rotation loses nothing: it reads the renamed file to its end,
then moves on to the new ``log``. It starts with whatever the rotated files still hold.

A container has ended when its ``exit_code`` is written, or when its state is gone (the container was
removed: neither ``pid`` nor ``spec.json`` is left); the follower then reads what is left and is done.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 16


def _rotated(directory: Path) -> list[Path]:
    """``log.N`` files, oldest (highest N) first."""
    found = [p for p in directory.glob("log.*") if p.suffix[1:].isdigit()]
    return sorted(found, key=lambda p: -int(p.suffix[1:]))


def read_container_log(directory: Path) -> str:
    """Everything kept of a container's output: its rotated files, oldest first, then ``log``."""
    return b"".join(_read(p) for p in [*_rotated(directory), directory / "log"]).decode(errors="replace")


class LogFollower:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._handle: BinaryIO | None = None
        self._done = False
        self._open()  # first, so a rotation right now cannot slip between the two reads
        held = os.fstat(self._handle.fileno()).st_ino if self._handle is not None else None
        self._pending = b"".join(_read(p) for p in _rotated(directory) if _inode(p) != held)

    @property
    def done(self) -> bool:
        return self._done

    def _ended(self) -> bool:
        d = self.directory
        return (d / "exit_code").exists() or not ((d / "pid").exists() or (d / "spec.json").exists())

    def _open(self) -> None:
        try:
            self._handle = open(self.directory / "log", "rb")  # noqa: SIM115 - held across calls
        except FileNotFoundError:
            self._handle = None

    def _rotated_away(self) -> bool:
        assert self._handle is not None
        try:
            return os.stat(self.directory / "log").st_ino != os.fstat(self._handle.fileno()).st_ino
        except FileNotFoundError:
            return False

    def read(self) -> bytes:
        """Everything written since the last call (b"" if nothing); sets :attr:`done` at the end."""
        if self._done:
            return b""
        ended = self._ended()  # before reading: output written before the end is then certain to be read
        out, self._pending = self._pending, b""
        if self._handle is None:
            self._open()
        if self._handle is not None and os.fstat(self._handle.fileno()).st_size < self._handle.tell():
            self._handle.seek(0)  # truncated in place (rotation keeping a single file): start over
        while self._handle is not None:
            data = self._handle.read(CHUNK)
            if data:
                out += data
                continue
            if not self._rotated_away():
                break
            self._handle.close()
            self._open()
        if ended:
            self.close()
        return out

    def close(self) -> None:
        self._done = True
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None
