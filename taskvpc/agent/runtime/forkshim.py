"""The agent's end of the shim server (``shimserver.py``): shims forked instead of exec'd.

:class:`ShimForker` starts the server on first use, hands it a container directory and the shim's
ready-pipe write end, and gets the new shim's pid back (a blocking exchange of well under a millisecond:
the server only forks). Whenever the server cannot answer -- it failed to start, died, or said ``err``
-- the caller starts the shim the old way, as a new interpreter; the server is started again on the
next call. ``TASKVPC_SHIM_FORK=0`` turns forking off (every shim exec'd).

A forked shim is not the agent's child (the server's, which the kernel reaps), so :class:`ForkedShim`
stands in for the ``Popen`` the runtime keeps per starting shim: ``poll`` and ``kill`` go by pid and
``/proc`` start time, never touching a recycled pid.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
from pathlib import Path

from taskvpc.agent.runtime import shim as shim_module, shimserver
from taskvpc.agent.runtime.procs import alive

log = logging.getLogger(__name__)

ENV_SWITCH = "TASKVPC_SHIM_FORK"
ANSWER_TIMEOUT = 5.0
SERVER_CODE = (
    f"import sys; sys.path.append({os.path.dirname(os.path.abspath(shimserver.__file__))!r}); "
    "import shimserver; sys.exit(shimserver.main(sys.argv[1:]))"
)


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1") not in ("0", "false", "no", "off")


class ForkedShim:
    """What ``ProcessRuntime`` needs of a starting shim's ``Popen``, for a shim the server forked."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = shim_module.proc_start_time(pid)

    def poll(self) -> int | None:
        return None if alive(self.pid, self.start) else 0

    def kill(self) -> None:
        if alive(self.pid, self.start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


class ShimForker:
    """One shim server for this runtime; see the module docstring. Thread-safe."""

    def __init__(self, python: str, shim_argv: list[str]) -> None:
        self.python = python
        self.shim_argv = shim_argv  # an exec'd shim's command line up to its tag
        self._lock = threading.Lock()
        self._server: subprocess.Popen[bytes] | None = None
        self._conn: socket.socket | None = None
        self.server_env: dict[str, str] = {}  # added to the server's environment (``mountns``)

    def fork(self, directory: Path, ready_fd: int, exec_path: str | None = None) -> ForkedShim | None:
        """A shim of ``directory`` forked by the server, or None (then exec one). With ``exec_path`` the
        forked child execs that supervisor (``cshim.py``) instead of running the Python shim."""
        request = str(directory) + (f"\0{exec_path}" if exec_path else "")
        with self._lock:
            conn = self._connect()
            if conn is None:
                return None
            try:
                socket.send_fds(conn, [request.encode()], [ready_fd])
                answer = conn.recv(256)
            except OSError as exc:
                log.warning("shim server did not answer (%r); starting shims as processes", exc)
                self._stop()
                return None
            if not answer or not answer.isdigit():
                log.warning("shim server: %s", answer.decode(errors="replace") or "gone")
                if not answer:
                    self._stop()
                return None
            return ForkedShim(int(answer))

    def _connect(self) -> socket.socket | None:
        if self._conn is not None and self._server is not None and self._server.poll() is None:
            return self._conn
        self._stop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:  # its own errors go to the agent's stderr (each shim's to its ``shim.err``)
            self._server = subprocess.Popen(
                [
                    self.python,
                    "-I",
                    "-S",
                    "-c",
                    SERVER_CODE,
                    shimserver.SERVER_TAG,
                    str(theirs.fileno()),
                    "x" * shimserver.PADDING,
                    *self.shim_argv,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                cwd="/",
                env={**os.environ, **self.server_env} if self.server_env else None,
            )
        except OSError as exc:
            log.warning("cannot start the shim server (%r); starting shims as processes", exc)
            ours.close()
            return None
        finally:
            theirs.close()
        ours.settimeout(ANSWER_TIMEOUT)
        self._conn = ours
        return ours

    def _stop(self) -> None:
        if self._conn is not None:
            self._conn.close()  # the server exits on end of file
            self._conn = None
        if self._server is not None:
            try:
                self._server.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                self._server.kill()
                self._server.wait()
            self._server = None

    def close(self) -> None:
        with self._lock:
            self._stop()
