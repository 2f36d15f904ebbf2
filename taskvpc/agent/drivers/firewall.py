"""The firewall driver: nftables tables inside a VPC's router namespace, where no task can touch them.

Every packet between two tasks of a VPC (or between the host and a task) is forwarded by the VPC's
router namespace (``netplan.py``), so an ``inet`` table with a ``forward`` hook there sees it with
connection tracking. A task, even root in its own namespace, has no handle on the router namespace: its
``nft list ruleset`` is its own (empty) ruleset, and nothing it does there changes what the router does.

The rules themselves are text (``taskvpc/netmodel/nft_compile.py`` renders them); this driver only loads
text into the right namespace, one atomic transaction per ``apply`` (the whole text commits or nothing
does), and reads tables back for reconciliation and debugging.

How text is loaded (``shared/reference/measurements.md``): libnftables called in-process is about ten
times faster than an ``nft`` process (0.4 ms against 4 ms per apply). The driver loads
``libnftables.so.1`` through ctypes, keeps one context per VPC, and runs each command with the calling
thread switched into the router namespace (``netns.entered``): the context is made there and every
command runs there, so its netlink socket lives in the router namespace whenever libnftables opens it.
When the library cannot be loaded the driver falls back to ``nsenter --net=/run/netns/<router> nft -f -``
(``backend="nsenter"`` forces that path).

Public methods hold a lock: a driver may be shared between threads; calls are serialized.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import socket
import subprocess
import threading
from dataclasses import dataclass
from typing import Any, Literal

from taskvpc.agent import netplan
from taskvpc.agent.drivers import conntrack, netns
from taskvpc.agent.netplan import NetConfig

Backend = Literal["auto", "libnftables", "nsenter"]

NFT_CTX_DEFAULT = 0
NFT_CTX_OUTPUT_HANDLE = 1 << 3
NFT_CTX_OUTPUT_JSON = 1 << 4


class FirewallError(Exception):
    """nftables refused the request; the message carries nft's own error text."""


class RouterMissing(FirewallError):
    """The VPC has no router namespace on this host (``NetlinkDriver.ensure_vpc_router`` makes it)."""


@dataclass(frozen=True)
class RuleCounter:
    """One rule's counter as read back from the kernel (rules without a ``counter`` are not listed)."""

    table: str
    chain: str
    handle: int
    packets: int
    bytes: int
    comment: str | None


def _load_libnftables() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("nftables") or "libnftables.so.1"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_free.restype = None
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_output.restype = ctypes.c_int
    lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_error.restype = ctypes.c_int
    lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
    lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
    lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_output_get_flags.restype = ctypes.c_uint
    lib.nft_ctx_output_get_flags.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_output_set_flags.restype = None
    lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    return lib


_lib_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_lib_tried = False


def libnftables() -> ctypes.CDLL | None:
    """The process-wide libnftables handle, None when the library is not installed."""
    global _lib, _lib_tried
    with _lib_lock:
        if not _lib_tried:
            _lib = _load_libnftables()
            _lib_tried = True
        return _lib


