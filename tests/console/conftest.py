"""Console fixtures: one in-process control plane (SQLite) per module, wiped between tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.console.support import Browser
from tests.integration.server import InProcessServer


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    server = InProcessServer(Path(tmp_path_factory.mktemp("console")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def server(console_server: InProcessServer) -> InProcessServer:
    console_server.reset()
    return console_server


@pytest.fixture()
def browser(server: InProcessServer) -> Browser:
    assert server.transport is not None
    return Browser(server.transport)


@pytest.fixture()
def signed_in(browser: Browser) -> Browser:
    page = browser.sign_in()
    assert page.status == 303, page.text
    return browser
