"""The agent at 169.254.170.2 inside every VPC: task metadata, task credentials and a path to the API.

How a task reaches it, with no setup in the task: every VPC router namespace carries ``169.254.170.2/32`` on
``lo`` (``drivers.netlink``), and a task's default route already goes to its subnet's gateway in that
router, so the address is local to the router. The agent opens its listening sockets *inside* the router
namespace (a thread enters it, makes the socket, switches back: a socket keeps the namespace it was made
in), and one asyncio loop serves every VPC. Nothing is forwarded and nothing listens on the host.

Who is asking: the router's anti-spoofing (``antispoof``, prerouting raw) lets a packet from a task port
through only with that ENI's own IP and MAC, so the peer address names the task (per VPC: IPs are unique in
a VPC). Each id in a path must also belong to that task (a container's ``/v4/<id>``, the task's credentials
id), else the answer is what ECS's agent gives for an unknown id; another task knowing the URI gets that
too.

Reachable from nothing else: a small table ``taskvpc_endpoints`` in the router (hook input) accepts TCP to
169.254.170.2 on the metadata port and the API port, drops it from the host's access link, and drops
everything else to 169.254.170.2. Forwarded traffic (the security groups) never sees these packets:
they are addressed to the router itself.

The API path: ``AWS_ENDPOINT_URL=http://169.254.170.2:<api port>``; a connection from a task there is
relayed byte for byte by the agent to the control plane it talks to now (host namespace; ``apirelay``:
with several control planes it fails over as the agent does), so SigV4 (the ``Host`` header included) is
what the client signed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from taskvpc.agent import netplan, taskmeta
from taskvpc.agent.apirelay import ApiRelay
from taskvpc.agent.drivers import netns
from taskvpc.agent.kvlog import kv
from taskvpc.agent.runtime import ContainerHandle, ContainerSpec, container_dir
from taskvpc.agentapi.credentials import TaskCredentials
from taskvpc.agentapi.tasks import DesiredTask

if TYPE_CHECKING:
    from taskvpc.agent.engine import Engine, TaskWorker

log = logging.getLogger(__name__)

METADATA_PORT = 80
NFT_TABLE = "taskvpc_endpoints"
IDLE_TIMEOUT = 30.0
MAX_HEAD = 16 * 1024
CGROUP_ROOT = Path("/sys/fs/cgroup")
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def endpoint_ruleset(access_port: str, api_port: int | None) -> str:
    """The router's input rules for 169.254.170.2 (loaded as one transaction; replaces the table)."""
    ports = ", ".join(str(p) for p in (METADATA_PORT, api_port) if p is not None)
    ip = taskmeta.ENDPOINT_IP
    return (
        f"table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n"
        f"table inet {NFT_TABLE} {{\n"
        "  chain input {\n"
        "    type filter hook input priority filter; policy accept;\n"
        f'    ip daddr {ip} iifname "{access_port}" drop\n'
        f"    ip daddr {ip} tcp dport {{ {ports} }} accept\n"
        f"    ip daddr {ip} drop\n"
        "  }\n"
        "}\n"
    )


@dataclass
class _Listener:
    vpc_id: str
    ns_inode: int
    servers: list[asyncio.Server] = field(default_factory=list)

    def close(self) -> None:
        for server in self.servers:
            server.close()


def _listen_in(ns_path: str, port: int) -> socket.socket:
    """A listening TCP socket on 169.254.170.2:``port`` inside the namespace at ``ns_path``."""
    fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with netns.entered(fd):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    finally:
        os.close(fd)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((taskmeta.ENDPOINT_IP, port))
        sock.listen(256)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _load_rules(ns_path: str, text: str) -> None:
    proc = subprocess.run(
        ["nsenter", f"--net={ns_path}", "nft", "-f", "-"], input=text, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"nft refused the endpoint rules: {proc.stderr.strip()}")


def load_secret(state_dir: Path) -> str:
    """The agent's secret for credentials ids (kept across restarts: running tasks keep their URI)."""
    path = state_dir / "endpoint-secret"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        value = secrets.token_hex(16)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value)
        return value


