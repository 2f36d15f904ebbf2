"""A runtime with the runc runtime's shim spec around a stand-in for ``runc run -d`` (no root needed).

The stand-in (a process that forks the container's command, writes its pid to the ``--pid-file`` and
exits) leaves the command to the supervisor as runc leaves a container's init, so the supervisors (C
and Python) can be tested as the runc runtime uses them. Importable on its own (a test's "agent"
subprocess uses it) without pytest.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskvpc.agent.runtime import ContainerHandle, ContainerSpec, cshim
from taskvpc.agent.runtime.process import ProcessRuntime

if TYPE_CHECKING:
    from taskvpc.agent.runtime.process import ShimChild

# ``runc run -d --pid-file F``, as far as a supervisor can tell: the command runs on, reparented to it.
# (Not a shell: dash may reap a background job that has ended, which runc never does to an init.)
FAKE_RUNC = (
    "import os, sys\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    import _signal\n"
    "    for signum in (_signal.SIGPIPE, _signal.SIGXFSZ):  # (ignored by Python, not by runc)\n"
    "        _signal.signal(signum, _signal.SIG_DFL)\n"
    "    os.execvp(sys.argv[2], sys.argv[2:])\n"
    "with open(sys.argv[1], 'w') as handle:\n"
    "    handle.write(str(pid))\n"
    "os._exit(0)\n"
)


class FakeOciRuntime(ProcessRuntime):
    """The runc runtime's shim spec (``initPidFile``, ``oomFile``, log rotation) around a stand-in runc."""

    def __init__(self, state: Path, supervisor: str | None, **options: Any) -> None:
        super().__init__(state)
        self.supervisor = supervisor  # the C binary, or None for Python shims
        self.options = options
        self.runc_argv: dict[str, list[str]] = {}  # task id -> the stand-in's argv (default: FAKE_RUNC)

    def _prepare(self, spec: ContainerSpec, netns_path: str | None, log_path: str) -> dict[str, Any]:
        directory = self._dir(spec)
        argv = self.runc_argv.get(spec.task_id) or [
            sys.executable,
            "-I",
            "-S",
            "-c",
            FAKE_RUNC,
            str(directory / "init.pid"),
            *spec.command,
        ]
        return {
            "argv": argv,
            "env": {"PATH": "/usr/bin:/bin"},
            "cwd": str(directory),
            "uid": None,
            "gid": None,
            "groups": None,
            "netns": None,
            "log": log_path,
            "logMaxBytes": 1 << 20,
            "logMaxFiles": 5,
            "initPidFile": str(directory / "init.pid"),
            "oomFile": None,
            "runtimeId": "r" * 64,
            **self.options,
        }

    def _spawn_shim(self, directory: Path, write_fd: int) -> ShimChild:
        launched = cshim.launch(self.supervisor, directory, write_fd, self._forker)
        return launched or super()._spawn_shim(directory, write_fd)

    def close(self) -> None:
        if self._forker is not None:
            self._forker.close()


async def start(runtime: ProcessRuntime, task: str, *command: str) -> ContainerHandle:
    spec = ContainerSpec(task_id=task, name="app", command=command)
    return await runtime.start(spec, None, str(runtime.state_dir / f"{task}.log"))
