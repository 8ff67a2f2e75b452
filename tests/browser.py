"""Debian's chromium, driven by playwright (no browser download), for the web page's tests,
its screenshots (tools/screenshots.py) and its benchmark (bench/webui_paint.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """A headless chromium, closed at the end."""
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Browser, *, width: int = 1200, height: int = 900) -> tuple[Page, list[str]]:
    """A page in a context of its own (its own sessionStorage), and the list its scripts'
    uncaught errors are added to."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page, errors
