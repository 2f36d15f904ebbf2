"""The OCI runtime spec (``config.json``) of one container, built from plain data: no I/O here.

:func:`build_spec` follows what Docker (and so ECS on EC2) does with a container definition and its
image:

* **process**: ``entryPoint`` replaces the image's ``Entrypoint`` *and* drops its ``Cmd`` (as
  ``docker run --entrypoint`` does); ``command`` replaces ``Cmd``. The environment is the image's, then
  ``environment`` on top, with ``PATH``, ``HOSTNAME`` and ``HOME`` filled in when absent.
  ``workingDirectory`` else the image's ``WorkingDir`` else ``/``; ``user`` else the image's ``User``,
  resolved against the image's ``/etc/passwd`` and ``/etc/group`` (:func:`resolve_user`).
* **capabilities**: Docker's default set; ``capabilities_add``/``capabilities_drop`` with ECS names
  (``NET_ADMIN``, ``ALL``), combined as Docker combines ``--cap-add``/``--cap-drop``; ``privileged`` gives
  every capability, no masked or read-only ``/proc`` paths, a writable ``/sys`` and every device.
* **rlimits**: ``ulimits`` (ECS names -> ``RLIMIT_*``); ``nofile`` defaults to 32768:65536, the ECS-optimized
  AMI's Docker default.
* **cgroups**: ``memory`` -> hard limit, ``memory_reservation`` -> soft limit, ``cpu`` units -> CPU shares
  (0 and 1 become 2, the kernel's minimum, as the ECS agent does: Docker would turn 0 into 1024).
  ``cgroupsPath`` is ``/<parent>/<task-id>/<container>`` for a task with task-level limits, which live on
  the task's cgroup the runtime creates (runc only limits a container's own cgroup):
  :func:`task_cgroup_limits`. A task without them gets no cgroup level of its own, as Docker's containers
  sit directly under ``/docker`` when ECS sets no task limits: ``/<parent>/<task-id>.<container>``. Each
  memory cgroup costs the kernel per mounted superblock of the host (its shrinker units, and a walk of
  every superblock's LRU lists when it goes), so one fewer per task matters at thousands of tasks.
* **namespaces**: the task's network namespace (by path; None shares the host's, like ``host`` mode), and
  new mount, PID, IPC and UTS namespaces.
* **mounts**: Docker's ``/proc``, ``/dev``, ``/dev/pts``, ``/dev/shm`` (``shared_memory_size`` MiB, default
  64), ``/dev/mqueue``, ``/sys``, ``/sys/fs/cgroup``; then an init binary (``init_process_enabled``), the
  ``tmpfs`` mounts and the resolved bind ``mounts``. A user mount on a default's path replaces it.
* **/etc files**: the runtime's ``/etc/hosts``, ``/etc/hostname`` and ``/etc/resolv.conf`` (Docker's way).
* **init**: with ``init_process_enabled`` a static init (tini) from the host is bind-mounted read-only at
  ``/sbin/docker-init`` (Docker's path) and runs the command as ``docker-init -- ARGS``.

Not applied (Docker does): a seccomp profile and an AppArmor profile.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from taskvpc.agent.runtime import ContainerSpec

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INIT_PATH = "/sbin/docker-init"
MIB = 1024 * 1024
DEFAULT_SHM_MIB = 64
MIN_CPU_SHARES = 2
MAX_CPU_SHARES = 262144
CFS_PERIOD_US = 100_000
DEFAULT_NOFILE = (32768, 65536)

# Docker's default capability set (moby oci/caps/defaults.go), in Docker's order.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

# Every capability by number (linux/capability.h); the kernel's ``cap_last_cap`` cuts the list.
ALL_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)

# Docker's defaults (moby oci/defaults.go)
MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
FIRMWARE = "/sys/firmware"  # masked by a bind mount when it can be (:func:`firmware_mask`)
READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

# ECS ``ulimits`` names (the RegisterTaskDefinition enum) -> the OCI rlimit type
ULIMIT_NAMES: tuple[str, ...] = (
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
)


class SpecError(Exception):
    """The container definition cannot be turned into a spec; ``reason`` in Docker's words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ImageDefaults(Protocol):
    """What an image's config contributes (``taskvpc.agent.images.ImageConfig`` has these fields)."""

    @property
    def entrypoint(self) -> Sequence[str] | None: ...
    @property
    def cmd(self) -> Sequence[str] | None: ...
    @property
    def env(self) -> Sequence[tuple[str, str]]: ...
    @property
    def working_dir(self) -> str | None: ...
    @property
    def user(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class NoImageDefaults:
    """An image config with nothing in it."""

    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: tuple[tuple[str, str], ...] = ()
    working_dir: str | None = None
    user: str | None = None


@dataclass(frozen=True, slots=True)
class User:
    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    home: str


# ---------------------------------------------------------------------------------------------- process


def process_args(spec: ContainerSpec, image: ImageDefaults) -> list[str]:
    """Docker's rule: ``entryPoint`` overrides the image's Entrypoint and clears its Cmd."""
    if spec.entry_point:
        args = [*spec.entry_point, *spec.command]
    else:
        args = [*(image.entrypoint or ()), *(spec.command or image.cmd or ())]
    if not args:
        raise SpecError("no command specified")
    return args


def _parse_colon_file(text: str, fields: int) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) >= fields:
            rows.append(parts)
    return rows


