"""``net.ipv4.ip_forward`` of the agent's host namespace, for bridge tasks, and putting it back.

A packet from elsewhere to a bridge task's mapped host port is DNATed to the task's bridge address and
then *forwarded* out of the bridge; a bridge task's own outbound packets are forwarded too. The kernel
forwards only with ``ip_forward`` on (packets the instance sends itself, to 127.0.0.1 or its own
addresses, are not forwarded and need nothing). So the bridge driver turns it on in the namespace it
runs in, never another one, and notes what it was in ``/run/taskvpc/<prefix>.ip_forward`` together with
that namespace's identity. Removing the bridge (``taskvpc down``, ``up --cleanup-on-exit``) puts the old
value back in the same namespace; if another prefix's bridge in that namespace still needs forwarding,
the note passes to that prefix instead, and its removal restores the value.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

SYSCTL = "/proc/sys/net/ipv4/ip_forward"
NOTE_DIR = Path("/run/taskvpc")  # beside the prefixes' locks (taskvpc/agent/prefix.py)


def note_path(prefix: str, note_dir: Path = NOTE_DIR) -> Path:
    return note_dir / f"{prefix}.ip_forward"


def namespace_id() -> int:
    """The network namespace this thread is in (the inode of its nsfs file)."""
    return os.stat("/proc/thread-self/ns/net").st_ino


def _read(sysctl: str) -> str:
    with open(sysctl) as handle:
        return handle.read().strip()


def _write(sysctl: str, value: str) -> None:
    with open(sysctl, "w") as handle:
        handle.write(value)


def enable(prefix: str, note_dir: Path = NOTE_DIR, sysctl: str = SYSCTL) -> bool:
    """Forwarding on in this namespace; True when this call turned it on (and noted the old value)."""
    previous = _read(sysctl)
    if previous == "1":
        return False
    note_dir.mkdir(parents=True, exist_ok=True)
    note = {"previous": previous, "netns": namespace_id()}
    note_path(prefix, note_dir).write_text(json.dumps(note) + "\n")
    _write(sysctl, "1")
    return True


def restore(
    prefix: str, still_bridged: Iterable[str] = (), note_dir: Path = NOTE_DIR, sysctl: str = SYSCTL
) -> str | None:
    """Undo :func:`enable` of ``prefix`` in this namespace; ``still_bridged``: other prefixes whose bridges
    in this namespace still need forwarding. Returns what was done, None when there was nothing to do
    (no note, or the note is of another namespace: left for a removal there)."""
    path = note_path(prefix, note_dir)
    try:
        note = json.loads(path.read_text())
        previous, netns = str(note["previous"]), int(note["netns"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, OSError):
        path.unlink(missing_ok=True)  # unreadable: nothing to restore from
        return None
    if netns != namespace_id():
        return None
    heir = next(iter(sorted(still_bridged)), None)
    if heir is not None:
        os.replace(path, note_path(heir, note_dir))
        return f"ip_forward stays on for the bridge of prefix {heir}"
    _write(sysctl, previous)
    path.unlink()
    return f"ip_forward back to {previous}"
