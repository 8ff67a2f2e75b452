"""The web page (`/`) in a real headless chromium against a real daemon: each page loads;
a run is followed from queued to finished; the dispatch form sends typed inputs; cancel,
re-run, re-run from failure, enable and disable act; the timeline shows a fan-out's
branches and the logs a node's output, followed while it runs. What users write (file
names, errors, log lines, descriptions) is shown as text, never run as HTML. Each test
writes a screenshot of its page under its temp folder."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import chromium, new_page
from tests.daemon_fixture import DaemonProcess, free_port

RUN_PAGE = re.compile(r"#/runs/[0-9a-f]{20}$")
HOSTILE = '<img src=x onerror="window.pwned=1">'
SLOW = """\
name: slow
description: 'naps <b>bold</b> <img src=x onerror="window.pwned=1">'
concurrency: {group: naps}
on:
  dispatch:
    inputs:
      seconds: {type: number, default: 0.1, description: how long to nap}
      who: {type: string, required: true}
      loud: {type: boolean, default: false}
      tags: {type: array, default: [a]}
      count: {type: integer, default: 2}
nodes:
  - name: nap
    run: |
      import time
      print("<script>window.pwned=1</script> napping", state["who"], flush=True)
      time.sleep(state["seconds"])
      return {"napped": True}
  - name: check
    run: |
      if state["who"] == "fail":
          raise ValueError('<img src=x onerror="window.pwned=1">')
      return {}
"""
FAN = """\
name: fan
initial_state: {numbers: [3, 1, 4, 2]}
nodes:
  - name: plan
    run: |
      return {"jobs": list(state["numbers"])}
  - name: square
    run: |
      print("squaring", state["job"], flush=True)
      return {"square": state["job"] ** 2}
  - name: collect
    run: |
      return {"squares": [r.state["square"] for r in parallel_results]}
edges:
  - {from: __start__, to: plan}
  - {from: plan, to: square, parallel: true, for_each: "state['jobs']", item_var: job,
     fan_in: collect}
  - {from: square, to: collect}
  - {from: collect, to: __end__}
"""
TIMED = """\
name: timed
on:
  schedule:
    - cron: "0 3 * * *"
nodes:
  - name: a
    run: |
      return {}
"""
QUICK = """\
name: quick
nodes:
  - name: a
    run: |
      if state.get("trigger", {}).get("kind") == "dispatch" and state.get("fail"):
          raise RuntimeError("asked to fail")
      return {}
on:
  dispatch:
    inputs:
      fail: {type: boolean, default: false}
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One daemon for the module's tests (each uses runs of its own)."""
    proc = DaemonProcess(root=tmp_path_factory.mktemp("webui"), port=free_port())
    for name, text in [("slow", SLOW), ("fan", FAN), ("timed", TIMED), ("quick", QUICK)]:
        proc.write(f"{name}.yaml", text)
    proc.write(f"{HOSTILE.replace('/', '')}.yaml", "name: broken\nnodes: [\n")
    proc.start()
    proc.wait_for(lambda: len(proc.get("/api/v1/workflows").json()["workflows"]) == 5)
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        proc.kill()


@pytest.fixture
def page(browser: Browser, daemon: DaemonProcess, tmp_path: Path) -> Iterator[Page]:
    """A fresh page; its screenshot is written to the test's temp folder at the end. No
    script of it may have failed, no hostile text have run, and nothing have been loaded
    from anywhere but the daemon."""
    opened, errors = new_page(browser)
    requested: list[str] = []
    opened.on("request", lambda request: requested.append(request.url))
    yield opened
    opened.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert opened.evaluate("window.pwned") is None, "a user's text ran as HTML"
    assert errors == []
    assert requested and all(url.startswith(f"{daemon.url}/") for url in requested), requested
    opened.context.close()


def open_page(page: Page, daemon: DaemonProcess, fragment: str) -> None:
    page.goto(f"{daemon.url}/{fragment}")


def dispatch(daemon: DaemonProcess, workflow: str, **inputs: Any) -> str:
    return str(daemon.dispatch(workflow, inputs)["id"])


def status_of(daemon: DaemonProcess, run_id: str) -> str:
    return str(daemon.get(f"/api/v1/runs/{run_id}").json()["status"])


def new_run_opened(page: Page, shown: str) -> str:
    """Wait for the page of a run other than `shown` to open; its id."""
    page.wait_for_url(lambda url: bool(RUN_PAGE.search(url)) and not url.endswith(f"/{shown}"))
    return page.url.rsplit("/", 1)[1]


def test_the_page_is_served_by_tead_with_its_files(daemon: DaemonProcess) -> None:
    """`/` is an HTML shell whose policy allows only its own files; every file it names
    is served by the daemon (nothing from elsewhere)."""
    shell = httpx.get(f"{daemon.url}/", timeout=10)
    assert shell.status_code == 200
    assert shell.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in shell.headers["content-security-policy"]
    linked = re.findall(r'(?:href|src)="([^"#]+)"', shell.text)
    assert len(linked) == 6 and all(p.startswith("/ui/static/") for p in linked), linked
    assert "<style>" in shell.text and "'sha256-" in shell.headers["content-security-policy"]
    for path in linked:
        assert httpx.get(f"{daemon.url}{path}", timeout=10).status_code == 200, path


