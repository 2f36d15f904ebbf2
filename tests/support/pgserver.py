"""Throwaway PostgreSQL servers for tests.

``ThrowawayPostgres`` runs a private server straight from the distribution's
binaries (Debian: ``/usr/lib/postgresql/<ver>/bin``, newest version wins); no
system service, cluster or ``pg_ctlcluster`` is involved:

* ``initdb`` into a fresh temporary directory (trust auth, locale C, no fsync);
* ``postgres`` started directly (so the ``Popen`` pid *is* the postmaster),
  listening on ``127.0.0.1`` only, on a free port, with its unix socket in the
  temporary directory, and ``fsync``/``synchronous_commit``/``full_page_writes``
  off for speed;
* PostgreSQL refuses to run as root, so when the tests run as root (as CI does)
  both commands run as the ``postgres`` system user (the temporary directory is
  chowned to it); otherwise they run as the current user;
* ``stop()`` sends SIGQUIT (immediate shutdown; nothing needs to survive),
  escalates to SIGKILL, reaps stray backends and removes the directory.  It is
  idempotent and is also called by ``__exit__``, by an ``atexit`` hook and, if
  ``start()`` fails half-way, by ``start()`` itself.  The postmaster also gets
  SIGQUIT from the kernel if the process that started it dies
  (``PR_SET_PDEATHSIG``), so a SIGKILLed test run does not leak servers.

Usage::

    with ThrowawayPostgres() as pg:
        url = pg.create_database("orders")  # postgresql+psycopg://postgres@127.0.0.1:PORT/orders
        engine = sqlalchemy.create_engine(url)

or, from a conftest, the ``postgres_server`` (session) and ``postgres_url``
(fresh database per test) fixtures below.  ``TASKVPC_TEST_POSTGRES=0`` makes
those fixtures (and ``require_postgres()``) skip instead of starting a server;
missing binaries are an error, never a silent skip.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest

ENV_SWITCH = "TASKVPC_TEST_POSTGRES"
ENV_BINDIR = "TASKVPC_PG_BINDIR"
SUPERUSER = "postgres"
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")

_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class PostgresUnavailable(RuntimeError):
    """The server binaries are missing or the server could not be started."""


def postgres_enabled() -> bool:
    """False when ``TASKVPC_TEST_POSTGRES`` is set to 0/false/no/off."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in {"0", "false", "no", "off"}


def require_postgres() -> None:
    """Skip the calling test when Postgres runs are switched off by the env var."""
    if not postgres_enabled():
        pytest.skip(f"PostgreSQL tests disabled by {ENV_SWITCH}=0")


def find_bindir() -> Path:
    """Directory holding ``initdb`` and ``postgres``.

    ``$TASKVPC_PG_BINDIR`` if set, else the newest ``/usr/lib/postgresql/<ver>/bin``,
    else wherever ``initdb`` is on ``PATH``.
    """
    override = os.environ.get(ENV_BINDIR)
    candidates: list[Path] = []
    if override:
        candidates.append(Path(override))
    else:
        versioned = [p for p in DEBIAN_PG_ROOT.glob("*/bin") if p.parent.name.replace(".", "").isdigit()]
        versioned.sort(key=lambda p: tuple(int(x) for x in p.parent.name.split(".")), reverse=True)
        candidates.extend(versioned)
        on_path = shutil.which("initdb")
        if on_path:
            candidates.append(Path(on_path).parent)
    for d in candidates:
        if _is_exe(d / "initdb") and _is_exe(d / "postgres"):
            return d
    where = str(override) if override else f"{DEBIAN_PG_ROOT}/*/bin and PATH"
    raise PostgresUnavailable(
        f"no PostgreSQL server binaries (initdb, postgres) found in {where}. "
        "Install them with `make setup` as root (Debian package 'postgresql'), "
        f"point {ENV_BINDIR} at them, or set {ENV_SWITCH}=0 to skip PostgreSQL tests."
    )


def _is_exe(p: Path) -> bool:
    return p.is_file() and os.access(p, os.X_OK)


@dataclass(frozen=True)
class _Identity:
    uid: int
    gid: int
    name: str


