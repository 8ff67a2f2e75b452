"""The dask strategy's bundles, result fetches and kept clients under trouble: a real
cluster per test (tests/dask_fixture.py: a `dask scheduler` and two `dask worker`
processes) where a test kills or adds workers, and a daemon (tests/daemon_fixture.py)
whose run workers keep clients on it."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distributed import Client, Future

import tead
from tead.executors.dask.executor import DaskExecutor
from tead.executors.dask.worker import KEPT_BUNDLES
from tead.parallel.config import DaskConfig
from tests.daemon_fixture import DaemonProcess
from tests.dask_fixture import dask_cluster_in
from tests.executors.dask_common import (
    cluster_folder,
    ended,
    for_each_flow,
    held_workflow,
    release,
    tead_run,
)
from tests.helpers import alive, wait_until

Factory = Callable[..., DaemonProcess]

ITEMS_WORKFLOW = for_each_flow(
    "items",
    start='return {"items": list(range(1, $count + 1))}',
    work="""\
        import os, time
        name = f"{state['item']}-{os.getpid()}"
        with open(f"$marks-{name}", "w") as f:  # beside, then moved: never read half written
            f.write(str(os.getppid()))
        os.rename(f"$marks-{name}", f"$marks/{name}")
        time.sleep($sleep)
        return {"done": state["item"]}
        """,
    join='return {"done": [r.state["done"] if r.error is None else r.error '
    "for r in parallel_results]}",
)


def _items(folder: Path, address: str, *, count: int, sleep: float) -> Path:
    marks = folder / "marks"
    marks.mkdir(exist_ok=True)
    text = (
        ITEMS_WORKFLOW.replace("$address", address)
        .replace("$marks", str(marks))
        .replace("$count", str(count))
        .replace("$sleep", str(sleep))
    )
    flow = folder / "wf.yaml"
    flow.write_text(text, encoding="utf-8")
    return flow


def _bundle_holders(client: Client) -> dict[str, list[str]]:
    """The workers (addresses) holding each scattered bundle, as the scheduler knows."""

    def holders(dask_scheduler: Any) -> dict[str, list[str]]:
        return {
            str(key): [ws.address for ws in ts.who_has or ()]
            for key, ts in dask_scheduler.tasks.items()
            if str(key).startswith("tead-bundle-")
        }

    result: dict[str, list[str]] = client.run_on_scheduler(holders)
    return result


def test_the_worker_holding_the_bundle_killed_mid_fan_out(tmp_path: Path) -> None:
    """The dask worker process the bundle was scattered to is killed while the fan-out
    runs: the branches run again elsewhere, on workers that may not have fetched the
    bundle yet (its nanny's new process has not), and every branch still succeeds."""
    with dask_cluster_in(cluster_folder(tmp_path)) as cluster:
        flow = _items(tmp_path, cluster.address, count=12, sleep=2)
        run = tead_run(flow)
        try:
            with Client(cluster.address, timeout=30, set_as_default=False) as client:
                wait_until(lambda: any((tmp_path / "marks").iterdir()), "a branch to start")
                (holders,) = _bundle_holders(client).values()
                pids = client.run(os.getpid)
                os.kill(pids[holders[0]], signal.SIGKILL)
            out, err = run.communicate(timeout=120)
        finally:
            ended(run)
    assert run.returncode == 0, err
    assert json.loads(out)["done"] == list(range(1, 13)), err


KEPT = for_each_flow(
    "$name",
    start="""\
        import os
        return {"items": [1, 2], "run_worker": os.getpid()}
        """,
    work='return {"twice": state["item"] * 2}',
    join='return {"twice": [r.state["twice"] for r in parallel_results]}',
)


def _kept_run(daemon: DaemonProcess, name: str, address: str) -> dict[str, Any]:
    """Write workflow `name`, wait for it, run it: its final state (it succeeded)."""
    daemon.write(f"{name}.yaml", KEPT.replace("$name", name).replace("$address", address))

    def loaded() -> bool:
        listed = daemon.get("/api/v1/workflows").json()["workflows"]
        return any(w["name"] == name and w["valid"] for w in listed)

    daemon.wait_for(loaded, timeout_s=60, what=f"workflow {name}")
    run = daemon.wait_run(daemon.dispatch(name)["id"], timeout_s=120)
    assert run["status"] == "succeeded", (run.get("error"), daemon.logs())
    state: dict[str, Any] = run["final_state"]
    assert state["twice"] == [2, 4]
    return state


def _gone(pid: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def test_a_kept_worker_dropped_for_another_workflow_says_goodbye(
    tmp_path: Path, daemon_factory: Factory
) -> None:
    """With room for one kept run worker, a run of another workflow drops the first
    one's: it closes its dask client (the scheduler removes it, no critical error) and
    exits."""
    with dask_cluster_in(cluster_folder(tmp_path)) as cluster:
        daemon = daemon_factory(env={"TEAD_MAX_CONCURRENT_RUNS": "1"}).start()
        first = _kept_run(daemon, "first", cluster.address)["run_worker"]
        _kept_run(daemon, "second", cluster.address)
        assert _gone(first, within_s=10), "the dropped run worker is still running"
        assert daemon.stop() == 0
        log = (cluster.folder / "sched.log").read_text(errors="replace")
    assert log.count("Remove client Client-") >= 2, log
    assert "CRITICAL" not in log and "Traceback" not in log, log


def test_shutdown_with_a_kept_client_whose_scheduler_hangs_is_bounded(
    tmp_path: Path, daemon_factory: Factory
) -> None:
    """The scheduler stops answering (SIGSTOP) while a run worker keeps a client on it:
    the daemon's shutdown still ends within seconds, and the run worker is gone."""
    with dask_cluster_in(cluster_folder(tmp_path)) as cluster:
        daemon = daemon_factory().start()
        worker = _kept_run(daemon, "hung", cluster.address)["run_worker"]
        scheduler = cluster.procs[0]
        os.kill(scheduler.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            assert daemon.stop() == 0
            took = time.monotonic() - started
        finally:
            os.kill(scheduler.pid, signal.SIGCONT)
        assert not alive(worker)
    assert took < 10, took


EDITED = """\
name: edited
settings:
  parallel: {strategy: dask, dask: {address: $address}}
nodes:
  - name: start
    uses: dask_edited_ops:here
  - name: probe
    uses: dask_edited_ops:there
  - name: join
    run: |
      return {"there": sorted({r.state["there"] for r in parallel_results})}
edges:
  - {from: __start__, to: start}
  - {from: start, to: probe, parallel: true, for_each: "state['items']", fan_in: join}
  - {from: probe, to: join}
  - {from: join, to: __end__}
"""

EDITED_MODULE = """\
import os

VALUE = $value


def here(state):
    return {"items": [1, 2, 3], "here": VALUE, "run_worker": os.getpid()}


def there(state):
    return {"there": VALUE}
"""


def test_a_uses_module_edited_between_runs_runs_as_edited_everywhere(
    tmp_path: Path, daemon_factory: Factory
) -> None:
    """A `uses:` module beside the workflow is edited between two runs (the workflow
    file is not): the second run's nodes, in the run worker and on the dask workers
    alike, run the module as edited."""
    with dask_cluster_in(cluster_folder(tmp_path)) as cluster:
        daemon = daemon_factory().start()
        module = daemon.workflows / "dask_edited_ops.py"
        module.parent.mkdir(parents=True, exist_ok=True)
        module.write_text(EDITED_MODULE.replace("$value", "1"), encoding="utf-8")
        daemon.write("edited.yaml", EDITED.replace("$address", cluster.address))

        def loaded() -> bool:
            listed = daemon.get("/api/v1/workflows").json()["workflows"]
            return any(w["name"] == "edited" and w["valid"] for w in listed)

        daemon.wait_for(loaded, timeout_s=60, what="workflow edited")
        seen = []
        for value in (1, 2):
            module.write_text(EDITED_MODULE.replace("$value", str(value)), encoding="utf-8")
            time.sleep(1.5)  # past the daemon's rescan
            run = daemon.wait_run(daemon.dispatch("edited")["id"], timeout_s=120)
            assert run["status"] == "succeeded", (run.get("error"), daemon.logs())
            state = run["final_state"]
            seen.append((state["here"], state["there"]))
        assert daemon.stop() == 0
    assert seen == [(1, [1]), (2, [2])]


def test_more_workflow_versions_than_a_worker_keeps_then_an_old_one_again(
    tmp_path: Path,
) -> None:
    """KEPT_BUNDLES + 2 versions of a workflow, one after the other, each in a client
    of its own; then the first version again: every run's branches run its own version
    (a worker fetches again a bundle it no longer keeps)."""
    with dask_cluster_in(cluster_folder(tmp_path)) as cluster:
        flow = tmp_path / "wf.yaml"
        versions = [*range(KEPT_BUNDLES + 2), 0]
        got = []
        for version in versions:
            text = KEPT.replace("$name", "versions").replace("$address", cluster.address)
            text = text.replace('"twice": state["item"] * 2', f'"twice": {version}')
            flow.write_text(text, encoding="utf-8")
            got.append(tead.load_workflow(flow).invoke()["twice"])
    assert got == [[v, v] for v in versions]


def _branch_states(client: Client) -> list[str]:
    """The scheduler's states of the tasks of tead branches."""

    def states(dask_scheduler: Any) -> list[str]:
        return [
            str(ts.state)
            for key, ts in dask_scheduler.tasks.items()
            if str(key).startswith("tead-branch-")
        ]

    found: list[str] = client.run_on_scheduler(states)
    return found


def test_a_result_lost_with_its_worker_before_it_was_fetched_is_a_counted_rerun(
    tmp_path: Path,
) -> None:
    """A branch that finished on a worker which is lost before the client fetched its
    result (here the `tead run` is stopped meanwhile) is run again by Dask, as its result
    is still wanted: that re-run is logged and counted like one of a running branch's."""
    marks = tmp_path / "marks"
    with (
        dask_cluster_in(cluster_folder(tmp_path)) as cluster,
        Client(cluster.address, set_as_default=False) as client,
    ):
        flow = tmp_path / "wf.yaml"
        flow.write_text(held_workflow(cluster.address, marks, count=2), encoding="utf-8")
        run = tead_run(flow)
        try:
            wait_until(lambda: len(list(marks.iterdir())) == 2, "both branches to start")
            os.kill(run.pid, signal.SIGSTOP)
            release(marks).touch()
            wait_until(lambda: _branch_states(client) == ["memory"] * 2, "both results held")
            [first] = [m for m in marks.iterdir() if m.name.startswith("1-")]
            os.kill(int(first.read_text()), signal.SIGKILL)  # the worker holding branch 1's
            wait_until(lambda: len(list(marks.glob("1-*"))) == 2, "branch 1 to run again")
        finally:
            os.kill(run.pid, signal.SIGCONT)
        out, err = run.communicate(timeout=90)
    assert run.returncode == 0, err
    assert json.loads(out)["done"] == [1, 2]
    assert err.count("was lost while it held this branch") == 1, err


#: four branches, three of which outlive the fan-out's 1 s timeout
TIMED_OUT = for_each_flow(
    "timed_out",
    settings="settings:\n  parallel: {strategy: dask, dask: {address: $address}, "
    "timeout_seconds: 1}\n",
    start='return {"items": [1, 2, 3, 4]}',
    work="""\
        import time
        time.sleep(0 if state["item"] == 1 else 30)
        return {}
        """,
    join='return {"errors": [r.error_type for r in parallel_results]}',
)


def test_a_kept_client_forgets_the_branches_of_ended_fan_outs(tmp_path: Path) -> None:
    """Fan-outs whose branches timed out (stopped: their results, if any, come after the
    fan-out's end) leave nothing in the kept client's table of running branches, which
    would pin each branch's workflow and its run's event sink for the client's life."""
    with dask_cluster_in(cluster_folder(tmp_path)) as cluster, tead.Executors() as executors:
        flow = tmp_path / "wf.yaml"
        flow.write_text(TIMED_OUT.replace("$address", cluster.address), encoding="utf-8")
        workflow = tead.load_workflow(flow)
        for _ in range(3):
            errors = workflow.invoke(executors=executors)["errors"]
            assert errors == [None, "TimeoutError", "TimeoutError", "TimeoutError"]
        dask = executors.get("dask")
        assert isinstance(dask, DaskExecutor)
        assert dask.cluster(DaskConfig(address=cluster.address), 2).running == {}


#: a fan-out whose branches say how many workflows their process holds (a dask child)
GRAPHS = for_each_flow(
    "graphs",
    start='return {"items": [1, 2, 3, 4]}',
    work="""\
        import gc
        from tead.graph.compiled import WorkflowGraph
        # version $version
        gc.collect()  # only the workflows still held
        held = sum(isinstance(o, WorkflowGraph) for o in gc.get_objects())
        return {"held": held}
        """,
    join='return {"held": [r.state["held"] for r in parallel_results]}',
)


def test_a_long_lived_workers_children_keep_a_bounded_number_of_workflows(
    tmp_path: Path,
) -> None:
    """Workflow versions beyond what is kept (KEPT_BUNDLES; a child's loader keeps up to
    32) do not pile up: after 48 versions run through one client, a branch's process (a
    dask worker's child) holds far fewer workflows than it ran, and the cluster holds
    KEPT_BUNDLES of their bundles (the client lets go of the others). Each version still
    runs as itself (the versions test above)."""
    versions = 48
    with (
        dask_cluster_in(cluster_folder(tmp_path)) as cluster,
        tead.Executors() as executors,
        Client(cluster.address, set_as_default=False) as client,
    ):
        flow = tmp_path / "wf.yaml"
        held: list[int] = []
        for version in range(versions):
            text = GRAPHS.replace("$address", cluster.address).replace("$version", str(version))
            flow.write_text(text, encoding="utf-8")
            held = tead.load_workflow(flow).invoke(executors=executors)["held"]
        wait_until(
            lambda: len(_bundle_holders(client)) == KEPT_BUNDLES,
            "the cluster to hold KEPT_BUNDLES bundles",
        )
    assert max(held) <= 32, held  # without a bound: one per version it ran
    assert max(held) > KEPT_BUNDLES // 2, held  # the count sees the kept ones


def test_another_client_scattering_the_same_bundle_then_leaving(tmp_path: Path) -> None:
    """While a fan-out runs, another client (another `tead run`, another daemon) scatters
    the same bundle under the same key and goes away: the bundle stays on the cluster for
    the fan-out, whose branches on a worker that joins later fetch it."""
    with dask_cluster_in(cluster_folder(tmp_path)) as cluster:
        flow = _items(tmp_path, cluster.address, count=16, sleep=2)
        run = tead_run(flow)
        try:
            with Client(cluster.address, timeout=30, set_as_default=False) as other:
                wait_until(lambda: any((tmp_path / "marks").iterdir()), "a branch to start")
                (key,) = _bundle_holders(other)
                data = Future(key, other, state="memory").result(timeout=30)  # type: ignore[arg-type]
                other.scatter({key: data})
            cluster.add_worker("w3")
            cluster.wait_for_workers(3)
            with Client(cluster.address, timeout=30, set_as_default=False) as client:
                names = {
                    a: w["name"] for a, w in client.scheduler_info(n_workers=-1)["workers"].items()
                }
                (late,) = [pid for a, pid in client.run(os.getpid).items() if names[a] == "w3"]
            out, err = run.communicate(timeout=120)
        finally:
            ended(run)
    assert run.returncode == 0, err
    assert json.loads(out)["done"] == list(range(1, 17)), err
    ran_on = {int(m.read_text()) for m in (tmp_path / "marks").iterdir()}
    assert late in ran_on, "no branch ran on the worker that joined"


HELPED = for_each_flow(
    "helped",
    start='return {"items": list(range(8))}',
    work="""\
        import dask_helper  # beside the workflow: shipped in its bundle
        return {"value": dask_helper.VALUE}
        """,
    join='return {"values": sorted({r.state["value"] for r in parallel_results})}',
)


def test_an_old_version_again_imports_its_own_modules_on_the_workers(tmp_path: Path) -> None:
    """A module beside the workflow, imported by `run:` code, is edited, then edited
    back (the first version's bundle again): each run's branches import the module of
    their own version, not the one a worker's process imported last."""
    with dask_cluster_in(cluster_folder(tmp_path)) as cluster:
        flow = tmp_path / "wf.yaml"
        flow.write_text(HELPED.replace("$address", cluster.address), encoding="utf-8")
        helper = tmp_path / "dask_helper.py"
        got = []
        for value in (1, 2, 1, 2):
            helper.write_text(f"VALUE = {value}\n", encoding="utf-8")
            got.append(tead.load_workflow(flow).invoke()["values"])
    assert got == [[1], [2], [1], [2]]


def test_fewer_concurrent_runs_on_sighup_retires_the_extra_kept_workers(
    tmp_path: Path, daemon_factory: Factory
) -> None:
    """max_concurrent_runs lowered from 3 to 1 (SIGHUP) while three run workers are kept,
    each with its client: two of them are retired at once (their clients leave the
    scheduler), not left until the next run ends."""
    config = tmp_path / "tead.yaml"
    config.write_text("max_concurrent_runs: 3\n")
    with dask_cluster_in(cluster_folder(tmp_path)) as cluster:
        daemon = daemon_factory(extra_args=["--config", str(config)]).start()
        workers = [
            _kept_run(daemon, name, cluster.address)["run_worker"] for name in ("a", "b", "c")
        ]
        assert all(alive(pid) for pid in workers)
        config.write_text("max_concurrent_runs: 1\n")
        daemon.signal(signal.SIGHUP)
        daemon.wait_for(lambda: "config reloaded" in daemon.logs(), what="the reload")
        deadline = time.monotonic() + 10
        while sum(map(alive, workers)) > 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [pid for pid in workers if alive(pid)]
        assert daemon.stop() == 0
        log = (cluster.folder / "sched.log").read_text(errors="replace")
    assert len(left) == 1, left
    assert "CRITICAL" not in log and "Traceback" not in log, log
