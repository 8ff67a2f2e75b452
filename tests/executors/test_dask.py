"""The dask strategy against a real cluster: a `dask scheduler` and two `dask worker`
processes on loopback (tests/dask_fixture.py), and `address: local`."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from distributed import Client

import tead
from tead.errors import DaskClusterError
from tead.executors.dask.worker import run_branch
from tests.conftest import EXAMPLES, RunTead
from tests.daemon_fixture import DaemonProcess
from tests.dask_fixture import DaskProcesses
from tests.executors.dask_common import ended, held_workflow, kill_a_worker_of
from tests.helpers import alive, samples, start_tead, timed_run, wait_loaded

FANOUT_EXAMPLES = sorted(
    path.name
    for path in EXAMPLES.glob("*.yaml")
    if "parallel" in path.read_text(encoding="utf-8") and path.name != "thumbnails.yaml"
)
#: examples whose state says which process ran what (the thread strategy's differs)
PROCESS_EXAMPLES = ("strategy_per_edge.yaml", "strategy_process.yaml")


def with_strategy(text: str, strategy: str, address: str | None = None) -> str:
    """A workflow's text with every fan-out on `strategy` (per-edge strategies dropped)."""
    doc = yaml.safe_load(text)
    parallel = doc.setdefault("settings", {}).setdefault("parallel", {})
    parallel["strategy"] = strategy
    if address is not None:
        parallel["dask"] = {"address": address}
    for edge in doc.get("edges", []):
        edge.pop("parallel_strategy", None)
    return yaml.safe_dump(doc, sort_keys=False)


def run_output(tead_cli: RunTead, folder: Path, example: str) -> tuple[int, Any]:
    """`tead run --output` of an example in `folder`: exit code and output (or last line)."""
    out = folder / f"{example}.out.json"
    proc = tead_cli("run", str(folder / example), "--output", str(out), "-q", timeout=120)
    if proc.returncode != 0:
        return proc.returncode, proc.stderr.splitlines()[-1:]
    state = json.loads(out.read_text(encoding="utf-8"))
    state.pop("main_pid", None)  # the pid of the `tead run` process
    state.pop("distinct_workers", None)  # how a pool spread the work (`distinct_workers_ok` stays)
    return 0, state


@pytest.fixture(scope="module")
def example_copies(
    tmp_path_factory: pytest.TempPathFactory, dask_cluster: DaskProcesses
) -> dict[str, Path]:
    """The examples folder, copied once per strategy with every fan-out on it."""
    copies = {}
    for strategy in ("thread", "process", "dask"):
        folder = tmp_path_factory.mktemp(f"examples-{strategy}")
        shutil.copytree(EXAMPLES, folder, dirs_exist_ok=True)
        address = dask_cluster.address if strategy == "dask" else None
        for name in FANOUT_EXAMPLES:
            text = (EXAMPLES / name).read_text(encoding="utf-8")
            (folder / name).write_text(with_strategy(text, strategy, address), encoding="utf-8")
        copies[strategy] = folder
    return copies


@pytest.mark.parametrize("example", FANOUT_EXAMPLES)
def test_examples_give_the_same_output_as_thread_and_process(
    tead_cli: RunTead, example_copies: dict[str, Path], example: str
) -> None:
    """Each example with fan-outs writes the same `--output` on dask as on threads (or, for
    those that report which process ran a branch, as on worker processes)."""
    baseline = "process" if example in PROCESS_EXAMPLES else "thread"
    expected = run_output(tead_cli, example_copies[baseline], example)
    assert run_output(tead_cli, example_copies["dask"], example) == expected


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


SHIPPED_MODULE = """\
import os
import sys


def where(state):
    return {"module_file": __file__, "pid": os.getpid(), "worker_pid": os.getppid()}
"""

USES_WORKFLOW = """\
name: shipped
settings:
  parallel: {strategy: dask, dask: {address: $address}}
nodes:
  - name: start
    run: |
      return {"items": [1, 2, 3, 4]}
  - name: probe
    uses: dask_shipped_ops:where
  - name: join
    run: |
      return {"files": sorted({r.state["module_file"] for r in parallel_results})}
edges:
  - {from: __start__, to: start}
  - {from: start, to: probe, parallel: true, for_each: "state['items']", fan_in: join}
  - {from: probe, to: join}
  - {from: join, to: __end__}
"""


def test_uses_modules_are_shipped_to_the_workers(
    tead_cli: RunTead, tmp_path: Path, dask_cluster: DaskProcesses
) -> None:
    """A `uses:` module beside the workflow (not on the workers' path) runs on the workers
    from the bundle tead sent, not from the workflow's folder."""
    write(tmp_path, "dask_shipped_ops.py", SHIPPED_MODULE)
    flow = write(tmp_path, "wf.yaml", USES_WORKFLOW.replace("$address", dask_cluster.address))
    proc = tead_cli("run", str(flow), "-q")
    assert proc.returncode == 0, proc.stderr
    files = json.loads(proc.stdout)["files"]
    assert files, proc.stdout
    for file in files:
        assert Path(file).name == "dask_shipped_ops.py"
        assert f"tead-bundles-{os.getuid()}" in file
        assert not Path(file).is_relative_to(tmp_path)


