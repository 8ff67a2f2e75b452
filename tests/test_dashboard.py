"""The Grafana dashboard (dashboards/tead.json) and the alert rules (dashboards/alerts.yaml)
on a real Prometheus scraping a real daemon that ran a varied set of workflows: every
panel's query returns data, every variable finds values, the rules load and evaluate, and
two alerts fire from what happened (the static promtool tests are in .ci/run)."""

from __future__ import annotations

import html
import json
import math
import re
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tead.daemon.metrics import Metrics
from tests.daemon_fixture import ROOT, DaemonProcess, free_port
from tests.executors.sshd import SshLab
from tools.dashboard_snapshot import panels_of, snapshot

#: the first test also sets up (two daemon starts, a Prometheus): room for a loaded machine
pytestmark = pytest.mark.timeout(300)

DASHBOARD = ROOT / "dashboards" / "tead.json"
ALERTS = ROOT / "dashboards" / "alerts.yaml"

#: what Grafana would put in: the test job, every instance and workflow, a range that
#: spans the whole test
VARIABLES = {
    "$__rate_interval": "5m",
    "$__range": "5m",
    "$__interval": "5m",
    "$job": "tead",
    "$instance": ".*",
    "$workflow": ".*",
}

WORKFLOWS = {
    "ok.yaml": "name: ok\nnodes:\n  - name: a\n    run: |\n      return {'v': 1}\n",
    "fail.yaml": "name: fail\nnodes:\n  - name: a\n    run: |\n      raise RuntimeError('no')\n",
    "late.yaml": """
        name: late
        timeout: 1s
        nodes:
          - name: a
            run: |
              import time
              time.sleep(30)
        """,
    "threads.yaml": """
        name: threads
        settings:
          parallel:
            timeout_seconds: 0.5
            retry: {max_retries: 1, base_delay: 10ms, retry_on: [ConnectionError]}
        nodes:
          - name: start
          - name: fine
          - name: flaky
            run: |
              raise ConnectionError("down")
          - name: slow
            run: |
              import time
              time.sleep(5)
          - name: merge
        edges:
          - {from: __start__, to: start}
          - {from: start, to: [fine, flaky, slow], parallel: true, fan_in: merge}
          - {from: fine, to: merge}
          - {from: flaky, to: merge}
          - {from: slow, to: merge}
          - {from: merge, to: __end__}
        """,
    "procs.yaml": """
        name: procs
        settings:
          parallel:
            strategy: process
            circuit_breaker: {failure_threshold: 1, reset_timeout: 1h}
        nodes:
          - name: start
          - name: square
            run: |
              if state["item"] == 2:
                  raise ConnectionError("down")
              return {"sq": state["item"] ** 2}
          - name: merge
        edges:
          - {from: __start__, to: start}
          - from: start
            to: square
            parallel: true
            for_each: "[1, 2, 3]"
            item_var: item
            fan_in: merge
          - {from: square, to: merge}
          - {from: merge, to: __end__}
        """,
    "tick.yaml": """
        name: tick
        on:
          schedule:
            - every: 1s
          catchup: skip
        nodes:
          - name: a
        """,
    "watched.yaml": """
        name: watched
        on:
          watch:
            paths: ['inbox/*.txt']
        nodes:
          - name: a
        """,
    "broken.yaml": "name: broken\nnodes:\n  - name: a\n    run: [unclosed\n",
}


#: a remote host that refuses connections (nothing listens on port 1)
DEAD_HOST = "root@127.0.0.9:1"


def remote_workflow(lab: SshLab, workdir: Path) -> str:
    """A fan-out of 3 branches on the remote strategy: one real sshd and a dead host."""
    remote = lab.remote(workdir)
    remote["hosts"] = [lab.hosts[0].address, DEAD_HOST]
    return yaml.safe_dump(
        {
            "name": "farmed",
            "settings": {"parallel": {"strategy": "remote", "remote": remote}},
            "nodes": [
                {"name": "start"},
                {"name": "square", "run": "return {'sq': state['item'] ** 2}"},
                {"name": "merge"},
            ],
            "edges": [
                {"from": "__start__", "to": "start"},
                {
                    "from": "start",
                    "to": "square",
                    "parallel": True,
                    "for_each": "[1, 2, 3]",
                    "item_var": "item",
                    "fan_in": "merge",
                },
                {"from": "square", "to": "merge"},
                {"from": "merge", "to": "__end__"},
            ],
        },
        sort_keys=False,
    )


