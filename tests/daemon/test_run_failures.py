"""End to end, on a real daemon: what a failed run keeps (the failing node or branch, the
error, its traceback with the workflow file's line numbers, each node's status and timing,
the state when it failed), how `tead runs show` presents it, run ids given as a unique
prefix, and the metrics of interrupted, queued and failed runs."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest

from tests.daemon.test_daemon_runs import end_of
from tests.daemon_fixture import DaemonProcess
from tests.helpers import daemon_cli, wait_status

Factory = Callable[..., DaemonProcess]

FAILING = """\
name: failing
nodes:
  - name: prepare
    run: |
      return {"prepared": True}
  - name: explode
    run: |
      total = 1
      raise KeyError(f"missing {total}")
"""


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_a_failed_node_is_recorded_with_its_traceback_and_state(
    daemon_factory: Factory, isolation: str
) -> None:
    """The failing node, its error type and message, a traceback naming the workflow file
    and the `run:` line that raised (line 9 of the file), every node's status and timing,
    and the state as it was when it failed; `tead runs show` presents them."""
    d = daemon_factory(env={"TEAD_ISOLATION": isolation})
    path = d.write("failing.yaml", FAILING)
    d.start()
    run_id = d.dispatch("failing")["id"]
    assert end_of(d, run_id, timeout_s=60) == "failed"
    run = d.get(f"/api/v1/runs/{run_id}").json()
    failure = run["failure"]
    assert failure["node"] == "explode" and failure["branch"] == ""
    assert failure["error_type"] == "KeyError" and failure["message"] == "'missing 1'"
    trace = failure["traceback"]
    assert f'File "{path.resolve()}", line 9, in explode' in trace, trace
    assert 'raise KeyError(f"missing {total}")' in trace
    assert "tead/engine" not in trace  # the engine's frames are left out
    assert [(n["node"], n["status"]) for n in run["nodes"]] == [
        ("prepare", "succeeded"),
        ("explode", "failed"),
    ]
    assert all(n["duration_ms"] >= 0 and n["started_at"].endswith("Z") for n in run["nodes"])
    assert run["nodes"][1]["error"] == "KeyError: 'missing 1'"
    assert run["final_state"]["prepared"] is True  # the state when it failed
    shown = daemon_cli(d, "runs", "show", run_id[:12])
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert f"id           {run_id}\n" in text
    assert "  node       explode\n" in text
    assert "  error      KeyError: 'missing 1'\n" in text
    assert f'    File "{path.resolve()}", line 9, in explode' in text
    assert re.search(r"^  explode +failed ", text, re.M)
    assert "state when it failed:" in text


BRANCHY = """\
name: branchy
settings:
  parallel: {strategy: process, fail_fast: true}
nodes:
  - name: start
    run: |
      return {"items": [0, 1, 2]}
  - name: work
    run: |
      if state["item"] == 1:
          raise ValueError("item one is bad")
  - name: merge
edges:
  - {from: __start__, to: start}
  - {from: start, to: work, parallel: true, for_each: "state['items']", item_var: item,
     fan_in: merge}
  - {from: work, to: merge}
  - {from: merge, to: __end__}
