"""Fixtures shared by the root tests.

Every root test module runs in a throwaway network namespace of its own (``tests/support/hostns.py``):
the `taskvpc up`, agents, links, routes and nft tables it makes, and its requests to 127.0.0.1 and to
task addresses "from the host", are all in that namespace, so the suite passes while a `taskvpc up`
runs in the root namespace (``make up``) and never touches it. One namespace per module, not per test,
because some modules share one server or lab between their tests (module-scoped fixtures start inside it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.root.upserver import root_server

__all__ = ["root_server"]


@pytest.fixture(scope="module", autouse=True)
def own_host_namespace() -> Iterator[str | None]:
    """The module's throwaway host namespace (its name), this thread in it; None when not root."""
    if os.geteuid() != 0:
        yield None
        return
    from tests.support import hostns

    with hostns.throwaway() as name:
        yield name