def resolve_user(user: str | None, passwd: str, group: str) -> User:
    """``user``, ``uid``, ``user:group``, ``uid:gid`` (any mix) against the image's passwd/group files.

    As Docker: a name that is not in the file is an error; a numeric uid that is not is used as is, with
    gid 0 and home ``/``; supplementary groups are the groups that list the user as a member.
    """
    name, _, group_part = (user or "").partition(":")
    if not name:
        name = "0"
    users = _parse_colon_file(passwd, 7)
    entry = next((row for row in users if row[0] == name), None)
    if entry is None and name.isdigit():
        entry = next((row for row in users if row[2] == name), None)
    if entry is None and not name.isdigit():
        raise SpecError(f"unable to find user {name}: no matching entries in passwd file")
    try:
        uid = int(entry[2]) if entry else int(name)
        gid = int(entry[3]) if entry else 0
    except ValueError:
        raise SpecError(f"invalid passwd entry for user {name}") from None
    home = (entry[5] or "/") if entry else "/"
    groups = _parse_colon_file(group, 4)
    if group_part:
        found = next((row for row in groups if row[0] == group_part), None)
        if found is None and group_part.isdigit():
            gid = int(group_part)
        elif found is None:
            raise SpecError(f"unable to find group {group_part}: no matching entries in group file")
        else:
            gid = int(found[2])
    extra: list[int] = []
    if entry is not None:
        for row in groups:
            members = [m for m in row[3].split(",") if m]
            if entry[0] in members and row[2].isdigit() and int(row[2]) not in extra:
                extra.append(int(row[2]))
    return User(uid, gid, tuple(g for g in extra if g != gid), home)


def environment(
    image_env: Sequence[tuple[str, str]], overrides: Sequence[tuple[str, str]], *, hostname: str, home: str
) -> list[str]:
    """Image env, then the container's, in order; PATH, HOSTNAME and HOME added when missing."""
    merged: dict[str, str] = {}
    for key, value in image_env:
        merged[key] = value
    for key, value in overrides:
        merged[key] = value
    merged.setdefault("PATH", DEFAULT_PATH)
    merged.setdefault("HOSTNAME", hostname)
    merged.setdefault("HOME", home)
    return [f"{key}={value}" for key, value in merged.items()]


def _cap_name(name: str) -> str:
    upper = name.strip().upper()
    return upper if upper == "ALL" or upper.startswith("CAP_") else f"CAP_{upper}"