class Prometheus:
    """A `prometheus` server on a free loopback port, scraping one target every second."""

    def __init__(self, root: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.started = time.time()
        root.mkdir()
        rules = root / "alerts.yaml"
        shutil.copy(ALERTS, rules)
        config = root / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: [{json.dumps(str(rules))}]\n"
            "scrape_configs:\n"
            f"  - job_name: tead\n    static_configs: [{{targets: [{json.dumps(target)}]}}]\n"
        )
        self.log = root / "prometheus.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={config}",
                    f"--storage.tsdb.path={root / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=log,
            )

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"prometheus not ready:\n{self.log.read_text()[-3000:]}")

    def api(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", (path, body)
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.api("query", query=expr)["result"])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a Grafana variable the test does not know: {expr}"
    return expr


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel, rows' panels included."""
    found = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                found.append((inner["title"], target["expr"]))
    return found


@pytest.fixture(scope="module")
def lab() -> Iterator[SshLab]:
    """One real sshd (127.0.0.2) for the remote fan-out."""
    lab = SshLab(1)
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory, lab: SshLab) -> Iterator[Prometheus]:
    """A daemon that ran every kind of run and fan-out (remote, on a real sshd and a dead
    host, included), was stopped past three fires of a 1 s schedule (catchup: skip) and
    started again, all scraped by a real Prometheus."""
    root = tmp_path_factory.mktemp("dashboard")
    daemon = DaemonProcess(root=root / "tead", port=free_port(), env={"TEAD_STOP_GRACE": "1s"})
    (daemon.workflows / "inbox").mkdir(parents=True)
    for name, text in WORKFLOWS.items():
        daemon.write(name, text)
    daemon.write("farmed.yaml", remote_workflow(lab, root / "jobs"))
    prometheus = Prometheus(root / "prometheus", f"127.0.0.1:{daemon.port}")
    try:
        prometheus.wait_ready()
        daemon.start()
        # Scraped once before anything ran: the series are there at 0 (issue 13, item 5).
        wait_for(lambda: prometheus.query('tead_runs_total{workflow="fail"}'), "a first scrape")
        (daemon.workflows / "inbox" / "one.txt").write_text("1")
        daemon.wait_run(daemon.dispatch("procs")["id"], timeout_s=60)  # opens the breaker
        runs = [daemon.dispatch(w)["id"] for w in ("ok", "threads", "procs", "late", "farmed")]
        runs += [daemon.dispatch("fail")["id"] for _ in range(3)]
        for run_id in runs:
            daemon.wait_run(run_id, timeout_s=60)
        daemon.wait_for(
            lambda: daemon.runs(workflow="watched") and daemon.runs(workflow="tick"),
            what="a watch run and a scheduled run",
        )
        time.sleep(2)  # scraped again after the last run
        assert daemon.stop() == 0, daemon.logs()[-3000:]
        time.sleep(3.5)  # three fires of tick missed
        daemon.start()
        wait_for(
            lambda: prometheus.query("increase(tead_missed_schedules_total[5m]) > 0"),
            "the missed fires scraped",
        )
        # a gauge starts empty with the daemon: the hosts are known again once tried
        daemon.wait_run(daemon.dispatch("farmed")["id"], timeout_s=60)
        wait_for(lambda: prometheus.query("tead_remote_host_up"), "the hosts scraped again")
        yield prometheus
    finally:
        prometheus.stop()
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill()


