"""The web page against hostile names a workflow may give its inputs (names of the form's
own DOM properties or of Object.prototype's) and hand-edited addresses, in chromium."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser import chromium, new_page
from tests.daemon_fixture import DaemonProcess, free_port
from tests.helpers import naps, wait_loaded

NAMES = """\
name: names
on:
  dispatch:
    inputs:
      addEventListener: {type: string, default: a}
      querySelectorAll: {type: string, default: q}
      __proto__: {type: string, required: true}
      elements: {type: integer, default: 1}
nodes:
  - name: a
    run: |
      return {}
"""


@pytest.fixture
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(root=tmp_path_factory.mktemp("hostile"), port=free_port())
    proc.write("names.yaml", NAMES)
    proc.start()
    proc.wait_for(lambda: len(proc.get("/api/v1/workflows").json()["workflows"]) == 1)
    yield proc
    proc.stop()


@pytest.fixture
def page() -> Iterator[tuple[Page, list[str]]]:
    with chromium() as browser:
        opened, errors = new_page(browser)
        yield opened, errors
        opened.context.close()


def test_dispatch_form_with_inputs_named_like_dom_properties(
    page: tuple[Page, list[str]], daemon: DaemonProcess
) -> None:
    """Inputs named `addEventListener`, `querySelectorAll` (the form's own methods, which
    a form's controls would shadow) and `__proto__` are shown and sent like any other."""
    opened, errors = page
    opened.goto(f"{daemon.url}/#/workflows")
    opened.locator('tr[data-workflow="names"] button.dispatch').click()
    # Located from the page: playwright's own look-ups inside the form trip on the names.
    expect(opened.locator("[data-type]")).to_have_count(4)
    opened.locator("button.primary").click()
    expect(opened.locator("p.error")).to_have_text("__proto__: required")
    opened.locator('[name="__proto__"]').fill("proto")
    opened.locator("button.primary").click()
    opened.wait_for_url("**/#/runs/*")
    run_id = opened.url.rsplit("/", 1)[1]
    run = daemon.wait_run(run_id, timeout_s=60)
    assert run["status"] == "succeeded", run
    assert run["inputs"] == {
        "addEventListener": "a",
        "querySelectorAll": "q",
        "__proto__": "proto",
        "elements": 1,
    }
    assert errors == []


def test_a_run_address_that_is_not_valid_percent_encoding(
    page: tuple[Page, list[str]], daemon: DaemonProcess
) -> None:
    """`#/runs/%E0%A4%A` (a hand-edited address) says there is no such run instead of
    failing to decode it and leaving the page empty."""
    opened, errors = page
    opened.goto(f"{daemon.url}/#/runs/%E0%A4%A")
    expect(opened.locator("#notice")).to_contain_text("no run")
    assert errors == []


def _ms(text: str) -> float:
    """A duration as the page shows it (`850 ms`, `2.50 s`, `1 min 3 s`), in ms."""
    number, unit = text.split()[:2]
    if unit == "ms":
        return float(number)
    assert unit == "s", text
    return float(number) * 1000


def test_a_node_cut_short_by_a_cancel_ends_with_the_run_in_its_timeline(
    page: tuple[Page, list[str]], daemon: DaemonProcess
) -> None:
    """A node still running when its run was cancelled is shown as the run ended
    (cancelled, up to the run's end), not as running on and on since."""
    opened, errors = page
    daemon.write("naps.yaml", naps(60))
    wait_loaded(daemon, {"naps"})
    run_id = daemon.dispatch("naps")["id"]
    daemon.wait_for(
        lambda: len(daemon.get(f"/api/v1/runs/{run_id}").json()["nodes"]) == 2, timeout_s=60
    )
    daemon.post(f"/api/v1/runs/{run_id}/cancel")
    assert daemon.wait_run(run_id, timeout_s=60)["status"] == "cancelled"
    time.sleep(3)  # the page is opened well after the run's end
    opened.goto(f"{daemon.url}/#/runs/{run_id}")
    nap = opened.locator('.tl-row[data-node="nap"]')
    expect(nap).to_have_attribute("data-status", "cancelled")
    expect(nap.locator(".badge")).to_have_text("cancelled")
    ran_for = _ms(opened.locator("#run-time").inner_text())
    assert _ms(nap.locator(".tl-time").inner_text()) <= ran_for
    assert errors == []