def test_workflows_page_shows_each_file_its_error_triggers_and_next_fire(
    page: Page, daemon: DaemonProcess
) -> None:
    open_page(page, daemon, "#/workflows")
    header = "getComputedStyle(document.querySelector('header')).backgroundColor"
    assert page.evaluate(header) == "rgb(36, 41, 47)"  # the inlined stylesheet applies
    hostile = page.locator("tr[data-workflow]").filter(has_text="broken")
    expect(hostile).to_have_count(0)  # the file's name is the workflow's name
    broken = page.locator("tr[data-workflow]", has=page.locator("pre.load-error"))
    expect(broken).to_have_count(1)
    expect(broken.locator("a.name")).to_have_text(HOSTILE.replace("/", ""))
    expect(broken.locator("pre.load-error")).to_contain_text(".yaml:3:1: invalid YAML")
    expect(broken.locator(".badge")).to_contain_text(["invalid", "enabled"])
    timed = page.locator('tr[data-workflow="timed"]')
    expect(timed).to_contain_text("schedule: cron 0 3 * * *")
    expect(timed.locator(".next-fire")).to_have_text(
        re.compile(r"next: \d{4}-\d\d-\d\d 03:00:00|next: \d{4}")
    )
    slow = page.locator('tr[data-workflow="slow"]')
    expect(slow).to_contain_text('naps <b>bold</b> <img src=x onerror="window.pwned=1">')
    expect(page.locator("main img")).to_have_count(0)


def test_dispatch_form_sends_typed_inputs(page: Page, daemon: DaemonProcess) -> None:
    open_page(page, daemon, "#/workflows")
    page.locator('tr[data-workflow="slow"] button.dispatch').click()
    form = page.locator('form[data-workflow="slow"]')
    expect(form.locator("#input-seconds")).to_have_value("0.1")  # the defaults
    expect(form.locator("#input-tags")).to_have_value('["a"]')
    expect(form.locator("#input-loud")).not_to_be_checked()
    form.locator("button[type=submit]").click()
    expect(form.locator(".error")).to_have_text("who: required")
    form.locator("#input-who").fill("form")
    form.locator("#input-tags").fill("[not json")
    form.locator("button[type=submit]").click()
    expect(form.locator(".error")).to_contain_text("tags: not JSON")
    form.locator("#input-tags").fill('["x", 1]')
    form.locator("#input-count").fill("2.5")
    form.locator("button[type=submit]").click()
    expect(form.locator(".error")).to_have_text('count: "2.5" is not an integer')
    form.locator("#input-count").fill("7")
    form.locator("#input-seconds").fill("0.25")
    form.locator("#input-loud").check()
    form.locator("button[type=submit]").click()
    run_id = new_run_opened(page, "")
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=60_000)
    run = daemon.get(f"/api/v1/runs/{run_id}").json()
    assert run["inputs"] == {
        "seconds": 0.25,
        "who": "form",
        "loud": True,
        "tags": ["x", 1],
        "count": 7,
    }
    assert run["trigger"] == {"kind": "dispatch"}


def test_runs_page_follows_a_run_from_queued_to_finished(page: Page, daemon: DaemonProcess) -> None:
    """Two runs of one concurrency group: the second waits, and the list shows it go from
    queued to running to succeeded without being reloaded."""
    first = dispatch(daemon, "slow", who="first", seconds=5)
    second = dispatch(daemon, "slow", who="second", seconds=1)
    open_page(page, daemon, "#/runs?workflow=slow")
    row = page.locator(f'tr[data-run-id="{second}"]')
    expect(row).to_have_attribute("data-status", "queued")
    expect(row).to_have_attribute("data-status", "running", timeout=60_000)
    expect(row).to_have_attribute("data-status", "succeeded", timeout=60_000)
    expect(page.locator(f'tr[data-run-id="{first}"]')).to_have_attribute("data-status", "succeeded")
    assert status_of(daemon, second) == "succeeded"
    expect(page.locator("tr[data-run-id]").first).to_have_attribute("data-run-id", second)


def test_run_page_follows_the_logs_and_timeline_while_it_runs(
    page: Page, daemon: DaemonProcess
) -> None:
    run_id = dispatch(daemon, "slow", who="follow", seconds=6)
    open_page(page, daemon, f"#/runs/{run_id}")
    logs = page.locator("#logs")
    expect(logs).to_contain_text("nap stdout: <script>window.pwned=1</script> napping follow")
    assert status_of(daemon, run_id) == "running"  # the line came while it ran
    assert logs.get_attribute("data-following") == "1"
    expect(page.locator('.tl-row[data-node="nap"]')).to_have_attribute("data-status", "running")
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator('.tl-row[data-node="check"]')).to_have_attribute("data-status", "succeeded")
    expect(logs).to_have_attribute("data-done", "1")
    assert logs.text_content().count("napping follow") == 1  # each line once