def test_every_panel_query_returns_data(scraped: Prometheus) -> None:
    """Each target of each panel, with Grafana's variables filled in, returns at least one
    series with a number (not NaN: a quantile over no increase would be NaN)."""
    queries = panel_queries(json.loads(DASHBOARD.read_text()))
    assert len(queries) >= 25
    empty = []
    for title, expr in queries:
        result = scraped.query(substitute(expr))
        values = [float(r["value"][1]) for r in result]
        if not any(math.isfinite(v) for v in values):
            empty.append(f"{title}: {expr} -> {result}")
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_panels_show_what_happened(scraped: Prometheus, lab: SshLab) -> None:
    """A few panels' numbers, checked against the runs made: failures, time-outs, branch
    outcomes on three strategies, the open breaker, the missed fires after the restart,
    the remote hosts up and down and the commands sent to the live one."""

    def by(expr: str, label: str) -> dict[str, float]:
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in scraped.query(expr)}

    window = "[5m]"
    failed = by(
        f'sum by (workflow) (increase(tead_runs_total{{status="failed"}}{window}))', "workflow"
    )
    assert failed["fail"] >= 2.5  # three failed runs (increase() extrapolates a little)
    timed_out = by(
        f'sum by (workflow) (increase(tead_runs_total{{status="timed_out"}}{window}))', "workflow"
    )
    assert timed_out["late"] >= 0.9
    outcomes = by(
        'sum by (outcome) (increase(tead_parallel_flows_total{strategy="thread"}[5m]))', "outcome"
    )
    assert outcomes["success"] > 0 and outcomes["error"] > 0 and outcomes["timeout"] > 0
    process = by(
        'sum by (outcome) (increase(tead_parallel_flows_total{strategy="process"}[5m]))', "outcome"
    )
    assert process["success"] > 0 and process["circuit_open"] > 0
    states = by("max by (breaker) (tead_circuit_breaker_state)", "breaker")
    assert states["procs:square"] == 2
    missed = by("sum by (workflow) (increase(tead_missed_schedules_total[5m]))", "workflow")
    assert missed["tick"] >= 2  # the 1 s schedule was down for ~3.5 s and then some
    # the remote fan-out (run in a run worker process) reached the daemon's /metrics
    remote = by(
        'sum by (outcome) (increase(tead_parallel_flows_total{strategy="remote"}[5m]))', "outcome"
    )
    assert remote["success"] >= 2.5
    up = by("min by (host) (tead_remote_host_up)", "host")
    sshd = lab.hosts[0].address
    assert up == {sshd: 1, DEAD_HOST: 0}
    commands = by("sum by (host) (increase(tead_remote_commands_total[5m]))", "host")
    assert commands[sshd] >= 2.5 and commands[DEAD_HOST] == 0


def test_the_snapshot_tool_draws_every_panel_with_data(scraped: Prometheus, tmp_path: Path) -> None:
    """tools/dashboard_snapshot.py (the README's picture) on this Prometheus: every panel of
    the JSON is drawn, each with data over the test's time range, and Chromium writes a
    full-page PNG of it."""
    png, page = tmp_path / "dashboard.png", tmp_path / "dashboard.html"
    minutes = (time.time() - scraped.started) / 60
    panels = snapshot(scraped.url, png, minutes=minutes, rate_interval="15s", html_path=page)
    titles = [title for title, _ in panel_queries(json.loads(DASHBOARD.read_text()))]
    drawn = [p for p in panels if p.kind != "row"]
    assert {p.title for p in drawn} == set(titles)
    assert not [p.title for p in drawn if not p.has_data], "panels drawn without data"
    text = page.read_text()
    assert "No data" not in text and all(html.escape(t) in text for t in titles)
    assert text.count("<polyline") >= sum(p.kind == "timeseries" for p in drawn)
    header = png.read_bytes()[:24]
    width, height = struct.unpack(">II", header[16:24])
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and width == 1600 and height > 2500, (width, height)


