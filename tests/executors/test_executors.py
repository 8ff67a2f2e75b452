"""The executor seam: the registry instance, factories with their dependencies, plug-ins
through the `tead.executors` entry-point group, and the thread executor on its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tead import (
    BranchTask,
    CircuitBreakerConfig,
    ExecutorDeps,
    Executors,
    FanOutJob,
    Graph,
    ParallelConfig,
    ParallelExecutor,
    ParallelFlowResult,
    UnknownStrategyError,
    WorkflowError,
)
from tead.engine.context import RunContext
from tead.engine.walk import run_branch
from tead.errors import FanOutError
from tead.executors.process import ProcessExecutor
from tead.executors.thread import ThreadExecutor
from tead.parallel.breaker import BreakerRegistry
from tests.conftest import ROOT


def test_a_registry_makes_the_built_in_executors_once() -> None:
    with Executors() as executors:
        thread = executors.get("thread")
        assert isinstance(thread, ParallelExecutor) and isinstance(thread, ThreadExecutor)
        assert executors.get("thread") is thread
        assert isinstance(executors.get("process"), ProcessExecutor)
        assert executors.names()[:2] == ["thread", "process"]


def test_unknown_strategy_names_the_available_ones() -> None:
    with (
        Executors() as executors,
        pytest.raises(
            UnknownStrategyError, match=r"unknown parallel strategy 'gpu' \(available: thread"
        ),
    ):
        executors.get("gpu")


class RecordingExecutor:
    """Runs branches one after another in the calling thread and records their names."""

    def __init__(self, deps: ExecutorDeps) -> None:
        self.deps = deps
        self.seen: list[str] = []

    def execute(self, job: FanOutJob) -> list[ParallelFlowResult]:
        self.seen.extend(task.branch for task in job.tasks)
        return [job.run_here(task) for task in job.tasks]

    def close(self) -> None:
        pass


def test_a_registered_factory_gets_its_settings_and_runs_the_fan_outs_that_name_it() -> None:
    made: list[RecordingExecutor] = []

    def factory(deps: ExecutorDeps) -> RecordingExecutor:
        made.append(RecordingExecutor(deps))
        return made[-1]

    executors = Executors({"inline": {"speed": "slow"}})
    executors.register("inline", factory)
    graph = Graph()
    graph.add_node("s")
    graph.add_node("a", lambda s: {"t": threading.current_thread().name})
    graph.add_node("m", lambda s, parallel_results: {"t": parallel_results[0].state["t"]})
    graph.add_parallel_edge("s", "a", fan_in="m", config={"strategy": "inline"})
    with executors:
        final = graph.compile(executors=executors).invoke(executors=executors)
    (recorder,) = made
    assert recorder.deps == ExecutorDeps(strategy="inline", settings={"speed": "slow"})
    assert recorder.seen == ["a"]
    assert final["t"] == threading.main_thread().name


def test_a_strategy_slow_to_make_holds_up_no_other_strategy() -> None:
    """While one run waits for a slow factory (a cluster to connect to), another run of the
    same registry (the daemon shares one) still gets its thread executor."""
    release = threading.Event()
    entered = threading.Event()

    def slow(deps: ExecutorDeps) -> ParallelExecutor:
        entered.set()
        release.wait(10)
        return ThreadExecutor()

    executors = Executors(plugins=False)
    executors.register("slow", slow)
    waiting = threading.Thread(target=executors.get, args=("slow",), daemon=True)
    waiting.start()
    assert entered.wait(5)
    got: list[ParallelExecutor] = []
    other = threading.Thread(target=lambda: got.append(executors.get("thread")), daemon=True)
    other.start()
    other.join(5)
    made_meanwhile = list(got)  # before the slow factory returns
    release.set()
    waiting.join(5)
    assert made_meanwhile and isinstance(made_meanwhile[0], ThreadExecutor)
    assert isinstance(executors.get("slow"), ThreadExecutor)
    executors.close()


def test_a_strategy_of_a_registry_is_unknown_to_graphs_checked_without_it() -> None:
    graph = Graph()
    graph.add_node("s")
    graph.add_node("a")
    graph.add_node("m")
    graph.add_parallel_edge("s", "a", fan_in="m", config={"strategy": "inline"})
    with pytest.raises(WorkflowError, match="unknown parallel strategy 'inline'"):
        graph.compile()


def test_thread_executor_uses_at_most_max_workers_threads() -> None:
    graph = Graph(initial_state={"items": list(range(12))})
    graph.add_node("s")
    graph.add_node("w", lambda s: {"t": threading.current_thread().name})
    graph.add_node(
        "m", lambda s, parallel_results: {"threads": {r.state["t"] for r in parallel_results}}
    )
    graph.add_parallel_edge(
        "s", "w", fan_in="m", for_each="state['items']", config={"max_workers": 3}
    )
    threads = graph.compile().invoke()["threads"]
    assert 1 <= len(threads) <= 3
    assert all(name.startswith("tead-branch") for name in threads)


def test_branch_task_runs_a_graph_from_entry_up_to_exit() -> None:
    graph = Graph()
    for name in ("a", "b", "c"):
        graph.add_node(name, lambda s, name=name: {"trail": [*s.get("trail", []), name]})
    task = BranchTask(workflow=graph.compile().graph, entry="a", exit="c", state={}, branch="a")
    with Executors() as executors:
        result = run_branch(task, RunContext(executors=executors, breakers=BreakerRegistry()))
    assert result.success and result.state == {"trail": ["a", "b"]}
    assert result.timing_ms >= 0


# --- plug-ins through the entry-point group ---------------------------------------------------

PLUGIN = '''
"""A toy strategy: runs each branch on a thread of its own, named after the strategy."""
import threading


class ToyExecutor:
    def __init__(self, deps):
        self.deps = deps

    def execute(self, job):
        results = [None] * len(job.tasks)

        def run(i, task):
            results[i] = job.run_here(task)

        threads = [
            threading.Thread(target=run, args=(i, t), name=f"toy-{i}")
            for i, t in enumerate(job.tasks)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, result in enumerate(results):
            job.hooks.on_result and job.hooks.on_result(i, result)
        return results

    def close(self):
        pass


def make(deps):
    return ToyExecutor(deps)
'''

TOY_WORKFLOW = """\
name: toy
initial_state: {xs: [1, 2, 3]}
settings:
  parallel: {strategy: toy}
