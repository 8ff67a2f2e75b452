"""`tead runs rerun --from-failure` against a real daemon: completed nodes and successful
branches are not executed again (counted by files the nodes append to), their recorded
results are used, keyed by branch index whatever order the branches finished in; an
interrupted run (daemon killed) resumes the same way."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import pytest

from tests.daemon_fixture import DaemonProcess
from tests.helpers import fill

Factory = Callable[..., DaemonProcess]
RunTead = Callable[..., subprocess.CompletedProcess[str]]

FLAKY = """\
name: flaky
initial_state: {items: [0, 1, 2, 3]}
nodes:
  - name: prepare
    run: |
      open("counts/prepare", "a").write("x")
      return {"prepared": "yes"}
  - name: work
    run: |
      import os, time
      i = state["item"]
      open(f"counts/work{i}", "a").write("x")
      time.sleep(0.4 * (3 - i))  # the branches finish in reverse order
      if i == 1 and not os.path.exists("fixed"):
          raise ValueError("item 1 broke")
      return {"out": i * 10, "pid": os.getpid()}
  - name: merge
    run: |
      open("counts/merge", "a").write("x")
      if not all(r.success for r in parallel_results):
          raise RuntimeError("a branch failed")
      return {"outs": [r.state["out"] for r in parallel_results]}
edges:
  - {from: __start__, to: prepare}
  - {from: prepare, to: work, parallel: true, for_each: "state['items']", item_var: item,
     fan_in: merge, parallel_strategy: $strategy}
  - {from: work, to: merge}
  - {from: merge, to: __end__}
"""


def _counts(daemon: DaemonProcess) -> dict[str, int]:
    folder = daemon.workflows / "counts"
    return {p.name: len(p.read_text()) for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("strategy", ["thread", "process"])
def test_resume_skips_completed_nodes_and_branches(
    daemon_factory: Factory, tead_cli: RunTead, strategy: str
) -> None:
    daemon = daemon_factory()
    (daemon.workflows / "counts").mkdir(parents=True)
    daemon.write("flaky.yaml", fill(FLAKY, strategy=strategy))
    daemon.start()
    failed = daemon.wait_run(daemon.dispatch("flaky")["id"])
    assert failed["status"] == "failed"
    assert "a branch failed" in failed["error"]
    first = _counts(daemon)
    assert first == {"merge": 1, "prepare": 1, "work0": 1, "work1": 1, "work2": 1, "work3": 1}

    (daemon.workflows / "fixed").write_text("")
    proc = tead_cli("runs", "rerun", failed["id"], "--from-failure", "--url", daemon.url)
    assert proc.returncode == 0, proc.stderr
    resumed = daemon.wait_run(proc.stdout.split()[1])
    assert resumed["status"] == "succeeded", resumed["error"]
    assert resumed["trigger"] == {"kind": "dispatch", "resumed_from": failed["id"]}
    assert resumed["final_state"]["outs"] == [0, 10, 20, 30]  # item order, not finish order
    assert resumed["final_state"]["prepared"] == "yes"  # the recorded update, replayed
    # prepare and the three good branches ran once; item 1 and the fan-in ran again
    assert _counts(daemon) == {
        "merge": 2,
        "prepare": 1,
        "work0": 1,
        "work1": 2,
        "work2": 1,
        "work3": 1,
    }
    states = {b["branch"]: b["state"] for b in resumed["branches"]}
    old = {b["branch"]: b["state"] for b in failed["branches"]}
    assert states["work[0]"]["pid"] == old["work[0]"]["pid"]  # the recorded result itself
    assert states["work[3]"]["pid"] == old["work[3]"]["pid"]

    again = daemon.post(f"/api/v1/runs/{resumed['id']}/rerun", json={"from_failure": True})
    assert again.status_code == 409
    assert again.json()["error"].endswith("succeeded: there is no failure to resume from")


SLOW_LAST = """\
name: slow-last
initial_state: {items: [0, 1, 2]}
nodes:
  - name: prepare
    run: |
      open("counts/prepare", "a").write("x")
  - name: work
    run: |
      import os, time
      i = state["item"]
      open(f"counts/work{i}", "a").write("x")
      if i == 2 and not os.path.exists("fast"):
          time.sleep(120)
      return {"out": i}
  - name: merge
    run: |
      return {"outs": [r.state["out"] for r in parallel_results]}
