"""The C supervisor for OCI containers (``csrc/cshim.c``): the Python shim's file contract at a tenth of its memory.

A forked Python shim costs 1.35 MiB PSS per container (``shimserver.py``), most of what a runc task
costs a host; ``taskvpc-cshim`` does the same job for ``runc run -d`` containers -- child subreaper,
``pid``/``exit_code``/``start_error``/``oom`` files, Docker's exit codes, the rotated log, signal
forwarding, the ``ok``/``err`` line on the ready pipe, the ``taskvpc-shim <dir>`` command line that
adoption and ``taskvpc down`` look for -- in about 0.1 MiB. ``make setup`` builds it into
``build/taskvpc-cshim`` with the machine's gcc; without it (or with ``TASKVPC_CSHIM=0``) the runtime
starts Python shims as before. ``TASKVPC_CSHIM=/path`` names another build.

It reads its spec from ``spec.cshim`` (NUL-separated keys and values, no JSON parser in C) beside the
``spec.json`` the agent writes for people and for adoption. Only OCI specs qualify (``initPidFile``
set, no ``uid``/``gid``/``groups``/``netns``: runc does those from ``config.json``); the ``process``
runtime keeps its Python shim.

Launch (:func:`launch`): the runtime's shim server forks a child that sets up what a shim sets up
(session, ``shim.err``, the ready fd) and execs the supervisor; should the server not answer, the
agent spawns it itself. Work that must be done in the supervisor's own process before it starts runc
(a private mount namespace with the container's overlay, say) belongs in that child, before the exec
(``shimserver._child``); the exec'd program then finds it done.
"""

from __future__ import annotations

import logging
import marshal
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from taskvpc.agent.runtime.forkshim import ForkedShim, ShimForker
from taskvpc.agent.runtime.process import SHIM_TAG

log = logging.getLogger(__name__)

ENV_SWITCH = "TASKVPC_CSHIM"  # "0"/"off": Python shims; a path: that binary
BINARY_NAME = "taskvpc-cshim"
SOURCE = Path(__file__).resolve().parent / "csrc" / "cshim.c"
BUILT = SOURCE.parents[4] / "build" / BINARY_NAME  # <checkout>/build/, where ``make setup`` puts it
SPEC_FILE = "spec.cshim"
# Static: no dynamic loader relocations, so fewer private pages per process (measured 119 KiB PSS
# each with 20 running, 133 KiB linked dynamically). The Makefile's build uses the same flags.
CFLAGS = ("-O2", "-Wall", "-Wextra", "-Werror", "-static")
_SPEC_KEYS = ("cwd", "log", "logMaxBytes", "logMaxFiles", "initPidFile", "oomFile", "runtimeId")


def find_binary(env: Mapping[str, str] | None = None) -> str | None:
    """The supervisor to use, or None (then Python shims)."""
    setting = (os.environ if env is None else env).get(ENV_SWITCH, "").strip()
    if setting.lower() in ("0", "false", "no", "off"):
        return None
    for candidate in (setting, str(BUILT), shutil.which(BINARY_NAME) or ""):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def build(output: Path, cc: str = "cc") -> Path:
    """Compile ``csrc/cshim.c`` to ``output`` (what ``make setup`` does; tests build their own)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([cc, *CFLAGS, "-o", str(output), str(SOURCE)], check=True, capture_output=True)
    return output


# Keys of the shim's spec that the C supervisor honours or that need nothing of a supervisor (what the
# agent keeps for people and adoption). A spec with any other key asks for something it does not do
# (a new feature of the Python shim), so that container gets a Python shim.
_BY_THE_SERVER = frozenset({"overlay", "detachUnder"})  # the server's child does them before the exec
_UNDERSTOOD = frozenset(
    {"argv", "env", *_SPEC_KEYS, "uid", "gid", "groups", "netns"}
    | {"netnsPath", "containerId", "taskArn", "name", "image", "imageDigest"}
    | _BY_THE_SERVER
)


def supports(doc: Mapping[str, Any]) -> bool:
    """True for specs the C supervisor runs: an OCI runtime started detached, nothing done as a user,
    nothing asked of the supervisor that it does not know."""
    return (
        bool(doc.get("initPidFile"))
        and all(doc.get(key) is None for key in ("uid", "gid", "groups", "netns"))
        and set(doc) <= _UNDERSTOOD
    )


def encode_spec(doc: Mapping[str, Any]) -> bytes:
    """``spec.cshim``: each key and each value NUL-terminated; ``arg`` and ``env`` repeat."""
    pairs: list[tuple[str, str]] = [("arg", str(arg)) for arg in doc["argv"]]
    pairs += [("env", f"{key}={value}") for key, value in dict(doc.get("env") or {}).items()]
    pairs += [(key, str(doc[key])) for key in _SPEC_KEYS if doc.get(key) not in (None, "")]
    for key, value in pairs:
        if "\0" in key or "\0" in value:
            raise ValueError(f"NUL in the supervisor's spec ({key})")
    return b"".join(f"{key}\0{value}\0".encode() for key, value in pairs)


def command(binary: str, directory: Path, ready_fd: int) -> list[str]:
    """Its command line: the tag and the directory are how ``/proc`` scans recognise it."""
    return [binary, SHIM_TAG, str(directory), str(ready_fd)]


def write_spec(directory: Path, doc: Mapping[str, Any]) -> None:
    """``spec.cshim`` of ``directory``, written aside and renamed."""
    tmp = directory / f"{SPEC_FILE}.tmp{os.getpid()}"
    tmp.write_bytes(encode_spec(doc))
    tmp.rename(directory / SPEC_FILE)


def spawn(binary: str, directory: Path, ready_fd: int) -> subprocess.Popen[bytes]:
    """Start the supervisor of ``directory`` from this process (its stderr: ``shim.err``)."""
    with open(directory / "shim.err", "ab") as err:
        return subprocess.Popen(
            command(binary, directory, ready_fd),
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            pass_fds=(ready_fd,),
            start_new_session=True,
            cwd="/",
        )


def launch(
    binary: str | None, directory: Path, ready_fd: int, forker: ShimForker | None = None
) -> subprocess.Popen[bytes] | ForkedShim | None:
    """The C supervisor of ``directory`` when there is one and it runs this spec (``spec.bin``, written
    by ``ProcessRuntime.start``); None tells the caller to start a Python shim. Forked by the shim
    server and exec'd there when the runtime has one (the agent's event loop does not spawn; a runtime
    that prepares the supervisor's process does it in that child), else spawned from here."""
    if binary is None:
        return None
    doc = marshal.loads((directory / "spec.bin").read_bytes())
    if not supports(doc):
        return None
    write_spec(directory, doc)
    if forker is not None:
        forked = forker.fork(directory, ready_fd, exec_path=binary)
        if forked is not None:
            return forked
    if any(key in doc for key in _BY_THE_SERVER):  # (a Python shim does them itself)
        return None
    try:
        return spawn(binary, directory, ready_fd)
    except OSError as exc:
        log.warning("cannot start %s (%r); starting a Python shim", binary, exc)
        return None