nodes:
  - name: start
  - name: square
    run: |
      import threading
      return {"y": state["x"] ** 2, "thread": threading.current_thread().name}
  - name: collect
    run: |
      return {"ys": [r.state["y"] for r in parallel_results],
              "threads": sorted(r.state["thread"] for r in parallel_results)}
edges:
  - {from: start, to: square, parallel: true, for_each: "state['xs']", item_var: x,
     fan_in: collect}
  - {from: square, to: collect}
"""


def _install_plugin(site: Path, name: str, target: str, code: str = PLUGIN) -> None:
    """A package `toy_tead` with a dist-info declaring `name = target` in the group."""
    (site / "toy_tead.py").write_text(code)
    info = site / "toy_tead-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-tead\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[tead.executors]\n{name} = {target}\n")


def _tead(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)]), "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "tead", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def plugin_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    return site


def test_a_plug_in_package_runs_a_fan_out_from_yaml(
    plugin_site: Path, write_workflow: Callable[..., Path], tmp_path: Path
) -> None:
    """A strategy installed as a package (an entry point of `tead.executors`) runs a YAML
    fan-out end to end, with no change to tead: validate, run, and its events."""
    _install_plugin(plugin_site, "toy", "toy_tead:make")
    path = write_workflow(TOY_WORKFLOW)
    assert _tead(plugin_site, tmp_path, "validate", str(path)).returncode == 0
    proc = _tead(plugin_site, tmp_path, "run", "-q", str(path))
    assert proc.returncode == 0, proc.stderr
    final = json.loads(proc.stdout)
    assert final["ys"] == [1, 4, 9]
    assert final["threads"] == ["toy-0", "toy-1", "toy-2"]
    stream = _tead(plugin_site, tmp_path, "run", "--stream", str(path))
    events = [json.loads(line) for line in stream.stdout.splitlines()]
    fanout = next(e for e in events if e["event"] == "fanout_started")
    assert fanout["strategy"] == "toy"
    nodes = [e["path"] for e in events if e["event"] == "node_finished" and e["node"] == "square"]
    assert sorted(nodes) == ["square[0]", "square[1]", "square[2]"]


def test_without_the_plug_in_the_strategy_is_unknown_at_load(
    plugin_site: Path, write_workflow: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_workflow(TOY_WORKFLOW)
    proc = _tead(plugin_site, tmp_path, "validate", str(path))
    assert proc.returncode == 2
    assert (
        "unknown parallel strategy 'toy' (available: thread, process, remote, dask)" in proc.stderr
    )
    assert "Traceback" not in proc.stderr


def test_a_plug_in_that_cannot_load_fails_the_run_with_one_line(
    plugin_site: Path, write_workflow: Callable[..., Path], tmp_path: Path
) -> None:
    _install_plugin(plugin_site, "toy", "toy_tead:make", code="raise ImportError('no gpu')\n")
    path = write_workflow(TOY_WORKFLOW)
    proc = _tead(plugin_site, tmp_path, "run", "-q", str(path))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "tead: strategy 'toy': its plug-in toy_tead:make cannot be loaded: ImportError: no gpu"
    ]


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("def make(deps):\n    raise RuntimeError('no gpu here')\n", "RuntimeError: no gpu here"),
        ("def make(deps):\n    return None\n", "TypeError: it returned NoneType, not an executor"),
    ],
    ids=["raises", "returns-none"],
)
def test_a_plug_in_whose_factory_makes_no_executor_fails_the_run_with_one_line(
    plugin_site: Path, write_workflow: Callable[..., Path], tmp_path: Path, code: str, error: str
) -> None:
    """A factory that raises, or returns something that is no executor: one line, exit 2."""
    _install_plugin(plugin_site, "toy", "toy_tead:make", code=code)
    path = write_workflow(TOY_WORKFLOW)
    proc = _tead(plugin_site, tmp_path, "run", "-q", str(path))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"tead: strategy 'toy': its plug-in toy_tead:make cannot make an executor: {error}"
    ]


SHORT_PLUGIN = """\
class Short:
    def execute(self, job):
        return [job.run_here(task) for task in job.tasks][:-1]

    def close(self):
        pass