#: a `uses:` module that imports where the workflow is, not from a bundle on a worker
REFUSED_MODULE = """\
if "tead-bundles-" in __file__:
    raise ImportError("not on a worker")


def where(state):
    return {"module_file": __file__}
"""


def test_a_bundle_a_worker_cannot_load_fails_every_branch_with_its_reason(
    tead_cli: RunTead, tmp_path: Path, dask_cluster: DaskProcesses
) -> None:
    """A bundle whose `uses:` module does not import on the workers: every branch fails
    with the reason, also those run by a child that had been sent the bundle before
    (they said `KeyError: '<digest>'`), in this run and the next."""
    write(tmp_path, "dask_refused_ops.py", REFUSED_MODULE)
    text = (
        USES_WORKFLOW.replace("$address", dask_cluster.address)
        .replace("dask_shipped_ops", "dask_refused_ops")
        .replace("[1, 2, 3, 4]", "[1] * 8")  # more than the cluster's 4 children
        .replace(
            '"files": sorted({r.state["module_file"] for r in parallel_results})',
            '"errors": [r.error for r in parallel_results]',
        )
    )
    flow = write(tmp_path, "wf.yaml", text)
    for _ in range(2):
        proc = tead_cli("run", str(flow), "-q")
        assert proc.returncode == 0, proc.stderr
        errors = json.loads(proc.stdout)["errors"]
        assert len(errors) == 8
        assert all("cannot import 'dask_refused_ops'" in e for e in errors), errors
        assert all("not on a worker" in e for e in errors), errors


STUCK_WORKFLOW = """\
name: stuck
settings:
  parallel:
    strategy: dask
    dask: {address: $address}
    timeout_seconds: $timeout
    fail_fast: $fail_fast
nodes:
  - name: start
    run: |
      return {}
  - name: quick
    run: |
      import time
      time.sleep(1)  # the slow branch has started by now
      raise ValueError("quick fails")
  - name: slow
    run: |
      import os, subprocess, time
      helper = subprocess.Popen(["sleep", "60"])
      with open("$marks/started", "w") as f:
          f.write(f"{os.getpid()} {helper.pid}")
      time.sleep(5)
      open("$marks/kept_running", "w").close()
      return {}
  - name: join
    run: |
      return {"results": [[r.branch, r.error_type] for r in parallel_results]}
edges:
  - {from: __start__, to: start}
  - {from: start, to: [slow, quick], parallel: true, fan_in: join}
  - {from: slow, to: join}
  - {from: quick, to: join}
  - {from: join, to: __end__}
"""


def _stuck(tmp_path: Path, address: str, *, timeout: str, fail_fast: str) -> Path:
    marks = tmp_path / "marks"
    marks.mkdir()
    text = (
        STUCK_WORKFLOW.replace("$address", address)
        .replace("$timeout", timeout)
        .replace("$fail_fast", fail_fast)
        .replace("$marks", str(marks))
    )
    return write(tmp_path, "stuck.yaml", text)


def _assert_stopped(marks: Path) -> None:
    """The slow branch had started, and neither it nor the process it started is left."""
    started = marks / "started"
    assert started.exists()
    pids = [int(p) for p in started.read_text().split()]
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in pids), pids
    time.sleep(5.5)  # past the moment the slow branch would have written its mark
    assert not (marks / "kept_running").exists()


def test_a_timeout_stops_the_branch_on_the_worker(
    tead_cli: RunTead, tmp_path: Path, dask_cluster: DaskProcesses
) -> None:
    """A branch past its timeout is a TimeoutError result, and its process group on the
    worker (the branch and a process it started) is killed: it never writes its mark."""
    flow = _stuck(tmp_path, dask_cluster.address, timeout="2.5", fail_fast="false")
    proc, _ = timed_run(tead_cli, "run", str(flow), "-q", limit=60)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert results == [["slow", "TimeoutError"], ["quick", "ValueError"]]
    _assert_stopped(tmp_path / "marks")


def test_fail_fast_stops_the_running_branches_on_the_workers(
    tead_cli: RunTead, tmp_path: Path, dask_cluster: DaskProcesses
) -> None:
    """With fail_fast, the first failure stops the other branch's process group."""
    flow = _stuck(tmp_path, dask_cluster.address, timeout="null", fail_fast="true")
    marks = tmp_path / "marks"
    proc, _ = timed_run(tead_cli, "run", str(flow), "-q", limit=60)
    assert proc.returncode == 1
    assert "quick fails" in proc.stderr.splitlines()[-1]
    _assert_stopped(marks)


