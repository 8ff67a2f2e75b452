"""End to end: the process strategy's isolation guarantees, through real `tead serve` and
`tead run` processes: workers do not depend on the working directory, a worker that cannot
start fails only its branches, stopping one attempt kills only its process, and workers
exit within a second of their parent's death."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from tests.daemon.test_daemon_runs import alive, end_of, process_fanout
from tests.daemon_fixture import ROOT, DaemonProcess
from tests.helpers import descendants, fill, final_state

Factory = Callable[..., DaemonProcess]
CONSOLE_SCRIPT = Path(sys.executable).with_name("tead")  # the installed `tead` command
PARENT_DEATH_LIMIT_S = 1.0

FANOUT = """
name: fan
settings:
  parallel: {strategy: process, max_workers: 2}
initial_state: {items: [1, 2, 3]}
nodes:
  - name: src
  - name: work
    run: |
      import os
      return {"pid": os.getpid(), "double": state["item"] * 2}
  - name: join
    run: |
      return {"doubles": [r.state and r.state["double"] for r in parallel_results],
              "errors": [r.error for r in parallel_results],
              "pids": [r.state and r.state["pid"] for r in parallel_results]}
edges:
  - {from: src, to: work, parallel: true, for_each: "state['items']", fan_in: join}
"""


def shadow_tead(folder: Path) -> None:
    """A `tead/` package in `folder` that fails on import, as a project checkout might."""
    (folder / "tead").mkdir(parents=True, exist_ok=True)
    (folder / "tead" / "__init__.py").write_text('raise RuntimeError("the wrong tead")\n')
    (folder / "yaml.py").write_text('raise RuntimeError("the wrong yaml")\n')


def gone_within(pids: set[int], limit_s: float) -> tuple[set[int], float]:
    """Poll until none of `pids` is alive or `limit_s` passed; (still alive, time taken)."""
    started = time.monotonic()
    while True:
        living = {pid for pid in pids if alive(pid)}
        elapsed = time.monotonic() - started
        if not living or elapsed > limit_s:
            return living, elapsed
        time.sleep(0.01)


def wait_files(folder: Path, count: int, timeout_s: float = 60) -> list[Path]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        files = sorted(folder.glob("*.pid"))
        if len(files) >= count:
            return files
        time.sleep(0.05)
    raise AssertionError(f"only {len(list(folder.glob('*.pid')))} of {count} files appeared")


# --- the working directory ------------------------------------------------------------------


def test_tead_run_in_a_folder_that_shadows_tead_runs_process_branches(tmp_path):
    """`tead run` started in a folder holding a failing `tead/` package (and `yaml.py`):
    the workers import the installed tead, not the folder's, and every branch succeeds."""
    shadow_tead(tmp_path)
    (tmp_path / "wf.yaml").write_text(FANOUT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    proc = subprocess.run(
        [str(CONSOLE_SCRIPT), "run", "wf.yaml", "-q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    state = final_state(proc)
    assert state["doubles"] == [2, 4, 6], state["errors"]
    assert os.getpid() not in state["pids"]


def test_the_daemon_in_a_folder_that_shadows_tead_runs_process_branches(
    daemon_factory: Factory,
) -> None:
    """`tead serve` started in a folder holding a failing `tead/` package: a dispatched
    process fan-out succeeds, twice (the pool is kept)."""
    d = daemon_factory(command=[str(CONSOLE_SCRIPT)])
    shadow_tead(d.root)
    d.write("fan.yaml", FANOUT)
    d.start()
    for _ in range(2):
        run = d.wait_run(d.dispatch("fan")["id"], timeout_s=120)
        assert run["status"] == "succeeded", run["error"]
        assert run["final_state"]["doubles"] == [2, 4, 6]
    assert d.stop() == 0


CANNOT_START = """
import sys
if __name__ == "__mp_main__":  # imported again in each worker process: it cannot start
    raise SystemExit("this program cannot be a worker")

import tead

if __name__ == "__main__":
    workflow = tead.load_workflow(sys.argv[1])
    state = workflow.invoke()
    print([[r.branch, r.success, r.error_type, r.error] for r in state["results"]])
    print("after", state["after"])
"""


def test_a_worker_that_cannot_start_fails_its_branches_not_the_run(tmp_path):
    """Worker processes that die before they are ready (here: the main module refuses to
    be imported in them): each branch fails with WorkerCrashedError naming the cause, and
    the run goes on to its fan-in."""
    (tmp_path / "main.py").write_text(CANNOT_START)
    (tmp_path / "wf.yaml").write_text(
        textwrap.dedent(
            """
            settings:
              parallel: {strategy: process, max_workers: 2}
            initial_state: {items: [1, 2, 3]}
            nodes:
              - name: src
              - name: work
              - name: join
                run: |
                  return {"results": parallel_results, "after": "fan-in ran"}
            edges:
              - {from: src, to: work, parallel: true, for_each: "state['items']", fan_in: join}
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "main.py", "wf.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[-1] == "after fan-in ran"
    results = eval(lines[-2])  # a printed list of plain values
    assert [r[:3] for r in results] == [
        [f"work[{i}]", False, "WorkerCrashedError"] for i in range(3)
    ]
    for result in results:
        assert "could not start" in result[3]
        assert "exit code 1" in result[3]


# --- stopping one attempt kills only its process -------------------------------------------

COUNTED = """
import os, time, uuid
marker = os.path.join(state["dir"], f"{state['item']}-{uuid.uuid4().hex}.run")
with open(marker, "w") as f:
    f.write(str(os.getpid()))
time.sleep(0.4)
return {"pid": os.getpid()}
"""

TIMES_OUT = """
name: slow
settings:
  parallel: {strategy: process, max_workers: 2, timeout_seconds: 1.5}
initial_state: {items: [0, 1]}
nodes:
  - name: plan
  - name: branch
    run: |
      import time
      time.sleep(30 if state["item"] == 0 else 0)
  - name: join
    run: |
      return {"timeouts": [r.timeout for r in parallel_results]}
edges:
  - {from: plan, to: branch, parallel: true, for_each: "state['items']", fan_in: join}
  - {from: branch, to: join}
"""


def test_a_timeout_in_one_run_leaves_another_runs_process_branches_alone(
    daemon_factory: Factory, tmp_path: Path
) -> None:
    """Two runs share the daemon's process pool. In one, a branch times out and is killed;
    every branch of the other runs exactly once (one marker file each) and succeeds."""
    marks = tmp_path / "marks"
    marks.mkdir()
    d = daemon_factory()
    d.write("slow.yaml", TIMES_OUT)
    d.write("counted.yaml", process_fanout("counted", COUNTED))
    d.start()
    first = d.dispatch("slow")["id"]
    time.sleep(0.5)  # its sleeping branch holds one worker
    second = d.dispatch("counted", {"items": list(range(8)), "dir": str(marks)})["id"]
    assert end_of(d, first, timeout_s=60) == "succeeded"
    assert end_of(d, second, timeout_s=60) == "succeeded"
    slow_run = d.get(f"/api/v1/runs/{first}").json()
    assert slow_run["final_state"]["timeouts"] == [True, False]
    counted = d.get(f"/api/v1/runs/{second}").json()
    assert counted["final_state"]["ok"] == [True] * 8
    runs_per_item = sorted(p.name.split("-")[0] for p in marks.glob("*.run"))
    assert runs_per_item == [str(i) for i in range(8)]  # each exactly once
    assert d.stop() == 0


# --- parent death --------------------------------------------------------------------------

SLEEPS = """
import os, time
target = os.path.join(state["dir"], str(state["item"]))
with open(target + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.replace(target + ".tmp", target + ".pid")
time.sleep(60)
return {"pid": os.getpid()}
"""


def test_workers_exit_within_a_second_of_a_killed_daemon(
    daemon_factory: Factory, tmp_path: Path
) -> None:
    """kill -9 of a daemon whose process branches are sleeping: every process below it
    (workers, the fork server) is gone within a second."""
    pids = tmp_path / "pids"
    pids.mkdir()
    d = daemon_factory()
    d.write("fan.yaml", process_fanout("fan", SLEEPS))
    d.start()
    d.dispatch("fan", {"dir": str(pids)})
    workers = {int(p.read_text()) for p in wait_files(pids, 2)}
    assert d.proc is not None
    below = descendants(d.proc.pid)
    assert workers <= below
    d.kill()
    living, elapsed = gone_within(below, PARENT_DEATH_LIMIT_S + 1.0)
    assert not living, f"still alive after {elapsed:.2f} s: {sorted(living)}"
    assert elapsed <= PARENT_DEATH_LIMIT_S, f"took {elapsed:.2f} s"


def test_workers_exit_within_a_second_of_a_killed_tead_run(tmp_path):
    """kill -9 of `tead run` while its process branches sleep: its workers are gone within
    a second."""
    pids = tmp_path / "pids"
    pids.mkdir()
    (tmp_path / "wf.yaml").write_text(process_fanout("fan", SLEEPS))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tead",
            "run",
            "wf.yaml",
            "-q",
            "--input",
            fill('{"dir": "$d"}', d=pids),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        workers = {int(p.read_text()) for p in wait_files(pids, 2)}
        below = descendants(proc.pid)
        assert workers <= below
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    living, elapsed = gone_within(below, PARENT_DEATH_LIMIT_S + 1.0)
    assert not living, f"still alive after {elapsed:.2f} s: {sorted(living)}"
    assert elapsed <= PARENT_DEATH_LIMIT_S, f"took {elapsed:.2f} s"


def test_fail_fast_never_starts_the_branches_still_waiting(tead_cli, write_workflow, tmp_path):
    """`fail_fast` with one worker: the first branch fails; the branches waiting for the
    worker are cancelled before they start (none leaves its marker file)."""
    marks = tmp_path / "marks"
    marks.mkdir()
    write_workflow(
        fill(
            """
            settings:
              parallel: {strategy: process, max_workers: 1, fail_fast: true}
            initial_state: {items: [0, 1, 2, 3], dir: "$dir"}
            nodes:
              - name: src
              - name: work
                run: |
                  import os
                  if state["item"] == 0:
                      raise ValueError("first one fails")
                  open(os.path.join(state["dir"], f"{state['item']}.ran"), "w").close()
              - name: join
            edges:
              - {from: src, to: work, parallel: true, for_each: "state['items']", fan_in: join}
            """,
            dir=marks,
        )
    )
    proc = tead_cli("run", "wf.yaml", "-q", timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "failed fast" in proc.stderr
    assert sorted(p.name for p in marks.iterdir()) == []
