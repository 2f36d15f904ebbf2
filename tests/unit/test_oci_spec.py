"""The OCI spec builder (``runtime/oci.py``): plain data in, ``config.json`` out; plus the two small
host-side pieces of the ``runc`` runtime that run against plain files: the task cgroup writer on fake
v1/v2 trees and the shim's rotating log."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from taskvpc.agent.runtime import ContainerSpec, Mount, Tmpfs, Ulimit, cgroups, oci
from taskvpc.agent.runtime.oci import NoImageDefaults, SpecError
from taskvpc.agent.runtime.shim import RotatingLog

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "# a comment\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    "app:x:1000:1000::/home/app:/bin/sh\n"
)
GROUP = "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nextra:x:2000:app,other\nwheel:x:10:other\n"
IMAGE = NoImageDefaults(
    entrypoint=("/entry",),
    cmd=("serve", "--port", "80"),
    env=(("PATH", "/image/bin"), ("FROM_IMAGE", "1"), ("MODE", "image")),
    working_dir="/srv",
    user="app",
)


def build(spec: ContainerSpec, image: oci.ImageDefaults = IMAGE, **extra: object) -> dict:  # type: ignore[type-arg]
    options: dict = {  # type: ignore[type-arg]
        "netns_path": "/run/netns/tvpc-t-1",
        "cgroups_parent": "taskvpc",
        "hostname": "abcdef012345",
        "passwd": PASSWD,
        "group": GROUP,
    }
    options.update(extra)
    return oci.build_spec(spec, image, **options)


def mounts_by_destination(config: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    return {m["destination"]: m for m in config["mounts"]}


# ---------------------------------------------------------------------------------------------- process


def test_image_entrypoint_and_cmd_are_used_when_the_definition_has_none() -> None:
    assert oci.process_args(ContainerSpec("t", "c"), IMAGE) == ["/entry", "serve", "--port", "80"]


def test_command_replaces_cmd_and_keeps_the_entrypoint() -> None:
    spec = ContainerSpec("t", "c", command=("other",))
    assert oci.process_args(spec, IMAGE) == ["/entry", "other"]


def test_entry_point_replaces_the_entrypoint_and_drops_the_image_cmd() -> None:
    assert oci.process_args(ContainerSpec("t", "c", entry_point=("sh",)), IMAGE) == ["sh"]
    both = ContainerSpec("t", "c", entry_point=("sh", "-c"), command=("echo hi",))
    assert oci.process_args(both, IMAGE) == ["sh", "-c", "echo hi"]


def test_nothing_to_run_is_an_error() -> None:
    with pytest.raises(SpecError, match="no command specified"):
        oci.process_args(ContainerSpec("t", "c"), NoImageDefaults())


def test_environment_is_the_image_s_then_the_definition_s_with_defaults() -> None:
    config = build(ContainerSpec("t", "c", environment=(("MODE", "defn"), ("EXTRA", "x=y"))))
    assert config["process"]["env"] == [
        "PATH=/image/bin",
        "FROM_IMAGE=1",
        "MODE=defn",
        "EXTRA=x=y",
        "HOSTNAME=abcdef012345",
        "HOME=/home/app",
    ]
    bare = build(ContainerSpec("t", "c", command=("x",)), NoImageDefaults())
    assert bare["process"]["env"] == [f"PATH={oci.DEFAULT_PATH}", "HOSTNAME=abcdef012345", "HOME=/root"]


@given(
    image_env=st.lists(st.tuples(st.sampled_from("ABCD"), st.text("xyz", max_size=3)), max_size=6),
    defn_env=st.lists(st.tuples(st.sampled_from("ABCDE"), st.text("xyz", max_size=3)), max_size=6),
)
def test_the_definition_always_wins_and_every_name_appears_once(
    image_env: list[tuple[str, str]], defn_env: list[tuple[str, str]]
) -> None:
    env = oci.environment(image_env, defn_env, hostname="h", home="/root")
    names = [entry.partition("=")[0] for entry in env]
    assert len(names) == len(set(names))
    values = dict(entry.partition("=")[::2] for entry in env)
    expected = dict(image_env) | dict(defn_env)
    assert {k: values[k] for k in expected} == expected


def test_working_directory_else_image_else_root() -> None:
    assert build(ContainerSpec("t", "c", working_directory="/data/x/"))["process"]["cwd"] == "/data/x"
    assert build(ContainerSpec("t", "c"))["process"]["cwd"] == "/srv"
    assert build(ContainerSpec("t", "c", command=("x",)), NoImageDefaults())["process"]["cwd"] == "/"


# ---------------------------------------------------------------------------------------------- users


@pytest.mark.parametrize(
    ("user", "uid", "gid", "extra", "home"),
    [
        (None, 0, 0, (), "/root"),
        ("root", 0, 0, (), "/root"),
        ("app", 1000, 1000, (2000,), "/home/app"),
        ("1000", 1000, 1000, (2000,), "/home/app"),
        ("app:nogroup", 1000, 65534, (2000,), "/home/app"),
        ("app:2000", 1000, 2000, (), "/home/app"),
        ("nobody:4242", 65534, 4242, (), "/nonexistent"),
        ("4321", 4321, 0, (), "/"),  # unknown numeric uid: gid 0, home /, as Docker
        ("4321:8765", 4321, 8765, (), "/"),
    ],
)
def test_users_are_resolved_in_the_image_files(
    user: str | None, uid: int, gid: int, extra: tuple[int, ...], home: str
) -> None:
    assert oci.resolve_user(user, PASSWD, GROUP) == oci.User(uid, gid, extra, home)


def test_unknown_names_fail_with_docker_s_messages() -> None:
    with pytest.raises(SpecError) as info:
        oci.resolve_user("ghost", PASSWD, GROUP)
    assert info.value.reason == "unable to find user ghost: no matching entries in passwd file"
    with pytest.raises(SpecError) as info:
        oci.resolve_user("app:ghosts", PASSWD, GROUP)
    assert info.value.reason == "unable to find group ghosts: no matching entries in group file"
    with pytest.raises(SpecError):
        oci.resolve_user("app", "", "")  # an image without /etc/passwd knows no names


def test_the_definition_s_user_wins_over_the_image_s() -> None:
    user = build(ContainerSpec("t", "c", user="nobody"))["process"]["user"]
    assert user == {"uid": 65534, "gid": 65534, "additionalGids": []}
    assert build(ContainerSpec("t", "c"))["process"]["user"] == {
        "uid": 1000,
        "gid": 1000,
        "additionalGids": [2000],
    }


@given(uid=st.integers(0, 2**31 - 1), gid=st.one_of(st.none(), st.integers(0, 2**31 - 1)))
def test_numeric_users_need_no_files(uid: int, gid: int | None) -> None:
    text = f"{uid}" if gid is None else f"{uid}:{gid}"
    user = oci.resolve_user(text, "", "")
    assert (user.uid, user.gid) == (uid, gid or 0)


# ---------------------------------------------------------------------------------------------- capabilities

DEFAULTS = list(oci.DEFAULT_CAPABILITIES)


def test_default_capabilities_are_docker_s() -> None:
    caps = build(ContainerSpec("t", "c"))["process"]["capabilities"]
    assert caps["bounding"] == caps["effective"] == caps["permitted"] == DEFAULTS
    assert "inheritable" not in caps and "ambient" not in caps


def test_add_and_drop_with_ecs_names() -> None:
    caps = oci.capabilities(["NET_ADMIN", "sys_ptrace"], ["NET_RAW", "CAP_CHOWN"])
    assert caps == [c for c in DEFAULTS if c not in ("CAP_NET_RAW", "CAP_CHOWN")] + [
        "CAP_NET_ADMIN",
        "CAP_SYS_PTRACE",
    ]


def test_all_in_add_or_drop() -> None:
    everything = oci.capabilities(["ALL"], ["SYS_ADMIN"])
    assert "CAP_SYS_ADMIN" not in everything and len(everything) == len(oci.ALL_CAPABILITIES) - 1
    assert oci.capabilities(["NET_BIND_SERVICE"], ["ALL"]) == ["CAP_NET_BIND_SERVICE"]
    assert oci.capabilities([], ["ALL"]) == []


def test_unknown_capabilities_are_refused() -> None:
    with pytest.raises(SpecError, match="unknown capability"):
        oci.capabilities(["FLY"], [])


def test_capabilities_are_limited_to_what_the_host_has() -> None:
    host = set(oci.ALL_CAPABILITIES) - {"CAP_SYS_RESOURCE", "CAP_NET_RAW"}
    assert "CAP_SYS_RESOURCE" not in oci.capabilities([], [], privileged=True, available=host)
    assert "CAP_NET_RAW" not in oci.capabilities([], [], available=host)


@given(
    add=st.lists(st.sampled_from([*oci.ALL_CAPABILITIES, "ALL"]), max_size=5),
    drop=st.lists(st.sampled_from([*oci.ALL_CAPABILITIES, "ALL"]), max_size=5),
)
def test_capability_rules(add: list[str], drop: list[str]) -> None:
    caps = oci.capabilities(add, drop)
    assert len(caps) == len(set(caps)) and set(caps) <= set(oci.ALL_CAPABILITIES)
    if "ALL" not in add:
        assert set(add) - {"ALL"} <= set(caps)  # an explicit add always lands
        if "ALL" not in drop:
            assert set(caps) == (set(DEFAULTS) - set(drop)) | set(add)
    elif "ALL" in add:
        assert set(caps) == set(oci.ALL_CAPABILITIES) - set(drop)


def test_privileged() -> None:
    config = build(ContainerSpec("t", "c", privileged=True, capabilities_drop=("ALL",)))
    assert config["process"]["capabilities"]["bounding"] == list(oci.ALL_CAPABILITIES)
    assert "maskedPaths" not in config["linux"] and "readonlyPaths" not in config["linux"]
    assert config["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert "rw" in mounts_by_destination(config)["/sys"]["options"]
    plain = build(ContainerSpec("t", "c"))
    assert plain["linux"]["maskedPaths"] == list(oci.MASKED_PATHS)
    assert "/proc/kcore" in plain["linux"]["maskedPaths"] and "/proc/sys" in plain["linux"]["readonlyPaths"]
    assert plain["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]
    assert "ro" in mounts_by_destination(plain)["/sys"]["options"]


# ---------------------------------------------------------------------------------------------- limits


def test_ulimits_become_rlimits_after_the_default_nofile() -> None:
    spec = ContainerSpec("t", "c", ulimits=(Ulimit("nofile", 1024, 4096), Ulimit("core", 0, 0)))
    assert build(spec)["process"]["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
    ]
    assert build(ContainerSpec("t", "c"), default_nofile=(100, 200))["process"]["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}
    ]


@pytest.mark.parametrize("name", oci.ULIMIT_NAMES)
def test_every_ecs_ulimit_name_maps(name: str) -> None:
    (rlimit,) = [
        r for r in oci.rlimits(ContainerSpec("t", "c", ulimits=(Ulimit(name, 1, 2),))) if r["soft"] == 1
    ]
    assert rlimit["type"] == f"RLIMIT_{name.upper()}"


def test_bad_ulimits_are_refused() -> None:
    with pytest.raises(SpecError, match="invalid ulimit type"):
        oci.rlimits(ContainerSpec("t", "c", ulimits=(Ulimit("files", 1, 2),)))
    with pytest.raises(SpecError, match="soft limit"):
        oci.rlimits(ContainerSpec("t", "c", ulimits=(Ulimit("nofile", 3, 2),)))


@given(st.integers(0, 10_000))
def test_cpu_shares_are_the_units_with_ecs_s_minimum_of_two(units: int) -> None:
    shares = oci.cpu_shares(units)
    assert shares == max(units, 2)


def test_container_resources_and_cgroup_path() -> None:
    spec = ContainerSpec("task1", "web", cpu=512, memory=256, memory_reservation=128)
    linux = build(spec)["linux"]
    assert linux["cgroupsPath"] == "/taskvpc/task1.web"  # no task-level limits: no task cgroup level
    limited = ContainerSpec("task1", "web", task_memory=512)
    assert build(limited)["linux"]["cgroupsPath"] == "/taskvpc/task1/web"
    assert linux["resources"]["memory"] == {"limit": 256 * oci.MIB, "reservation": 128 * oci.MIB}
    assert linux["resources"]["cpu"] == {"shares": 512}
    unlimited = build(ContainerSpec("task1", "web"))["linux"]["resources"]
    assert "memory" not in unlimited and unlimited["cpu"] == {"shares": 2}


@pytest.mark.parametrize(
    ("cpu", "memory", "v1", "v2"),
    [
        (None, None, {}, {}),
        (
            1024,
            512,
            {
                "cpu": {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "100000"},
                "memory": {"memory.limit_in_bytes": str(512 * oci.MIB)},
            },
            {"": {"cpu.max": "100000 100000", "memory.max": str(512 * oci.MIB)}},
        ),
        (
            256,
            None,
            {"cpu": {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "25000"}},
            {"": {"cpu.max": "25000 100000"}},
        ),
        (
            1,
            None,
            {"cpu": {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "1000"}},
            {"": {"cpu.max": "1000 100000"}},
        ),
    ],
)
def test_task_level_limits(cpu: int | None, memory: int | None, v1: dict, v2: dict) -> None:  # type: ignore[type-arg]
    assert oci.task_cgroup_limits(cpu, memory, unified=False) == v1
    assert oci.task_cgroup_limits(cpu, memory, unified=True) == v2


# ---------------------------------------------------------------------------------------------- namespaces, mounts


def test_namespaces_hostname_and_root() -> None:
    config = build(ContainerSpec("t", "c", readonly_root_filesystem=True))
    assert config["linux"]["namespaces"] == [
        {"type": "pid"},
        {"type": "ipc"},
        {"type": "uts"},
        {"type": "mount"},
        {"type": "network", "path": "/run/netns/tvpc-t-1"},
    ]
    assert config["hostname"] == "abcdef012345"
    assert config["root"] == {"path": "rootfs", "readonly": True}
    assert config["process"]["terminal"] is False
    host_net = build(ContainerSpec("t", "c", hostname="web1"), netns_path=None)
    assert {"type": "network"} not in host_net["linux"]["namespaces"]
    assert all(ns["type"] != "network" for ns in host_net["linux"]["namespaces"])
    assert host_net["hostname"] == "web1"


def test_default_mounts_and_shm_size() -> None:
    mounts = mounts_by_destination(build(ContainerSpec("t", "c")))
    assert list(mounts) == ["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm"]
    assert "size=65536k" in mounts["/dev/shm"]["options"]  # 64 MiB, Docker's default
    sized = mounts_by_destination(build(ContainerSpec("t", "c", shared_memory_size=256)))
    assert f"size={256 * 1024}k" in sized["/dev/shm"]["options"]


def test_tmpfs_and_bind_mounts_parents_first() -> None:
    spec = ContainerSpec(
        "t",
        "c",
        tmpfs=(Tmpfs("/run/cache", 16, ("rw", "noexec")), Tmpfs("/scratch", 8)),
        mounts=(Mount("/host/data/sub", "/data/sub", read_only=True), Mount("/host/data", "/data")),
    )
    config = build(spec)
    extra = config["mounts"][7:]
    assert [m["destination"] for m in extra] == ["/scratch", "/data", "/run/cache", "/data/sub"]
    by = mounts_by_destination(config)
    assert by["/run/cache"] == {
        "destination": "/run/cache",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["rw", "noexec", "size=16m"],
    }
    assert by["/scratch"]["options"] == ["nosuid", "nodev", "noexec", "size=8m"]
    assert by["/data/sub"] == {
        "destination": "/data/sub",
        "type": "bind",
        "source": "/host/data/sub",
        "options": ["rbind", "rprivate", "ro"],
    }
    assert by["/data"]["options"][-1] == "rw"


def test_a_user_mount_replaces_a_default_one() -> None:
    config = build(ContainerSpec("t", "c", mounts=(Mount("/host/shm", "/dev/shm"),)))
    shm = [m for m in config["mounts"] if m["destination"] == "/dev/shm"]
    assert shm == [
        {
            "destination": "/dev/shm",
            "type": "bind",
            "source": "/host/shm",
            "options": ["rbind", "rprivate", "rw"],
        }
    ]


def test_etc_files_are_bound_unless_the_definition_mounts_the_path() -> None:
    etc = (("/etc/hosts", "/state/c/hosts"), ("/etc/resolv.conf", "/state/c/resolv.conf"))
    spec = ContainerSpec("t", "c", mounts=(Mount("/mine/resolv.conf", "/etc/resolv.conf", read_only=True),))
    by = mounts_by_destination(build(spec, etc_files=etc))
    assert by["/etc/hosts"]["source"] == "/state/c/hosts"
    assert by["/etc/resolv.conf"]["source"] == "/mine/resolv.conf"
    assert (
        len([m for m in build(spec, etc_files=etc)["mounts"] if m["destination"] == "/etc/resolv.conf"]) == 1
    )


def test_hosts_and_resolv_conf() -> None:
    hosts = oci.hosts_file("web1")
    assert "127.0.0.1\tlocalhost\n" in hosts and hosts.endswith("127.0.1.1\tweb1\n")
    host = "# generated\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch ec2.internal\n"
    assert oci.resolv_conf(host) == "# generated\nnameserver 10.0.0.2\nsearch ec2.internal\n"
    assert (
        oci.resolv_conf("nameserver 127.0.0.53\nnameserver ::1\n")
        == "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    )


def test_init_process() -> None:
    spec = ContainerSpec("t", "c", command=("sleep", "1"), init_process_enabled=True)
    config = build(spec, NoImageDefaults(), init_path="/usr/bin/tini-static")
    assert config["process"]["args"] == ["/sbin/docker-init", "--", "sleep", "1"]
    assert mounts_by_destination(config)["/sbin/docker-init"] == {
        "destination": "/sbin/docker-init",
        "type": "bind",
        "source": "/usr/bin/tini-static",
        "options": ["bind", "ro"],
    }
    with pytest.raises(SpecError, match="tini"):
        build(spec, NoImageDefaults(), init_path=None)


# ---------------------------------------------------------------------------------------------- task cgroups on fake trees


def fake_v2(root: Path) -> Path:
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    return root


def test_task_cgroup_on_v1(tmp_path: Path) -> None:
    for controller in ("cpu", "memory", "pids"):
        (tmp_path / controller).mkdir()
    cgroups.setup_task("/taskvpc/t1", 512, 256, root=tmp_path)
    assert (tmp_path / "memory/taskvpc/t1/memory.limit_in_bytes").read_text() == str(256 * oci.MIB)
    assert (tmp_path / "cpu/taskvpc/t1/cpu.cfs_quota_us").read_text() == "50000"
    assert not (tmp_path / "pids/taskvpc").exists()  # runc makes the rest
    assert (
        cgroups.oom_file("/taskvpc/t1/web", root=tmp_path)
        == tmp_path / "memory/taskvpc/t1/web/memory.oom_control"
    )
    for path in (tmp_path / "memory/taskvpc/t1", tmp_path / "cpu/taskvpc/t1"):
        for name in list(path.iterdir()):
            name.unlink()  # (a real cgroupfs has no removable files; rmdir works on it)
    cgroups.remove("/taskvpc/t1", root=tmp_path)
    assert cgroups.existing("/taskvpc/t1", root=tmp_path) == []
    with pytest.raises(ValueError):
        cgroups.remove("/", root=tmp_path)


def test_task_cgroup_on_v2(tmp_path: Path) -> None:
    root = fake_v2(tmp_path / "cg")
    (root / "taskvpc").mkdir()
    (root / "taskvpc" / "cgroup.controllers").write_text("cpu memory pids\n")
    (root / "taskvpc" / "cgroup.subtree_control").write_text("")
    cgroups.setup_task("/taskvpc/t1", 2048, 1024, root=root)
    task = root / "taskvpc" / "t1"
    assert (task / "cpu.max").read_text() == "200000 100000"
    assert (task / "memory.max").read_text() == str(1024 * oci.MIB)
    # controllers enabled on the way down (a fake file keeps only the last write: pids)
    assert (root / "taskvpc" / "cgroup.subtree_control").read_text() == "+pids"
    assert cgroups.oom_file("/taskvpc/t1/web", root=root) == task / "web" / "memory.events"
    assert cgroups.hierarchies(root) == [root]


def test_no_task_limits_create_nothing(tmp_path: Path) -> None:
    root = fake_v2(tmp_path / "cg")
    cgroups.setup_task("/taskvpc/t1", None, None, root=root)
    assert not (root / "taskvpc").exists()


# ---------------------------------------------------------------------------------------------- log rotation


@settings(max_examples=40, deadline=None)
@given(
    chunks=st.lists(st.binary(min_size=1, max_size=300), max_size=30),
    max_bytes=st.integers(1, 400),
    files=st.integers(1, 4),
)
def test_rotating_log_keeps_the_newest_output_in_bounded_files(
    tmp_path_factory: pytest.TempPathFactory, chunks: list[bytes], max_bytes: int, files: int
) -> None:
    path = tmp_path_factory.mktemp("log") / "log"
    log = RotatingLog(str(path), max_bytes, files)
    for chunk in chunks:
        log.write(chunk)
    log.close()
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == ["log", *(f"log.{i}" for i in range(1, len(names)))]
    assert len(names) <= files
    parts = [path.with_name(name).read_bytes() for name in reversed(names)]  # oldest first
    assert all(len(part) <= max_bytes for part in parts)
    assert all(len(part) == max_bytes for part in parts[:-1])  # only the newest file is partial
    everything = b"".join(chunks)
    kept = b"".join(parts)
    assert everything.endswith(kept)
    assert len(kept) >= min(len(everything), (files - 1) * max_bytes + 1) or not everything


def test_oom_kill_counts(tmp_path: Path) -> None:
    from taskvpc.agent.runtime.shim import oom_kills

    v1 = tmp_path / "memory.oom_control"
    v1.write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    v2 = tmp_path / "memory.events"
    v2.write_text("low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n")
    assert oom_kills(str(v1)) == 2 and oom_kills(str(v2)) == 1
    assert oom_kills(str(tmp_path / "missing")) == 0
