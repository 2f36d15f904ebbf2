"""Eight console tabs at once in a real browser against a real `taskvpc up --no-agent` on loopback.

Browsers open at most six HTTP/1.1 connections per server, and every console page with live parts holds
one (its event stream): without console.js the seventh tab waits forever. A hidden tab gives its stream
back and takes a new one when shown, with the current state first.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.console.chromium import browser_context
from tests.integration.server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, TaskvpcServer

_SET_VISIBILITY = (
    "state => { Object.defineProperty(document, 'visibilityState', {value: state, configurable: true});"
    " document.dispatchEvent(new Event('visibilitychange')); }"
)


@pytest.fixture()
def live_server(tmp_path: Path) -> Iterator[TaskvpcServer]:
    server = TaskvpcServer(tmp_path / "state").start()
    try:
        yield server
    finally:
        server.stop()


def test_eight_tabs_each_hidden_in_turn_all_load_and_the_shown_one_streams_again(
    live_server: TaskvpcServer,
) -> None:
    from playwright.sync_api import expect

    live_server.client("ecs").create_cluster(clusterName="default")
    with browser_context() as (context, watch):
        page = watch.page(context)
        page.goto(live_server.endpoint + "/console/signin")
        page.get_by_label("Access key ID").fill(ACCESS_KEY_ID)
        page.get_by_label("Secret access key").fill(SECRET_ACCESS_KEY)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Clusters")).to_be_visible()
        page.evaluate(_SET_VISIBILITY, "hidden")
        tabs = []
        for _ in range(8):
            tab = watch.page(context)
            tab.set_default_timeout(10_000)  # a tab left waiting for a connection fails here
            tab.goto(live_server.endpoint + "/console/clusters/default")
            expect(tab.locator("#tasks")).to_contain_text("No tasks")
            tab.evaluate(_SET_VISIBILITY, "hidden")
            tabs.append(tab)
        shown = tabs[0]
        shown.evaluate(
            "window.opened = 0; document.body.addEventListener('htmx:sseOpen', () => window.opened++)"
        )
        shown.evaluate(_SET_VISIBILITY, "visible")
        shown.wait_for_function("window.opened === 1")
        assert shown.locator("[sse-connect]").count() == 1 and shown.locator("[data-sse-paused]").count() == 0
        assert watch.errors == [] and watch.outside == []