class TaskEndpoints:
    """Listeners per VPC router, the request handlers and the current task credentials."""

    def __init__(
        self,
        engine: Engine,
        cfg: netplan.NetConfig,
        *,
        secret: str,
        region: str,
        api: ApiRelay | None = None,
    ) -> None:
        self.engine = engine
        self.cfg = cfg
        self.secret = secret
        self.region = region
        self.api = api
        self.listeners: dict[str, _Listener] = {}
        self.credentials: dict[str, TaskCredentials] = {}  # by task ARN (the task role's)
        self._previous: dict[str, taskmeta.StatsSample] = {}  # by runtime id: for precpu_stats
        self._lock = asyncio.Lock()

    @property
    def api_port(self) -> int | None:
        return self.api.port if self.api is not None else None

    # -- listeners ---------------------------------------------------------------------------------

    def _ns_path(self, vpc_id: str) -> str:
        return f"{self.cfg.netns_dir}/{netplan.router_netns(self.cfg, vpc_id)}"

    async def ensure_vpc(self, vpc_id: str) -> None:
        """Listeners in the VPC's router (idempotent; a router made again since gets new ones)."""
        async with self._lock:
            path = self._ns_path(vpc_id)
            inode = os.stat(path).st_ino
            have = self.listeners.get(vpc_id)
            if have is not None and have.ns_inode == inode:
                return
            if have is not None:
                have.close()
                del self.listeners[vpc_id]
            rules = endpoint_ruleset(netplan.router_access_port(self.cfg), self.api_port)
            await asyncio.to_thread(_load_rules, path, rules)
            listener = _Listener(vpc_id, inode)
            try:
                sock = await asyncio.to_thread(_listen_in, path, METADATA_PORT)
                listener.servers.append(
                    await asyncio.start_server(self._handler(vpc_id, self._serve_http), sock=sock)
                )
                if self.api_port is not None:
                    sock = await asyncio.to_thread(_listen_in, path, self.api_port)
                    listener.servers.append(
                        await asyncio.start_server(self._handler(vpc_id, self._relay_api), sock=sock)
                    )
            except BaseException:
                listener.close()
                raise
            self.listeners[vpc_id] = listener
            log.info("task endpoints %s", kv(vpc_id=vpc_id, api_port=self.api_port))

    def forget_unused(self, in_use: Iterable[str]) -> None:
        """Close the listeners of VPCs no task of ours uses any more (their router may be gone)."""
        keep = set(in_use)
        for vpc_id in [v for v in self.listeners if v not in keep]:
            self.listeners.pop(vpc_id).close()

    def close(self) -> None:
        self.forget_unused(())

    # -- credentials and environment ---------------------------------------------------------------

    def set_credentials(self, creds: tuple[TaskCredentials, ...]) -> None:
        self.credentials = {c.task_arn: c for c in creds if c.role_type == "TaskApplication"}

    def credentials_uri(self, task: DesiredTask) -> str:
        return f"/v2/credentials/{taskmeta.credentials_id(task.arn, self.secret)}"

    def host_facts(self, worker: TaskWorker | None = None) -> taskmeta.HostFacts:
        ids: dict[str, str] = {}
        if worker is not None:
            for c in worker.desired.containers:
                handle = worker.handles.get(c.name)
                runtime_id = handle.runtime_id if handle is not None else self._starting_id(worker, c.name)
                if runtime_id:
                    ids[c.name] = runtime_id
        return taskmeta.HostFacts("", self.region, self.api_port, ids)

    def _starting_id(self, worker: TaskWorker, name: str) -> str | None:
        """The runtime id of a container still starting (asking about itself before ``start`` returned):
        the runtime wrote it to the container's spec before running it."""
        path = container_dir(self.engine.runtime.state_dir, worker.desired.task_id, name) / "spec.json"
        try:
            value = json.loads(path.read_text()).get("runtimeId")
        except (OSError, ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None

    def container_spec(self, task: DesiredTask, spec: ContainerSpec) -> ContainerSpec:
        """``spec`` with the endpoints' environment (see ``taskmeta.container_env``)."""
        env = taskmeta.container_env(
            task, spec.name, spec.environment, self.host_facts(), self.credentials_uri(task)
        )
        return replace(spec, environment=tuple(env))

    # -- who is asking -----------------------------------------------------------------------------

    def caller(self, vpc_id: str, peer_ip: str) -> TaskWorker | None:
        for worker in self.engine.workers.values():
            eni = worker.desired.eni
            if eni is not None and eni.vpc_id == vpc_id and eni.private_ipv4_address == peer_ip:
                return worker
        return None

    def _handler(
        self, vpc_id: str, serve: Callable[[str, TaskWorker, asyncio.StreamReader, asyncio.StreamWriter], Any]
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                peer = writer.get_extra_info("peername")
                worker = self.caller(vpc_id, peer[0]) if peer else None
                if worker is None:  # not a task of ours: nothing to say
                    log.warning("endpoint refused %s", kv(vpc_id=vpc_id, peer=peer and peer[0]))
                    return
                await serve(vpc_id, worker, reader, writer)
            except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
                pass
            except Exception:
                log.exception("endpoint request failed %s", kv(vpc_id=vpc_id))
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

        return handle

    # -- HTTP --------------------------------------------------------------------------------------

    async def _serve_http(
        self, vpc_id: str, worker: TaskWorker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            async with asyncio.timeout(IDLE_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > MAX_HEAD:
                return
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                return
            method, target, version = parts
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if length:
                await reader.readexactly(min(length, MAX_HEAD))
            status, body = self.answer(worker, method, target)
            keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
            payload = json.dumps(body).encode()
            content = b"" if method == "HEAD" else payload
            writer.write(
                f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: {'keep-alive' if keep else 'close'}\r\n\r\n".encode()
                + content
            )
            await writer.drain()
            if target.startswith("/v2/credentials") or target.startswith("/v1/credentials"):
                log.info(
                    "credentials request %s",
                    kv(task_arn=worker.arn, status=status.value, ua=headers.get("user-agent")),
                )
            if not keep:
                return

    def answer(self, worker: TaskWorker, method: str, target: str) -> tuple[HTTPStatus, Any]:
        """The status and JSON body for a request from ``worker``'s task."""
        url = urlsplit(target)
        path = url.path.rstrip("/") or "/"
        if method not in ("GET", "HEAD"):
            return HTTPStatus.METHOD_NOT_ALLOWED, "Method not allowed"
        if path.startswith("/v2/credentials") or path == "/v1/credentials":
            cid = path.removeprefix("/v2/credentials").strip("/")
            if path == "/v1/credentials":
                cid = (parse_qs(url.query).get("id") or [""])[0]
            return self._credentials(worker, cid)
        parts = path.strip("/").split("/")
        if len(parts) < 2 or parts[0] not in ("v3", "v4"):
            return HTTPStatus.NOT_FOUND, "404 page not found"
        version, cid, rest = parts[0], parts[1], "/".join(parts[2:])
        label = "V4" if version == "v4" else "V3"
        task = worker.desired
        container = next((c for c in task.containers if taskmeta.endpoint_id(task.arn, c.name) == cid), None)
        if container is None:
            return (
                HTTPStatus.NOT_FOUND,
                f"{label} container metadata handler: unable to get task arn from request: "
                f"unable to get container id from request: no container with id {cid}",
            )
        host = self.host_facts(worker)
        v4 = version != "v3"
        if rest == "":
            return HTTPStatus.OK, taskmeta.container_doc(task, worker.known, container, host, v4=v4)
        if rest == "task":
            return HTTPStatus.OK, taskmeta.task_doc(task, worker.known, host, v4=v4)
        if rest == "taskWithTags" and v4:
            return HTTPStatus.OK, taskmeta.task_with_tags_doc(task, worker.known, host)
        if rest == "stats":
            return HTTPStatus.OK, self._stats(worker, container.name)
        if rest == "task/stats":
            out = {}
            for c in task.containers:
                handle = worker.handles.get(c.name)
                if handle is not None and handle.runtime_id:
                    out[handle.runtime_id] = self._stats(worker, c.name)
            return HTTPStatus.OK, out
        return HTTPStatus.NOT_FOUND, "404 page not found"

    def _credentials(self, worker: TaskWorker, cid: str) -> tuple[HTTPStatus, Any]:
        if not cid:
            return HTTPStatus.BAD_REQUEST, {
                "code": "NoIdInRequest",
                "message": "CredentialsV2Request: No ID in the request",
            }
        task = worker.desired
        creds = self.credentials.get(task.arn)
        if cid != taskmeta.credentials_id(task.arn, self.secret) or not task.task_role_arn:
            return HTTPStatus.BAD_REQUEST, {
                "code": "InvalidIdInRequest",
                "message": "CredentialsV2Request: Credentials not found",
            }
        if creds is None:
            return HTTPStatus.SERVICE_UNAVAILABLE, {
                "code": "CredentialsUninitialized",
                "message": "CredentialsV2Request: Credentials uninitialized for ID",
            }
        return HTTPStatus.OK, taskmeta.credentials_doc(creds)

    async def _relay_api(
        self, vpc_id: str, worker: TaskWorker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        assert self.api is not None
        await self.api.serve(reader, writer)

    # -- stats -------------------------------------------------------------------------------------

    def _stats(self, worker: TaskWorker, name: str) -> Any:
        handle = worker.handles.get(name) or ContainerHandle(worker.desired.task_id, name)
        try:
            pid = self.engine.runtime.status(handle).pid
        except Exception:
            pid = None
        if pid is None:
            return None  # not running: ECS answers null for such a container
        try:
            sample = read_sample(pid)
        except OSError:
            return None
        key = handle.runtime_id or f"{worker.arn}/{name}"
        previous = self._previous.get(key)
        self._previous[key] = sample
        return taskmeta.stats_doc(sample, previous, name, handle.runtime_id or "")


def _read(path: Path) -> str:
    return path.read_text()


def _int_file(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroups(pid: int) -> dict[str, Path]:
    """The process's cgroup directory per controller (``""``: the unified v2 hierarchy)."""
    out: dict[str, Path] = {}
    for line in _read(Path(f"/proc/{pid}/cgroup")).splitlines():
        _, controllers, rel = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            base = CGROUP_ROOT if controller == "" else CGROUP_ROOT / controller
            out[controller] = base / rel.lstrip("/")
    if not (CGROUP_ROOT / "cgroup.controllers").exists():
        out.pop("", None)  # v1 (or hybrid): the unified hierarchy there carries no controllers
    return out


def _cgroup_readings(groups: dict[str, Path]) -> dict[str, Any]:
    """cpu (ns), memory and pids from v2 files, or from the v1 controllers' own files."""
    if "" in groups:
        cg = groups[""]
        cpu = taskmeta.parse_flat_keyed(_read(cg / "cpu.stat")) if (cg / "cpu.stat").exists() else {}
        return {
            "cpu": (
                cpu.get("usage_usec", 0) * 1000,
                cpu.get("user_usec", 0) * 1000,
                cpu.get("system_usec", 0) * 1000,
            ),
            "memory": (_int_file(cg / "memory.current"), _int_file(cg / "memory.max")),
            "memory_stats": taskmeta.parse_flat_keyed(_read(cg / "memory.stat"))
            if (cg / "memory.stat").exists()
            else {},
            "pids": (_int_file(cg / "pids.current"), _int_file(cg / "pids.max")),
        }
    acct, mem, pids = groups.get("cpuacct"), groups.get("memory"), groups.get("pids")
    total = _int_file(acct / "cpuacct.usage") if acct else None
    ticks = (
        taskmeta.parse_flat_keyed(_read(acct / "cpuacct.stat"))
        if acct and (acct / "cpuacct.stat").exists()
        else {}
    )
    tick_ns = 1_000_000_000 // _CLK_TCK
    return {
        "cpu": (total or 0, ticks.get("user", 0) * tick_ns, ticks.get("system", 0) * tick_ns),
        "memory": (
            _int_file(mem / "memory.usage_in_bytes") if mem else None,
            _int_file(mem / "memory.limit_in_bytes") if mem else None,
        ),
        "memory_stats": taskmeta.parse_flat_keyed(_read(mem / "memory.stat"))
        if mem and (mem / "memory.stat").exists()
        else {},
        "pids": (
            _int_file(pids / "pids.current") if pids else None,
            _int_file(pids / "pids.max") if pids else None,
        ),
    }


def read_sample(pid: int) -> taskmeta.StatsSample:
    """The process's cgroup (v2, or v1's controllers) and network namespace counters (/proc/<pid>/net/dev)."""
    readings = _cgroup_readings(_cgroups(pid))
    stat_line = _read(Path("/proc/stat")).splitlines()[0].split()[1:]
    system_ns = sum(int(v) for v in stat_line) * 1_000_000_000 // _CLK_TCK
    host_memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    usage, limit = readings["memory"]
    total, user, system = readings["cpu"]
    pids, pids_limit = readings["pids"]
    return taskmeta.StatsSample(
        read_at=time.time(),
        cpu_total_ns=total,
        cpu_user_ns=user,
        cpu_system_ns=system,
        system_cpu_ns=system_ns,
        online_cpus=os.cpu_count() or 1,
        memory_usage=usage or 0,
        memory_limit=min(limit, host_memory) if limit else host_memory,  # "max"/huge: the host's, as Docker
        memory_stats=readings["memory_stats"],
        pids=pids or 0,
        pids_limit=pids_limit,
        networks=taskmeta.parse_net_dev(_read(Path(f"/proc/{pid}/net/dev"))),
    )