class NftContext:
    """One libnftables context bound to one namespace (made and always used inside it): a VPC router's
    here, an NLB's in ``agent/loadbalancers.py``."""

    def __init__(self, lib: ctypes.CDLL, ns_fd: int) -> None:
        self.lib = lib
        self.fd = ns_fd
        with netns.entered(ns_fd):
            ptr = lib.nft_ctx_new(NFT_CTX_DEFAULT)
        if not ptr:
            os.close(ns_fd)
            raise FirewallError("nft_ctx_new failed")
        self.ptr: int = ptr
        lib.nft_ctx_buffer_output(ptr)
        lib.nft_ctx_buffer_error(ptr)
        self.base_flags: int = lib.nft_ctx_output_get_flags(ptr)
        self._ct: socket.socket | None = None

    def conntrack(self) -> socket.socket:
        """The router's ctnetlink socket, kept open: closing a NETLINK_NETFILTER socket waits for the
        last nft transaction's deferred cleanup (an RCU grace period, 10-20 ms after a delete), which a
        socket per task stop paid every time (serial: 2,000 stops took ~30 s of it)."""
        if self._ct is None:
            sock = netns.netlink_socket_in(self.fd, conntrack.NETLINK_NETFILTER)
            sock.bind((0, 0))
            self._ct = sock
        return self._ct

    def drop_conntrack(self) -> None:
        if self._ct is not None:
            self._ct.close()
            self._ct = None

    def run(self, text: str, flags: int = 0) -> tuple[int, str, str]:
        lib = self.lib
        lib.nft_ctx_output_set_flags(self.ptr, self.base_flags | flags)
        with netns.entered(self.fd):
            rc = lib.nft_run_cmd_from_buffer(self.ptr, text.encode())
        out = (lib.nft_ctx_get_output_buffer(self.ptr) or b"").decode(errors="replace")
        err = (lib.nft_ctx_get_error_buffer(self.ptr) or b"").decode(errors="replace")
        return rc, out, err

    def alive(self, netns_dir: str, name: str) -> bool:
        try:
            st = os.stat(netns.path_of(name, netns_dir))
        except FileNotFoundError:
            return False
        own = os.fstat(self.fd)
        return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)

    def close(self) -> None:
        self.drop_conntrack()
        self.lib.nft_ctx_free(self.ptr)
        os.close(self.fd)


def _is_absent(err: str) -> bool:
    return "No such file or directory" in err or "does not exist" in err