def capabilities(
    add: Sequence[str],
    drop: Sequence[str],
    *,
    privileged: bool = False,
    available: Collection[str] | None = None,
) -> list[str]:
    """Docker's ``--cap-add``/``--cap-drop`` rule over its default set; ``ALL`` in either list works.

    ``available`` (the host's bounding set; None: every capability) limits the result, as Docker limits
    it to the capabilities it holds itself.
    """
    known = [c for c in ALL_CAPABILITIES if available is None or c in available]
    adds = [_cap_name(c) for c in add]
    drops = [_cap_name(c) for c in drop]
    for cap in (*adds, *drops):
        if cap != "ALL" and cap not in ALL_CAPABILITIES:
            raise SpecError(f"unknown capability: {cap!r}")
    if privileged or "ALL" in adds:
        caps = [c for c in known if privileged or c not in drops]
    elif "ALL" in drops:
        caps = [c for c in adds if c != "ALL"]
    else:
        caps = [c for c in DEFAULT_CAPABILITIES if c not in drops] + adds
    result: list[str] = []
    for cap in caps:
        if cap in known and cap not in result:
            result.append(cap)
    return result


def rlimits(spec: ContainerSpec, nofile: tuple[int, int] = DEFAULT_NOFILE) -> list[dict[str, Any]]:
    """``ulimits`` as OCI rlimits, after the default ``nofile`` (which a caller may lower to the host's)."""
    limits: dict[str, tuple[int, int]] = {"RLIMIT_NOFILE": nofile}
    for ulimit in spec.ulimits:
        if ulimit.name.lower() not in ULIMIT_NAMES:
            raise SpecError(f"invalid ulimit type: {ulimit.name}")
        if ulimit.soft > ulimit.hard:
            raise SpecError(
                f"ulimit soft limit must be less than or equal to hard limit: {ulimit.soft} > {ulimit.hard}"
            )
        limits[f"RLIMIT_{ulimit.name.upper()}"] = (ulimit.soft, ulimit.hard)
    return [{"type": kind, "soft": soft, "hard": hard} for kind, (soft, hard) in limits.items()]


# ---------------------------------------------------------------------------------------------- cgroups


def cpu_shares(cpu_units: int) -> int:
    """ECS CPU units -> CPU shares; 0 or 1 -> 2 (the ECS agent's minimum; Docker would make 0 1024)."""
    return min(max(cpu_units, MIN_CPU_SHARES), MAX_CPU_SHARES)


def has_task_cgroup(task_cpu: int | None, task_memory: int | None) -> bool:
    """Whether a task gets a cgroup level of its own: only to hold its task-level limits."""
    return task_cpu is not None or task_memory is not None


def cgroups_path(parent: str, task_id: str, name: str, *, nested: bool) -> str:
    """A container's cgroup: in its task's (``nested``, see :func:`has_task_cgroup`), else beside it."""
    if nested:
        return f"/{parent.strip('/')}/{task_id}/{name}"
    return f"/{parent.strip('/')}/{task_id}.{name}"


def container_cgroup_paths(parent: str, task_id: str, name: str) -> tuple[str, str]:
    """Both places a container's cgroup can be (for removal, which need not know the task's limits)."""
    return cgroups_path(parent, task_id, name, nested=True), cgroups_path(parent, task_id, name, nested=False)


def task_of_cgroup(rel: Sequence[str]) -> str | None:
    """The task id of a cgroup given by its path parts below the parent: ``(task, container)`` or
    ``(task,)`` nested, ``(task.container,)`` flat (container names have no '.', task ids may)."""
    if not rel:
        return None
    if len(rel) > 1:
        return rel[0]
    task, dot, _name = rel[0].rpartition(".")
    return task if dot else rel[0]


def task_cgroup_path(parent: str, task_id: str) -> str:
    return f"/{parent.strip('/')}/{task_id}"


