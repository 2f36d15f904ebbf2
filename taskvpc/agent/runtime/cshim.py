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

Launch: the agent execs it directly in a session of its own (a C program starts in about a millisecond,
so there is no server to fork it from). A runtime that must prepare something in the supervisor's own
process first (a private mount namespace, say) can do that in a forked child and then ``exec`` the
same command line (:func:`command`).
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
_UNDERSTOOD = frozenset(
    {"argv", "env", *_SPEC_KEYS, "uid", "gid", "groups", "netns"}
    | {"netnsPath", "containerId", "taskArn", "name", "image", "imageDigest"}
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


def spawn(binary: str, directory: Path, doc: Mapping[str, Any], ready_fd: int) -> subprocess.Popen[bytes]:
    """Write ``spec.cshim`` and start the supervisor of ``directory`` (its stderr: ``shim.err``)."""
    path = directory / SPEC_FILE
    tmp = directory / f"{SPEC_FILE}.tmp{os.getpid()}"
    tmp.write_bytes(encode_spec(doc))
    tmp.rename(path)
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


def launch(binary: str | None, directory: Path, ready_fd: int) -> subprocess.Popen[bytes] | None:
    """The C supervisor of ``directory`` when there is one and it runs this spec (``spec.bin``, written
    by ``ProcessRuntime.start``); None tells the caller to start a Python shim."""
    if binary is None:
        return None
    doc = marshal.loads((directory / "spec.bin").read_bytes())
    if not supports(doc):
        return None
    try:
        return spawn(binary, directory, doc, ready_fd)
    except OSError as exc:
        log.warning("cannot start %s (%r); starting a Python shim", binary, exc)
        return None
