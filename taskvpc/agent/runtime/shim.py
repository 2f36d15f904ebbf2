"""The per-container shim of the ``process`` runtime: start one command, wait for it, record how it ended.

Run as ``python -I -S <this file> <container-dir> <ready-fd>`` (``python -m taskvpc.agent.runtime.shim``
works too) in a session of its own. It outlives the agent: an agent ``kill -9`` leaves every shim
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
    log_fd = os.open(spec["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        if spec.get("netns"):
            _enter_netns(libc, spec["netns"])
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
    while True:
        try:
            _pid, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            status = 255 << 8
            break
    code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    try:
        os.killpg(pid, _signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    _reap_all(own_pid)
    write_atomic(os.path.join(container_dir, "exit_code"), f"{code}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        sys.stderr.write("usage: shim.py CONTAINER_DIR [READY_FD]\n")
        return 2
    return run(args[0], int(args[1]) if len(args) == 2 else None)


if __name__ == "__main__":
    sys.exit(main())
