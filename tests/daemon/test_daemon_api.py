"""The daemon's HTTP API (CONTRACT §3), its metrics (§4) and the client commands (§2),
end to end against real `tead serve` processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

import tead
from tests.conftest import RunTead
from tests.daemon_fixture import ROOT, DaemonProcess, free_port
from tests.helpers import samples, wait_loaded, workflow_list

FAN = """
name: fan
description: one branch per item
on:
  dispatch:
    inputs:
      label: {type: string, required: true}
      n: {type: integer, default: 3}
      scale: {type: number}
initial_state:
  base: 10
  label: from-initial-state
  keep: kept
nodes:
  - name: split
  - name: work
    run: |
      return {"value": state["item"] * state["base"]}
  - name: merge
    run: |
      return {"values": [r.state["value"] for r in parallel_results if r.success]}
edges:
  - {from: __start__, to: split}
  - from: split
    to: work
    parallel: true
    for_each: "list(range(state['n']))"
    item_var: item
    fan_in: merge
  - {from: work, to: merge}
  - {from: merge, to: __end__}
"""

MIXED = """
name: mixed
settings:
  parallel:
    timeout_seconds: 0.5
    retry: {max_retries: 1, base_delay: 10ms, retry_on: [ConnectionError]}
nodes:
  - name: start
  - name: ok
    run: |
      return {"v": 1}
  - name: boom
    run: |
      raise ConnectionError("service down")
  - name: slow
    run: |
      import time
      time.sleep(5)
  - name: merge
    run: |
      return {"outcomes": {r.branch: [r.success, r.timeout, r.error_type]
                           for r in parallel_results}}
edges:
  - {from: __start__, to: start}
  - {from: start, to: [ok, boom, slow], parallel: true, fan_in: merge}
  - {from: ok, to: merge}
  - {from: boom, to: merge}
  - {from: slow, to: merge}
  - {from: merge, to: __end__}
"""

BRK = """
name: brk
settings:
  parallel:
    circuit_breaker: {failure_threshold: 1, reset_timeout: 1h}
nodes:
  - name: start
  - name: flaky
    run: |
      raise ConnectionError("always down")
  - name: fine
  - name: merge
    run: |
      return {"results": {r.branch: r.error_type for r in parallel_results}}
edges:
  - {from: __start__, to: start}
  - {from: start, to: [flaky, fine], parallel: true, fan_in: merge}
  - {from: flaky, to: merge}
  - {from: fine, to: merge}
  - {from: merge, to: __end__}
"""

SEQ = """
name: seq
on:
  dispatch:
    inputs:
      i: {type: integer, default: 0}
      fail: {type: boolean, default: false}
nodes:
  - name: step
    run: |
      if state["fail"]:
          raise RuntimeError("asked to fail")
      return {"out": state["i"]}
"""

SLOW = """
name: slow
nodes:
  - name: wait
    run: |
      import time
      time.sleep(30)