def make(deps):
    return Short()
"""


def test_a_plug_in_that_returns_too_few_results_fails_the_run(
    plugin_site: Path, write_workflow: Callable[..., Path], tmp_path: Path
) -> None:
    """An executor that drops a branch's result fails the run; the fan-in never sees fewer
    results than branches."""
    _install_plugin(plugin_site, "toy", "toy_tead:make", code=SHORT_PLUGIN)
    path = write_workflow(TOY_WORKFLOW)
    proc = _tead(plugin_site, tmp_path, "run", "-q", str(path))
    assert proc.returncode == 1, proc.stdout
    assert proc.stderr.strip().splitlines() == [
        "tead: fan-out at 'start': strategy 'toy' returned 2 results for 3 branches"
    ]


def test_a_plug_in_that_returns_results_out_of_order_fails_the_run(
    plugin_site: Path, write_workflow: Callable[..., Path], tmp_path: Path
) -> None:
    """Results in another order than the tasks' would hand the fan-in the wrong branches."""
    code = SHORT_PLUGIN.replace("[:-1]", "[::-1]")
    _install_plugin(plugin_site, "toy", "toy_tead:make", code=code)
    proc = _tead(plugin_site, tmp_path, "run", "-q", str(write_workflow(TOY_WORKFLOW)))
    assert proc.returncode == 1, proc.stdout
    assert proc.stderr.strip().splitlines() == [
        "tead: fan-out at 'start': strategy 'toy' returned results for branches "
        "['square[2]', 'square[1]', 'square[0]'], not ['square[0]', 'square[1]', 'square[2]'] "
        "in that order"
    ]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ("{strategy: remote}", "strategy 'remote' needs `remote: {hosts: [...]}`"),
        ("{strategy: remote, remote: {hosts: [a.example]}}", "known_hosts"),
    ],
)
def test_known_strategies_that_cannot_run_here_fail_at_load(
    tead_cli: Callable[..., subprocess.CompletedProcess[str]],
    write_workflow: Callable[..., Path],
    settings: str,
    message: str,
) -> None:
    """`remote` (CONTRACT's own example) is a known strategy: a file naming it gets one clear
    line at load, not `unknown strategy`."""
    text = TOY_WORKFLOW.replace("{strategy: toy}", settings)
    proc = tead_cli("validate", str(write_workflow(text)))
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert message in line and "wf.yaml:" in line


def test_a_registered_factory_named_dask_is_used_as_it_is() -> None:
    """A registry with its own `dask` executor: a graph checked against it may use it."""
    executors = Executors(plugins=False)
    executors.register("dask", lambda deps: ThreadExecutor())
    graph = Graph()
    graph.add_node("s")
    graph.add_node("a", lambda s: {"a": 1})
    graph.add_node("j", lambda s, parallel_results: {"n": len(parallel_results)})
    graph.add_parallel_edge("s", ["a"], fan_in="j", config={"strategy": "dask"})
    graph.add_edge("a", "j")
    with executors:
        assert graph.compile(executors=executors).invoke(executors=executors)["n"] == 1


