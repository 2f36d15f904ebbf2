"""The per-container shim of the ``process`` runtime: start one command, wait for it, record how it ended.

Run as ``python -I -S <this file> <container-dir> <ready-fd>`` (``python -m taskvpc.agent.runtime.shim``
works too) in a session of its own, or forked by the shim server (``shimserver.py``), which calls
:func:`run` in a child that shows the same command line. The ``runc`` runtime uses a C twin of this file for
its containers when it is built (``csrc/cshim.c``, ``cshim.py``: the same files, the same ready-pipe
line, the same ``taskvpc-shim <dir>`` on its command line, about a tenth of the memory); a change to
the contract below goes into both (``tests/unit/test_cshim.py`` runs each behaviour against both). It outlives the agent: an agent ``kill -9`` leaves every shim
running, and the next agent finds them again from the files below (``process.ProcessRuntime.list_ours``).

Start-up cost is on the critical path of every task launch, so this file imports no package module and
as little of the standard library as it can: with ``-S`` it is ready in about 9 ms where ``import
subprocess, json, signal`` alone would add 10 more (``signal`` pulls in ``enum``: the C module
``_signal`` has the same functions with plain ints; ``marshal`` is built in, ``json`` needs ``re``). The
command is started with ``fork`` + ``execvpe`` (the shim has a single thread, so forking is safe).

Files in ``<container-dir>``:

* ``spec.json`` (written by the agent, for people and for adoption) and ``spec.bin`` (the same, as
  ``marshal`` data, for this shim): ``argv``, ``env``, ``cwd``, ``uid``, ``gid``, ``groups``, ``netns``
  (a ``/run/netns/NAME`` path or None), ``log``, ``runtimeId``;
* ``pid`` (written here, atomically; JSON): ``shimPid``, ``shimStart``, ``pid``, ``start``, ``startedAt``,
  ``runtimeId``; ``*Start`` are ``/proc/<pid>/stat`` start times, so a recycled pid is never taken for ours;
* ``exit_code`` (written here, atomically, when the command has ended): the exit code as text, Docker's
  way (``128 + signal`` when a signal ended it);
* ``start_error`` (written here when the command could not be started): the reason, in Docker's words.

Optional keys of the spec serve OCI runtimes (the ``runc`` runtime):

* ``initPidFile``: the command is an OCI runtime started detached (``runc run -d --pid-file F``). The shim,
  a child subreaper, waits for the runtime to exit (non-zero: its stderr becomes ``start_error``), reads
  the container's init pid from ``F`` -- the init was reparented to the shim when the runtime exited --
  and supervises that pid as the command (signals forwarded to it, exit code recorded). ``oomFile`` (a
  cgroup's ``memory.oom_control`` or ``memory.events``) is read when it ends: a non-zero ``oom_kill``
  count is written to ``oom``.
* ``overlay`` (``[lower, upper, work, target]``) and ``detachUnder``: before starting the runtime, the
  shim takes a mount namespace of its own and mounts the container's root there (``mountns.py``).
* ``logMaxBytes`` / ``logMaxFiles``: output goes through a pipe that the shim copies to ``log``, rotated to
  ``log.1`` ... ``log.<N-1>`` whenever ``log`` would grow past ``logMaxBytes`` (without them the command
  writes to ``log`` directly). The command's output then needs the shim: if the shim is killed, the
  container gets EPIPE/SIGPIPE on its next write, as a Docker container does when its shim goes.

Signals: SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1 and SIGUSR2 are forwarded to the command (``docker
stop`` signals only the container's first process). The agent's SIGKILL goes to the command's process
group directly. The shim is a child subreaper: when the command ends, whatever it left behind (its
process group, and any descendant that escaped into a session of its own) is killed and reaped, as the
end of a container's PID namespace would do.
"""

# ruff: noqa: SIM105  (try/except/pass on purpose: importing contextlib costs start-up time)

from __future__ import annotations

import _signal
import ctypes
import marshal
import os
import sys
import time