"""

BROKEN = """
name: broken
nodes:
  - name: a
    run: [unclosed
"""

ALL_ROUTES = {
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/v1/workflows"),
    ("post", "/api/v1/workflows/{name}/dispatch"),
    ("get", "/api/v1/runs"),
    ("get", "/api/v1/runs/{run_id}"),
    ("post", "/api/v1/runs/{run_id}/cancel"),
    ("get", "/api/v1/breakers"),
    ("post", "/api/v1/breakers/{name}/reset"),
}


def wait_status(daemon: DaemonProcess, run_id: str, status: str) -> dict[str, Any]:
    return dict(
        daemon.wait_for(
            lambda: (r := daemon.get(f"/api/v1/runs/{run_id}").json())["status"] == status and r,
            what=f"run {run_id} to be {status}",
        )
    )


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One daemon for the API and CLI checks, with a few workflows."""
    daemon = DaemonProcess(
        root=tmp_path_factory.mktemp("api"),
        port=free_port(),
        env={"TEAD_STOP_GRACE": "1s"},  # a cancelled `slow` run holds its group 1 s, not 30
    )
    (daemon.workflows / "inbox").mkdir(parents=True)  # for the watch trigger in the metrics test
    for name, text in {
        "fan.yaml": FAN,
        "mixed.yaml": MIXED,
        "brk.yaml": BRK,
        "seq.yaml": SEQ,
        "slow.yaml": SLOW,
        "broken.yaml": BROKEN,
    }.items():
        daemon.write(name, text)
    daemon.start()
    wait_loaded(daemon, {"fan", "mixed", "brk", "seq", "slow"}, {"broken"})
    yield daemon
    try:
        assert daemon.stop() == 0, daemon.logs()[-3000:]
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill()


# --- HTTP API -------------------------------------------------------------------------------


def test_health_ready_and_openapi_list_every_route(api: DaemonProcess) -> None:
    health = api.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert api.get("/readyz").status_code == 200
    doc = api.get("/openapi.json")
    assert doc.status_code == 200
    listed = {(m, p) for p, methods in doc.json()["paths"].items() for m in methods}
    assert listed >= ALL_ROUTES, ALL_ROUTES - listed


class _Assets(HTMLParser):
    """The URLs a page loads: script src, link href, img src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        self.urls += [v for k, v in attrs if k == wanted and v]


def test_docs_page_loads_everything_from_the_daemon(api: DaemonProcess) -> None:
    """/docs works offline: its scripts, style sheet and icon are the daemon's own
    (Swagger UI 5, which reads OpenAPI 3.1), and nothing on the page names another host."""
    page = api.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "://" not in page.text, page.text  # no CDN, no validator badge
    assert "url: '/openapi.json'" in page.text
    assert '"validatorUrl": null' in page.text
    parser = _Assets()
    parser.feed(page.text)
    assert len(parser.urls) == 3, parser.urls
    kinds = {}
    for url in parser.urls:
        assert url.startswith("/docs/static/"), url
        asset = api.get(url)
        assert asset.status_code == 200, url
        kinds[url.rsplit(".", 1)[-1]] = asset
    assert kinds["js"].headers["content-type"].split(";")[0] in (
        "text/javascript",
        "application/javascript",
    )
    assert 'PACKAGE_VERSION:"5.' in kinds["js"].text  # Swagger UI 5
    assert kinds["css"].headers["content-type"].startswith("text/css")
    assert kinds["png"].content.startswith(b"\x89PNG")
    missing = api.get("/docs/static/nothing.js")
    assert missing.status_code == 404
    assert missing.json() == {"error": "Not Found"}


def test_workflows_list_names_paths_triggers_and_errors(api: DaemonProcess) -> None:
    found = workflow_list(api)
    assert {"fan", "mixed", "brk", "seq", "slow", "broken"} <= set(found)
    fan = found["fan"]
    assert fan["valid"] is True
    assert fan["error"] is None
    assert Path(fan["path"]).resolve() == (api.workflows / "fan.yaml").resolve()
    inputs = fan["triggers"]["dispatch"]["inputs"]
    assert inputs["n"]["type"] == "integer"
    assert inputs["n"]["default"] == 3
    assert inputs["label"]["required"] is True
    broken = found["broken"]
    assert broken["valid"] is False
    assert re.search(r"broken\.yaml:\d+:\d+: ", broken["error"]), broken["error"]


def test_dispatch_merges_inputs_over_initial_state_and_records_branches(
    api: DaemonProcess,
) -> None:
    response = api.post("/api/v1/workflows/fan/dispatch", json={"inputs": {"label": "mine"}})
    assert response.status_code == 202, response.text
    queued = response.json()
    assert queued["workflow"] == "fan"
    assert queued["status"] in ("queued", "running")
    assert queued["trigger"]["kind"] == "dispatch"
    run = api.wait_run(queued["id"])
    assert run["id"] == queued["id"]
    assert run["status"] == "succeeded", run
    assert run["error"] is None
    assert run["trigger"] == {"kind": "dispatch"}
    assert run["created_at"] <= run["started_at"] <= run["finished_at"]
    final = run["final_state"]
    assert final["label"] == "mine"  # the input wins over initial_state
    assert final["base"] == 10
    assert final["keep"] == "kept"
    assert final["n"] == 3  # the default was filled in
    assert "scale" not in final  # no default, not given
    assert final["values"] == [0, 10, 20]
    assert run["inputs"] == {"label": "mine", "n": 3}
    branches = run["branches"]
    assert len(branches) == 3
    assert all(b["success"] for b in branches)
    assert [b["state"]["value"] for b in branches] == [0, 10, 20]
    assert {b["fan_in"] for b in branches} == {"merge"}


@pytest.mark.parametrize(
    ("body", "status", "mentions"),
    [
        (b'{"inputs": {"label": ', 400, ""),
        (b'{"inputs": {"label": "x", "n": "three"}}', 422, "'n'"),
        (b'{"inputs": {"label": "x", "n": true}}', 422, "'n'"),
        (b'{"inputs": {"label": "x", "colour": "red"}}', 422, "colour"),
        (b'{"inputs": {"n": 2}}', 422, "label"),
        (b'{"inputs": [1, 2]}', 422, "inputs"),
        (b'{"inputs": {"label": "x"}, "extra": 1}', 422, "extra"),
    ],
)
def test_dispatch_rejects_bad_bodies(
    api: DaemonProcess, body: bytes, status: int, mentions: str
) -> None:
    before = len(api.runs(workflow="fan", limit=1000))
    response = api.post(
        "/api/v1/workflows/fan/dispatch",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error, str)
    assert error
    assert mentions in error
    assert len(api.runs(workflow="fan", limit=1000)) == before  # nothing was queued


def test_unknown_workflow_run_and_breaker_are_404_json(api: DaemonProcess) -> None:
    for response in (
        api.post("/api/v1/workflows/nosuch/dispatch", json={"inputs": {}}),
        api.get("/api/v1/runs/0000deadbeef"),
        api.post("/api/v1/runs/0000deadbeef/cancel"),
        api.post("/api/v1/breakers/nosuch:branch/reset"),
    ):
        assert response.status_code == 404, response.text
        assert response.headers["content-type"].startswith("application/json")
        assert isinstance(response.json()["error"], str)


def test_dispatching_a_workflow_that_does_not_load_is_409(api: DaemonProcess) -> None:
    response = api.post("/api/v1/workflows/broken/dispatch", json={"inputs": {}})
    assert response.status_code == 409, response.text
    assert "broken.yaml" in response.json()["error"]
    assert api.runs(workflow="broken") == []


def test_runs_list_is_newest_first_and_filters(api: DaemonProcess) -> None:
    ids = []
    for i, fail in ((1, False), (2, True), (3, False)):
        ids.append(api.dispatch("seq", {"i": i, "fail": fail})["id"])
    finished = [api.wait_run(run_id) for run_id in ids]
    assert [r["status"] for r in finished] == ["succeeded", "failed", "succeeded"]
    assert "asked to fail" in finished[1]["error"]

    listed = api.runs(workflow="seq")
    assert [r["id"] for r in listed] == ids[::-1]
    assert all(r["workflow"] == "seq" for r in listed)
    assert {"id", "workflow", "trigger", "status", "created_at", "finished_at"} <= set(listed[0])
    assert [r["id"] for r in api.runs(workflow="seq", status="failed")] == [ids[1]]
    assert [r["id"] for r in api.runs(workflow="seq", status="succeeded")] == [ids[2], ids[0]]
    assert [r["id"] for r in api.runs(workflow="seq", limit=2)] == [ids[2], ids[1]]
    assert api.runs(workflow="seq", status="cancelled") == []

    everything = api.runs(limit=1000)
    created = [r["created_at"] for r in everything]
    assert created == sorted(created, reverse=True)
    assert len(api.runs(limit=1)) == 1

    for params in ({"limit": 0}, {"limit": -1}, {"limit": 1001}, {"status": "sleeping"}):
        response = api.get("/api/v1/runs", params=params)
        assert response.status_code == 400, (params, response.text)
        assert isinstance(response.json()["error"], str)


def test_cancel_a_queued_and_a_running_run_then_409(api: DaemonProcess) -> None:
    """Two runs of one concurrency group: cancel the queued one, then the running one."""
    first = api.dispatch("slow")["id"]
    wait_status(api, first, "running")
    second = api.dispatch("slow")["id"]  # same concurrency group: waits
    assert api.get(f"/api/v1/runs/{second}").json()["status"] == "queued"

    response = api.post(f"/api/v1/runs/{second}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    response = api.post(f"/api/v1/runs/{first}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"

    for run_id in (first, second):
        run = api.get(f"/api/v1/runs/{run_id}").json()
        assert run["status"] == "cancelled"
        assert run["finished_at"] is not None
    assert api.get(f"/api/v1/runs/{second}").json()["started_at"] is None

    again = api.post(f"/api/v1/runs/{first}/cancel")
    assert again.status_code == 409, again.text
    assert "cancelled" in again.json()["error"]
    done = api.wait_run(api.dispatch("seq")["id"])
    finished = api.post(f"/api/v1/runs/{done['id']}/cancel")
    assert finished.status_code == 409, finished.text
    assert "succeeded" in finished.json()["error"]
    assert api.get(f"/api/v1/runs/{done['id']}").json()["status"] == "succeeded"


def test_breakers_list_and_reset(api: DaemonProcess) -> None:
    run = api.wait_run(api.dispatch("brk")["id"])
    assert run["final_state"]["results"] == {"flaky": "ConnectionError", "fine": None}
    run = api.wait_run(api.dispatch("brk")["id"])
    assert run["final_state"]["results"] == {"flaky": "CircuitOpenError", "fine": None}

    breakers = {b["name"]: b for b in api.get("/api/v1/breakers").json()["breakers"]}
    flaky = breakers["brk:flaky"]
    assert flaky["state"] == "open"
    assert flaky["failure_count"] >= 1
    assert flaky["opened_at"] is not None
    assert breakers["brk:fine"]["state"] == "closed"

    response = api.post("/api/v1/breakers/brk:flaky/reset")
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "brk:flaky"
    assert response.json()["state"] == "closed"
    breakers = {b["name"]: b for b in api.get("/api/v1/breakers").json()["breakers"]}
    assert breakers["brk:flaky"]["state"] == "closed"
    assert breakers["brk:flaky"]["failure_count"] == 0
    assert breakers["brk:flaky"]["opened_at"] is None
    run = api.wait_run(api.dispatch("brk")["id"])  # closed again: the branch runs
    assert run["final_state"]["results"]["flaky"] == "ConnectionError"


def test_resetting_a_closed_breaker_is_not_a_transition(api: DaemonProcess) -> None:
    """tead_circuit_breaker_transitions_total counts changes only, not every reset."""
    api.wait_run(api.dispatch("brk")["id"])  # brk:fine is known (and closed) now

    def closings() -> float:
        found = samples(api.get("/metrics").text)
        return sum(
            v
            for n, lab, v in found
            if n == "tead_circuit_breaker_transitions_total"
            and lab == {"breaker": "brk:fine", "to": "closed"}
        )

    before = closings()
    for _ in range(3):
        response = api.post("/api/v1/breakers/brk:fine/reset")
        assert response.status_code == 200, response.text
        assert response.json()["state"] == "closed"
    assert closings() == before


# --- metrics --------------------------------------------------------------------------------


def value(found: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    """The sum of the samples `name` whose labels include `labels`."""
    matching = [v for n, lab, v in found if n == name and labels.items() <= lab.items()]
    assert matching, f"no sample {name} {labels}"
    return sum(matching)


def test_metrics_pass_promtool_and_name_every_touched_metric(api: DaemonProcess) -> None:
    """After dispatch, schedule, watch, branch outcomes and an open breaker: CONTRACT §4."""
    api.write("tick.yaml", "name: tick\non:\n  schedule:\n    - every: 1s\nnodes:\n  - name: a\n")
    api.write(
        "watched.yaml",
        "name: watched\non:\n  watch:\n    paths: ['inbox/*.txt']\nnodes:\n  - name: a\n",
    )
    wait_loaded(api, {"tick", "watched"})
    time.sleep(0.5)  # let the watcher settle on its new set of folders
    (api.workflows / "inbox" / "one.txt").write_text("1")
    mixed = api.wait_run(api.dispatch("mixed")["id"])
    assert mixed["final_state"]["outcomes"] == {
        "ok": [True, False, None],
        "boom": [False, False, "ConnectionError"],
        "slow": [False, True, "TimeoutError"],
    }
    api.wait_run(api.dispatch("brk")["id"])
    api.wait_run(api.dispatch("brk")["id"])  # the breaker is open now
    api.wait_run(api.dispatch("seq", {"fail": True})["id"])
    api.wait_for(
        lambda: any(r["status"] == "succeeded" for r in api.runs(workflow="tick")),
        what="a scheduled run of tick",
    )
    api.wait_for(
        lambda: any(r["status"] == "succeeded" for r in api.runs(workflow="watched")),
        what="a watch run of watched",
    )
    (api.workflows / "tick.yaml").unlink()

    text = api.get("/metrics").text
    check = subprocess.run(
        ["promtool", "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr

    found = samples(text)
    names = {n for n, _, _ in found}
    assert value(found, "tead_runs_total", workflow="mixed", trigger="dispatch") >= 1
    assert value(found, "tead_runs_total", workflow="tick", trigger="schedule") >= 1
    assert value(found, "tead_runs_total", workflow="watched", trigger="watch") >= 1
    assert value(found, "tead_runs_total", workflow="seq", status="failed") >= 1
    bounds = {
        float(lab["le"])
        for n, lab, _ in found
        if n == "tead_run_duration_seconds_bucket" and lab["workflow"] == "mixed"
    }
    assert max(b for b in bounds if b != float("inf")) == 7200
    assert min(bounds) <= 0.1
    assert value(found, "tead_run_duration_seconds_count", workflow="mixed") >= 1
    assert "tead_runs_in_progress" in names
    assert value(found, "tead_run_queue_wait_seconds_count", workflow="mixed") >= 1
    assert value(found, "tead_schedule_delay_seconds_count", workflow="tick") >= 1
    assert value(found, "tead_trigger_latency_seconds_count", kind="watch") >= 1
    for outcome in ("success", "error", "timeout"):
        flows = value(found, "tead_parallel_flows_total", workflow="mixed", outcome=outcome)
        assert flows >= 1
    assert value(found, "tead_parallel_flows_total", workflow="brk", outcome="circuit_open") >= 1
    assert value(found, "tead_parallel_flow_duration_seconds_count", workflow="mixed") >= 3
    assert value(found, "tead_parallel_flow_retries_total", workflow="mixed") >= 1
    assert value(found, "tead_parallel_flows_in_flight", strategy="thread") >= 0
    assert value(found, "tead_parallel_fanout_width_count", workflow="fan") >= 1
    assert value(found, "tead_circuit_breaker_state", breaker="brk:flaky") == 2
    assert value(found, "tead_circuit_breaker_transitions_total", breaker="brk:flaky", to="open")
    assert value(found, "tead_workflows_loaded") >= 5
    assert value(found, "tead_workflow_load_errors_total") >= 1
    assert value(found, "tead_build_info", version=tead.__version__) == 1
    for _, labels, _ in found:  # no run ids or paths as label values
        for label in labels.values():
            assert "/" not in label, labels
            assert not re.fullmatch(r"[0-9a-f]{20}", label), labels


# --- bearer token ---------------------------------------------------------------------------

HELLO = "name: hello\nnodes:\n  - name: a\n    run: |\n      return {'hi': 1}\n"


def test_non_loopback_needs_the_bearer_token_for_changes(
    daemon_factory: Callable[..., DaemonProcess], tead_cli: RunTead
) -> None:
    port = free_port()
    daemon = daemon_factory(
        port=port, extra_args=["--listen", f"0.0.0.0:{port}"], env={"TEAD_TOKEN": "secret"}
    )
    daemon.write("hello.yaml", HELLO)
    daemon.headers = {"Authorization": "Bearer secret"}  # every route but the health checks
    daemon.start()
    wait_loaded(daemon, {"hello"})
    path = "/api/v1/workflows/hello/dispatch"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "secret"}):
        refused = daemon.post(path, json={"inputs": {}}, headers=headers)
        assert refused.status_code == 401, refused.text
        assert "token" in refused.json()["error"]
    assert daemon.runs() == []
    good = {"Authorization": "Bearer secret"}
    accepted = daemon.post(path, json={"inputs": {}}, headers=good)
    assert accepted.status_code == 202, accepted.text
    run = daemon.wait_run(accepted.json()["id"])
    assert run["status"] == "succeeded"
    assert daemon.get("/api/v1/workflows").status_code == 200
    assert daemon.get("/api/v1/breakers").status_code == 200
    assert daemon.post(f"/api/v1/runs/{run['id']}/cancel", headers={}).status_code == 401
    assert daemon.post("/api/v1/breakers/x:y/reset", headers={}).status_code == 401
    assert daemon.post(f"/api/v1/runs/{run['id']}/cancel", headers=good).status_code == 409

    refused_cli = tead_cli("dispatch", "hello", "--url", daemon.url)
    assert refused_cli.returncode == 2, refused_cli.stderr
    assert_one_line_error(refused_cli.stderr, "token")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TEAD_TOKEN": "secret"}
    allowed = subprocess.run(
        [sys.executable, "-m", "tead", "dispatch", "hello", "--wait", "--url", daemon.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert allowed.returncode == 0, allowed.stderr
    assert daemon.stop() == 0


def test_non_loopback_without_a_token_refuses_to_start(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    port = free_port()
    daemon = daemon_factory(
        port=port, extra_args=["--listen", f"0.0.0.0:{port}"], env={"TEAD_TOKEN": ""}
    )
    daemon.start(wait=False)
    assert daemon.proc is not None
    assert daemon.proc.wait(timeout=30) == 2
    lines = [line for line in daemon.logs().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "token" in lines[0]
    assert "0.0.0.0" in lines[0]
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{daemon.url}/healthz", timeout=2)


# --- client commands ------------------------------------------------------------------------


def assert_one_line_error(stderr: str, *mentions: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    for text in mentions:
        assert text in lines[0], lines[0]


def table(stdout: str) -> tuple[list[str], list[list[str]]]:
    """A piped table: a header line and tab-separated rows of the same width."""
    header, *rows = [line.split("\t") for line in stdout.splitlines()]
    assert all(len(row) == len(header) for row in rows), stdout
    return header, rows


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def test_cli_workflows(api: DaemonProcess, tead_cli: RunTead) -> None:
    header, rows = table(ok(tead_cli("workflows", "--url", api.url)))
    assert header == ["name", "file", "triggers", "next_fire", "status", "enabled"]
    by_name = {row[0]: row for row in rows}
    assert by_name["fan"][1] == "fan.yaml"
    assert "dispatch" in by_name["fan"][2]
    assert by_name["fan"][4] == "ok"
    assert re.search(r"broken\.yaml:\d+:\d+: ", by_name["broken"][4])
    listed = json.loads(ok(tead_cli("workflows", "--json", "--url", api.url)))
    assert {w["name"]: w["valid"] for w in listed}["broken"] is False
    assert {w["name"] for w in listed} == set(by_name)


def test_cli_runs_list_show_and_cancel(api: DaemonProcess, tead_cli: RunTead) -> None:
    done = api.wait_run(api.dispatch("seq", {"i": 7})["id"])
    failed = api.wait_run(api.dispatch("seq", {"i": 8, "fail": True})["id"])

    header, rows = table(ok(tead_cli("runs", "--workflow", "seq", "--url", api.url)))
    assert header == ["id", "workflow", "trigger", "status", "created", "finished", "error"]
    assert rows[0][0] == failed["id"]
    assert rows[1][0] == done["id"]
    assert {row[1] for row in rows} == {"seq"}
    _, rows = table(
        ok(tead_cli("runs", "--workflow", "seq", "--status", "failed", "--url", api.url))
    )
    assert {row[3] for row in rows} == {"failed"}
    assert failed["id"] in {row[0] for row in rows}
    assert done["id"] not in {row[0] for row in rows}
    _, rows = table(ok(tead_cli("runs", "--workflow", "seq", "--limit", "1", "--url", api.url)))
    assert [row[0] for row in rows] == [failed["id"]]
    listed = json.loads(
        ok(tead_cli("runs", "--workflow", "seq", "--limit", "2", "--json", "--url", api.url))
    )
    assert [r["id"] for r in listed] == [failed["id"], done["id"]]

    shown = ok(tead_cli("runs", "show", done["id"], "--url", api.url))
    assert done["id"] in shown
    assert "succeeded" in shown
    assert '"out": 7' in shown
    as_json = json.loads(ok(tead_cli("runs", "show", done["id"], "--json", "--url", api.url)))
    assert as_json["final_state"]["out"] == 7
    assert as_json["status"] == "succeeded"

    running = api.dispatch("slow")["id"]
    wait_status(api, running, "running")
    assert ok(tead_cli("runs", "cancel", running, "--url", api.url)).strip() == (
        f"run {running} cancelled"
    )
    second = api.dispatch("slow")["id"]
    third = api.dispatch("slow")["id"]  # queued behind the second
    wait_status(api, second, "running")
    cancelled = json.loads(ok(tead_cli("runs", "cancel", third, "--json", "--url", api.url)))
    assert cancelled["id"] == third
    assert cancelled["status"] == "cancelled"
    ok(tead_cli("runs", "cancel", second, "--url", api.url))

    again = tead_cli("runs", "cancel", running, "--url", api.url)
    assert again.returncode == 1
    assert_one_line_error(again.stderr, "cancelled")


def test_cli_dispatch_inputs_and_wait(
    api: DaemonProcess, tead_cli: RunTead, tmp_path: Path
) -> None:
    started = ok(tead_cli("dispatch", "fan", "--input", '{"label": "cli"}', "--url", api.url))
    match = re.fullmatch(r"run (\w+) (queued|running)\n", started)
    assert match, started
    run = api.wait_run(match.group(1))
    assert run["final_state"]["label"] == "cli"
    assert run["final_state"]["values"] == [0, 10, 20]

    inputs = tmp_path / "inputs.yaml"
    inputs.write_text("label: from-yaml\nn: 2\n")
    waited = json.loads(
        ok(
            tead_cli(
                "dispatch", "fan", "--input", f"@{inputs}", "--wait", "--json", "--url", api.url
            )
        )
    )
    assert waited["status"] == "succeeded"
    assert waited["final_state"]["label"] == "from-yaml"
    assert waited["final_state"]["values"] == [0, 10]

    queued = json.loads(ok(tead_cli("dispatch", "seq", "--json", "--url", api.url)))
    assert queued["workflow"] == "seq"
    assert queued["status"] in ("queued", "running")
    assert api.wait_run(queued["id"])["final_state"]["out"] == 0

    shown = ok(tead_cli("dispatch", "seq", "--input", '{"i": 5}', "--wait", "--url", api.url))
    assert "succeeded" in shown
    assert '"out": 5' in shown
    failing = tead_cli("dispatch", "seq", "--input", '{"fail": true}', "--wait", "--url", api.url)
    assert failing.returncode == 1
    assert "failed" in failing.stdout

    bad = tead_cli("dispatch", "fan", "--input", '{"label": 3}', "--url", api.url)
    assert bad.returncode == 2
    assert_one_line_error(bad.stderr, "label")
    unknown = tead_cli("dispatch", "nosuch", "--url", api.url)
    assert unknown.returncode == 2
    assert_one_line_error(unknown.stderr, "nosuch")


def test_cli_breakers_and_reset(api: DaemonProcess, tead_cli: RunTead) -> None:
    api.wait_run(api.dispatch("brk")["id"])  # the breaker opens (threshold 1)
    header, rows = table(ok(tead_cli("breakers", "--url", api.url)))
    assert header == ["name", "state", "failure_count", "opened_at"]
    assert {row[0]: row[1] for row in rows}["brk:flaky"] == "open"
    listed = json.loads(ok(tead_cli("breakers", "--json", "--url", api.url)))
    assert {b["name"]: b["state"] for b in listed}["brk:flaky"] == "open"

    reset = ok(tead_cli("breakers", "reset", "brk:flaky", "--url", api.url))
    assert reset.strip() == "breaker brk:flaky closed"
    states = {b["name"]: b["state"] for b in api.get("/api/v1/breakers").json()["breakers"]}
    assert states["brk:flaky"] == "closed"
    api.wait_run(api.dispatch("brk")["id"])
    as_json = json.loads(ok(tead_cli("breakers", "reset", "brk:flaky", "--json", "--url", api.url)))
    assert as_json["name"] == "brk:flaky"
    assert as_json["state"] == "closed"

    unknown = tead_cli("breakers", "reset", "nosuch:branch", "--url", api.url)
    assert unknown.returncode == 2
    assert_one_line_error(unknown.stderr, "nosuch:branch")


def test_cli_errors_are_one_line(api: DaemonProcess, tead_cli: RunTead) -> None:
    unknown = tead_cli("runs", "show", "0000deadbeef", "--url", api.url)
    assert unknown.returncode == 2
    assert_one_line_error(unknown.stderr, "0000deadbeef")
    bad_status = tead_cli("runs", "--status", "sleeping", "--url", api.url)
    assert bad_status.returncode == 2
    assert_one_line_error(bad_status.stderr, "sleeping")

    nobody = f"http://127.0.0.1:{free_port()}"
    for args in (
        ["workflows"],
        ["runs"],
        ["runs", "show", "abc"],
        ["dispatch", "fan"],
        ["breakers"],
        ["breakers", "reset", "a:b"],
    ):
        down = tead_cli(*args, "--url", nobody)
        assert down.returncode == 1, (args, down.stderr)
        assert_one_line_error(down.stderr, "cannot reach the daemon")
        assert down.stdout == ""


def test_cli_url_before_the_action_is_used(api: DaemonProcess, tead_cli: RunTead) -> None:
    """`tead runs --url U show ID`: options of `runs` apply to its actions too."""
    run = api.wait_run(api.dispatch("seq", {"i": 1})["id"])
    shown = tead_cli("runs", "--url", api.url, "--json", "show", run["id"])
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["id"] == run["id"]
    reset = tead_cli("breakers", "--url", api.url, "reset", "brk:fine")
    assert reset.returncode == 0, reset.stderr
    assert reset.stdout.strip() == "breaker brk:fine closed"
