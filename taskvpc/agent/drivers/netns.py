"""Network namespaces in-process: create, enter, remove and list, with no helper process.

Python 3.11 has no ``os.setns``/``os.unshare``, and pyroute2 forks a helper for every namespace it opens
(14-19 ms per task network against 5 ms in-process, ``shared/reference/measurements.md``). The calls
here go straight to libc through ctypes.

Namespace membership is per *thread* in Linux: ``unshare(CLONE_NEWNET)`` and ``setns`` move only the
calling thread, so the helpers below switch the calling thread, do one short thing (open a socket or a
``/proc/sys/net`` file, which stay bound to the namespace they were opened in) and switch back in a
``finally``. Other threads of the process are never affected.

A named namespace is what ``ip netns add`` makes: a bind mount of the namespace file on
``/run/netns/NAME`` (the directory itself a shared mount, as iproute2 does), so ``ip netns``,
``nsenter --net=/run/netns/NAME`` and these helpers all see the same ones.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import socket
from collections.abc import Iterator, Mapping

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_SHARED = 1 << 20
MNT_DETACH = 2

DEFAULT_NETNS_DIR = "/run/netns"
_SELF_NS = "/proc/thread-self/ns/net"

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_prepared_dirs: set[str] = set()


def _check(ret: int, what: str, target: str = "") -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", target or None)


def _setns(fd: int) -> None:
    _check(_libc.setns(fd, CLONE_NEWNET), "setns")


def _prepare_dir(netns_dir: str) -> None:
    """Make ``netns_dir`` a shared mount point, as ``ip netns add`` does (once per process)."""
    if netns_dir in _prepared_dirs:
        return
    os.makedirs(netns_dir, mode=0o755, exist_ok=True)
    path = netns_dir.encode()
    if _libc.mount(b"", path, b"none", MS_SHARED | MS_REC, None) != 0:
        if ctypes.get_errno() != errno.EINVAL:
            _check(-1, "mount --make-shared", netns_dir)
        # Not a mount point yet: bind it onto itself, then make it shared.
        _check(_libc.mount(path, path, b"none", MS_BIND | MS_REC, None), "mount --bind", netns_dir)
        _check(_libc.mount(b"", path, b"none", MS_SHARED | MS_REC, None), "mount --make-shared", netns_dir)
    _prepared_dirs.add(netns_dir)


def path_of(name: str, netns_dir: str = DEFAULT_NETNS_DIR) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"bad namespace name {name!r}")
    return os.path.join(netns_dir, name)


def list_names(netns_dir: str = DEFAULT_NETNS_DIR) -> list[str]:
    try:
        return sorted(os.listdir(netns_dir))
    except FileNotFoundError:
        return []


def open_ns(name: str, netns_dir: str = DEFAULT_NETNS_DIR) -> int | None:
    """An fd for the named namespace, None when it does not exist (or is a stale, unmounted file)."""
    path = path_of(name, netns_dir)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    # A file left by a crash between create and bind mount is not a namespace: nsfs has its own st_dev.
    if os.fstat(fd).st_dev == os.stat(netns_dir).st_dev:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def entered(fd: int) -> Iterator[None]:
    """Run the body with the calling thread in namespace ``fd``; always switch back."""
    home = os.open(_SELF_NS, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def netlink_socket_in(fd: int, proto: int = socket.NETLINK_ROUTE) -> socket.socket:
    """A netlink socket bound to namespace ``fd`` (a socket keeps the namespace it was made in)."""
    with entered(fd):
        return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, proto)


def create(
    name: str, netns_dir: str = DEFAULT_NETNS_DIR, sysctls: Mapping[str, str] | None = None
) -> tuple[int, socket.socket]:
    """Create the named namespace; return (fd, rtnetlink socket inside it). FileExistsError if it exists.

    One ``unshare`` plus one bind mount, in this thread, then back home: no fork, no ``ip``. ``sysctls``
    (keys relative to ``/proc/sys``) are written while inside, before any link exists, so that links made
    later inherit the ``default`` values.
    """
    _prepare_dir(netns_dir)
    path = path_of(name, netns_dir)
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))
    except FileExistsError:
        fd = open_ns(name, netns_dir)
        if fd is not None:
            os.close(fd)
            raise
        # A file left by a crash between create and bind mount: take it over.
    home = os.open(_SELF_NS, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            _check(_libc.unshare(CLONE_NEWNET), "unshare", name)
            try:
                _check(
                    _libc.mount(_SELF_NS.encode(), path.encode(), b"none", MS_BIND, None),
                    "mount --bind",
                    name,
                )
                for key, value in (sysctls or {}).items():
                    _write_file(f"/proc/sys/{key}", value)
                sock = socket.socket(
                    socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
                )
            finally:
                _setns(home)
        except BaseException:
            remove(name, netns_dir)
            raise
    finally:
        os.close(home)
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC), sock


def _write_file(path: str, value: str, dir_fd: int | None = None) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def remove(name: str, netns_dir: str = DEFAULT_NETNS_DIR) -> bool:
    """Unmount and unlink the named namespace; False when it was already absent.

    The kernel frees the namespace (and every veth end inside it, with their peers) once nothing
    holds it any more: asynchronously, in its cleanup workqueue, about 1 ms of our time per namespace.
    """
    path = path_of(name, netns_dir)
    if _libc.umount2(path.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            _check(-1, "umount", name)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def write_sysctls(fd: int, values: Mapping[str, str]) -> None:
    """Write ``/proc/sys/...`` keys (relative to ``/proc/sys``) as seen from namespace ``fd``."""
    with entered(fd):
        for key, value in values.items():
            _write_file(f"/proc/sys/{key}", value)


def write_here(values: Mapping[str, str]) -> None:
    """Write ``/proc/sys/...`` keys in the calling thread's own namespace."""
    for key, value in values.items():
        _write_file(f"/proc/sys/{key}", value)


def open_sysctl_dir(fd: int, key: str) -> int:
    """A directory fd for ``/proc/sys/<key>`` of namespace ``fd``.

    Paths opened relative to it (``os.open(..., dir_fd=)``) resolve in that namespace from any thread,
    even for links made after it was opened, so a per-link sysctl costs one ``openat`` and no ``setns``.
    """
    with entered(fd):
        return os.open(f"/proc/sys/{key}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def write_at(dir_fd: int, values: Mapping[str, str]) -> None:
    for key, value in values.items():
        _write_file(key, value, dir_fd=dir_fd)


def read_at(dir_fd: int, key: str) -> str | None:
    try:
        fd = os.open(key, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    try:
        return os.read(fd, 256).decode().strip()
    finally:
        os.close(fd)
