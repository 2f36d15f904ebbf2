"""One HAProxy per ALB, master-worker, inside the LB's namespace; targets changed through its runtime API.

Files live in ``<state>/lbs/<lb id>/``: ``haproxy.cfg`` (from ``netmodel.elb_haproxy.compile_config``),
``haproxy.pid`` (the master's pid), ``admin.sock`` (the runtime API, ``level admin``), ``master.sock`` (the
master CLI), and one self-signed ``cert-<n>.pem`` per certificate ARN of an HTTPS listener (there is no ACM
here: the certificate is made locally, for the LB's DNS name, and says so in its subject).

* ``ensure`` starts HAProxy when no master of ours runs (checked by pid and command line), and reloads it
  (the master re-reads the file and starts new workers; listening sockets pass over, nothing is refused)
  when the configuration text changed. A configuration ``haproxy -c`` refuses is never loaded.
* ``runtime`` sends runtime-API commands (``add server``, ``set server … state``, ``del server``).
* ``stop`` ends the master (SIGTERM, SIGKILL after a grace period) and removes the files.

HAProxy refuses a UNIX socket path longer than 97 bytes. Under a deep state dir the two sockets move to
``/run/taskvpc/lbs/<hash of the LB's directory>/`` (the same place on every start, so a restarted agent
finds them); ``stop`` removes that directory too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from taskvpc.agent.runtime.procs import cmdline

HAPROXY = "haproxy"
SHORT_SOCKET_DIR = Path("/run/taskvpc/lbs")
SOCKET_PATH_MAX = 97  # HAProxy's limit for a UNIX socket path (it says "socket path too long")


class HaproxyError(Exception):
    """HAProxy refused a configuration or a command; the message is its."""


class Haproxy:
    def __init__(self, directory: Path, netns_name: str) -> None:
        self.dir = directory
        self.netns = netns_name

    @property
    def config_path(self) -> Path:
        return self.dir / "haproxy.cfg"

    @property
    def socket_dir(self) -> Path:
        if len(str(self.dir / "master.sock")) <= SOCKET_PATH_MAX:
            return self.dir
        return SHORT_SOCKET_DIR / hashlib.sha256(str(self.dir).encode()).hexdigest()[:24]

    @property
    def admin_socket(self) -> Path:
        return self.socket_dir / "admin.sock"

    @property
    def master_socket(self) -> Path:
        return self.socket_dir / "master.sock"

    @property
    def pid_path(self) -> Path:
        return self.dir / "haproxy.pid"

    def master_pid(self) -> int | None:
        """The running master of this LB's HAProxy, if any (the pid file alone is not trusted)."""
        try:
            pid = int(self.pid_path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        args = cmdline(pid)
        if args and Path(args[0]).name == HAPROXY and str(self.config_path) in args:
            return pid
        return None

    def certificate(self, arn: str, common_name: str, index: int) -> str:
        """A self-signed certificate + key for ``arn`` (made once; taskvpc has no ACM)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"cert-{index}.pem"
        marker = self.dir / f"cert-{index}.arn"
        if path.exists() and marker.exists() and marker.read_text() == arn:
            return str(path)
        key, crt = self.dir / "key.tmp", self.dir / "crt.tmp"
        subject = f"/O=taskvpc self-signed (no ACM)/CN={common_name[:64]}"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "825",
                "-subj",
                subject,
                "-keyout",
                str(key),
                "-out",
                str(crt),
            ],
            capture_output=True,
            check=True,
            timeout=60,
        )
        path.write_bytes(crt.read_bytes() + key.read_bytes())
        path.chmod(0o600)
        key.unlink()
        crt.unlink()
        marker.write_text(arn)
        return str(path)

    def ensure(self, config: str, force: bool = False) -> bool:
        """HAProxy running ``config``; whether it was started or reloaded (``force``: reload even when the
        file already holds ``config``, e.g. a master found running by a new agent)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        pid = self.master_pid()
        try:
            same = self.config_path.read_text() == config
        except OSError:
            same = False
        if pid is not None and same and not force:
            return False
        candidate = self.dir / "haproxy.cfg.new"
        candidate.write_text(config)
        check = subprocess.run(
            [HAPROXY, "-c", "-f", str(candidate)],  # no -q: its alert says why
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if check.returncode != 0:
            raise HaproxyError(f"configuration refused: {(check.stderr or check.stdout).strip()}")
        candidate.replace(self.config_path)
        if pid is not None:
            before = self._worker_pid()  # the new worker is told apart by its pid (uptime has 1 s steps)
            os.kill(pid, signal.SIGUSR2)  # the master reloads: new workers, the listeners passed over
            self._wait_socket(fresh_after=time.time(), other_than=before)
            return True
        self.socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.admin_socket.unlink(missing_ok=True)
        started = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.netns,
                HAPROXY,
                "-W",
                "-D",
                "-f",
                str(self.config_path),
                "-p",
                str(self.pid_path),
                "-S",
                str(self.master_socket),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if started.returncode != 0:
            raise HaproxyError(f"haproxy did not start: {(started.stderr or started.stdout).strip()}")
        self._wait_socket()
        return True

    def _worker_pid(self) -> str | None:
        try:
            return _field(self.command("show info"), "Pid")
        except OSError:
            return None

    def _wait_socket(
        self, fresh_after: float | None = None, timeout: float = 5.0, other_than: str | None = None
    ) -> None:
        """Until the admin socket answers (after a reload: the new worker, not the old one still
        draining: a runtime command it took would be lost with it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                info = self.command("show info")
                if other_than is not None:
                    if _field(info, "Pid") not in (None, other_than):
                        return
                elif fresh_after is None or _uptime_since(info, fresh_after):
                    return
            except OSError:
                pass
            time.sleep(0.02)

    def command(self, line: str) -> str:
        """One runtime-API command; its answer (the API answers errors as text, not status codes)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5.0)
            sock.connect(str(self.admin_socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def runtime(self, commands: Iterable[str]) -> list[str]:
        """Send each command; the answers that read as errors."""
        problems = []
        for line in commands:
            answer = self.command(line).strip()
            if answer and not _is_ok(answer):
                problems.append(f"{line}: {answer}")
        return problems

    def stop(self, grace: float = 3.0) -> bool:
        """Stop the master and its workers, remove the files; whether one was running."""
        pid = self.master_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and self.master_pid() == pid:
                time.sleep(0.02)
            if self.master_pid() == pid:
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.socket_dir != self.dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
        return pid is not None


def _is_ok(answer: str) -> bool:
    lowered = answer.lower()
    return not any(
        word in lowered
        for word in (
            "unknown",
            "error",
            "not found",
            "no such",
            "invalid",
            "cannot",
            "failed",
            "still",
            "require",
        )
    )


def _field(info: str, name: str) -> str | None:
    """A field of ``show info``'s answer."""
    for line in info.splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    return None


def _uptime_since(info: str, moment: float) -> bool:
    """Whether the worker answering ``show info`` started after ``moment`` (a reload finished)."""
    for line in info.splitlines():
        if line.startswith("Uptime_sec:"):
            return time.time() - int(line.split(":", 1)[1]) >= moment - 1
    return False
