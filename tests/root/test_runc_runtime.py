"""The ``runc`` runtime with real runc, real overlay mounts, real cgroups and a real network namespace.

Each test gets a name prefix ``tvt<hex>``: its namespace ``<prefix>-c`` (``ip netns add``), its state
directory, and its cgroup parent ``/<prefix>`` (so every cgroup it makes is ``/<prefix>/<task>/...``).
Teardown kills (by pid) whatever of the test is still running, deletes its runc containers, unmounts
what is mounted under its state directory, removes its cgroups and namespace, and then fails the test if
any of that had to be done: a passing test leaves nothing behind.

The image is the examples' busybox root file system (``images.busybox``) plus a user ``app`` (1000) in
groups ``app`` and ``extra``, served by a small in-memory image source; one test goes through the real
``ImageStore``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from taskvpc.agent.images import ImageConfig, ImageStore
from taskvpc.agent.images.busybox import build_rootfs
from taskvpc.agent.runtime import (
    ContainerHandle,
    ContainerSpec,
    ContainerStatus,
    Mount,
    StartError,
    Tmpfs,
    Ulimit,
    cgroups,
    create_runtime,
    cshim,
    oci,
    read_logs,
)
from taskvpc.agent.runtime.procs import cmdline
from taskvpc.agent.runtime.runc import OOM_REASON, RuncRuntime, find_init, find_oci_runtime
from tests.root import hostcheck

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(find_oci_runtime() is None, reason="needs runc or crun"),
    pytest.mark.timeout(120),
]

REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
BUSYBOX_CONFIG = ImageConfig(env=(("PATH", oci.DEFAULT_PATH),))
CONFIGURED = ImageConfig(
    entrypoint=("sh", "-c"),
    cmd=('echo "from-image $FROM_IMAGE"; pwd; id -u; id -G',),
    env=(("FROM_IMAGE", "yes"), ("PATH", oci.DEFAULT_PATH)),
    working_dir="/srv/app",
    user="app",
)


@dataclass(frozen=True)
class FakeImage:
    rootfs: Path
    config: ImageConfig
    digest: str = "sha256:" + "0" * 64


@dataclass
class Images:
    """An in-memory image source: ``busybox`` and ``configured`` (same root, another config)."""

    rootfs: Path
    resolved: list[str] = field(default_factory=list)

    def resolve(self, reference: str) -> FakeImage:
        self.resolved.append(reference)
        if reference in ("busybox", "busybox:latest"):
            return FakeImage(self.rootfs, BUSYBOX_CONFIG)
        if reference == "configured":
            return FakeImage(self.rootfs, CONFIGURED)
        raise LookupError(reference)


@pytest.fixture(scope="module")
def rootfs() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="tvt-rootfs-"))
    os.chmod(base, 0o755)
    root = build_rootfs(base / "rootfs")
    with open(root / "etc" / "passwd", "a") as passwd:
        passwd.write("app:x:1000:1000::/home/app:/bin/sh\n")
    with open(root / "etc" / "group", "a") as group:
        group.write("app:x:1000:\nextra:x:2000:app\n")
    (root / "home" / "app").mkdir(parents=True)
    try:
        yield root
    finally:
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class Env:
    prefix: str
    netns: str  # /run/netns/<name>
    state: Path
    images: Images

    def runtime(self, **options: object) -> RuncRuntime:
        return RuncRuntime(self.state, images=self.images, cgroup_parent=self.prefix, **options)  # type: ignore[arg-type]

    def task(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def log(self, task: str, name: str) -> str:
        return str(self.state / "tasks" / task / name / "log")

    def cgroup(self, controller: str, *parts: str) -> Path:
        return Path("/sys/fs/cgroup", controller, self.prefix, *parts)


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as handle:
        points = [line.split()[4] for line in handle]
    return sorted((p for p in points if p.startswith(str(path) + "/")), key=len, reverse=True)


def _runc_containers(state: Path) -> list[str]:
    root = state / "runc"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def _task_cgroups(prefix: str) -> list[str]:
    """Cgroups under the test's parent, in any hierarchy (the parent itself is runc's to create)."""
    return sorted({str(p) for top in cgroups.existing(f"/{prefix}") for p in top.iterdir() if p.is_dir()})


def leftovers(env: Env) -> dict[str, list[str]]:
    found = {
        "processes": [" ".join(cmdline(p)) or str(p) for p in hostcheck.our_pids(env.state, env.netns)],
        "mounts": _mounts_under(env.state),
        "runc containers": _runc_containers(env.state),
        "cgroups": _task_cgroups(env.prefix),
    }
    return {key: value for key, value in found.items() if value}


@pytest.fixture()
def env(rootfs: Path) -> Iterator[Env]:
    prefix = f"tvt{secrets.token_hex(3)}"
    name = f"{prefix}-c"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    state = Path(tempfile.mkdtemp(prefix=f"{prefix}-state-"))
    env = Env(prefix, f"/run/netns/{name}", state, Images(rootfs))
    try:
        yield env
    finally:
        left = leftovers(env)
        for pid in hostcheck.our_pids(
            state, env.netns
        ):  # only the test's: shims of its state dir, or in its netns
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while hostcheck.our_pids(state, env.netns) and time.monotonic() < deadline:
            time.sleep(0.02)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        runc = find_oci_runtime() or "runc"
        for container in _runc_containers(state):
            subprocess.run([runc, "--root", str(state / "runc"), "delete", "--force", container], check=False)
        for point in _mounts_under(state):
            subprocess.run(["umount", "-l", point], check=False)
        cgroups.remove(f"/{prefix}")
        subprocess.run(["ip", "netns", "del", name], check=False)
        shutil.rmtree(state, ignore_errors=True)
        assert not cgroups.existing(f"/{prefix}"), "cgroups could not be removed"
        assert hostcheck.wait_clean(prefix) == []  # no namespace, link, address, route or nft table
        assert not left, f"left behind: {left}"


def sh(task: str, name: str, script: str, **extra: object) -> ContainerSpec:
    return ContainerSpec(task_id=task, name=name, image="busybox", command=("sh", "-c", script), **extra)  # type: ignore[arg-type]


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def run_to_end(rt: RuncRuntime, env: Env, spec: ContainerSpec) -> tuple[int | None, str]:
    """Start, wait, read the log, remove: (exit code, log)."""
    handle = await rt.start(spec, env.netns, env.log(spec.task_id, spec.name))
    state = await rt.wait(handle)
    assert state.status is ContainerStatus.EXITED, state
    text = read_logs(env.state, spec.task_id, spec.name)
    await rt.remove(handle)
    return state.exit_code, text


async def log_line(env: Env, task: str, name: str, line: str, timeout: float = 10) -> None:
    """Until ``line`` is in the container's log (e.g. a trap is installed before it is signalled)."""
    deadline = time.monotonic() + timeout
    while line not in read_logs(env.state, task, name).splitlines():
        assert time.monotonic() < deadline, f"{line!r} never logged"
        await asyncio.sleep(0.01)