def _server_identity() -> _Identity | None:
    """Who runs the server: None = the current user; as root, the 'postgres' user."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable(
            "running as root and there is no 'postgres' system user to run the server as "
            "(PostgreSQL refuses to run as root); install the Debian 'postgresql' package."
        ) from None
    return _Identity(pw.pw_uid, pw.pw_gid, pw.pw_name)


def _traversable_by_others(path: Path) -> bool:
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in [path, *path.parents])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _pdeathsig_setter(sig: int) -> Callable[[], None] | None:
    """preexec_fn that asks the kernel to send ``sig`` to the child when we die."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def setter() -> None:
        prctl(pr_set_pdeathsig, sig, 0, 0, 0)

    return setter


def pids_using(directory: Path) -> list[int]:
    """Pids of live processes whose cwd is ``directory`` or below (postgres backends chdir to PGDATA)."""
    prefix = str(directory)
    found: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry.name}/cwd")
        except OSError:
            continue
        if cwd == prefix or cwd.startswith(prefix + "/"):
            found.append(int(entry.name))
    return found


class ThrowawayPostgres:
    """A private, disposable PostgreSQL server; see the module docstring."""

    def __init__(
        self,
        *,
        bindir: str | os.PathLike[str] | None = None,
        settings: Mapping[str, str] | None = None,
        start_timeout: float = 30.0,
        die_with_parent: bool = True,
    ) -> None:
        self._bindir_arg = Path(bindir) if bindir is not None else None
        self._settings = dict(settings or {})
        self._start_timeout = start_timeout
        self._die_with_parent = die_with_parent
        self._proc: subprocess.Popen[bytes] | None = None
        self._root: Path | None = None
        self._log: Path | None = None
        self._port: int | None = None
        self._ident: _Identity | None = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> ThrowawayPostgres:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> ThrowawayPostgres:
        if self._proc is not None:
            raise RuntimeError("ThrowawayPostgres already started")
        bindir = self._bindir_arg or find_bindir()
        if self._bindir_arg is not None and not (_is_exe(bindir / "initdb") and _is_exe(bindir / "postgres")):
            raise PostgresUnavailable(f"no initdb/postgres executables in {bindir}")
        self._ident = _server_identity()
        atexit.register(self.stop)
        try:
            self._make_root()
            self._initdb(bindir)
            self._launch(bindir)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Immediate shutdown, reap everything, delete the directory.  Idempotent."""
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        root, self._root = self._root, None
        if root is not None:
            # Backends notice postmaster death on their own, but don't leave it to chance.
            deadline = time.monotonic() + 10
            while (stray := pids_using(root)) and time.monotonic() < deadline:
                for pid in stray:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.02)
            shutil.rmtree(root, ignore_errors=True)
        self._port = None

    # ------------------------------------------------------------------ details

    def _make_root(self) -> None:
        base: str | None = None
        if self._ident is not None and not _traversable_by_others(Path(tempfile.gettempdir())):
            base = "/tmp"  # $TMPDIR is private to root: the postgres user could not reach it
        self._root = Path(tempfile.mkdtemp(prefix="taskvpc-pg-", dir=base))
        self._log = self._root / "postgres.log"
        self._log.touch()
        if self._ident is not None:
            for p in (self._root, self._log):
                os.chown(p, self._ident.uid, self._ident.gid)

    def _env(self) -> dict[str, str]:
        assert self._root is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C", TZ="UTC")
        if self._ident is not None:
            env.update(HOME=str(self._root), USER=self._ident.name, LOGNAME=self._ident.name)
        return env

    @property
    def _uid(self) -> int | None:
        return self._ident.uid if self._ident else None

    @property
    def _gid(self) -> int | None:
        return self._ident.gid if self._ident else None

    @property
    def _groups(self) -> list[int] | None:
        return [] if self._ident else None

    def _initdb(self, bindir: Path) -> None:
        assert self._root is not None
        cmd = [
            str(bindir / "initdb"),
            "-D", str(self._root / "data"),
            "-U", SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]  # fmt: skip
        res = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
            cwd=self._root,
            env=self._env(),
            user=self._uid,
            group=self._gid,
            extra_groups=self._groups,
        )
        if res.returncode != 0:
            out = res.stdout.decode(errors="replace")
            raise PostgresUnavailable(f"initdb failed (exit {res.returncode}):\n{out}")

    def _launch(self, bindir: Path) -> None:
        assert self._root is not None and self._log is not None
        preexec = _pdeathsig_setter(signal.SIGQUIT) if self._die_with_parent else None
        for _attempt in range(5):
            port = _free_port()
            settings = {
                "listen_addresses": "127.0.0.1",
                "port": str(port),
                "unix_socket_directories": str(self._root),
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
                "logging_collector": "off",
                "log_min_messages": "warning",
                **self._settings,
            }
            cmd = [str(bindir / "postgres"), "-D", str(self._root / "data")]
            for k, v in settings.items():
                cmd += ["-c", f"{k}={v}"]
            log_offset = self._log.stat().st_size
            with open(self._log, "ab") as log:
                self._proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a ^C in the terminal goes to pytest, which then calls stop()
                    preexec_fn=preexec,
                    cwd=self._root,
                    env=self._env(),
                    user=self._uid,
                    group=self._gid,
                    extra_groups=self._groups,
                )
            self._port = port
            if self._wait_ready():
                return
            text = self._log.read_text(errors="replace")[log_offset:]
            self._proc = None
            if "could not bind" in text or "already in use" in text:
                continue  # lost the race for the port: try another one
            raise PostgresUnavailable(f"postgres did not start; its log:\n{text[-4000:]}")
        raise PostgresUnavailable("postgres could not bind a free port after 5 attempts")

    def _wait_ready(self) -> bool:
        """True once postmaster.pid says 'ready'; False if the process died first."""
        assert self._proc is not None and self._root is not None
        pidfile = self._root / "data" / "postmaster.pid"
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            with contextlib.suppress(FileNotFoundError):
                lines = pidfile.read_text().splitlines()
                # line 8 is the postmaster status (PostgreSQL >= 10): starting/ready/stopping
                if len(lines) >= 8 and lines[7].strip() == "ready":
                    return True
            time.sleep(0.01)
        self._proc.kill()
        self._proc.wait()
        raise PostgresUnavailable(f"postgres not ready after {self._start_timeout:.0f}s; log in {self._log}")

    # ------------------------------------------------------------------ addresses

    def _require_running(self) -> int:
        if self._port is None or self._proc is None:
            raise RuntimeError("ThrowawayPostgres is not running")
        return self._port

    @property
    def port(self) -> int:
        return self._require_running()

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def pid(self) -> int:
        self._require_running()
        assert self._proc is not None
        return self._proc.pid

    @property
    def root_dir(self) -> Path:
        """The temporary directory (data dir, unix socket, log); removed by stop()."""
        self._require_running()
        assert self._root is not None
        return self._root

    @property
    def socket_dir(self) -> Path:
        return self.root_dir

    @property
    def log_path(self) -> Path:
        self._require_running()
        assert self._log is not None
        return self._log

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database."""
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq/psycopg conninfo string."""
        return f"host={self.host} port={self.port} user={SUPERUSER} dbname={dbname}"

    # ------------------------------------------------------------------ databases

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (random name if none given); return its SQLAlchemy URL."""
        import psycopg
        from psycopg import sql

        name = name or f"t_{secrets.token_hex(6)}"
        if not _DB_NAME.match(name):
            raise ValueError(f"unsuitable database name {name!r}")
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# ---------------------------------------------------------------------- pytest fixtures
# Enable from tests/conftest.py with `pytest_plugins = ["tests.support.pgserver"]`.


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[ThrowawayPostgres]:
    """One throwaway server for the whole session (skips if TASKVPC_TEST_POSTGRES=0)."""
    require_postgres()
    with ThrowawayPostgres() as pg:
        yield pg


@pytest.fixture
def postgres_url(postgres_server: ThrowawayPostgres) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty database, dropped after the test."""
    name = f"t_{secrets.token_hex(6)}"
    url = postgres_server.create_database(name)
    yield url
    with contextlib.suppress(Exception):
        postgres_server.drop_database(name)