class FirewallDriver:
    """Loads nftables text into VPC router namespaces and reads it back."""

    def __init__(self, cfg: NetConfig, backend: Backend = "auto") -> None:
        self.cfg = cfg
        lib = libnftables() if backend in ("auto", "libnftables") else None
        if backend == "libnftables" and lib is None:
            raise FirewallError("libnftables.so.1 cannot be loaded")
        self._lib = lib
        self.backend: Backend = "libnftables" if lib is not None else "nsenter"
        self._ctxs: dict[str, NftContext] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            for ctx in self._ctxs.values():
                ctx.close()
            self._ctxs.clear()

    def __enter__(self) -> FirewallDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the one primitive ----------------------------------------------------------------------------

    def _ctx(self, vpc_id: str) -> NftContext | None:
        """This VPC's context, remade if the router namespace was replaced; None if there is none."""
        assert self._lib is not None
        name = netplan.router_netns(self.cfg, vpc_id)
        ctx = self._ctxs.get(vpc_id)
        if ctx is not None and ctx.alive(self.cfg.netns_dir, name):
            return ctx
        if ctx is not None:
            ctx.close()
            del self._ctxs[vpc_id]
        fd = netns.open_ns(name, self.cfg.netns_dir)
        if fd is None:
            return None
        ctx = self._ctxs[vpc_id] = NftContext(self._lib, fd)
        return ctx

    def _run(self, vpc_id: str, text: str, flags: int = 0) -> tuple[int, str, str]:
        """``nft -f -`` of ``text`` in the router namespace: (return code, stdout, stderr)."""
        if self._lib is not None:
            ctx = self._ctx(vpc_id)
            if ctx is None:
                raise RouterMissing(f"no router namespace for {vpc_id}")
            return ctx.run(text, flags)
        name = netplan.router_netns(self.cfg, vpc_id)
        fd = netns.open_ns(name, self.cfg.netns_dir)
        if fd is None:
            raise RouterMissing(f"no router namespace for {vpc_id}")
        os.close(fd)
        path = netns.path_of(name, self.cfg.netns_dir)
        args = ["nsenter", f"--net={path}", "nft"]
        if flags & NFT_CTX_OUTPUT_JSON:
            args.append("-j")
        if flags & NFT_CTX_OUTPUT_HANDLE:
            args.append("-a")
        if flags:
            # ``nft -j -f -`` would read its input as JSON: read-only commands go on the command line.
            proc = subprocess.run([*args, *text.split()], capture_output=True, text=True, check=False)
        else:
            proc = subprocess.run([*args, "-f", "-"], input=text, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    # -- public API -----------------------------------------------------------------------------------

    def apply(self, vpc_id: str, nft_text: str) -> None:
        """Load ``nft_text`` (one atomic transaction) in the VPC's router; FirewallError with nft's stderr."""
        with self._lock:
            rc, _, err = self._run(vpc_id, nft_text)
        if rc != 0:
            raise FirewallError(f"nft refused the ruleset for {vpc_id}: {err.strip()}")

    def remove(self, vpc_id: str, table: str, family: str = "inet") -> bool:
        """Delete a table; returns whether it was there ("already absent", router included, is success)."""
        with self._lock:
            try:
                rc, _, err = self._run(vpc_id, f"delete table {family} {table}\n")
            except RouterMissing:
                return False
        if rc == 0:
            return True
        if _is_absent(err):
            return False
        raise FirewallError(f"cannot delete table {family} {table} in {vpc_id}: {err.strip()}")

    def list_tables(self, vpc_id: str, family: str = "inet") -> list[str]:
        """Names of the router's tables of ``family`` (empty when the router does not exist)."""
        with self._lock:
            try:
                rc, out, err = self._run(vpc_id, f"list tables {family}\n", NFT_CTX_OUTPUT_JSON)
            except RouterMissing:
                return []
        if rc != 0:
            raise FirewallError(f"cannot list tables in {vpc_id}: {err.strip()}")
        return sorted(item["table"]["name"] for item in _json_items(out) if "table" in item)

    def list_ruleset(self, vpc_id: str) -> str:
        """The router namespace's whole ruleset, as ``nft -a list ruleset`` prints it (for debugging)."""
        with self._lock:
            rc, out, err = self._run(vpc_id, "list ruleset\n", NFT_CTX_OUTPUT_HANDLE)
        if rc != 0:
            raise FirewallError(f"cannot list the ruleset of {vpc_id}: {err.strip()}")
        return out

    def forget_flows(self, vpc_id: str, ip: str) -> int:
        """Delete the router's tracked connections naming ``ip`` (see ``drivers.conntrack``); how many."""
        if self._lib is not None:
            with self._lock:
                ctx = self._ctx(vpc_id)
                if ctx is None:
                    return 0  # no router, no connections
                try:
                    return conntrack.forget_address(ctx.conntrack(), ip)
                except OSError:
                    ctx.drop_conntrack()  # (a reply may be left unread on it)
                    raise
        fd = netns.open_ns(netplan.router_netns(self.cfg, vpc_id), self.cfg.netns_dir)
        if fd is None:
            return 0  # no router, no connections
        try:
            with netns.netlink_socket_in(fd, conntrack.NETLINK_NETFILTER) as sock:
                sock.bind((0, 0))
                return conntrack.forget_address(sock, ip)
        finally:
            os.close(fd)

    def counters(self, vpc_id: str, table: str, family: str = "inet") -> list[RuleCounter]:
        """Every rule of ``table`` that has a ``counter`` statement, with its packets and bytes."""
        with self._lock:
            rc, out, err = self._run(vpc_id, f"list table {family} {table}\n", NFT_CTX_OUTPUT_JSON)
        if rc != 0:
            raise FirewallError(f"cannot list table {family} {table} in {vpc_id}: {err.strip()}")
        found = []
        for item in _json_items(out):
            rule = item.get("rule")
            if rule is None:
                continue
            for stmt in rule.get("expr", []):
                counter = stmt.get("counter") if isinstance(stmt, dict) else None
                if isinstance(counter, dict):
                    found.append(
                        RuleCounter(
                            table=rule["table"],
                            chain=rule["chain"],
                            handle=int(rule["handle"]),
                            packets=int(counter["packets"]),
                            bytes=int(counter["bytes"]),
                            comment=rule.get("comment"),
                        )
                    )
                    break
        return found


def _json_items(out: str) -> list[dict[str, Any]]:
    if not out.strip():
        return []
    items: list[dict[str, Any]] = json.loads(out).get("nftables", [])
    return items