def cap_mask(names: list[str]) -> int:
    return sum(1 << oci.ALL_CAPABILITIES.index(name) for name in names)


def status_field(text: str, key: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith(key + ":"))


# ---------------------------------------------------------------------------------------------- tests


def test_registered_as_runc_and_runs_a_command_with_its_exit_code(env: Env) -> None:
    rt = create_runtime("runc", env.state)
    assert isinstance(rt, RuncRuntime) and rt.name == "runc"
    rt = env.runtime()
    task = env.task("a")

    async def main() -> None:
        assert await run_to_end(rt, env, sh(task, "seven", "echo out; echo err >&2; exit 7")) == (
            7,
            "out\nerr\n",
        )
        handle = await rt.start(sh(task, "killed", "exec sleep 300"), env.netns, env.log(task, "killed"))
        assert rt.status(handle).status is ContainerStatus.RUNNING
        supervisor = cmdline(_shim_pid(env.state / "tasks" / task / "killed"))
        assert rt._cshim == str(cshim.BUILT), "no build/taskvpc-cshim: run `make setup`"
        assert supervisor[0] == rt._cshim  # the C supervisor runs it
        assert await rt.stop(handle, 0) == 137  # SIGKILL: 128 + 9, Docker's way
        await rt.remove(handle)
        rt.purge_task(task)

    run(main())
    assert not (env.state / "tasks" / task).exists()


def _shim_pid(directory: Path) -> int:
    return int(json.loads((directory / "pid").read_text())["shimPid"])


def test_without_the_c_supervisor_python_shims_do_the_same_job(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cshim.ENV_SWITCH, "0")
    rt = env.runtime()
    assert rt._cshim is None
    task = env.task("py")

    async def main() -> None:
        assert await run_to_end(rt, env, sh(task, "seven", "echo out; exit 7")) == (7, "out\n")
        script = "trap 'exit 5' TERM; echo started; while :; do sleep 0.02; done"
        handle = await rt.start(sh(task, "termed", script), env.netns, env.log(task, "termed"))
        assert "-I" in cmdline(_shim_pid(env.state / "tasks" / task / "termed"))  # a Python shim
        await log_line(env, task, "termed", "started")
        assert await rt.stop(handle, 5) == 5
        await rt.remove(handle)
        rt.purge_task(task)
        if rt._forker is not None:
            rt._forker.close()

    run(main())


