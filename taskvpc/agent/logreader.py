"""Reading a container's rotated output line by line from a saved position (the awslogs shipper's input).

The runtimes keep a container's output in ``<container dir>/log``, rotated by renaming to ``log.1``,
``log.2``, ... (``runtime/logs.py``). A position is ``(inode, offset)``: the file and the byte just past a
line. :class:`PositionedReader` starts at a saved position (in whichever file now holds that inode) or at
the oldest output kept, holds the file it reads open (a rotation loses nothing: it reads the renamed file
to its end, then the newer ones in order) and returns each complete line with the position past it. A
line cut by a rotation ends in the newer file, and its position is there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

Position = tuple[int, int]  # (inode, offset just past a line)
CHUNK = 1 << 16


def _kept(directory: Path) -> list[Path]:
    """The container's output files, oldest first: ``log.N`` ... ``log.1``, then ``log``."""
    rotated = [p for p in directory.glob("log.*") if p.suffix[1:].isdigit()]
    return [*sorted(rotated, key=lambda p: -int(p.suffix[1:])), directory / "log"]


def _open(path: Path) -> BinaryIO | None:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


def _inode(handle: BinaryIO) -> int:
    return os.fstat(handle.fileno()).st_ino


class PositionedReader:
    def __init__(self, directory: Path, start: Position | None = None) -> None:
        self.directory = directory
        self._start = start
        self._files: list[BinaryIO] = []  # open, oldest first; the first is being read
        self._partial = b""
        self.lost = False  # the saved position's file was gone: reading began at the oldest kept

    def _open_newer(self, than: int | None) -> list[BinaryIO]:
        """Open the kept files newer than inode ``than`` (all of them when ``than`` is None or gone)."""
        handles = [h for h in (_open(p) for p in _kept(self.directory)) if h is not None]
        inodes = [_inode(h) for h in handles]
        keep = handles[inodes.index(than) + 1 :] if than in inodes else handles
        for handle in handles:
            if handle not in keep:
                handle.close()
        return keep

    def _begin(self) -> None:
        handles = [h for h in (_open(p) for p in _kept(self.directory)) if h is not None]
        if not handles:
            return
        if self._start is not None:
            inode, offset = self._start
            inodes = [_inode(h) for h in handles]
            if inode in inodes:
                at = inodes.index(inode)
                for handle in handles[:at]:
                    handle.close()
                handles = handles[at:]
                handles[0].seek(min(offset, os.fstat(handles[0].fileno()).st_size))
            else:
                self.lost = True
        self._files = handles

    def read_lines(self, budget: int = 1 << 20) -> list[tuple[str, Position]]:
        """Complete lines (without the newline) written since the last call, at most about ``budget``
        bytes of them, each with the position just past it."""
        if not self._files:
            self._begin()
        out: list[tuple[str, Position]] = []
        while self._files and budget > 0:
            handle = self._files[0]
            data = handle.read(min(CHUNK, budget))
            if data:
                budget -= len(data)
                inode, base = _inode(handle), handle.tell() - len(data) - len(self._partial)
                buf, start = self._partial + data, 0
                while (newline := buf.find(b"\n", start)) != -1:
                    out.append((buf[start:newline].decode(errors="replace"), (inode, base + newline + 1)))
                    start = newline + 1
                self._partial = buf[start:]
                continue
            if len(self._files) > 1:
                self._files.pop(0).close()
                continue
            try:
                current = os.stat(self.directory / "log").st_ino
            except FileNotFoundError:
                break
            if current == _inode(handle):
                break
            self._files.extend(self._open_newer(_inode(handle)))  # rotated: the newer files, in order
            if len(self._files) == 1:
                break
        return out

    def rest(self) -> list[tuple[str, Position]]:
        """At the container's end: every line left, the last one even without a newline."""
        out = []
        while batch := self.read_lines():
            out.extend(batch)
        if self._partial and self._files:
            handle = self._files[-1]
            out.append((self._partial.decode(errors="replace"), (_inode(handle), handle.tell())))
            self._partial = b""
        return out

    def close(self) -> None:
        for handle in self._files:
            handle.close()
        self._files = []