CLONE_NEWNET = 0x40000000
PR_SET_CHILD_SUBREAPER = 36
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FORWARDED = (
    _signal.SIGTERM,
    _signal.SIGINT,
    _signal.SIGQUIT,
    _signal.SIGHUP,
    _signal.SIGUSR1,
    _signal.SIGUSR2,
)


def proc_start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat`` (clock ticks after boot), None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    try:
        return int(data[data.rindex(b")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as handle:
        handle.write(text)
    os.rename(tmp, path)


def _enter_netns(libc: ctypes.CDLL, path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _private_rootfs(spec: dict) -> None:  # type: ignore[type-arg]
    """The OCI runtime's root file system (``overlay``), mounted in a mount namespace of this shim's
    own (``mountns.py``)."""
    try:
        import mountns  # beside this file (the shim server's module, when it forked us)
    except ImportError:  # run as a module of the package
        from taskvpc.agent.runtime import mountns
    mountns.private_rootfs(spec["overlay"], spec.get("detachUnder") or [])


def start_error(step: str, err: int, name: str, cwd: str | None = None, detail: str | None = None) -> str:
    """Docker's words for a command that could not be started (``CannotStartContainerError: …``)."""
    text = detail or os.strerror(err).lower()
    if step == "chdir":
        return f"chdir to cwd ({cwd!r}) set in config.json failed: {text}"
    if step == "user":
        return f"unable to set the container's user: {text}"
    if step == "exec":
        if err == 2:  # ENOENT
            where = "no such file or directory" if "/" in name else "executable file not found in $PATH"
            return f'exec: "{name}": {where}'
        if err == 13:  # EACCES
            return f'exec: "{name}": permission denied'
        return f'exec: "{name}": {text}'
    return f"{step}: {text}"


def _execvpe(argv: list[str], env: dict[str, str]) -> None:
    """``os.execvpe`` without its lazy imports (after setuid the stdlib may be unreadable)."""
    name = argv[0]
    if "/" in name:
        os.execve(name, argv, env)
    denied: OSError | None = None
    for directory in env.get("PATH", DEFAULT_PATH).split(":"):
        try:
            os.execve(os.path.join(directory or ".", name), argv, env)
        except PermissionError as exc:
            denied = exc
        except (FileNotFoundError, NotADirectoryError):
            pass
    raise denied or FileNotFoundError(2, "No such file or directory", name)


def spawn(spec: dict, log_fd: int) -> int:  # type: ignore[type-arg]  # (no typing import: start-up cost)
    """fork + exec the command in a process group of its own; OSError(errno, step) if it cannot start."""
    argv = list(spec["argv"])
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # the child: only async-signal-safe-ish work, then exec or _exit
        step = "setup"
        try:
            os.close(read_fd)
            os.setpgid(0, 0)
            null = os.open("/dev/null", os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            os.closerange(3, write_fd)
            os.closerange(write_fd + 1, 65536)
            for signum in (_signal.SIGPIPE, _signal.SIGXFSZ, *FORWARDED):  # Python ignores SIGPIPE
                _signal.signal(signum, _signal.SIG_DFL)
            _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
            step = "chdir"
            if spec.get("cwd"):
                os.chdir(spec["cwd"])
            step = "user"
            if spec.get("groups") is not None:
                os.setgroups(spec["groups"])
            if spec.get("gid") is not None:
                os.setgid(spec["gid"])
            if spec.get("uid") is not None:
                os.setuid(spec["uid"])
            step = "exec"
            _execvpe(argv, spec["env"])
        except OSError as exc:
            os.write(write_fd, f"{step}:{exc.errno or 0}".encode())
        except BaseException as exc:  # not an OSError: report the step and the exception's name
            os.write(write_fd, f"{step}:0:{type(exc).__name__}: {exc}".encode())
        os._exit(127)
    os.close(write_fd)
    try:
        message = os.read(read_fd, 256).decode()  # empty: exec succeeded (the pipe closed on exec)
    finally:
        os.close(read_fd)
    if message:
        os.waitpid(pid, 0)
        step, _, rest = message.partition(":")
        err, _, detail = rest.partition(":")
        raise OSError(int(err or 0), step, detail.strip() or None)
    return pid


def _kill_strays(own_pid: int) -> None:
    """SIGKILL every process whose parent is us: descendants that escaped the command's process group
    and were reparented to us when their parent ended (we are a child subreaper)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                data = handle.read()
            ppid = int(data[data.rindex(b")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == own_pid:
            try:
                os.kill(int(entry), _signal.SIGKILL)
            except ProcessLookupError:
                pass


def _reap_all(own_pid: int) -> None:
    """Reap every remaining child, killing strays, until we have none."""
    next_scan = 0.0
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid:
            continue
        now = time.monotonic()
        if now >= next_scan:
            _kill_strays(own_pid)
            next_scan = now + 0.1
        time.sleep(0.001)


def run(container_dir: str, ready_fd: int | None) -> int:
    with open(os.path.join(container_dir, "spec.bin"), "rb") as handle:
        spec = marshal.load(handle)
    own_pid = os.getpid()
    own_start = proc_start_time(own_pid)
    child: list[int] = []
    pending: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        if child:
            try:
                os.kill(child[0], signum)
            except ProcessLookupError:
                pass
        else:
            pending.append(signum)

    for signum in FORWARDED:
        _signal.signal(signum, forward)

    def ready(message: str) -> None:
        if ready_fd is None:
            return
        try:
            os.write(ready_fd, message.encode() + b"\n")
            os.close(ready_fd)
        except OSError:
            pass

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    pump_fd = None
    if spec.get("logMaxBytes"):
        pump_fd, log_fd = os.pipe2(os.O_CLOEXEC)
    else:
        log_fd = os.open(spec["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        if spec.get("netns"):
            _enter_netns(libc, spec["netns"])
        if spec.get("overlay"):
            _private_rootfs(spec)
        pid = spawn(spec, log_fd)
    except OSError as exc:
        name = spec["argv"][0] if spec["argv"] else ""
        step = exc.strerror if exc.strerror in ("setup", "chdir", "user", "exec") else "setns"
        detail = exc.filename if isinstance(exc.filename, str) else None
        reason = (
            start_error(step, exc.errno or 0, name, spec.get("cwd"), detail) if step != "setns" else str(exc)
        )
        write_atomic(os.path.join(container_dir, "start_error"), reason + "\n")
        ready("err " + reason)
        return 0
    finally:
        os.close(log_fd)
    oci = bool(spec.get("initPidFile"))
    if oci:
        init_pid = _await_oci_runtime(pid, spec["initPidFile"], pump_fd)
        if isinstance(init_pid, str):
            write_atomic(os.path.join(container_dir, "start_error"), init_pid + "\n")
            ready("err " + init_pid)
            _reap_all(own_pid)
            return 0
        pid = init_pid
    child.append(pid)
    write_atomic(
        os.path.join(container_dir, "pid"),
        f'{{"shimPid": {own_pid}, "shimStart": {own_start if own_start is not None else "null"}, '
        f'"pid": {pid}, "start": {proc_start_time(pid) or "null"}, "startedAt": {time.time()!r}, '
        f'"runtimeId": "{spec.get("runtimeId") or ""}"}}',
    )
    ready(f"ok {pid}")
    for pending_signal in pending:
        forward(pending_signal, None)
    if pump_fd is not None:
        log = RotatingLog(spec["log"], int(spec["logMaxBytes"]), int(spec.get("logMaxFiles") or 1))
        status = _pump_until_exit(pid, pump_fd, log)
        log.close()
    else:
        while True:
            try:
                _pid, status = os.waitpid(pid, 0)
                break
            except ChildProcessError:
                status = 255 << 8
                break
    code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    if not oci:  # (an OCI container's processes all ended with its PID namespace)
        try:
            os.killpg(pid, _signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    _reap_all(own_pid)
    if spec.get("oomFile"):
        kills = oom_kills(spec["oomFile"])
        if kills:
            write_atomic(os.path.join(container_dir, "oom"), f"{kills}\n")
    write_atomic(os.path.join(container_dir, "exit_code"), f"{code}\n")
    return 0


def _await_oci_runtime(pid: int, pid_file: str, pump_fd: int | None) -> int | str:
    """Wait for ``runc run -d``; the container's init pid, or the runtime's error message."""
    while True:
        try:
            _pid, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            status = 255 << 8
            break
    failed = not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0
    if not failed:
        try:
            with open(pid_file) as handle:
                return int(handle.read().strip())
        except (OSError, ValueError) as exc:
            return f"no init pid from the OCI runtime: {exc}"
    text = ""
    if pump_fd is not None:  # the runtime's stderr (nothing of it has been copied to the log yet)
        os.set_blocking(pump_fd, False)
        try:
            text = os.read(pump_fd, 65536).decode(errors="replace")
        except OSError:
            pass
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines:
        return lines[-1]
    if os.WIFSIGNALED(status):
        return f"the OCI runtime was killed by signal {os.WTERMSIG(status)} and wrote nothing to stderr"
    return f"the OCI runtime exited with code {os.WEXITSTATUS(status)} and wrote nothing to stderr"


def oom_kills(path: str) -> int:
    """The ``oom_kill`` count of a cgroup's ``memory.oom_control`` (v1) or ``memory.events`` (v2)."""
    try:
        with open(path) as handle:
            for line in handle:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    except (OSError, ValueError):
        pass
    return 0


class RotatingLog:
    """``path``, rotated to ``path.1`` ... ``path.<files-1>`` before it would exceed ``max_bytes``."""

    def __init__(self, path: str, max_bytes: int, files: int) -> None:
        self.path = path
        self.max_bytes = max(max_bytes, 1)
        self.files = max(files, 1)
        self.fd = self._open(os.O_APPEND)
        self.size = os.fstat(self.fd).st_size

    def _open(self, mode: int) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | mode, 0o640)

    def rotate(self) -> None:
        os.close(self.fd)
        for index in range(self.files - 1, 0, -1):
            source = self.path if index == 1 else f"{self.path}.{index - 1}"
            try:
                os.rename(source, f"{self.path}.{index}")
            except FileNotFoundError:
                pass
        self.fd = self._open(os.O_TRUNC | os.O_APPEND)
        self.size = 0

    def write(self, data: bytes) -> None:
        while data:
            room = self.max_bytes - self.size
            if room <= 0:
                self.rotate()
                continue
            chunk = data[:room]
            written = os.write(self.fd, chunk)
            self.size += written
            data = data[written:]

    def close(self) -> None:
        os.close(self.fd)


def _pump_until_exit(pid: int, pump_fd: int, log: RotatingLog) -> int:
    """Copy the container's output to ``log`` until ``pid`` has ended and the pipe is closed (or one
    second after the end, should something still hold it); the wait status of ``pid``."""
    import select

    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    _signal.set_wakeup_fd(wake_w)
    _signal.signal(_signal.SIGCHLD, _ignore)
    os.set_blocking(pump_fd, False)
    status: int | None = None
    deadline = 0.0
    open_ = True
    while True:
        if status is None:
            try:
                done, found = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, found = pid, 255 << 8
            if done:
                status, deadline = found, time.monotonic() + 1.0
        if status is not None and (not open_ or time.monotonic() >= deadline):
            break
        wait = 1.0 if status is None else max(deadline - time.monotonic(), 0.0)
        readable = select.select([wake_r, pump_fd] if open_ else [wake_r], [], [], wait)[0]
        if wake_r in readable:
            try:
                os.read(wake_r, 512)
            except BlockingIOError:
                pass
        if pump_fd in readable:
            try:
                data = os.read(pump_fd, 65536)
            except BlockingIOError:
                continue
            if data:
                log.write(data)
            else:
                open_ = False
    _signal.set_wakeup_fd(-1)
    for fd in (wake_r, wake_w, pump_fd):
        os.close(fd)
    return status if status is not None else 255 << 8


def _ignore(_signum: int, _frame: object) -> None:
    return None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        sys.stderr.write("usage: shim.py CONTAINER_DIR [READY_FD]\n")
        return 2
    return run(args[0], int(args[1]) if len(args) == 2 else None)


if __name__ == "__main__":
    sys.exit(main())