edges:
  - {from: __start__, to: prepare}
  - {from: prepare, to: work, parallel: true, for_each: "state['items']", item_var: item,
     fan_in: merge}
  - {from: work, to: merge}
  - {from: merge, to: __end__}
"""


def test_an_interrupted_run_resumes_after_a_crash(daemon_factory: Factory) -> None:
    """The daemon is killed (-9) while the last branch runs; after the restart the run is
    interrupted, and resuming it runs only that branch and the fan-in."""
    daemon = daemon_factory()
    (daemon.workflows / "counts").mkdir(parents=True)
    daemon.write("slow.yaml", SLOW_LAST)
    daemon.start()
    run = daemon.dispatch("slow-last")
    daemon.wait_for(
        lambda: {"work0", "work1", "work2"} <= set(_counts(daemon)), what="all branches started"
    )
    time.sleep(1.5)  # the journal is written within a fraction of a second
    daemon.kill()
    (daemon.workflows / "fast").write_text("")
    daemon.start()
    interrupted = daemon.wait_run(run["id"])
    assert interrupted["status"] == "interrupted"
    response = daemon.post(f"/api/v1/runs/{run['id']}/rerun", json={"from_failure": True})
    assert response.status_code == 202, response.text
    resumed = daemon.wait_run(response.json()["id"])
    assert resumed["status"] == "succeeded", resumed["error"]
    assert resumed["final_state"]["outs"] == [0, 1, 2]
    assert _counts(daemon) == {"prepare": 1, "work0": 1, "work1": 1, "work2": 2}


def test_without_a_journal_a_resume_runs_everything_again(daemon_factory: Factory) -> None:
    """`journal: false` (TEAD_JOURNAL): no steps are recorded, so nothing is skipped."""
    daemon = daemon_factory(env={"TEAD_JOURNAL": "false"})
    (daemon.workflows / "counts").mkdir(parents=True)
    daemon.write("flaky.yaml", fill(FLAKY, strategy="thread"))
    daemon.start()
    failed = daemon.wait_run(daemon.dispatch("flaky")["id"])
    assert failed["status"] == "failed"
    (daemon.workflows / "fixed").write_text("")
    response = daemon.post(f"/api/v1/runs/{failed['id']}/rerun", json={"from_failure": True})
    assert response.status_code == 202, response.text
    assert daemon.wait_run(response.json()["id"])["status"] == "succeeded"
    assert set(_counts(daemon).values()) == {2}


REORDERED = """\
name: reordered
nodes:
  - name: list
    run: |
      import datetime
      items = open("items.txt").read().split()
      return {"items": items, "when": datetime.datetime.now()}  # not journaled: runs again
  - name: work
    run: |
      import os
      if state["item"] == "bad" and not os.path.exists("fixed"):
          raise ValueError("bad item")
      return {"out": "processed-" + state["item"]}
  - name: merge
    run: |
      if not all(r.success for r in parallel_results):
          raise RuntimeError("a branch failed")
      return {"outs": [r.state["out"] for r in parallel_results], "when": None}
edges:
  - {from: __start__, to: list}
  - {from: list, to: work, parallel: true, for_each: "state['items']", item_var: item,
     fan_in: merge}
  - {from: work, to: merge}
  - {from: merge, to: __end__}
"""


def test_a_branch_whose_input_changed_runs_again_on_resume(daemon_factory: Factory) -> None:
    """A node before the fan-out ran again on resume and gave the items in another order:
    no branch takes the recorded result of the branch that had its index before."""
    daemon = daemon_factory()
    daemon.write("reordered.yaml", REORDERED)
    (daemon.workflows / "items.txt").write_text("a bad c")
    daemon.start()
    failed = daemon.wait_run(daemon.dispatch("reordered")["id"])
    assert failed["status"] == "failed"
    (daemon.workflows / "items.txt").write_text("c bad a")
    (daemon.workflows / "fixed").write_text("")
    answer = daemon.post(f"/api/v1/runs/{failed['id']}/rerun", json={"from_failure": True})
    assert answer.status_code == 202, answer.text
    resumed = daemon.wait_run(answer.json()["id"])
    assert resumed["status"] == "succeeded", resumed["error"]
    assert resumed["final_state"]["outs"] == ["processed-c", "processed-bad", "processed-a"]
