"""End to end, on a real daemon: run logs (captured per run, node and branch, bounded,
followed while the run runs) and `tead runs logs`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon.test_daemon_runs import end_of
from tests.daemon_fixture import ROOT, DaemonProcess
from tests.helpers import daemon_cli

Factory = Callable[..., DaemonProcess]

# Three branches, each printing LINES lines in turns with its siblings (a short sleep
# between lines), in Python, through logging, and (on the process strategy) below Python.
CHATTY = """\
name: {name}
settings:
  parallel: {{strategy: {strategy}, max_workers: 3}}
nodes:
  - name: start
    run: |
      print("start of", state["tag"])
      return {{"items": [0, 1, 2]}}
  - name: work
    run: |
      import logging, sys, time
      for i in range({lines}):
          print(f"{{state['tag']}} b{{state['item']}} {{i}}")
          if i % 10 == 0:
              print(f"{{state['tag']}} b{{state['item']}} err {{i}}", file=sys.stderr)
          time.sleep(0.002)
      logging.getLogger("work").warning("%s b%s done", state["tag"], state["item"])
      import os
      os.write(1, f"{{state['tag']}} b{{state['item']}} raw\\n".encode())
  - name: merge
    run: |
      print("merged", len(parallel_results), "for", state["tag"])
edges:
  - {{from: __start__, to: start}}
  - from: start
    to: work
    parallel: true
    for_each: "state['items']"
    item_var: item
    fan_in: merge
  - {{from: work, to: merge}}
  - {{from: merge, to: __end__}}
"""
LINES = 60


def logs_of(d: DaemonProcess, run_id: str, **params: Any) -> list[dict[str, Any]]:
    answer = d.get(f"/api/v1/runs/{run_id}/logs", params=params)
    assert answer.status_code == 200, answer.text
    return list(answer.json())


def check_chatty(lines: list[dict[str, Any]], tag: str, *, raw: bool) -> None:
    """Every line of `tag`'s run is there once, attributed to its node and branch, in order
    within its branch; no line of another run. With `raw`, the lines its branches wrote to
    descriptor 1 too (process branches: one branch per process, so each can be told)."""
    raws = [e for e in lines if e["line"].endswith(" raw")]
    lines = [e for e in lines if e not in raws]
    if raw:
        assert sorted((e["line"], e["node"], e["branch"]) for e in raws) == [
            (f"{tag} b{item} raw", "work", f"work[{item}]") for item in range(3)
        ]
    mine = [e for e in lines if e["stream"] in ("stdout", "stderr")]
    assert all(tag in e["line"] for e in mine), [e for e in mine if tag not in e["line"]][:3]
    assert {"node": "start", "branch": ""} | {"line": f"start of {tag}"} in [
        {k: e[k] for k in ("node", "branch", "line")} for e in mine
    ]
    for item in range(3):
        branch = [e for e in mine if e["line"].startswith(f"{tag} b{item} ")]
        out = [e["line"] for e in branch if e["stream"] == "stdout"]
        assert out == [f"{tag} b{item} {i}" for i in range(LINES)]
        err = [e["line"] for e in branch if e["stream"] == "stderr"]
        assert err == [f"{tag} b{item} err {i}" for i in range(0, LINES, 10)]
        assert {(e["node"], e["branch"]) for e in branch} == {("work", f"work[{item}]")}
        logged = [e for e in lines if e["stream"] == "log" and f"{tag} b{item} done" in e["line"]]
        assert len(logged) == 1 and logged[0]["branch"] == f"work[{item}]"
        assert logged[0]["line"] == f"WARNING work: {tag} b{item} done"
    merged = [e for e in mine if e["line"].startswith("merged")]
    assert [(e["node"], e["branch"]) for e in merged] == [("merge", "")]
    times = [e["ts"] for e in lines]
    assert times == sorted(times)


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_branch_output_is_attributed_under_concurrency(
    daemon_factory: Factory, isolation: str
) -> None:
    """Two runs at once (one with thread branches, one with process branches), each with
    three branches printing in turns: every line is kept once, under its own run, node and
    branch, in every isolation; what process branches write below Python comes back
    attributed to its branch."""
    d = daemon_factory(env={"TEAD_ISOLATION": isolation})
    d.write("threads.yaml", CHATTY.format(name="threads", strategy="thread", lines=LINES))
    d.write("procs.yaml", CHATTY.format(name="procs", strategy="process", lines=LINES))
    d.start()
    runs = {
        "T1": d.dispatch("threads", {"tag": "T1"})["id"],
        "P1": d.dispatch("procs", {"tag": "P1"})["id"],
    }
    for tag, run_id in runs.items():
        assert end_of(d, run_id, timeout_s=90) == "succeeded", tag
    for tag, run_id in runs.items():
        check_chatty(logs_of(d, run_id), tag, raw=tag == "P1")
    only = logs_of(d, runs["T1"], node="merge")
    assert [e["line"] for e in only] == ["merged 3 for T1"]


def test_output_below_python_is_attributed_to_the_running_node(daemon_factory: Factory) -> None:
    """A raw write to descriptor 1 and a child process's output land in the run's logs
    under the node that was running."""
    d = daemon_factory()
    d.write(
        "raw.yaml",
        """\
        name: raw
        nodes:
          - name: first
            run: |
              import os, subprocess
              os.write(1, b"raw from first\\n")
              subprocess.run(["sh", "-c", "echo child out; echo child err >&2"], check=True)
          - name: second
            run: |
              import os
              os.write(2, b"raw from second\\n")
        """,
    )
    d.start()
    run_id = d.dispatch("raw")["id"]
    assert end_of(d, run_id, timeout_s=60) == "succeeded"
    found = {(e["stream"], e["line"]): (e["node"], e["branch"]) for e in logs_of(d, run_id)}
    assert found[("stdout", "raw from first")] == ("first", "")
    assert found[("stdout", "child out")] == ("first", "")
    assert found[("stderr", "child err")] == ("first", "")
    assert found[("stderr", "raw from second")] == ("second", "")


def test_the_bound_cuts_a_runs_logs_with_a_marker(daemon_factory: Factory) -> None:
    """`max_log_bytes` (TEAD_MAX_LOG_BYTES) bounds what is kept of a run's output; one
    marker line says where it was cut; the run itself is unaffected."""
    d = daemon_factory(env={"TEAD_MAX_LOG_BYTES": "5000"})
    d.write(
        "loud.yaml",
        """\
        name: loud
        nodes:
          - name: shout
            run: |
              for i in range(2000):
                  print("line", i)
              return {"done": True}
        """,
    )
    d.start()
    run_id = d.dispatch("loud")["id"]
    assert end_of(d, run_id, timeout_s=60) == "succeeded"
    lines = logs_of(d, run_id)
    assert 10 < len(lines) < 200
    kept, marker = lines[:-1], lines[-1]
    assert [e["line"] for e in kept] == [f"line {i}" for i in range(len(kept))]
    assert marker["stream"] == "tead" and "max_log_bytes" in marker["line"]
    assert sum(len(e["line"]) + 40 for e in kept) <= 5000
    assert d.get(f"/api/v1/runs/{run_id}").json()["final_state"]["done"] is True


FOLLOWED = """\
name: slow
nodes:
  - name: talk
    run: |
      import os, time
      print("first", flush=True)
      while not os.path.exists(state["go"]):
          time.sleep(0.05)
      print("second")