def test_two_containers_of_a_task_share_localhost_and_the_task_namespace(env: Env) -> None:
    rt = env.runtime()
    task = env.task("web")
    inode = os.stat(env.netns).st_ino
    server = (
        "mkdir -p /www && echo hello-from-server > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www"
    )
    client = (
        "readlink /proc/self/ns/net; "
        "for i in $(seq 100); do wget -q -O - http://127.0.0.1:8080/ && exit 0; sleep 0.05; done; exit 1"
    )

    async def main() -> None:
        web = await rt.start(sh(task, "server", server), env.netns, env.log(task, "server"))
        code, text = await run_to_end(rt, env, sh(task, "client", client))
        assert code == 0, text
        assert text.splitlines() == [f"net:[{inode}]", "hello-from-server"]
        assert await rt.stop(web, 0.2) == 137  # httpd as PID 1 has no SIGTERM handler: killed
        await rt.remove(web)
        rt.purge_task(task)
        assert leftovers(env) == {}  # no process, mount, runc state or cgroup of the task is left

    run(main())


def test_a_container_sees_only_its_own_processes_and_files(env: Env) -> None:
    rt = env.runtime()
    task = env.task("iso")
    marker = env.state / "host-only-marker"
    marker.write_text("secret")
    script = (
        "ps -o pid,args | tail -n +2; echo ---; ls /; echo ---; "
        f"test -e {marker} && echo host-file-visible; test -e {REPO} && echo repo-visible; hostname; "
        "cat /etc/hostname; grep -c localhost /etc/hosts"
    )

    async def main() -> None:
        code, text = await run_to_end(rt, env, sh(task, "app", script))
        assert code == 0
        procs, listing, rest = text.split("---\n")
        pids = [line.split()[0] for line in procs.splitlines()]
        assert pids[0] == "1" and len(pids) <= 3, procs  # sh, ps (and tail): nothing of the host
        assert "sleep" not in procs
        assert set(listing.split()) <= {
            "bin",
            "dev",
            "etc",
            "home",
            "proc",
            "root",
            "sbin",
            "sys",
            "tmp",
            "usr",
            "var",
        }
        assert "visible" not in rest
        hostname, etc_hostname, localhost = rest.split()
        assert hostname != os.uname().nodename  # own UTS namespace
        assert etc_hostname == hostname and localhost == "2"  # Docker's /etc/hostname and /etc/hosts
        code, text = await run_to_end(
            rt, env, sh(task, "named", "hostname; cat /etc/hostname", hostname="web-1")
        )
        assert text.split() == ["web-1", "web-1"]
        rt.purge_task(task)

    run(main())


def test_memory_limit_kills_with_ecs_oom_reason_and_137(env: Env) -> None:
    rt = env.runtime()
    task = env.task("oom")

    async def main() -> None:
        hog = sh(task, "hog", "x=0123456789; while :; do x=$x$x; done", memory=16)
        handle = await rt.start(hog, env.netns, env.log(task, "hog"))
        state = await asyncio.wait_for(rt.wait(handle), 60)
        assert state.status is ContainerStatus.EXITED
        assert state.exit_code == 137
        assert state.reason == OOM_REASON
        # the task's memory limit (no container limit): the same reason
        other = env.task("oom2")
        spec = sh(other, "hog", "x=0123456789; while :; do x=$x$x; done", task_memory=16)
        task_hog = await rt.start(spec, env.netns, env.log(other, "hog"))
        state = await asyncio.wait_for(rt.wait(task_hog), 60)
        assert (state.exit_code, state.reason) == (137, OOM_REASON)
        await rt.remove(task_hog)
        rt.purge_task(other)
        fine = await rt.start(sh(task, "fine", "exit 0", memory=16), env.netns, env.log(task, "fine"))
        assert (await rt.wait(fine)).reason is None  # no OOM, no reason
        await rt.remove(handle)
        await rt.remove(fine)
        rt.purge_task(task)

    run(main())


def _read(path: Path) -> str:
    return path.read_text().strip()