def test_a_timed_out_thread_hands_its_slot_to_the_branches_queued_behind_it() -> None:
    """max_workers 1: the stuck branch times out, and the queued one still runs (no hang)."""
    graph = Graph()
    graph.add_node("s")
    graph.add_node("stuck", lambda s: time.sleep(2))
    graph.add_node("after", lambda s: {"ran": True})
    graph.add_node(
        "join", lambda s, parallel_results: {"r": [r.error_type for r in parallel_results]}
    )
    graph.add_parallel_edge(
        "s", ["stuck", "after"], fan_in="join", config={"max_workers": 1, "timeout_seconds": 0.2}
    )
    graph.add_edge("stuck", "join")
    graph.add_edge("after", "join")
    started = time.monotonic()
    assert graph.compile().invoke()["r"] == ["TimeoutError", None]
    assert time.monotonic() - started < 1.9  # returned before the stuck branch woke up


def test_a_timed_out_thread_branch_runs_no_later_node_and_emits_nothing_more() -> None:
    """A timed-out thread branch is given up: once its node returns, the branch's next node
    does not run and none of its events reach the run (they came after run_finished)."""
    release = threading.Event()
    ran: list[str] = []
    graph = Graph()
    graph.add_node("s")
    graph.add_node("stuck", lambda s: ran.append("stuck") if release.wait(5) else None)
    graph.add_node("later", lambda s: ran.append("later"))
    graph.add_node("join")
    graph.add_parallel_edge("s", ["stuck"], fan_in="join", config={"timeout_seconds": 0.2})
    graph.add_edge("stuck", "later")
    graph.add_edge("later", "join")
    events: list[Any] = []
    graph.compile().invoke(on_event=events.append)
    seen = len(events)
    branch_threads = [t for t in threading.enumerate() if t.name == "tead-branch"]
    release.set()
    for thread in branch_threads:
        thread.join(5)
    assert ran == ["stuck"]
    assert events[seen:] == []
    assert events[-1].kind == "run_finished"


class StartCounter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.starts = 0

    def on_flow_start(self, branch: str, state: dict[str, Any]) -> None:
        with self.lock:
            self.starts += 1


def test_callbacks_fired_from_many_branch_threads_leave_no_helper_threads() -> None:
    counter = StartCounter()
    graph = Graph("leak")
    graph.add_node("s")
    graph.add_node("work", lambda s: {"x": s["item"]})
    graph.add_node("join", lambda s, parallel_results: {"n": len(parallel_results)})
    graph.add_parallel_edge("s", "work", fan_in="join", for_each="list(range(8))")
    graph.add_edge("work", "join")
    workflow = graph.compile(parallel_config=ParallelConfig(max_workers=8, callbacks=(counter,)))
    for _ in range(50):
        workflow.invoke()
    assert counter.starts == 400
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not any(t.name == "tead-callbacks" for t in threading.enumerate()):
            break
        time.sleep(0.05)
    assert [t.name for t in threading.enumerate() if t.name == "tead-callbacks"] == []


def test_a_failed_result_shows_the_breaker_state_its_failure_left() -> None:
    graph = Graph("cs")
    graph.add_node("s")

    def boom(state: dict[str, Any]) -> None:
        raise ConnectionError("down")

    graph.add_node("boom", boom)
    graph.add_node("join", lambda s, parallel_results: {"state": parallel_results[0].circuit_state})
    graph.add_parallel_edge(
        "s",
        "boom",
        fan_in="join",
        config={"circuit_breaker": CircuitBreakerConfig(failure_threshold=1)},
    )
    workflow = graph.compile()
    assert workflow.invoke()["state"] == "open"
    assert workflow.get_circuit_states() == {"cs:boom": "open"}


def test_fail_fast_in_one_of_two_sibling_fan_outs_stops_the_other_at_once() -> None:
    """A node fanning out to two fan-ins: a fail-fast failure in one cancels the other."""
    graph = Graph()
    graph.add_node("s")

    def bad(state: dict[str, Any]) -> None:
        raise ValueError("no")

    graph.add_node("a", bad)
    graph.add_node("b", lambda s: time.sleep(5))
    graph.add_node("fa")
    graph.add_node("fb")
    graph.add_parallel_edge("s", "a", fan_in="fa", config={"fail_fast": True})
    graph.add_parallel_edge("s", "b", fan_in="fb")
    graph.add_edge("a", "fa")
    graph.add_edge("b", "fb")
    graph.add_edge("fa", "fb")
    started = time.monotonic()
    with pytest.raises(FanOutError, match="branch 'a' failed: ValueError: no"):
        graph.compile().invoke()
    assert time.monotonic() - started < 4  # did not wait for b's 5 s