def test_the_snapshot_command_line(scraped: Prometheus, tmp_path: Path) -> None:
    """`python tools/dashboard_snapshot.py` with its flags writes the PNG and the page and
    names the panels without data (none); bad input gets one line, no traceback."""
    tool = [sys.executable, str(ROOT / "tools" / "dashboard_snapshot.py")]
    png, page = tmp_path / "cli.png", tmp_path / "cli.html"
    flags = ["--minutes", "2", "--rate-interval", "30s", "--var", "job=tead", "--html", str(page)]
    proc = subprocess.run(
        [*tool, "--prometheus", scraped.url, "--out", str(png), *flags],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        proc.stdout.strip() == f"{png}: {len(panels_of(json.loads(DASHBOARD.read_text())))} panels"
    )
    assert png.read_bytes()[:4] == b"\x89PNG" and "Remote hosts up" in page.read_text()
    for bad, message in [
        (["--prometheus", scraped.url, "--var", "job"], "expected NAME=VALUE, got 'job'"),
        (["--prometheus", "http://127.0.0.1:1"], "dashboard_snapshot: "),
        (["--prometheus", scraped.url, "--var", "job=("], "Prometheus refused"),
    ]:
        proc = subprocess.run(
            [*tool, "--out", str(tmp_path / "bad.png"), *bad],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        last = proc.stderr.strip().splitlines()[-1]  # argparse's usage may come first
        assert proc.returncode != 0 and message in last, proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr


def test_every_variable_finds_values(scraped: Prometheus) -> None:
    """The dashboard's `label_values(metric, label)` variables find the test's job, its
    instance and the workflows (asked as Grafana asks: /api/v1/label/<label>/values)."""
    variables = json.loads(DASHBOARD.read_text())["templating"]["list"]
    queries = [v for v in variables if v["type"] == "query"]
    assert {v["name"] for v in queries} == {"job", "instance", "workflow"}
    for variable in queries:
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"]["query"])
        assert match, variable["query"]
        selector, label = substitute(match[1]), match[2]
        values = scraped.api(f"label/{label}/values", **{"match[]": selector})
        assert values, f"variable {variable['name']}: no values for {selector}"
    workflows = scraped.api("label/workflow/values", **{"match[]": "tead_runs_total"})
    assert {"ok", "fail", "late", "threads", "procs", "tick", "watched"} <= set(workflows)


def test_every_name_in_the_dashboard_and_rules_is_a_tead_metric() -> None:
    """No typo: each tead_* name the dashboard and the rules use is one the daemon defines."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
    defined = {
        family.name + suffix
        for family in Metrics().registry.collect()
        for suffix in suffixes.get(family.type, [""])
    } | {"tead_build_info"}
    text = DASHBOARD.read_text() + ALERTS.read_text()
    used = set(re.findall(r"\btead_[a-z_]+", text))
    assert used and not used - defined, sorted(used - defined)


def test_the_alert_rules_run_and_fire_on_what_happened(scraped: Prometheus) -> None:
    """The rules load into a real Prometheus and evaluate without errors; the 3 failed runs
    fire TeadWorkflowFailing and the missed fires TeadSchedulesMissed; the dead remote host
    has TeadRemoteHostDown pending (it fires after 5 minutes), the live one has none."""
    groups = scraped.api("rules")["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(rules) == {
        "TeadDown",
        "TeadWorkflowFailing",
        "TeadRunsQueuedTooLong",
        "TeadSchedulesMissed",
        "TeadCircuitBreakerOpen",
        "TeadRemoteHostDown",
    }

    def firing() -> set[tuple[str, str]] | None:
        alerts = scraped.api("alerts")["alerts"]
        names = {
            (a["labels"]["alertname"], a["labels"].get("workflow", ""))
            for a in alerts
            if a["state"] == "firing"
        }
        wanted = {("TeadWorkflowFailing", "fail"), ("TeadSchedulesMissed", "tick")}
        return names if wanted <= names else None

    names = wait_for(firing, "the two alerts to fire", timeout_s=30)
    assert ("TeadDown", "") not in names
    hosts_down = {
        a["labels"]["host"]: a["state"]
        for a in scraped.api("alerts")["alerts"]
        if a["labels"]["alertname"] == "TeadRemoteHostDown"
    }
    assert hosts_down == {DEAD_HOST: "pending"}
    for rule in scraped.api("rules")["groups"][0]["rules"]:
        assert rule["health"] == "ok", rule