def test_cpu_memory_and_task_level_limits_are_in_the_cgroup_files(env: Env) -> None:
    rt = env.runtime()
    task = env.task("cg")
    limits = {"cpu": 256, "memory": 64, "memory_reservation": 32, "task_cpu": 512, "task_memory": 128}

    async def main() -> None:
        app = await rt.start(sh(task, "app", "exec sleep 300", **limits), env.netns, env.log(task, "app"))
        side = await rt.start(
            sh(task, "side", "exec sleep 300", task_cpu=512, task_memory=128),
            env.netns,
            env.log(task, "side"),
        )
        if cgroups.is_unified():
            top = Path("/sys/fs/cgroup", env.prefix, task)
            assert _read(top / "memory.max") == str(128 * MIB)
            assert _read(top / "cpu.max") == "50000 100000"
            assert _read(top / "app" / "memory.max") == str(64 * MIB)
            assert _read(top / "app" / "memory.low") == str(32 * MIB)
        else:
            assert _read(env.cgroup("cpu", task, "app", "cpu.shares")) == "256"
            assert _read(env.cgroup("cpu", task, "side", "cpu.shares")) == "2"  # cpu 0 -> 2, as ECS
            assert _read(env.cgroup("memory", task, "app", "memory.limit_in_bytes")) == str(64 * MIB)
            assert _read(env.cgroup("memory", task, "app", "memory.soft_limit_in_bytes")) == str(32 * MIB)
            assert _read(env.cgroup("memory", task, "memory.limit_in_bytes")) == str(128 * MIB)
            assert _read(env.cgroup("cpu", task, "cpu.cfs_quota_us")) == "50000"
            assert _read(env.cgroup("cpu", task, "cpu.cfs_period_us")) == "100000"
            # the container's processes are in its cgroup, under the task's
            pid = rt.status(app).pid
            assert f"/{env.prefix}/{task}/app" in Path(f"/proc/{pid}/cgroup").read_text()
        await rt.stop(app, 0)
        await rt.remove(app)
        assert not cgroups.existing(f"/{env.prefix}/{task}/app")
        assert cgroups.existing(f"/{env.prefix}/{task}")  # the task's other container still has it
        await rt.stop(side, 0)
        await rt.remove(side)
        assert not cgroups.existing(f"/{env.prefix}/{task}")  # gone with the task's last container
        rt.purge_task(task)

    run(main())


def _memory_cgroups(prefix: str) -> list[str]:
    """Every memory cgroup under the test's parent, relative to it."""
    hierarchy = Path("/sys/fs/cgroup") if cgroups.is_unified() else Path("/sys/fs/cgroup/memory")
    top = hierarchy / prefix
    return sorted(str(p.relative_to(top)) for p in top.rglob("*") if p.is_dir()) if top.is_dir() else []


def test_one_memory_cgroup_per_container_unless_the_task_has_limits(env: Env) -> None:
    """A task without task-level limits gets no cgroup level of its own (each memory cgroup costs the
    kernel per superblock on the host); one with them keeps it, holding them."""
    rt = env.runtime()
    flat, nested = env.task("flat"), env.task("nest")

    async def main() -> None:
        app = await rt.start(sh(flat, "app", "exec sleep 300", memory=64), env.netns, env.log(flat, "app"))
        side = await rt.start(sh(flat, "side", "exec sleep 300"), env.netns, env.log(flat, "side"))
        limited = sh(nested, "app", "exec sleep 300", task_memory=128)
        inner = await rt.start(limited, env.netns, env.log(nested, "app"))
        assert _memory_cgroups(env.prefix) == sorted([f"{flat}.app", f"{flat}.side", nested, f"{nested}/app"])
        pid = rt.status(app).pid
        assert f"/{env.prefix}/{flat}.app\n" in Path(f"/proc/{pid}/cgroup").read_text()
        limit = "memory.max" if cgroups.is_unified() else "memory.limit_in_bytes"
        memory = Path("/sys/fs/cgroup") if cgroups.is_unified() else Path("/sys/fs/cgroup/memory")
        assert _read(memory / env.prefix / f"{flat}.app" / limit) == str(64 * MIB)
        assert _read(memory / env.prefix / nested / limit) == str(128 * MIB)
        await rt.stop(app, 0)
        await rt.remove(app)
        assert _memory_cgroups(env.prefix) == sorted([f"{flat}.side", nested, f"{nested}/app"])
        for handle in (side, inner):
            await rt.stop(handle, 0)
        rt.purge_task(flat)  # (purge without a remove first: it tears the containers down itself)
        rt.purge_task(nested)
        assert _task_cgroups(env.prefix) == []  # in no hierarchy

    run(main())


def test_readonly_root_filesystem_refuses_writes_but_tmpfs_and_shm_take_them(env: Env) -> None:
    rt = env.runtime()
    task = env.task("ro")
    script = (
        "touch /newfile 2>&1 && echo root-writable; "
        "touch /scratch/ok && echo tmpfs-writable; "
        "df -k /scratch /dev/shm | tail -n +2 | while read fs size rest; do echo size=$size; done"
    )

    async def main() -> None:
        spec = sh(
            task,
            "app",
            script,
            readonly_root_filesystem=True,
            tmpfs=(Tmpfs("/scratch", 8),),
            shared_memory_size=32,
        )
        code, text = await run_to_end(rt, env, spec)
        assert code == 0
        assert "Read-only file system" in text and "root-writable" not in text
        assert "tmpfs-writable" in text
        assert text.splitlines()[-2:] == [f"size={8 * 1024}", f"size={32 * 1024}"]
        code, text = await run_to_end(rt, env, sh(task, "dflt", "touch /f && df -k /dev/shm | tail -n 1"))
        assert code == 0 and text.split()[1] == str(64 * 1024)  # Docker's default /dev/shm: 64 MiB
        rt.purge_task(task)

    run(main())