"""


def test_follow_streams_a_running_runs_lines_until_it_ends(
    daemon_factory: Factory, tmp_path: Path
) -> None:
    """`?follow=1` sends NDJSON lines while the run runs (the first before the second is
    even written) and ends once the run has ended; `tead runs logs --follow` likewise."""
    d = daemon_factory()
    d.write("slow.yaml", FOLLOWED)
    d.start()
    go = tmp_path / "go"
    run_id = d.dispatch("slow", {"go": str(go)})["id"]
    url = f"{d.url}/api/v1/runs/{run_id}/logs"
    with httpx.stream("GET", url, params={"follow": "1"}, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = response.iter_lines()
        first = json.loads(next(lines))
        assert (first["node"], first["line"]) == ("talk", "first")
        assert d.get(f"/api/v1/runs/{run_id}").json()["status"] == "running"
        follower = subprocess.Popen(
            [sys.executable, "-m", "tead", "runs", "logs", run_id[:10], "-f", "--url", d.url],
            cwd=d.root,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)  # the CLI follower is connected (and has read "first")
        assert follower.poll() is None, follower.communicate()
        go.write_text("go")
        rest = [json.loads(line) for line in lines if line]
    assert [e["line"] for e in rest] == ["second"]
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    shown = out.splitlines()
    assert len(shown) == 2 and shown[0].endswith(" talk stdout: first"), shown
    assert shown[1].endswith(" talk stdout: second")


def test_cli_runs_logs_and_node_filter(daemon_factory: Factory) -> None:
    """`tead runs logs ID --node N` prints that node's lines; `--json` one object a line;
    an unknown run is a clear error."""
    d = daemon_factory()
    d.write("threads.yaml", CHATTY.format(name="threads", strategy="thread", lines=3))
    d.start()
    run_id = d.dispatch("threads", {"tag": "X"})["id"]
    assert end_of(d, run_id, timeout_s=60) == "succeeded"
    shown = daemon_cli(d, "runs", "logs", run_id, "--node", "merge")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0].endswith(" merge stdout: merged 3 for X")
    as_json = daemon_cli(d, "runs", "logs", run_id, "--json")
    entries = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert {e["branch"] for e in entries} == {"", "work[0]", "work[1]", "work[2]"}
    missing = daemon_cli(d, "runs", "logs", "ffffffff")
    assert missing.returncode == 2 and "no run 'ffffffff'" in missing.stderr
    assert "Traceback" not in missing.stderr
