"""What root tests leave on the host: find it by the test's name prefix, remove it, and wait until gone."""

from __future__ import annotations

import subprocess
import time

_LISTINGS = (
    ["ip", "netns", "list"],
    ["ip", "-br", "link"],
    ["ip", "-br", "addr"],
    ["ip", "route"],
    ["nft", "list", "tables"],
)


def _lines(command: list[str]) -> list[str]:
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.splitlines()


def namespaces(prefix: str) -> list[str]:
    return [line.split()[0] for line in _lines(["ip", "netns", "list"]) if line.startswith(prefix)]


def leftovers(prefix: str) -> list[str]:
    """Every namespace, link, address, route and nft table line that mentions ``prefix``."""
    return [f"{' '.join(cmd)}: {line}" for cmd in _LISTINGS for line in _lines(cmd) if prefix in line]


def scrub(prefix: str) -> None:
    """Remove the prefix's namespaces (their veths and tables go with them) and host links."""
    for name in namespaces(prefix):
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    for line in _lines(["ip", "-br", "link"]):
        ifname = line.split()[0].partition("@")[0]
        if ifname.startswith(prefix):
            subprocess.run(["ip", "link", "del", ifname], capture_output=True, check=False)


def wait_clean(prefix: str, timeout: float = 10.0) -> list[str]:
    """The kernel frees namespaces (and the veths in them) asynchronously: poll until nothing is left."""
    deadline = time.monotonic() + timeout
    left = leftovers(prefix)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = leftovers(prefix)
    return left