def test_ulimits_and_capabilities(env: Env) -> None:
    rt = env.runtime()
    task = env.task("caps")
    bounding = int(status_field(Path("/proc/self/status").read_text(), "CapBnd"), 16)

    async def main() -> None:
        code, text = await run_to_end(
            rt,
            env,
            sh(
                task,
                "lim",
                "ulimit -n; ulimit -Hn; ulimit -c",
                ulimits=(Ulimit("nofile", 1000, 2000), Ulimit("core", 0, 0)),
            ),
        )
        assert (code, text.split()) == (0, ["1000", "2000", "0"])
        script = "grep CapEff /proc/self/status; chown 1:1 /tmp && echo chowned"
        code, text = await run_to_end(
            rt,
            env,
            sh(task, "drop", script, capabilities_drop=("NET_RAW", "chown"), capabilities_add=("NET_ADMIN",)),
        )
        expected = [c for c in oci.DEFAULT_CAPABILITIES if c not in ("CAP_NET_RAW", "CAP_CHOWN")]
        expected.append("CAP_NET_ADMIN")
        assert int(status_field(text, "CapEff"), 16) == cap_mask(expected)
        assert "chowned" not in text  # CAP_CHOWN dropped
        code, text = await run_to_end(rt, env, sh(task, "dflt", "grep CapEff /proc/self/status"))
        assert int(status_field(text, "CapEff"), 16) == cap_mask(list(oci.DEFAULT_CAPABILITIES))
        code, text = await run_to_end(
            rt,
            env,
            sh(
                task,
                "priv",
                "grep CapEff /proc/self/status; grep -c ' /proc/sys proc ro' /proc/mounts",
                privileged=True,
            ),
        )
        assert int(status_field(text, "CapEff"), 16) == bounding  # every capability the host grants
        assert text.split()[-1] == "0"  # no read-only /proc/sys
        code, text = await run_to_end(rt, env, sh(task, "plain", "grep -c ' /proc/sys proc ro' /proc/mounts"))
        assert text.strip() == "1"  # Docker's read-only /proc paths
        code, text = await run_to_end(rt, env, sh(task, "user", "grep CapEff /proc/self/status", user="app"))
        assert int(status_field(text, "CapEff"), 16) == 0  # a non-root user has no effective capabilities
        rt.purge_task(task)

    run(main())


def test_user_working_directory_environment_and_image_config(env: Env) -> None:
    rt = env.runtime()
    task = env.task("cfg")

    async def main() -> None:
        # the image's entrypoint, cmd, env, workdir and user (a name from its /etc/passwd, with groups)
        code, text = await run_to_end(rt, env, ContainerSpec(task, "image", image="configured"))
        assert code == 0
        assert text.splitlines() == ["from-image yes", "/srv/app", "1000", "1000 2000"]
        # the container definition wins over the image
        spec = ContainerSpec(
            task,
            "defn",
            image="configured",
            command=('echo "$FROM_IMAGE $GREETING $HOME"; pwd; id -u; id -g',),
            environment=(("GREETING", "hello"), ("FROM_IMAGE", "overridden")),
            working_directory="/data/work",
            user="nobody",
        )
        code, text = await run_to_end(rt, env, spec)
        assert code == 0
        assert text.splitlines() == ["overridden hello /nonexistent", "/data/work", "65534", "65534"]
        # numeric uid:gid that the image does not know
        code, text = await run_to_end(rt, env, sh(task, "num", "id -u; id -g; echo $HOME", user="4321:8765"))
        assert text.split() == ["4321", "8765", "/"]
        # entryPoint replaces the image's Entrypoint and drops its Cmd
        code, text = await run_to_end(
            rt, env, ContainerSpec(task, "ep", image="configured", entry_point=("echo", "only"))
        )
        assert text == "only\n"
        with pytest.raises(StartError) as info:
            await rt.start(sh(task, "bad", "true", user="no-such-user"), env.netns, env.log(task, "bad"))
        assert info.value.reason == (
            "CannotCreateContainerError: Error response from daemon: "
            "unable to find user no-such-user: no matching entries in passwd file"
        )
        assert rt.status(ContainerHandle(task, "bad")).status is ContainerStatus.FAILED
        await rt.remove(ContainerHandle(task, "bad"))
        rt.purge_task(task)

    run(main())