VERSION_WORKFLOW = """\
name: versions
settings:
  parallel: {strategy: dask, dask: {address: $address}}
nodes:
  - name: start
    run: |
      return {}
  - name: a
    run: |
      return {"a": 1}
  - name: join
    run: |
      return {"errors": [r.error for r in parallel_results]}
edges:
  - {from: __start__, to: start}
  - {from: start, to: [a], parallel: true, fan_in: join}
  - {from: a, to: join}
  - {from: join, to: __end__}
"""


def test_a_worker_with_another_tead_version_is_refused(
    tmp_path: Path, dask_cluster: DaskProcesses, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At connect, every worker's tead version is checked (one clear error); a task sent to
    a worker of another version (one that joined later) fails its branch, naming both."""
    flow = write(tmp_path, "wf.yaml", VERSION_WORKFLOW.replace("$address", dask_cluster.address))
    monkeypatch.setattr("tead.executors.dask.cluster.__version__", "9.9.9")
    with pytest.raises(DaskClusterError, match=r"has tead 0\.1\.0, this is tead 9\.9\.9"):
        tead.load_workflow(flow).invoke()
    monkeypatch.undo()
    monkeypatch.setattr("tead.executors.dask.executor.__version__", "9.9.9")
    errors = tead.load_workflow(flow).invoke()["errors"]
    assert errors == ["this dask worker has tead 0.1.0, the run has tead 9.9.9"]


def test_a_branch_whose_workflow_files_are_not_on_the_cluster_fails_clearly(
    dask_cluster: DaskProcesses,
) -> None:
    """A worker fetches the workflow's bundle it lacks from the cluster (where the client
    scattered it); one that is not there (lost with the worker that held it) fails the
    branch with one line naming it, without a wait."""
    job = pickle.dumps((b"", None, tead.__version__, "no-such-digest"))
    with Client(dask_cluster.address, timeout=30, set_as_default=False) as client:
        started = time.monotonic()
        answer = client.submit(run_branch, job, pure=False).result(timeout=60)
    assert answer == (
        "crashed",
        "dask worker: cannot fetch the workflow's files: "
        "tead-bundle-no-such-digest is not on the cluster (lost with a worker?)",
    )
    assert time.monotonic() - started < 30


def test_a_worker_killed_mid_fan_out(tmp_path: Path, dask_cluster: DaskProcesses) -> None:
    """A dask worker process killed while it runs branches: the branches it ran die with
    it (their child processes too), Dask runs them again on a worker left (each re-run is
    logged), and the run succeeds with every branch's result."""
    marks = tmp_path / "marks"
    flow = write(tmp_path, "wf.yaml", held_workflow(dask_cluster.address, marks))
    run = start_tead(
        "run", str(flow), "-q", cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        first, on_victim = kill_a_worker_of(marks, timeout_s=60)
        out, err = run.communicate(timeout=90)
    finally:
        ended(run)
    assert run.returncode == 0, err
    assert json.loads(out)["done"] == [1, 2, 3, 4]
    assert not any(alive(pid) for pid in on_victim)
    rerun = [m for m in marks.iterdir() if m not in first]  # a mark per start of a branch
    assert len(rerun) == len(on_victim), (first, rerun)
    assert err.count("was lost while it held this branch") == len(on_victim), err
    dask_cluster.wait_for_workers(2)  # its nanny starts it again, for the tests after this


def test_the_daemon_runs_dask_fan_outs_and_counts_them_by_strategy(
    daemon: DaemonProcess, dask_cluster: DaskProcesses
) -> None:
    """A dispatched run (in a run worker process) fans out on the cluster; its branches
    are counted in /metrics with strategy="dask"."""
    daemon.write("shipped.yaml", USES_WORKFLOW.replace("$address", dask_cluster.address))
    (daemon.workflows / "dask_shipped_ops.py").write_text(SHIPPED_MODULE, encoding="utf-8")
    wait_loaded(daemon, {"shipped"})
    run = daemon.wait_run(daemon.dispatch("shipped")["id"], timeout_s=90)
    assert run["status"] == "succeeded", run
    assert len(run["final_state"]["files"]) >= 1
    flows = {
        (labels["strategy"], labels["outcome"], value)
        for name, labels, value in samples(daemon.get("/metrics").text)
        if name == "tead_parallel_flows_total" and labels.get("workflow") == "shipped"
    }
    assert flows >= {("dask", "success", 4.0)}


def test_a_killed_client_leaves_nothing_running_on_the_workers(
    tmp_path: Path, dask_cluster: DaskProcesses
) -> None:
    """`tead run` killed while a branch runs on the cluster: the worker drops the task of
    the vanished client and kills the branch's process group."""
    flow = _stuck(tmp_path, dask_cluster.address, timeout="null", fail_fast="false")
    marks = tmp_path / "marks"
    run = start_tead(
        "run", str(flow), "-q", cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while not (marks / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        run.kill()
        run.wait()
    _assert_stopped(marks)
