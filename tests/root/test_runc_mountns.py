"""A runc container's overlay lives in its shim's mount namespace, never in the host's (``mountns.py``).

So starting one more container copies a small, constant mount table whatever runs on the host: the
shim server's clean namespace holds no namespace file and nothing under the tasks directory, each shim
mounts its container's root in a namespace of its own, runc still joins the task's network namespace
(through the agent's root), and nothing is left once the container is removed. Every way a
supervisor starts: forked by the server (the C supervisor, exec'd by the server's child once that has
made the namespace, and the Python shim), and exec'd (``TASKVPC_SHIM_FORK=0``: a Python shim, which
makes the clean namespace itself).
Fixtures (and their nothing-left checks) are ``test_runc_runtime``'s.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess

import pytest

from taskvpc.agent.runtime import ContainerHandle, ContainerStatus, StartError, cshim, shimserver
from taskvpc.agent.runtime.procs import alive, cmdline
from taskvpc.agent.runtime.runc import RuncRuntime, find_oci_runtime
from tests.root.test_runc_runtime import Env, env, rootfs, sh

__all__ = ["env", "rootfs"]  # test_runc_runtime's fixtures

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(find_oci_runtime() is None, reason="needs runc or crun"),
    pytest.mark.timeout(120),
]


def mounts(pid: int | str = "self") -> list[tuple[str, str]]:
    """(mount point, type) of each mount in ``pid``'s mount namespace."""
    with open(f"/proc/{pid}/mountinfo") as handle:
        rows = [line.split(" - ") for line in handle]
    return [(fields.split()[4], rest.split()[0]) for fields, rest in rows]


def servers() -> set[int]:
    """Shim servers running now (of this or any other test)."""
    return {int(e) for e in os.listdir("/proc") if e.isdigit() and shimserver.SERVER_TAG in cmdline(int(e))}


def check_running_container(env: Env, rt: RuncRuntime, task: str) -> tuple[int, int]:
    """The container of ``task`` runs in the task's netns with its overlay only in its shim's mount
    namespace; the shim's pid and start time."""
    directory = env.state / "tasks" / task / "web"
    info = json.loads((directory / "pid").read_text())
    init, shim = info["pid"], info["shimPid"]
    assert alive(shim, info["shimStart"])
    assert os.stat(f"/proc/{init}/ns/net").st_ino == os.stat(env.netns).st_ino
    assert not [p for p, _ in mounts() if p.startswith(str(directory) + "/")], "an overlay on the host"
    assert os.readlink(f"/proc/{shim}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    in_shim = mounts(shim)
    assert (str(directory / "rootfs"), "overlay") in in_shim
    assert not [p for p, kind in in_shim if kind == "nsfs"], "a network namespace file kept alive by the shim"
    assert len(in_shim) < len(mounts()), "the shim's table is not smaller than the host's"
    return int(shim), int(info["shimStart"])


async def start_check_remove(env: Env, rt: RuncRuntime, task: str, python: bool) -> None:
    handle = await rt.start(sh(task, "web", "exec sleep 300"), env.netns, env.log(task, "web"))
    shim, shim_start = check_running_container(env, rt, task)
    assert ("python" in os.path.basename(cmdline(shim)[0])) == python, cmdline(shim)
    assert await rt.exec(handle, ["true"], 5) == 0  # (runc exec, from the host's mount namespace)
    assert await rt.stop(handle, 0) == 137
    assert not alive(shim, shim_start)
    await rt.remove(handle)
    rt.purge_task(task)
    assert not (env.state / "tasks" / task).exists()


@pytest.mark.parametrize("supervisor", ["c", "python"])
def test_forked_shims_mount_the_overlay_in_their_own_namespace_from_a_clean_one(
    env: Env, supervisor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The C supervisor (the server's child makes its namespace, then execs it) and the Python shim."""
    if supervisor == "c" and cshim.find_binary() is None:
        pytest.skip("the C supervisor is not built (make setup)")
    if supervisor == "python":
        monkeypatch.setenv(cshim.ENV_SWITCH, "0")
    # an overlay an older agent left mounted on the host (a tmpfs stands in): not in the clean namespace
    old = env.state / "tasks" / env.task("old") / "web" / "rootfs"
    old.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(old)], check=True)
    rt = env.runtime()
    try:
        asyncio.run(start_check_remove(env, rt, env.task("a"), python=supervisor == "python"))
        assert rt._forker is not None and rt._forker._server is not None
        server = rt._forker._server.pid
        in_server = mounts(server)
        assert not [p for p, kind in in_server if kind == "nsfs"], "the server keeps namespaces alive"
        assert not [p for p, _ in in_server if p.startswith(str(env.state) + "/")], "old overlays copied"
        # a namespace made after the server started does not show up in it (nothing propagates in)
        later = f"{env.prefix}-later"
        subprocess.run(["ip", "netns", "add", later], check=True)
        try:
            assert not [p for p, _ in mounts(server) if p.endswith("/" + later)]
        finally:
            subprocess.run(["ip", "netns", "del", later], check=True)
    finally:
        subprocess.run(["umount", str(old)], check=True)
        if rt._forker is not None:
            rt._forker.close()
    assert server not in servers()


def test_an_execd_shim_makes_the_clean_namespace_itself(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKVPC_SHIM_FORK", "0")
    rt = env.runtime()
    assert rt._forker is None
    before = servers()
    asyncio.run(start_check_remove(env, rt, env.task("b"), python=True))
    assert servers() <= before  # no server was started


def test_a_start_whose_overlay_cannot_be_mounted_fails_in_ecs_words_and_leaves_nothing(env: Env) -> None:
    rt = env.runtime()
    task = env.task("c")
    moved = env.images.rootfs.with_name("moved")

    async def main() -> None:
        env.images.rootfs.rename(moved)  # the image's lower directory is gone: the shim's mount fails
        try:
            with pytest.raises(StartError) as failed:
                await rt.start(sh(task, "web", "true"), env.netns, env.log(task, "web"))
        finally:
            moved.rename(env.images.rootfs)
        assert failed.value.reason.startswith("CannotStartContainerError: "), failed.value.reason
        assert "mount overlay on" in failed.value.reason, failed.value.reason
        assert rt.status(ContainerHandle(task, "web")).status is ContainerStatus.FAILED
        await rt.remove(ContainerHandle(task, "web"))
        rt.purge_task(task)

    try:
        asyncio.run(main())
    finally:
        if rt._forker is not None:
            rt._forker.close()
    assert not (env.state / "tasks" / task).exists()