def test_bind_mounts(env: Env) -> None:
    rt = env.runtime()
    task = env.task("mnt")
    shared = env.state / "volume"
    shared.mkdir()
    (shared / "in").write_text("from-host\n")

    async def main() -> None:
        spec = sh(
            task,
            "app",
            "cat /data/in; echo written > /data/out; cat /ro/in; touch /ro/x 2>&1 || echo refused",
            mounts=(Mount(str(shared), "/data"), Mount(str(shared), "/ro", read_only=True)),
        )
        code, text = await run_to_end(rt, env, spec)
        assert code == 0
        assert text.splitlines()[:2] == ["from-host", "from-host"]
        assert text.splitlines()[-1] == "refused"
        assert "Read-only file system" in text
        assert (shared / "out").read_text() == "written\n"
        rt.purge_task(task)

    run(main())


def test_stop_timeout_sigterm_then_sigkill_and_the_init_process(env: Env) -> None:
    rt = env.runtime()
    task = env.task("stop")

    async def main() -> None:
        stubborn = await rt.start(
            sh(task, "stubborn", "trap '' TERM; echo ready; while :; do sleep 0.05; done"),
            env.netns,
            env.log(task, "stubborn"),
        )
        polite = await rt.start(
            sh(task, "polite", "trap 'exit 3' TERM; echo ready; while :; do sleep 0.05; done"),
            env.netns,
            env.log(task, "polite"),
        )
        await log_line(env, task, "polite", "ready")
        await log_line(env, task, "stubborn", "ready")
        began = time.monotonic()
        assert await rt.stop(polite, 5) == 3  # SIGTERM reached it
        assert time.monotonic() - began < 2
        began = time.monotonic()
        assert await rt.stop(stubborn, 0.5) == 137
        assert 0.5 <= time.monotonic() - began < 3
        assert await rt.stop(stubborn, 0.5) == 137  # stopping a stopped container is harmless
        for handle in (stubborn, polite):
            await rt.remove(handle)
        if find_init() is not None:
            # with an init, a plain `sleep` (no handler of its own) gets the SIGTERM as PID 2
            spec = ContainerSpec(
                task, "init", image="busybox", command=("sleep", "300"), init_process_enabled=True
            )
            handle = await rt.start(spec, env.netns, env.log(task, "init"))
            code = await rt.exec(
                handle,
                [
                    "sh",
                    "-c",
                    "test \"$(cat /proc/1/cmdline | tr '\\0' ' ')\" = '/sbin/docker-init -- sleep 300 '",
                ],
                5,
            )
            assert code == 0
            began = time.monotonic()
            assert await rt.stop(handle, 5) == 143  # 128 + SIGTERM, passed on by tini
            assert time.monotonic() - began < 2
            await rt.remove(handle)
        rt.purge_task(task)

    run(main())


def test_start_failures_in_ecs_words(env: Env) -> None:
    rt = env.runtime()
    task = env.task("fail")

    async def main() -> None:
        with pytest.raises(StartError) as info:
            await rt.start(
                ContainerSpec(task, "nocmd", image="busybox", command=("no-such-cmd",)),
                env.netns,
                env.log(task, "nocmd"),
            )
        assert info.value.reason == (
            "CannotStartContainerError: Error response from daemon: failed to create shim task: OCI runtime "
            'create failed: runc create failed: unable to start container process: exec: "no-such-cmd": '
            "executable file not found in $PATH: unknown"
        )
        state = rt.status(ContainerHandle(task, "nocmd"))
        assert state.status is ContainerStatus.FAILED and state.reason == info.value.reason
        assert _mounts_under(env.state) == []  # the failed start left no overlay behind
        with pytest.raises(StartError) as info:
            await rt.start(ContainerSpec(task, "nosuch", image="nosuch"), env.netns, env.log(task, "nosuch"))
        assert info.value.reason == (
            "CannotPullContainerError: pull image manifest has been retried 1 time(s): failed to resolve ref "
            "docker.io/library/nosuch:latest: docker.io/library/nosuch:latest: not found"
        )
        state = rt.status(ContainerHandle(task, "nosuch"))
        assert state.status is ContainerStatus.FAILED and state.reason == info.value.reason
        assert state.pull_started_at is not None and state.pull_stopped_at is not None
        assert state.pull_started_at <= state.pull_stopped_at
        for name in ("nocmd", "nosuch"):
            await rt.remove(ContainerHandle(task, name))
        rt.purge_task(task)

    run(main())