def task_cgroup_limits(
    task_cpu: int | None, task_memory: int | None, *, unified: bool
) -> dict[str, dict[str, str]]:
    """The files to write in the task's cgroup: ``{controller: {file: value}}`` (v1), or ``{"": {...}}``
    on cgroup v2. Task CPU is a hard cap (CFS quota over a 100 ms period), as ECS applies it on Linux."""
    quota = None if task_cpu is None else max(task_cpu * CFS_PERIOD_US // 1024, 1000)
    memory = None if task_memory is None else task_memory * MIB
    if unified:
        files: dict[str, str] = {}
        if quota is not None:
            files["cpu.max"] = f"{quota} {CFS_PERIOD_US}"
        if memory is not None:
            files["memory.max"] = str(memory)
        return {"": files} if files else {}
    v1: dict[str, dict[str, str]] = {}
    if quota is not None:
        v1["cpu"] = {"cpu.cfs_period_us": str(CFS_PERIOD_US), "cpu.cfs_quota_us": str(quota)}
    if memory is not None:
        v1["memory"] = {"memory.limit_in_bytes": str(memory)}
    return v1


def resources(spec: ContainerSpec) -> dict[str, Any]:
    memory: dict[str, int] = {}
    if spec.memory is not None:
        memory["limit"] = spec.memory * MIB
    if spec.memory_reservation is not None:
        memory["reservation"] = spec.memory_reservation * MIB
    result: dict[str, Any] = {
        "devices": [{"allow": spec.privileged, "access": "rwm"}],
        "cpu": {"shares": cpu_shares(spec.cpu)},
    }
    if memory:
        result["memory"] = memory
    return result


# ---------------------------------------------------------------------------------------------- mounts


def default_mounts(spec: ContainerSpec) -> list[dict[str, Any]]:
    shm = (spec.shared_memory_size or DEFAULT_SHM_MIB) * 1024
    sys_mode = "rw" if spec.privileged else "ro"
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", sys_mode],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", sys_mode],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm}k"],
        },
    ]


def firmware_mask(
    empty_dir: str | None, caps: Collection[str], taken: Collection[str]
) -> list[dict[str, Any]]:
    """``/sys/firmware`` masked by a read-only bind mount of one shared empty directory, not by the
    tmpfs runc mounts for a masked directory: no superblock of its own, and each superblock on the host
    costs every memory cgroup a shrinker slot and its removal a walk of the superblock's LRU lists.
    (``/proc/acpi`` keeps runc's tmpfs: runc refuses a mount of the spec inside ``/proc`` but on a few
    files.) Not with ``SYS_ADMIN``: such a container could remount the shared directory
    writable; nor when a mount of the task definition takes the path."""
    if not empty_dir or "CAP_SYS_ADMIN" in caps or FIRMWARE in taken:
        return []
    options = ["rbind", "rprivate", "ro", "nosuid", "noexec", "nodev"]
    return [{"destination": FIRMWARE, "type": "bind", "source": empty_dir, "options": options}]


def _normal(path: str) -> str:
    parts = [p for p in path.split("/") if p and p != "."]
    return "/" + "/".join(parts)


def hosts_file(hostname: str) -> str:
    """The container's ``/etc/hosts``, as Docker writes it for a container without links."""
    return (
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
        f"ff02::2\tip6-allrouters\n127.0.1.1\t{hostname}\n"
    )


def resolv_conf(host: str) -> str:
    """The host's ``resolv.conf`` without loopback name servers (unreachable from the task's namespace);
    Docker's fallback (Google's public servers) when none is left."""
    lines = []
    for line in host.splitlines():
        words = line.split()
        if (
            len(words) >= 2
            and words[0] == "nameserver"
            and (words[1].startswith("127.") or words[1] == "::1")
        ):
            continue
        lines.append(line)
    if not any(line.split()[:1] == ["nameserver"] for line in lines):
        lines += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    return "\n".join(lines) + "\n"


