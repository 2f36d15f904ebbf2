"""One live agent per name prefix on a host, and the names a prefix owns outside the network.

An agent removes every namespace and link of its prefix that its desired state does not explain, so two
agents of one prefix (two ``taskvpc up`` with different state dirs) would remove each other's tasks. The
agent therefore holds ``/run/taskvpc/<prefix>.lock`` (``flock``: the kernel drops it when the holder
dies, however it dies) for as long as it runs; ``taskvpc up`` and ``taskvpc down`` check it first.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from taskvpc.agent import netplan

LOCK_DIR = Path("/run/taskvpc")
EXIT_PREFIX_BUSY = 3  # the agent's exit code when another holds its prefix: ``taskvpc up`` does not retry
log = logging.getLogger("taskvpc.prefix")


def cgroup_parent(prefix: str) -> str:
    """The cgroup under which an agent of ``prefix`` puts its tasks (``taskvpc`` for the default)."""
    return "taskvpc" if prefix == "tvpc" else f"taskvpc-{prefix}"


class PrefixBusy(Exception):
    """Another live agent holds the prefix."""


@contextlib.contextmanager
def prefix_lock(prefix: str, lock_dir: Path = LOCK_DIR) -> Iterator[None]:
    """Hold the prefix for this process's lifetime (the kernel drops the lock when it dies).

    The holder removes the file when it lets go, so lock files of finished prefixes do not pile up in
    /run; a process that opened the file just before it was removed finds its lock on a name-less file
    and takes the new one instead (the inode check in :func:`_locked`)."""
    netplan.NetConfig(prefix=prefix)  # ValueError for a name that is no prefix (it names a file here)
    path = lock_dir / f"{prefix}.lock"
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
        fd = _locked(path, prefix)
    except OSError as exc:  # no /run to lock in (not root): nothing of ours can run here anyway
        log.warning("no lock for prefix %s (%s)", prefix, exc)
        yield
        return
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # while still holding it: nobody can hold a lock on this name meanwhile
        os.close(fd)


def _locked(path: Path, prefix: str) -> int:
    """A descriptor of ``path`` holding its exclusive lock; PrefixBusy while another holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise PrefixBusy(f"an agent with prefix {prefix!r} is running (pid {holder})") from None
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        mine = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
            return fd
        os.close(fd)  # the previous holder removed the file after we opened it: lock the name anew