def test_exec_runs_inside_the_container_and_is_killed_on_timeout(env: Env) -> None:
    rt = env.runtime()
    task = env.task("exec")

    def probes_alive() -> list[int]:
        return [
            p
            for p in hostcheck.our_pids(env.state, env.netns)
            if cmdline(p) in (["sleep", "300"], ["sh", "-c", probe])
        ]

    probe = "sleep 300 & sleep 300"

    async def main() -> None:
        spec = sh(
            task,
            "app",
            "exec sleep 1000",
            environment=(("MARK", "ok"),),
            user="nobody",
            working_directory="/tmp",
        )
        handle = await rt.start(spec, env.netns, env.log(task, "app"))
        check = 'test "$MARK" = ok && test "$(id -u)" = 65534 && test "$(pwd)" = /tmp && test -e /proc/1'
        assert await rt.exec(handle, ["sh", "-c", check], 5) == 0
        assert await rt.exec(handle, ["sh", "-c", "exit 4"], 5) == 4
        began = time.monotonic()
        assert await rt.exec(handle, ["sh", "-c", probe], 0.3) is None
        assert time.monotonic() - began < 2
        deadline = time.monotonic() + 2
        while probes_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert probes_alive() == []  # the timed-out probe and what it started are gone
        assert not list((env.state / "tasks" / task / "app").glob("exec-*"))
        await rt.stop(handle, 0)
        await rt.remove(handle)
        rt.purge_task(task)

    run(main())


def test_log_rotation(env: Env) -> None:
    rt = env.runtime(log_max_bytes=1000, log_max_files=3)
    task = env.task("log")
    script = 'i=0; while [ $i -lt 300 ]; do echo "line-$i-xxxxxxxxxxxx"; i=$((i+1)); done'
    full = "".join(f"line-{i}-xxxxxxxxxxxx\n" for i in range(300))

    async def main() -> None:
        handle = await rt.start(sh(task, "app", script), env.netns, env.log(task, "app"))
        assert (await rt.wait(handle)).exit_code == 0
        directory = env.state / "tasks" / task / "app"
        files = sorted(p.name for p in directory.glob("log*"))
        assert files == ["log", "log.1", "log.2"]
        sizes = [(directory / name).stat().st_size for name in ("log.2", "log.1", "log")]
        assert sizes[:2] == [1000, 1000] and 0 < sizes[2] <= 1000
        kept = "".join((directory / name).read_text() for name in ("log.2", "log.1", "log"))
        assert full.endswith(kept) and kept.endswith("line-299-xxxxxxxxxxxx\n")
        await rt.remove(handle)
        rt.purge_task(task)

    run(main())