def user_mounts(
    spec: ContainerSpec, init_path: str | None, etc_files: Sequence[tuple[str, str]] = ()
) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = []
    for destination, source in etc_files:
        if not any(_normal(m.destination) == destination for m in spec.mounts):
            mounts.append(
                {
                    "destination": destination,
                    "type": "bind",
                    "source": source,
                    "options": ["rbind", "rprivate", "rw"],
                }
            )
    if spec.init_process_enabled and init_path:
        mounts.append(
            {"destination": INIT_PATH, "type": "bind", "source": init_path, "options": ["bind", "ro"]}
        )
    for tmpfs in spec.tmpfs:
        options = list(tmpfs.options) or ["nosuid", "nodev", "noexec"]
        options = [o for o in options if not o.startswith("size=")] + [f"size={tmpfs.size}m"]
        mounts.append(
            {
                "destination": _normal(tmpfs.container_path),
                "type": "tmpfs",
                "source": "tmpfs",
                "options": options,
            }
        )
    for mount in spec.mounts:
        mounts.append(
            {
                "destination": _normal(mount.destination),
                "type": "bind",
                "source": mount.source,
                "options": ["rbind", "rprivate", "ro" if mount.read_only else "rw"],
            }
        )
    # parents before children (as Docker sorts them), stable otherwise
    return sorted(mounts, key=lambda m: m["destination"].count("/") if m["destination"] != "/" else 0)


# ---------------------------------------------------------------------------------------------- spec


def build_spec(
    spec: ContainerSpec,
    image: ImageDefaults,
    *,
    netns_path: str | None,
    cgroups_parent: str,
    hostname: str,
    rootfs: str = "rootfs",
    passwd: str = "",
    group: str = "",
    init_path: str | None = None,
    available_caps: Collection[str] | None = None,
    default_nofile: tuple[int, int] = DEFAULT_NOFILE,
    etc_files: Sequence[tuple[str, str]] = (),
    empty_dir: str | None = None,
) -> dict[str, Any]:
    """The ``config.json`` of ``spec`` run from ``image``; raises :class:`SpecError` (Docker's words).

    ``etc_files`` are (destination, host file) pairs bind-mounted read-write, as Docker mounts the
    container's ``/etc/hosts``, ``/etc/hostname`` and ``/etc/resolv.conf``; a mount of the definition on
    the same path wins. ``empty_dir`` (an empty, read-only directory of the host) masks
    ``/sys/firmware``: :func:`firmware_mask`.
    """
    args = process_args(spec, image)
    if spec.init_process_enabled:
        if not init_path:
            raise SpecError("initProcessEnabled: no init binary (tini-static) on this host")
        args = [INIT_PATH, "--", *args]
    user = resolve_user(spec.user or image.user, passwd, group)
    hostname = spec.hostname or hostname
    caps = capabilities(
        spec.capabilities_add, spec.capabilities_drop, privileged=spec.privileged, available=available_caps
    )
    extra = user_mounts(spec, init_path, etc_files)
    taken = {m["destination"] for m in extra}
    namespaces: list[dict[str, str]] = [{"type": kind} for kind in ("pid", "ipc", "uts", "mount")]
    if netns_path:
        namespaces.append({"type": "network", "path": netns_path})
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "cgroupsPath": cgroups_path(
            cgroups_parent, spec.task_id, spec.name, nested=has_task_cgroup(spec.task_cpu, spec.task_memory)
        ),
        "resources": resources(spec),
    }
    masks = [] if spec.privileged else firmware_mask(empty_dir, caps, taken)
    if not spec.privileged:
        masked = {m["destination"] for m in masks}
        linux["maskedPaths"] = [p for p in MASKED_PATHS if p not in masked]
        linux["readonlyPaths"] = list(READONLY_PATHS)
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": user.uid, "gid": user.gid, "additionalGids": list(user.additional_gids)},
            "args": args,
            "env": environment(image.env, spec.environment, hostname=hostname, home=user.home),
            "cwd": _normal(spec.working_directory or image.working_dir or "/"),
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": rlimits(spec, default_nofile),
            "noNewPrivileges": False,
        },
        "root": {"path": rootfs, "readonly": spec.readonly_root_filesystem},
        "hostname": hostname,
        "mounts": [m for m in default_mounts(spec) if m["destination"] not in taken] + masks + extra,
        "linux": linux,
    }