"""


def test_a_failed_branch_is_named_and_branches_are_shown(daemon_factory: Factory) -> None:
    """A fail_fast fan-out that loses a process branch: the failure names the branch and
    the original error type; each branch node's status is kept under its branch; `tead
    runs show` names every branch."""
    d = daemon_factory()
    d.write("branchy.yaml", BRANCHY)
    d.start()
    run_id = d.dispatch("branchy")["id"]
    assert end_of(d, run_id, timeout_s=60) == "failed"
    run = d.get(f"/api/v1/runs/{run_id}").json()
    failure = run["failure"]
    assert failure["branch"] == "work[1]" and failure["error_type"] == "ValueError"
    assert "item one is bad" in failure["message"]
    statuses = {(n["branch"], n["node"]): n["status"] for n in run["nodes"]}
    assert statuses[("work[1]", "work")] == "failed"
    assert statuses[("", "start")] == "succeeded"
    shown = daemon_cli(d, "runs", "show", run_id)
    assert "  node       - in branch work[1]\n" in shown.stdout
    assert re.search(r"^  work\[1\] +ValueError: item one is bad", shown.stdout, re.M)
    assert re.search(r"^  work\[1\]/work +failed ", shown.stdout, re.M)


def test_a_crashed_worker_names_the_node_it_was_running(daemon_factory: Factory) -> None:
    """A node that ends its worker (`os._exit`) fails the run with the node named in its
    failure details."""
    d = daemon_factory()
    d.write(
        "leave.yaml",
        "name: leave\nnodes:\n  - name: first\n  - name: bye\n"
        "    run: |\n      import os\n      print('leaving')\n      os._exit(3)\n",
    )
    d.start()
    run_id = d.dispatch("leave")["id"]
    assert end_of(d, run_id, timeout_s=60) == "failed"
    run = d.get(f"/api/v1/runs/{run_id}").json()
    assert run["failure"]["node"] == "bye"
    assert run["failure"]["error_type"] == "WorkerDied"
    assert "exited with code 3" in run["failure"]["message"]
    assert [(n["node"], n["status"]) for n in run["nodes"]] == [
        ("first", "succeeded"),
        ("bye", "running"),
    ]


HELLO = "name: hello\nnodes:\n  - name: a\n    run: |\n      return {'x': 1}\n"


def test_run_ids_are_accepted_by_any_unique_prefix(daemon_factory: Factory) -> None:
    """GET, logs and cancel take a unique prefix of a run id (the CLI too); an ambiguous
    prefix is a clear 400 naming the runs it matches; `tead runs` never cuts an id."""
    d = daemon_factory()
    d.write("hello.yaml", HELLO)
    d.start()
    first, second = d.dispatch("hello")["id"], d.dispatch("hello")["id"]
    for run_id in (first, second):
        assert end_of(d, run_id, timeout_s=60) == "succeeded"
    common = next(i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b)
    unique = first[: common + 1]
    assert d.get(f"/api/v1/runs/{unique}").json()["id"] == first
    assert d.get(f"/api/v1/runs/{unique}/logs").status_code == 200
    cancel = d.post(f"/api/v1/runs/{unique}/cancel")
    assert cancel.status_code == 409 and first in cancel.json()["error"]
    ambiguous = d.get(f"/api/v1/runs/{first[:common]}")
    assert ambiguous.status_code == 400
    error = ambiguous.json()["error"]
    assert "ambiguous" in error and first in error and second in error
    shown = daemon_cli(d, "runs", "show", unique)
    assert shown.returncode == 0 and f"id           {first}" in shown.stdout
    refused = daemon_cli(d, "runs", "show", first[:common])
    assert refused.returncode == 2 and "ambiguous" in refused.stderr
    assert "Traceback" not in refused.stderr
    listed = daemon_cli(d, "runs")
    assert first in listed.stdout and second in listed.stdout


def metric(d: DaemonProcess, line_start: str) -> float | None:
    for line in httpx.get(f"{d.url}/metrics", timeout=10).text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return None


SLOW = "name: {name}\nnodes:\n  - name: a\n    run: |\n      import time\n      time.sleep(60)\n"


def test_metrics_count_interrupted_and_queued_runs(daemon_factory: Factory) -> None:
    """A run found running after a crash counts in tead_runs_total as interrupted; runs
    waiting for a slot show in tead_runs_queued; the daemon's process_* metrics are there;
    a failed run is logged at WARNING."""
    d = daemon_factory(env={"TEAD_MAX_CONCURRENT_RUNS": "1"})
    d.write("slow.yaml", SLOW.format(name="slow"))
    d.write("other.yaml", SLOW.format(name="other"))
    d.write("failing.yaml", FAILING)
    d.start()
    running = d.dispatch("slow")["id"]
    wait_status(d, running, "running", timeout_s=60)
    d.dispatch("other")
    assert metric(d, 'tead_runs_queued{workflow="other"}') == 1.0
    assert (metric(d, "process_resident_memory_bytes") or 0) > 0
    assert metric(d, "process_cpu_seconds_total") is not None
    d.kill()
    d.start()
    assert d.get(f"/api/v1/runs/{running}").json()["status"] == "interrupted"
    interrupted = 'tead_runs_total{status="interrupted",trigger="dispatch",workflow="slow"}'
    assert metric(d, interrupted) == 1.0
    for run in d.runs(status="running") + d.runs(status="queued"):
        d.post(f"/api/v1/runs/{run['id']}/cancel")
    failed = d.dispatch("failing")["id"]
    assert end_of(d, failed, timeout_s=60) == "failed"
    d.wait_for(
        lambda: re.search(rf"WARNING tead.daemon.runs: run {failed} failed", d.logs()),
        timeout_s=10,
        what="the failed run's warning",
    )