AGENT = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from taskvpc.agent.runtime import ContainerSpec
    from taskvpc.agent.runtime.runc import RuncRuntime
    from tests.root.test_runc_runtime import Images

    async def main():
        rt = RuncRuntime(Path({state!r}), images=Images(Path({rootfs!r})), cgroup_parent={prefix!r})
        spec = ContainerSpec({task!r}, "app", image="busybox", command=("sh", "-c",
            "trap 'echo got-term; exit 5' TERM; echo started; while :; do sleep 0.02; done"))
        await rt.start(spec, {netns!r}, {log!r})
        print("ready", flush=True)
        await asyncio.sleep(300)

    asyncio.run(main())
    """
)


def test_containers_survive_a_kill_9_of_the_agent_and_are_adopted(env: Env) -> None:
    task = env.task("adopt")
    code = AGENT.format(
        repo=str(REPO),
        state=str(env.state),
        rootfs=str(env.images.rootfs),
        prefix=env.prefix,
        task=task,
        netns=env.netns,
        log=env.log(task, "app"),
    )
    agent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert agent.stdout is not None
        assert agent.stdout.readline().strip() == "ready"
        agent.send_signal(signal.SIGKILL)
        agent.wait()
    finally:
        with contextlib.suppress(ProcessLookupError):
            agent.kill()
        agent.wait()

    rt = env.runtime()  # a new agent
    handles = rt.list_ours()
    assert [(h.task_id, h.name) for h in handles] == [(task, "app")]
    state = rt.status(handles[0])
    assert state.status is ContainerStatus.RUNNING and state.pid is not None

    async def main() -> None:
        await log_line(env, task, "app", "started")
        assert await rt.exec(handles[0], ["true"], 5) == 0
        assert await rt.stop(handles[0], 5) == 5  # its SIGTERM handler ran: the real exit code
        await rt.remove(handles[0])
        rt.purge_task(task)

    run(main())
    assert rt.list_ours() == []


def test_the_real_image_store(env: Env, rootfs: Path) -> None:
    """Through ``taskvpc.agent.images.ImageStore`` (the runtime's default image source)."""
    store = ImageStore(env.state / "images")
    store.import_source(f"{env.prefix}/web:1", rootfs, ImageConfig(cmd=("sh", "-c", "echo from-store")))
    rt = RuncRuntime(env.state, cgroup_parent=env.prefix)
    task = env.task("store")

    async def main() -> None:
        code, text = await run_to_end(rt, env, ContainerSpec(task, "app", image=f"{env.prefix}/web:1"))
        assert (code, text) == (0, "from-store\n")
        with pytest.raises(StartError) as info:
            await rt.start(
                ContainerSpec(task, "none", image="localhost:1/none:1"), env.netns, env.log(task, "none")
            )
        assert info.value.reason.startswith("CannotPullContainerError: ")
        await rt.remove(ContainerHandle(task, "none"))
        rt.purge_task(task)

    run(main())


def test_removal_deletes_runcs_state_and_cgroups_without_runc_delete(env: Env) -> None:
    """An ended container's removal deletes runc's state directory and its cgroups itself, not by a
    ``runc delete`` (a runc process per container, which reads the host's whole mount table): whether the
    container exited or was killed, runc no longer knows it and nothing of it is left (the fixture checks
    the host)."""
    rt = env.runtime()
    assert rt.oci_runtime is not None
    task = env.task("rm")

    def runc_knows() -> list[str]:
        listed = subprocess.run(
            [rt.oci_runtime or "runc", "--root", str(env.state / "runc"), "list", "-q"],
            capture_output=True,
            text=True,
            check=True,
        )
        return sorted(listed.stdout.split())

    async def main() -> None:
        ended = await rt.start(sh(task, "ended", "exit 0"), env.netns, env.log(task, "ended"))
        assert (await rt.wait(ended)).exit_code == 0
        killed = await rt.start(
            sh(task, "killed", "sleep 300 & sleep 300 & exec sleep 300"), env.netns, env.log(task, "killed")
        )
        assert await rt.stop(killed, 0) == 137  # its init's children went with it (own PID namespace)
        assert runc_knows() == [f"{task}.ended", f"{task}.killed"]
        for handle in (ended, killed):
            paths = oci.container_cgroup_paths(env.prefix, task, handle.name)
            assert any(cgroups.existing(p) for p in paths)  # runc keeps an ended container's cgroup
            await rt.remove(handle)
            assert f"{task}.{handle.name}" not in runc_knows()
            assert not (env.state / "runc" / f"{task}.{handle.name}").exists()
            assert not any(cgroups.existing(p) for p in paths)
        rt.purge_task(task)

    run(main())


def test_teardown_of_a_container_still_running_leaves_no_process(env: Env) -> None:
    """A container torn down while something of it still runs (a start that failed half-way, runc's
    init waiting in "created", or its init alive) is deleted by ``runc delete --force``, which kills what
    is left: no process, no runc state, no cgroup stays (removing the state directory alone would leave
    the processes and their cgroup)."""
    rt = env.runtime()
    assert rt.oci_runtime is not None
    task = env.task("alive")

    async def main() -> None:
        handle = await rt.start(sh(task, "app", "exec sleep 300"), env.netns, env.log(task, "app"))
        paths = oci.container_cgroup_paths(env.prefix, task, handle.name)
        assert any(cgroups.has_processes(p) for p in paths)
        rt._teardown(rt._dir(handle))
        assert not any(cgroups.has_processes(p) for p in paths)
        assert not any(cgroups.existing(p) for p in paths)
        assert not (env.state / "runc" / f"{task}.{handle.name}").exists()
        assert (await rt.wait(handle)).status is ContainerStatus.EXITED
        await rt.remove(handle)
        rt.purge_task(task)

    run(main())


def test_a_fresh_start_tears_nothing_down_and_a_restart_clears_the_previous_run(env: Env) -> None:
    """A container's first start does no teardown of its own directory (the runtime has just made it:
    that cost every start its cgroup and layer teardown on the agent's event loop); starting the same
    container again after it ended clears the previous run and runs anew."""
    rt = env.runtime()
    task = env.task("again")
    teardowns: list[Path] = []
    real_teardown = rt._teardown

    def counting(directory: Path) -> None:
        teardowns.append(directory)
        real_teardown(directory)

    rt._teardown = counting  # type: ignore[method-assign]

    async def main() -> None:
        first = await rt.start(sh(task, "app", "exit 3"), env.netns, env.log(task, "app"))
        assert teardowns == []
        assert (await rt.wait(first)).exit_code == 3
        second = await rt.start(sh(task, "app", "exit 4"), env.netns, env.log(task, "app"))
        assert teardowns, "the previous run was not cleared"
        assert (await rt.wait(second)).exit_code == 4
        await rt.remove(second)
        rt.purge_task(task)

    run(main())
