"""Rules for the whole suite.

``@pytest.mark.root`` (or ``pytestmark = pytest.mark.root``) is the one way to say a test needs root
(real namespaces, nftables, runc, file owners): such tests are skipped, not failed, for other users.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# Property tests assert what holds, not how fast: on a loaded 2-core machine (CI, or several suites at
# once) a single example can overrun hypothesis' 200 ms default deadline and fail a correct test.
settings.register_profile("taskvpc", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("taskvpc")

_NOT_ROOT = pytest.mark.skip(reason="needs root: real namespaces, links, nftables, runc or file owners")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    for item in items:
        if item.get_closest_marker("root") is not None:
            item.add_marker(_NOT_ROOT)
