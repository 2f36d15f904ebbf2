"""VxlanDriver.observe reads the router's VXLAN device alone, in a namespace full of other links."""

from __future__ import annotations

import os
import subprocess

import pytest

from taskvpc.agent.drivers.vxlan import OverlayError, SeenOverlay, VxlanDriver
from tests.support import hostns

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def test_observe_finds_the_device_among_many_links() -> None:
    router = hostns.create("tvxo")
    try:
        batch = "".join(f"link add tvxo{i} type veth peer name tvxp{i}\n" for i in range(150))  # task veths
        subprocess.run(["ip", "-n", router, "-batch", "-"], input=batch, text=True, check=True)
        driver = VxlanDriver()
        assert driver.observe(router, "tvxvx") == SeenOverlay(None)  # no device yet: not an error
        ip("-n", router, "link", "add", "tvxvx", "mtu", "1450", "type", "vxlan", "id", "4242",
           "local", "127.0.0.1", "dstport", "4789", "nolearning")  # fmt: skip
        ip("-n", router, "link", "set", "tvxvx", "up")
        seen = driver.observe(router, "tvxvx")
        assert seen.device is not None
        assert (seen.device.vni, seen.device.local, seen.device.mtu) == (4242, "127.0.0.1", 1450)
        assert seen.device.up and not seen.device.learning
        with pytest.raises(OverlayError, match="tvxo-no-such-ns"):
            driver.observe("tvxo-no-such-ns", "tvxvx")  # another failure is still an error
    finally:
        hostns.delete(router)
