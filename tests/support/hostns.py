"""A throwaway network namespace standing for "the host" of a root test.

An agent's host is the network namespace it starts in (its access links, VPC routes, bridge and NAT
table go there). The root tests therefore run in a fresh namespace of their own, so they neither see nor
touch a `taskvpc up` running in the root namespace (``make up``), a leftover of one, or each other's
host access: :func:`throwaway` makes one (``ip netns add``, loopback up), moves the calling thread into
it for the body and deletes it afterwards, even when the body failed.

Namespace membership is per thread, and what a thread creates inherits its namespace: the test's own
sockets (boto3, urllib), the processes it starts (``taskvpc up``, ``aws``, ``ip``, ``nft``, bash) and the
threads it starts all live in the throwaway namespace while the body runs. Named namespaces
(``/run/netns``), mounts and cgroups are not per network namespace: those stay told apart by the tests'
unique prefixes.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Iterator

from taskvpc.agent.drivers import netns


def create(head: str = "tvns") -> str:
    """A new named namespace ``<head><hex>`` with ``lo`` up; its name."""
    name = head + secrets.token_hex(3)
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    return name


def delete(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@contextlib.contextmanager
def entered(name: str | None) -> Iterator[None]:
    """The body with this thread in namespace ``name`` (no switch for None); always back afterwards."""
    if name is None:
        yield
        return
    fd = netns.open_ns(name)
    if fd is None:
        raise FileNotFoundError(f"no network namespace {name}")
    try:
        with netns.entered(fd):
            yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def throwaway(head: str = "tvns") -> Iterator[str]:
    """A fresh namespace, this thread in it for the body, deleted afterwards; yields its name."""
    name = create(head)
    try:
        with entered(name):
            yield name
    finally:
        delete(name)


def current_inode() -> int:
    """The network namespace this thread is in (its nsfs inode), to tell namespaces apart."""
    return os.stat("/proc/thread-self/ns/net").st_ino
