"""The web page where the API needs a token, in a real chromium against a real daemon:
off loopback the shell and its files are served to anyone, but every read and action
needs the token a person types in (kept in the tab's sessionStorage, sent as a bearer
token), and a missing or wrong one gets a clear message in the page; on loopback with a
token set, reads are open and actions need it."""

from __future__ import annotations

import http.client
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import chromium, new_page
from tests.daemon_fixture import DaemonProcess, free_port

TOKEN = "web-s3cret"
HELLO = "name: hello\nnodes:\n  - name: a\n    run: |\n      print('hi', flush=True)\n"
Factory = Callable[..., DaemonProcess]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser, tmp_path: Path) -> Iterator[Page]:
    opened, errors = new_page(browser)
    yield opened
    opened.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert errors == []
    opened.context.close()


def started(factory: Factory, *, off_loopback: bool) -> DaemonProcess:
    port = free_port()
    listen = ["--listen", f"0.0.0.0:{port}"] if off_loopback else []
    daemon = factory(port=port, extra_args=listen, env={"TEAD_TOKEN": TOKEN})
    daemon.headers = {"Authorization": f"Bearer {TOKEN}"}
    daemon.write("hello.yaml", HELLO)
    daemon.start()
    daemon.wait_for(lambda: daemon.get("/api/v1/workflows").json()["workflows"], what="load")
    return daemon


def use_token(page: Page, token: str) -> None:
    page.locator("#token").fill(token)
    page.locator("#token-form button").click()


def test_off_loopback_the_shell_is_open_and_the_data_needs_the_token(
    daemon_factory: Factory, page: Page
) -> None:
    daemon = started(daemon_factory, off_loopback=True)
    run_id = daemon.wait_run(daemon.dispatch("hello")["id"])["id"]
    for path in ("/", "/ui/static/main.js", "/ui/static/tead.css"):
        assert httpx.get(f"{daemon.url}{path}", timeout=10).status_code == 200, path
    # The files' prefix opens nothing else: a path that climbs out of it is no API route.
    for path in ("/ui/static/../api/v1/runs", "/ui/static/%2e%2e/api/v1/runs"):
        connection = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
        connection.request("GET", path)  # sent as it is (httpx would resolve the `..`)
        answer = connection.getresponse()
        assert answer.status == 404 and run_id not in answer.read().decode(), path
        connection.close()
    assert httpx.get(f"{daemon.url}/api/v1/runs", timeout=10).status_code == 401

    page.goto(f"{daemon.url}/#/runs")
    notice = page.locator("#notice")
    expect(notice).to_contain_text("This needs the daemon's API token")
    expect(page.locator("tr[data-run-id]")).to_have_count(0)
    use_token(page, "not-the-token")
    expect(notice).to_contain_text("Wrong token")
    expect(page.locator("tr[data-run-id]")).to_have_count(0)
    use_token(page, TOKEN)
    expect(page.locator(f'tr[data-run-id="{run_id}"]')).to_have_count(1)
    expect(notice).to_have_text("Token kept for this tab.")
    assert page.evaluate("sessionStorage.getItem('tead-token')") == TOKEN
    page.reload()  # kept for the tab
    expect(page.locator(f'tr[data-run-id="{run_id}"]')).to_have_count(1)

    page.goto(f"{daemon.url}/#/workflows")  # an action with the token
    page.locator('tr[data-workflow="hello"] button.dispatch').click()
    page.locator('form[data-workflow="hello"] button[type=submit]').click()
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator("#logs")).to_contain_text("a stdout: hi")


def test_on_loopback_reads_are_open_and_actions_need_the_token(
    daemon_factory: Factory, page: Page
) -> None:
    daemon = started(daemon_factory, off_loopback=False)
    page.goto(f"{daemon.url}/#/workflows")
    row = page.locator('tr[data-workflow="hello"]')
    expect(row).to_have_count(1)  # read without a token
    row.locator("button.toggle").click()
    expect(page.locator("#notice")).to_contain_text("This needs the daemon's API token")
    assert daemon.get("/api/v1/workflows").json()["workflows"][0]["enabled"] is True
    use_token(page, TOKEN)
    page.locator('tr[data-workflow="hello"] button.toggle').click()
    expect(page.locator('tr[data-workflow="hello"] .badge').last).to_have_text("disabled")
    assert daemon.get("/api/v1/workflows").json()["workflows"][0]["enabled"] is False
