"""Mount namespaces for container starts whose kernel mount work does not grow with the host's tasks.

``runc run`` clones the mount namespace it is started in, copying every mount of it, and the
container's end tears that copy down again; both hold the kernel's namespace lock, which every other
mount (an overlay, a network namespace's bind mount) of a concurrent start waits for. The host's
namespace has two mounts per task -- its network namespace file (``/run/netns/<name>``) and, if the
agent mounted it there, its container's overlay root. With 6,000 namespace-file mounts on the host a
start took 1.45 s instead of 35 ms (``bench/runc_start.py --extra-mounts 6000``).

So the runc runtime's shim server (``shimserver.py``) first moves into a *clean* namespace of its own
(:func:`enter_clean`): a copy of the host's, every mount made private (the host's later mounts and
unmounts no longer propagate into it, nor into anything cloned from it) and without the mounts that
come and go with tasks: namespace files (``nsfs``; a copy would keep that task's network namespace, and
so its veth, alive after ``ip netns del``) and whatever is mounted under the runtime's task directory
(overlays an older agent left mounted on the host). Each shim it forks then takes a namespace of its
own from that small one and mounts its container's overlay there (:func:`private_rootfs`): runc copies a
small table that does not grow with the host, the host's table never sees the overlay, and the overlay
goes away with the shim's namespace when the container has ended (nothing to unmount; ``runc.py``'s
teardown still unmounts on the host, for containers an older agent started).

runc joins the task's network namespace through ``/proc/<agent pid>/root/run/netns/<name>``
(:func:`host_path`): the path is resolved in the agent's mount namespace, where the file is mounted.

The price of a private copy: a file system mounted on the host when the server started and unmounted
there later stays in use (not visible) until the server and the shims copied from it have ended; and
one mounted on the host later is not seen by runc (bind-mount volume sources must exist as directories
of file systems mounted before, as the agent's own state directory is).

A shim started as a new interpreter (no server: ``TASKVPC_SHIM_FORK=0`` or the server did not answer)
starts in the host's namespace and makes the clean one itself, which copies and reads the host's
table once per start (about the old cost); a shim of the ``process`` runtime does none of this (it mounts nothing, and its command sees the
host's file system as it is).

This module imports only the standard library: the shim server and the shims load it beside
``shim.py``, without the package.
"""

from __future__ import annotations

import ctypes
import errno
import os

CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
ENV_DETACH_UNDER = "TASKVPC_SHIM_MOUNTNS"  # set for the shim server: make the clean namespace

_clean = False  # this process is in a clean namespace (the server's; inherited by the shims it forks)
_rootfs = ""  # the container root mounted in this process's own namespace (``private_rootfs``)


def host_path(path: str, pid: int | None = None) -> str:
    """``path`` as seen from any mount namespace: through process ``pid``'s (default: this one) root."""
    return f"/proc/{pid or os.getpid()}/root{path}" if path.startswith("/") else path


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def to_detach(mountinfo: str, under: list[str]) -> list[str]:
    """Mount points (from ``/proc/self/mountinfo`` text) that a clean namespace drops, outermost first,
    none below another one listed (detaching that one takes them along):

    * every namespace file (``nsfs``);
    * a bind mount holding nothing but namespace files (``/run/netns`` as iproute2 and the agent make
      it): one detach instead of one per task;
    * every mount below a path of ``under`` (not at it: that is where the shims' files are).
    """
    roots = tuple(u.rstrip("/") + "/" for u in under if u.rstrip("/"))
    mounts: list[tuple[str, str, str]] = []  # (mount point, root within its file system, type)
    for line in mountinfo.splitlines():
        fields, _, rest = line.partition(" - ")
        parts = fields.split(" ", 5)
        if len(parts) < 5 or not rest:
            continue
        mounts.append((_unescape(parts[4]), parts[3], rest.split(" ", 1)[0]))
    nsfs = {point for point, _, fs_type in mounts if fs_type == "nsfs"}
    wanted = nsfs | {point for point, _, _ in mounts if roots and point.startswith(roots)}
    # bind mounts (not their file system's root) holding namespace files and nothing else
    holders = {point for point, root, fs_type in mounts if root != "/" and fs_type != "nsfs"}
    holders &= {_parent(point) for point in nsfs}
    holders -= {h for h in holders if any(root.startswith(h + "/") for root in roots)}  # (shims' files)
    for point, _, fs_type in mounts:
        parent = _parent(point)
        while holders and parent and fs_type != "nsfs":
            holders.discard(parent)
            parent = _parent(parent)
    wanted |= holders
    kept: list[str] = []
    for point in sorted(wanted, key=lambda p: (p.count("/"), p)):
        parent = _parent(point)
        while parent and parent not in wanted:
            parent = _parent(parent)
        if not parent:  # (one listed above it takes it along)
            kept.append(point)
    return kept


def _parent(point: str) -> str:
    """``/a/b`` -> ``/a``; ``/a`` and ``/`` -> "" (the root is never detached)."""
    return point.rpartition("/")[0]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def enter_clean(under: list[str]) -> None:
    """Move this (single-threaded) process into a clean mount namespace; see the module docstring."""
    global _clean
    libc = _libc()
    _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    with open("/proc/self/mountinfo") as handle:
        text = handle.read()
    for point in to_detach(text, under):
        if libc.umount2(point.encode(), MNT_DETACH) != 0:
            err = ctypes.get_errno()
            if err not in (errno.EINVAL, errno.ENOENT):  # (already gone with one detached before it)
                raise OSError(err, f"umount {point}: {os.strerror(err)}")
    _clean = True


def overlay_options(lower: str, upper: str, work: str) -> str:
    """The overlay's mount options; OSError when a path cannot be written in them."""
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    if any(c in p for p in (lower, upper, work) for c in ",:"):
        raise OSError(errno.EINVAL, f"overlay paths must not contain ',' or ':': {options}")
    return options


def mount_overlay(lower: str, upper: str, work: str, target: str) -> None:
    options = overlay_options(lower, upper, work).encode()
    _check(_libc().mount(b"overlay", target.encode(), b"overlay", 0, options), f"mount overlay on {target}")


def private_rootfs(overlay: list[str], under: list[str]) -> None:
    """In a shim, before it starts runc: a mount namespace of its own (from the clean one; made clean
    first in a shim that is not the server's) with the container's overlay ``lower, upper, work,
    target`` mounted in it (once: a shim server's child that could not exec the C supervisor carries on
    as a Python shim, with its namespace already made)."""
    global _rootfs
    if _rootfs == overlay[3]:
        return
    if _clean:
        _check(_libc().unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")  # copies of private mounts: private
    else:
        enter_clean(under)
    lower, upper, work, target = overlay
    mount_overlay(lower, upper, work, target)
    _rootfs = target