def test_cancel_a_running_run(page: Page, daemon: DaemonProcess) -> None:
    run_id = dispatch(daemon, "slow", who="cancel", seconds=60)
    open_page(page, daemon, f"#/runs/{run_id}")
    expect(page.locator("#run-status")).to_have_text("running", timeout=60_000)
    page.locator("button.cancel").click()
    expect(page.locator("#run-status")).to_have_text("cancelled", timeout=60_000)
    assert status_of(daemon, run_id) == "cancelled"
    expect(page.locator("button.cancel")).to_be_disabled()


def test_failure_details_and_rerun_from_failure(page: Page, daemon: DaemonProcess) -> None:
    run_id = dispatch(daemon, "slow", who="fail", seconds=0)
    assert daemon.wait_run(run_id, timeout_s=60)["status"] == "failed"
    open_page(page, daemon, f"#/runs/{run_id}")
    failure = page.locator("#failure")
    expect(failure).to_contain_text("ValueError")
    expect(failure.locator("pre.message")).to_have_text(HOSTILE)
    expect(failure.locator("pre.traceback")).to_contain_text('slow.yaml", line 22, in check')
    expect(page.locator('.tl-row[data-node="check"]')).to_have_attribute("data-status", "failed")
    page.locator("button.rerun-failure").click()
    resumed = new_run_opened(page, run_id)
    expect(page.locator("#run-status")).to_have_text("failed", timeout=60_000)
    assert daemon.get(f"/api/v1/runs/{resumed}").json()["trigger"]["resumed_from"] == run_id
    expect(page.locator("#logs")).to_have_attribute("data-done", "1")
    assert "napping" not in page.locator("#logs").text_content()  # nap was not run again
    page.locator("button.rerun").click()  # a plain re-run runs every node again
    again = new_run_opened(page, resumed)
    expect(page.locator("#run-status")).to_have_text("failed", timeout=60_000)
    assert daemon.get(f"/api/v1/runs/{again}").json()["trigger"]["rerun_of"] == resumed
    expect(page.locator("#logs")).to_contain_text("napping fail")


def test_timeline_shows_the_fan_out_branches(page: Page, daemon: DaemonProcess) -> None:
    run_id = dispatch(daemon, "fan")
    assert daemon.wait_run(run_id, timeout_s=60)["status"] == "succeeded"
    open_page(page, daemon, f"#/runs/{run_id}")
    rows = page.locator(".tl-row")
    expect(rows).to_have_count(6)
    expect(rows.first).to_have_attribute("data-node", "plan")
    expect(rows.last).to_have_attribute("data-node", "collect")
    branches = page.locator('.tl-row[data-node="square"]')
    expect(branches).to_have_count(4)
    assert sorted(b.get_attribute("data-branch") or "" for b in branches.all()) == [
        f"square[{i}]" for i in range(4)
    ]
    expect(page.locator("#branches tbody tr")).to_have_count(4)
    logs = page.locator("#logs")
    expect(logs).to_contain_text("square [square[2]] stdout: squaring 4")


def enabled(daemon: DaemonProcess, name: str) -> bool:
    listed = daemon.get("/api/v1/workflows").json()["workflows"]
    return bool(next(w for w in listed if w["name"] == name)["enabled"])


def test_enable_and_disable(page: Page, daemon: DaemonProcess) -> None:
    open_page(page, daemon, "#/workflows")
    row = page.locator('tr[data-workflow="timed"]')
    row.locator("button.toggle").click()
    expect(row.locator(".badge").last).to_have_text("disabled")
    expect(row.locator(".next-fire")).to_have_text("next: —")
    assert enabled(daemon, "timed") is False
    row.locator("button.toggle").click()
    expect(row.locator(".badge").last).to_have_text("enabled")
    expect(row.locator(".next-fire")).not_to_have_text("next: —")
    assert enabled(daemon, "timed") is True


def test_runs_page_filters_and_pages(page: Page, daemon: DaemonProcess) -> None:
    ids = [dispatch(daemon, "quick", fail=n == 1) for n in range(3)]
    for run_id in ids:
        daemon.wait_run(run_id, timeout_s=60)
    open_page(page, daemon, "#/runs?workflow=quick&limit=2")
    rows = page.locator("tr[data-run-id]")
    expect(rows).to_have_count(2)
    assert [r.get_attribute("data-run-id") for r in rows.all()] == ids[:0:-1]  # newest first
    page.locator("#older").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-run-id", ids[0])
    page.locator("#newest").click()
    expect(rows).to_have_count(2)
    page.locator("#filter-status").select_option("failed")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-run-id", ids[1])
    assert "workflow=quick" in page.url and "status=failed" in page.url
