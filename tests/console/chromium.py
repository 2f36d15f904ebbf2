"""Debian's chromium driven by Playwright (no browser download): the flags measured to work here
(shared/reference/console-notes.md) and a page that records console errors and requests leaving
loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Headless without the sandbox (root cannot have it), and no traffic of the browser's own.
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@dataclass
class Watch:
    """What the pages of one browser context did that a test must find empty."""

    errors: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)

    def page(self, context: Any) -> Any:
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", self._request)
        return page

    def _request(self, request: Any) -> None:
        host = urlsplit(request.url).hostname or ""
        if request.url.startswith(("http:", "https:", "ws:", "wss:")) and not host.startswith("127."):
            self.outside.append(request.url)


def require_chromium() -> None:
    """Root runs `make setup`, which installs chromium: missing there is a failure, elsewhere a skip."""
    if CHROMIUM.exists():
        return
    message = "chromium is not installed: `make setup` as root installs it (Debian package chromium)"
    if os.geteuid() == 0:
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def browser_context() -> Iterator[tuple[Any, Watch]]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    watch = Watch()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            yield context, watch
            context.close()
        finally:
            browser.close()
