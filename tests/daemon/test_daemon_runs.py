"""End-to-end checks of the daemon's run queue: concurrency groups, the global limit,
cancellation, timeouts, trigger data, the shared process pool and retention."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon_fixture import DaemonProcess
from tests.helpers import alive, running_then_queued, sleeper, status_of, wait_status, when

Factory = Callable[..., DaemonProcess]
# a stopped run's 30 s node holds its group for stop_grace
QUICK_RELEASE = {"TEAD_STOP_GRACE": "1s"}


#: the fan-in node of process_fanout's workflows: the branches' pids and successes
PIDS_JOIN = """\
  - name: join
    run: |
      return {"results": [r.state.get("pid") for r in parallel_results],
              "ok": [r.success for r in parallel_results]}
"""


#: a branch's code: it writes its pid to `PIDDIR/ITEM.pid` (`piddir` an input), sleeps 30 s
PID_THEN_SLEEP = """
import os, time
target = os.path.join(state["piddir"], str(state["item"]))
with open(target + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.replace(target + ".tmp", target + ".pid")
time.sleep(30)
"""


def process_fanout(name: str, body: str, *, join: str = PIDS_JOIN) -> str:
    """A `strategy: process` fan-out over `state["items"]`; `body` is the branch's code,
    `join` the fan-in node (a `nodes:` entry)."""
    code = "\n".join(f"      {line}" for line in textwrap.dedent(body).strip().splitlines())
    return f"""\
name: {name}
settings:
  parallel: {{strategy: process, max_workers: 2}}
initial_state: {{items: [0, 1]}}
nodes:
  - name: plan
  - name: branch
    run: |
{code}
{join.rstrip()}
edges:
  - {{from: __start__, to: plan}}
  - from: plan
    to: branch
    parallel: true
    for_each: "state['items']"
    item_var: item
    fan_in: join
  - {{from: branch, to: join}}
  - {{from: join, to: __end__}}
"""


def end_of(daemon: DaemonProcess, run_id: str, timeout_s: float = 15) -> str:
    """The run's final status; fails at once (with the log) if the daemon dies meanwhile."""
    assert daemon.proc is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if daemon.proc.poll() is not None:
            raise AssertionError(
                f"the daemon exited {daemon.proc.returncode}:\n{daemon.logs()[-3000:]}"
            )
        try:
            status = status_of(daemon, run_id)
        except httpx.HTTPError:
            status = "unknown"
        if status not in ("queued", "running", "unknown"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end in {timeout_s} s")


def overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two runs' node executions (final states t0..t1) overlapped in time."""
    sa, sb = a["final_state"], b["final_state"]
    return bool(sa["t0"] < sb["t1"] and sb["t0"] < sa["t1"])


def assert_serial(first: dict[str, Any], second: dict[str, Any]) -> None:
    """`second` started only after `first` had finished (node times and run records)."""
    assert first["status"] == second["status"] == "succeeded"
    assert second["final_state"]["t0"] >= first["final_state"]["t1"]
    assert when(second["started_at"]) >= when(first["finished_at"])


# --- concurrency groups ------------------------------------------------------------------------


def test_runs_of_one_workflow_never_overlap(daemon_factory: Factory) -> None:
    """The default group is the workflow's name: the second run waits queued."""
    d = daemon_factory()
    d.write("solo.yaml", sleeper("solo", seconds=1.5))
    d.start()
    first, second = running_then_queued(d, "solo")
    assert status_of(d, first) == "running"
    a, b = d.wait_run(first), d.wait_run(second)
    assert_serial(a, b)


def test_shared_group_serialises_and_other_groups_run_in_parallel(
    daemon_factory: Factory,
) -> None:
    d = daemon_factory()
    shared = "concurrency: {group: shared}"
    d.write("one.yaml", sleeper("one", seconds=1.5, header=shared))
    d.write("two.yaml", sleeper("two", seconds=1.5, header=shared))
    d.write("other.yaml", sleeper("other", seconds=1.5))
    d.start()
    one = d.dispatch("one")["id"]
    wait_status(d, one, "running")
    two = d.dispatch("two")["id"]
    other = d.dispatch("other")["id"]
    wait_status(d, other, "running")
    assert status_of(d, two) == "queued"
    a, b, c = d.wait_run(one), d.wait_run(two), d.wait_run(other)
    assert_serial(a, b)
    assert c["status"] == "succeeded"
    assert overlap(a, c)


def test_cancel_in_progress_cancels_the_running_run(daemon_factory: Factory) -> None:
    d = daemon_factory(env=QUICK_RELEASE)
    header = "concurrency: {cancel_in_progress: true}"
    d.write("latest.yaml", sleeper("latest", seconds=30, header=header))
    d.start()
    old = d.dispatch("latest")["id"]
    wait_status(d, old, "running")
    new = d.dispatch("latest")["id"]
    cancelled = d.wait_run(old, timeout_s=15)
    assert cancelled["status"] == "cancelled"
    assert cancelled["error"]
    wait_status(d, new, "running")
    # a third one cancels the second, which was running
    third = d.dispatch("latest", {"sleep": 0.1})["id"]
    assert d.wait_run(new, timeout_s=15)["status"] == "cancelled"
    assert d.wait_run(third)["status"] == "succeeded"


def test_global_limit_holds_across_groups(daemon_factory: Factory) -> None:
    """TEAD_MAX_CONCURRENT_RUNS=1: runs of different groups still run one at a time."""
    d = daemon_factory(env={"TEAD_MAX_CONCURRENT_RUNS": "1"})
    d.write("left.yaml", sleeper("left", seconds=1.5))
    d.write("right.yaml", sleeper("right", seconds=1.5))
    d.start()
    left, right = running_then_queued(d, "left", "right")
    a, b = d.wait_run(left), d.wait_run(right)
    assert_serial(a, b)
    assert not overlap(a, b)


# --- cancellation and timeouts -------------------------------------------------------------


def test_cancel_a_queued_and_a_running_run(daemon_factory: Factory) -> None:
    d = daemon_factory(env=QUICK_RELEASE)
    d.write("hold.yaml", sleeper("hold", seconds=30))
    d.start()
    running, queued = running_then_queued(d, "hold")

    response = d.post(f"/api/v1/runs/{queued}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    record = d.get(f"/api/v1/runs/{queued}").json()
    assert record["status"] == "cancelled"
    assert record["started_at"] is None
    assert record["finished_at"] is not None

    began = time.monotonic()
    response = d.post(f"/api/v1/runs/{running}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert time.monotonic() - began < 10  # did not wait for the 30 s node
    record = d.get(f"/api/v1/runs/{running}").json()
    assert record["status"] == "cancelled"
    assert (when(record["finished_at"]) - when(record["started_at"])).total_seconds() < 10

    again = d.post(f"/api/v1/runs/{running}/cancel")
    assert again.status_code == 409
    assert "error" in again.json()
    assert d.post("/api/v1/runs/nosuchrun/cancel").status_code == 404
    # the group is free again: a new run starts and finishes
    assert d.wait_run(d.dispatch("hold", {"sleep": 0})["id"])["status"] == "succeeded"


def test_cancel_kills_process_branches(daemon_factory: Factory, tmp_path: Path) -> None:
    """Cancelling a run whose process branches sleep 30 s kills the worker processes."""
    pids = tmp_path / "pids"
    pids.mkdir()
    d = daemon_factory()
    d.write("fan.yaml", process_fanout("fan", PID_THEN_SLEEP + 'return {"pid": os.getpid()}'))
    d.start()
    run = d.dispatch("fan", {"piddir": str(pids)})["id"]
    files = d.wait_for(
        lambda: sorted(pids.glob("*.pid")) if len(list(pids.glob("*.pid"))) == 2 else None,
        timeout_s=30,
        what="both branches to start",
    )
    workers = [int(p.read_text()) for p in files]
    assert all(alive(pid) for pid in workers)
    assert d.proc is not None and d.proc.pid not in workers

    response = d.post(f"/api/v1/runs/{run}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    d.wait_for(
        lambda: not any(alive(pid) for pid in workers),
        timeout_s=15,
        what="the worker processes to be killed",
    )
    assert status_of(d, run) == "cancelled"
    assert d.stop() == 0


def test_whole_run_timeout(daemon_factory: Factory) -> None:
    d = daemon_factory(env=QUICK_RELEASE)
    d.write("slow.yaml", sleeper("slow", seconds=30, header="timeout: 1s"))
    d.start()
    run = d.wait_run(d.dispatch("slow")["id"], timeout_s=20)
    assert run["status"] == "timed_out"
    assert "timed out" in run["error"]
    assert run["final_state"] is None
    assert (when(run["finished_at"]) - when(run["started_at"])).total_seconds() < 10
    # the group is free again
    assert d.wait_run(d.dispatch("slow", {"sleep": 0})["id"])["status"] == "succeeded"


# --- trigger data, process pool, retention -----------------------------------------------------


def test_dispatch_trigger_and_inputs_over_initial_state(daemon_factory: Factory) -> None:
    d = daemon_factory()
    d.write(
        "merge.yaml",
        """
        name: merge
        initial_state: {a: 1, b: 2}
        nodes:
          - name: look
            run: |
              return {"saw": {"a": state["a"], "b": state["b"], "c": state.get("c")},
                      "kind": state["trigger"]["kind"]}
        """,
    )
    d.start()
    run = d.wait_run(d.dispatch("merge", {"b": 3, "c": "new"})["id"])
    assert run["status"] == "succeeded"
    assert run["trigger"] == {"kind": "dispatch"}
    assert run["inputs"] == {"b": 3, "c": "new"}
    state = run["final_state"]
    assert state["trigger"] == {"kind": "dispatch"}
    assert state["saw"] == {"a": 1, "b": 3, "c": "new"}
    assert state["kind"] == "dispatch"
    plain = d.wait_run(d.dispatch("merge")["id"])
    assert plain["final_state"]["saw"] == {"a": 1, "b": 2, "c": None}


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_process_pools_per_isolation(daemon_factory: Factory, isolation: str) -> None:
    """Two dispatched runs with a process fan-out: in the daemon's process (`isolation:
    thread`) they share the pool's worker pids; in run workers each run's branches get
    processes of their own, gone when the run ends."""
    body = """
import os, time
time.sleep(0.5)
return {"pid": os.getpid()}
"""
    d = daemon_factory(env={"TEAD_ISOLATION": isolation})
    d.write("pool.yaml", process_fanout("pool", body))
    d.start()
    first = d.wait_run(d.dispatch("pool")["id"], timeout_s=60)
    second = d.wait_run(d.dispatch("pool")["id"], timeout_s=60)
    assert first["status"] == second["status"] == "succeeded"
    assert first["final_state"]["ok"] == second["final_state"]["ok"] == [True, True]
    pids1, pids2 = first["final_state"]["results"], second["final_state"]["results"]
    assert len(set(pids1)) == 2  # both branches ran at once, on two workers
    assert d.proc is not None and d.proc.pid not in pids1
    if isolation == "thread":
        assert set(pids2) == set(pids1)
        assert all(alive(pid) for pid in pids1)
    else:
        assert not set(pids2) & set(pids1)
        assert not any(alive(pid) for pid in pids1)
    assert d.stop() == 0


def test_retention_prunes_old_finished_runs(daemon_factory: Factory) -> None:
    """TEAD_RETENTION_RUNS=5: once 100 runs have finished, older ones are pruned."""
    d = daemon_factory(env={"TEAD_RETENTION_RUNS": "5"})
    d.write("tick.yaml", "name: tick\nnodes:\n  - name: noop\n")
    d.start()
    ids = [d.dispatch("tick")["id"] for _ in range(120)]
    for run_id in ids[-5:]:
        assert d.wait_run(run_id)["status"] == "succeeded"
    kept = {r["id"] for r in d.runs(workflow="tick", limit=1000)}
    assert len(kept) <= 5 + 20  # pruned at the 100th finished run, at most 20 since
    assert set(ids[-5:]) <= kept  # the newest are kept
    assert not kept & set(ids[:90])  # the old ones are gone
    assert d.get(f"/api/v1/runs/{ids[0]}").status_code == 404


def test_retention_keeps_the_newest_finished_runs(daemon_factory: Factory) -> None:
    """Pruning keeps the newest `retention` finished runs even while runs are queued."""
    d = daemon_factory(env={"TEAD_RETENTION_RUNS": "5"})
    d.write("tock.yaml", sleeper("tock", seconds=0))
    d.start()
    ids = [d.dispatch("tock")["id"] for _ in range(99)]
    d.wait_run(ids[-1])
    hundredth = d.dispatch("tock", {"sleep": 1.5})["id"]  # pruning runs when it finishes
    wait_status(d, hundredth, "running")
    queued = [d.dispatch("tock", {"sleep": 0})["id"] for _ in range(6)]
    d.wait_for(
        lambda: (
            not d.runs(workflow="tock", status="queued")
            and not d.runs(workflow="tock", status="running")
        ),
        what="every run to finish",
    )
    kept = {r["id"] for r in d.runs(workflow="tock", limit=1000)}
    assert not kept & set(ids[:90])  # pruning did happen
    assert set(queued) <= kept
    assert hundredth in kept, "the newest finished run was pruned"
    assert set(ids[-4:]) <= kept, "pruning kept fewer than 5 finished runs"


NO_JSON = {
    "tuplekeys": """
name: tuplekeys
nodes:
  - name: make
    run: |
      return {"grid": {(0, 1): "x"}}
""",
    "cycle": """
name: cycle
nodes:
  - name: start
  - name: loop
    run: |
      me = []
      me.append(me)
      return {"me": me}
  - name: join
    run: |
      return {"n": len(parallel_results)}
edges:
  - {from: __start__, to: start}
  - {from: start, to: [loop], parallel: true, fan_in: join}
  - {from: loop, to: join}
  - {from: join, to: __end__}
""",
}


@pytest.mark.parametrize("name", sorted(NO_JSON))
def test_a_state_without_json_form_ends_only_its_run(daemon_factory: Factory, name: str) -> None:
    """Tuple keys in the final state, or a cycle in a branch's state, do not take the
    daemon down: the run ends and the next run works."""
    d = daemon_factory()
    d.write(f"{name}.yaml", NO_JSON[name])
    d.write("fine.yaml", sleeper("fine", seconds=0))
    d.start()
    assert end_of(d, d.dispatch(name)["id"]) in ("succeeded", "failed")
    assert d.wait_run(d.dispatch("fine")["id"])["status"] == "succeeded"
