"""End to end: the process strategy through `tead run` (a real subprocess) and the Python
API: real worker processes, the same results as threads, `uses:` modules, unpicklable
state, crashing workers, nested fan-outs and streamed events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Any

import pytest

from tead import Graph, ParallelConfig, ParallelFlowResult, load_workflow
from tead.errors import PickleValidationError
from tests.conftest import ROOT
from tests.helpers import fill, final_state, timed_run

HANG_BOUND_S = 10.0


# --- branches run in worker processes ------------------------------------------------------


def test_branches_run_in_other_processes_up_to_max_workers(tead_cli, write_workflow):
    """max_workers 2, four branches sleeping 0.2 s: two worker processes share them, and
    neither is the `tead run` process."""
    write_workflow(
        """
        settings:
          parallel: {strategy: process, max_workers: 2}
        initial_state: {items: [1, 2, 3, 4]}
        nodes:
          - name: src
            run: |
              import os
              return {"parent": os.getpid()}
          - name: work
            run: |
              import os, time
              time.sleep(0.2)
              return {"pid": os.getpid(), "double": state["item"] * 2}
          - name: join
            run: |
              return {"results": [[r.branch, r.success, r.error_type, r.error]
                                  for r in parallel_results],
                      "pids": [r.state and r.state["pid"] for r in parallel_results],
                      "doubles": [r.state and r.state["double"] for r in parallel_results]}
        edges:
          - {from: src, to: work, parallel: true, for_each: "state['items']", fan_in: join}
        """
    )
    state = final_state(tead_cli("run", "wf.yaml", "-q"))
    assert state["results"] == [[f"work[{i}]", True, None, None] for i in range(4)]
    assert state["doubles"] == [2, 4, 6, 8]
    pids = set(state["pids"])
    assert len(pids) == 2
    assert state["parent"] not in pids


def test_python_api_runs_process_branches_in_workers(tmp_path):
    """`load_workflow(...).invoke()` with the process strategy, from this test process."""
    path = tmp_path / "wf.yaml"
    path.write_text(
        """
settings:
  parallel: {strategy: process, max_workers: 2}
nodes:
  - name: src
  - name: a
    run: |
      import os
      return {"pid": os.getpid(), "who": "a"}
  - name: b
    run: |
      import os
      return {"pid": os.getpid(), "who": "b"}
  - name: join
    run: |
      return {"results": [[r.branch, r.success, r.state["who"], r.state["pid"]]
                          for r in parallel_results]}
edges:
  - {from: src, to: [a, b], parallel: true, fan_in: join}
  - {from: a, to: join}
  - {from: b, to: join}
"""
    )
    results = load_workflow(path).invoke()["results"]
    assert [r[:3] for r in results] == [["a", True, "a"], ["b", True, "b"]]
    assert os.getpid() not in {r[3] for r in results}


def test_an_event_sink_that_raises_on_a_process_branch_event_fails_that_branch(tmp_path):
    """As with threads: the branch whose event the sink refused fails with its error, and
    the run goes on (it hung: the attempt was never settled)."""
    path = tmp_path / "wf.yaml"
    path.write_text(
        """
settings:
  parallel: {strategy: process, max_workers: 2}
nodes:
  - name: src
  - name: a
  - name: b
  - name: join
    run: |
      return {"results": [[r.branch, r.success, r.error] for r in parallel_results]}
edges:
  - {from: src, to: [a, b], parallel: true, fan_in: join}
  - {from: a, to: join}
  - {from: b, to: join}
"""
    )

    def sink(event: Any) -> None:
        if event.kind == "node_started" and event.path == "b":
            raise RuntimeError("sink broke")

    done: list[Any] = []
    runner = threading.Thread(
        target=lambda: done.append(load_workflow(path).invoke(on_event=sink)), daemon=True
    )
    runner.start()
    runner.join(HANG_BOUND_S)
    assert done, "the run hung"
    assert done[0]["results"] == [["a", True, None], ["b", False, "sink broke"]]


def test_stream_into_a_pipe_closed_early_ends_a_process_fan_out(write_workflow, tmp_path):
    """`tead run --stream | head -1` with process branches exits (it hung: replaying a
    branch's events into the closed pipe raised in the pool's thread)."""
    write_workflow(
        """
        settings:
          parallel: {strategy: process, max_workers: 2}
        nodes:
          - name: src
          - name: a
          - name: b
          - name: join
        edges:
          - {from: src, to: [a, b], parallel: true, fan_in: join}
          - {from: a, to: join}
          - {from: b, to: join}
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tead", "run", "wf.yaml", "--stream"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline())["event"] == "run_started"
    proc.stdout.close()  # as `head -1` does
    try:
        assert proc.wait(timeout=HANG_BOUND_S) == 1
    finally:
        proc.kill()
        proc.wait()


NESTED = """
settings:
  parallel: {strategy: STRATEGY, max_workers: 2}
nodes:
  - name: src
  - name: a
  - name: x
  - name: y
  - name: a2
  - name: b
  - name: join
edges:
  - {from: src, to: [a, b], parallel: true, fan_in: join}
  - {from: a, to: [x, y], parallel: true, fan_in: a2}
  - {from: x, to: a2}
  - {from: y, to: a2}
  - {from: a2, to: join}
  - {from: b, to: join}
"""


def test_fan_outs_nested_in_a_process_branch_reach_on_results(tmp_path):
    """The results of a fan-out nested in a process branch come back to the run (the
    daemon's run record keeps them) exactly as under thread."""
    kept: dict[str, list[tuple[str, str, str, list[tuple[str, bool]]]]] = {}
    for strategy in ("thread", "process"):
        path = tmp_path / f"{strategy}.yaml"
        path.write_text(NESTED.replace("STRATEGY", strategy))
        found = kept[strategy] = []
        load_workflow(path).invoke(
            on_results=lambda where, source, fan_in, results, found=found: found.append(
                (where, source, fan_in, [(r.branch, r.success) for r in results])
            )
        )
    assert (
        kept["process"]
        == kept["thread"]
        == [
            ("a", "a", "a2", [("x", True), ("y", True)]),
            ("", "src", "join", [("a", True), ("b", True)]),
        ]
    )


def test_starting_the_worker_pool_does_not_count_against_a_branch_timeout(tead_cli, write_workflow):
    """timeout_seconds 0.15 and instant branches: the first one must not time out while a
    cold pool (forkserver, workers) starts up."""
    write_workflow(
        """
        settings:
          parallel: {strategy: process, max_workers: 1, timeout_seconds: 0.15}
        initial_state: {items: [1, 2]}
        nodes:
          - name: src
          - name: work
            run: |
              return {"double": state["item"] * 2}
          - name: join
            run: |
              return {"results": [[r.branch, r.success, r.error_type, r.state]
                                  for r in parallel_results]}
        edges:
          - {from: src, to: work, parallel: true, for_each: "state['items']", fan_in: join}
        """
    )
    state = final_state(tead_cli("run", "wf.yaml", "-q"))
    assert state["results"] == [
        ["work[0]", True, None, {"items": [1, 2], "item": 1, "double": 2}],
        ["work[1]", True, None, {"items": [1, 2], "item": 2, "double": 4}],
    ]


# --- same results as threads ---------------------------------------------------------------

SHAPES = """
name: shapes
settings:
  parallel: {strategy: $strategy, max_workers: 2}
initial_state: {words: [alpha, beta, gamma]}
nodes:
  - name: start
    run: |
      return {"trail": ["start"]}
  - name: upper
    run: |
      return {"upper": [w.upper() for w in state["words"]]}
  - name: lengths
    run: |
      return {"count": len(state["words"])}
  - name: measure
    run: |
      if state["word"] == "beta":
          raise ValueError("no beta")
      return {"len": len(state["word"])}
  - name: measured
    run: |
      return {"lengths": [[r.branch, r.success, r.error_type, r.error, r.state and r.state["len"]]
                          for r in parallel_results]}
  - name: static_join
    run: |
      return {"static": [[r.branch, r.success, r.state] for r in parallel_results],
              "trail": state["trail"] + ["static_join"]}
  - name: square
    run: |
      return {"square": state["i"] ** 2}
  - name: squares
    run: |
      return {"squares": [[r.branch, r.state["square"], r.retry_count, r.timeout]
                          for r in parallel_results],
              "trail": state["trail"] + ["squares"]}
edges:
  - {from: start, to: [upper, lengths], parallel: true, fan_in: static_join}
  - {from: upper, to: static_join}
  - {from: lengths, to: measure, parallel: true, for_each: "state['words']", item_var: word,
     fan_in: measured}
  - {from: measured, to: static_join}
  - {from: static_join, to: square, parallel: true, for_each: "range(4)", item_var: i,
     fan_in: squares}
  - {from: square, to: squares}
"""

SHAPES_EXPECTED = {
    "words": ["alpha", "beta", "gamma"],
    "trail": ["start", "static_join", "squares"],
    "static": [
        [
            "upper",
            True,
            {
                "words": ["alpha", "beta", "gamma"],
                "trail": ["start"],
                "upper": ["ALPHA", "BETA", "GAMMA"],
            },
        ],
        [
            "lengths",
            True,
            {
                "words": ["alpha", "beta", "gamma"],
                "trail": ["start"],
                "count": 3,
                "lengths": [
                    ["measure[0]", True, None, None, 5],
                    ["measure[1]", False, "ValueError", "no beta", None],
                    ["measure[2]", True, None, None, 5],
                ],
            },
        ],
    ],
    "squares": [
        ["square[0]", 0, 0, False],
        ["square[1]", 1, 0, False],
        ["square[2]", 4, 0, False],
        ["square[3]", 9, 0, False],
    ],
}


def test_thread_and_process_give_byte_identical_output(tead_cli, write_workflow, tmp_path):
    """Static, nested and for_each fan-outs (with a failing branch): the same --output."""
    outputs = {}
    for strategy in ("thread", "process"):
        write_workflow(fill(SHAPES, strategy=strategy), name=f"{strategy}.yaml")
        proc = tead_cli("run", f"{strategy}.yaml", "-q", "--output", f"{strategy}.json")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == ""
        outputs[strategy] = (tmp_path / f"{strategy}.json").read_bytes()
    assert outputs["process"] == outputs["thread"]
    assert json.loads(outputs["process"]) == SHAPES_EXPECTED


# --- uses: modules beside the workflow file ------------------------------------------------


def test_uses_module_beside_the_workflow_works_in_workers_from_another_cwd(tead_cli, tmp_path):
    """`tead run ../flows/wf.yaml` from another folder: `uses:` and `run:` imports of a
    module next to the file work in the worker processes."""
    flows = tmp_path / "flows"
    flows.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (flows / "tead_e2e_textops.py").write_text(
        "import os\n\n\n"
        "def shout(state, suffix):\n"
        "    return {'out': state['word'].upper() + suffix, 'pid': os.getpid()}\n\n\n"
        "def whisper(word):\n"
        "    return word.lower()\n"
    )
    (flows / "wf.yaml").write_text(
        """
settings:
  parallel: {strategy: process, max_workers: 2}
initial_state: {words: [Hello, World]}
nodes:
  - name: src
    run: |
      import os
      return {"parent": os.getpid()}
  - name: loud
    uses: tead_e2e_textops:shout
    with: {suffix: "!"}
  - name: quiet
    run: |
      import os
      from tead_e2e_textops import whisper
      return {"whispered": whisper(state["out"]), "quiet_pid": os.getpid()}
  - name: join
    run: |
      return {"results": [[r.success, r.error, r.state and r.state.get("whispered")]
                          for r in parallel_results],
              "pids": sorted({r.state[k] for r in parallel_results if r.success
                              for k in ("pid", "quiet_pid")})}
edges:
  - {from: src, to: loud, parallel: true, for_each: "state['words']", item_var: word,
     fan_in: join}
  - {from: loud, to: quiet}
  - {from: quiet, to: join}
"""
    )
    proc = tead_cli("run", "../flows/wf.yaml", "-q", cwd=elsewhere)
    state = final_state(proc)
    assert state["results"] == [[True, None, "hello!"], [True, None, "world!"]]
    assert state["parent"] not in state["pids"]


# --- state that cannot be sent -------------------------------------------------------------

UNPICKLABLE = """
settings:
  parallel: {strategy: process}
nodes:
  - name: src
    run: |
      return {"n": 1, "$key": $value}
  - name: a
    run: |
      open("a.ran", "w").close()
  - name: b
    run: |
      open("b.ran", "w").close()
  - name: join
    run: |
      open("join.ran", "w").close()
edges:
  - {from: src, to: [a, b], parallel: true, fan_in: join}
  - {from: a, to: join}
  - {from: b, to: join}
"""


@pytest.mark.parametrize(
    ("key", "value", "problem", "advice"),
    [
        (
            "lock",
            '__import__("threading").Lock()',
            "cannot be sent to a worker process (",
            "keep such values out of the state or use the thread strategy",
        ),
        (
            "fn",
            "lambda: 1",
            "cannot be sent to a worker process (",
            "keep such values out of the state or use the thread strategy",
        ),
    ],
    ids=["lock", "lambda"],
)
def test_unpicklable_state_fails_before_any_branch_runs(
    tead_cli, write_workflow, tmp_path, key, value, problem, advice
):
    """One line naming the key and the first branch, exit 1, and nothing ran (the fan-out's
    state is pickled once, before any branch starts)."""
    write_workflow(fill(UNPICKLABLE, key=key, value=value))
    proc, elapsed = timed_run(tead_cli, "run", "wf.yaml", "-q")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"tead: branch 'a': state key '{key}' {problem}")
    assert lines[0].endswith(advice)
    assert proc.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wf.yaml"]
    assert elapsed < HANG_BOUND_S


def test_unpicklable_state_through_the_python_api_names_key_and_branch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "wf.yaml"
    path.write_text(fill(UNPICKLABLE, key="fn", value="lambda: 1"))
    with pytest.raises(PickleValidationError) as info:
        load_workflow(path).invoke()
    assert (info.value.branch, info.value.key) == ("a", "fn")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wf.yaml"]


# --- crashing workers ----------------------------------------------------------------------

CRASH = """
settings:
  parallel: {strategy: process, max_workers: 2}
nodes:
  - name: src
  - name: ok1
    run: |
      import time
      time.sleep(0.2)
      return {"ok": 1}
  - name: exits
    run: |
      import os
      os._exit(1)
  - name: killed
    run: |
      import os, signal
      os.kill(os.getpid(), signal.SIGKILL)
  - name: ok2
    run: |
      return {"ok": 2}
  - name: join
    run: |
      return {"first": [[r.branch, r.success, r.error_type, r.state] for r in parallel_results],
              "items": [1, 2, 3]}
  - name: again
    run: |
      import os
      return {"square": state["item"] ** 2, "pid": os.getpid()}
  - name: join2
    run: |
      return {"second": [[r.branch, r.success, r.state["square"]] for r in parallel_results]}
edges:
  - {from: src, to: [ok1, exits, killed, ok2], parallel: true, fan_in: join}
  - {from: ok1, to: join}
  - {from: exits, to: join}
  - {from: killed, to: join}
  - {from: ok2, to: join}
  - {from: join, to: again, parallel: true, for_each: "state['items']", fan_in: join2}
  - {from: again, to: join2}
"""


def test_a_crashing_worker_fails_only_its_branch_and_the_pool_recovers(tead_cli, write_workflow):
    """os._exit(1) in one branch and SIGKILL of itself in another: each is a
    WorkerCrashedError, the siblings succeed, and the next fan-out gets working workers."""
    write_workflow(CRASH)
    proc, elapsed = timed_run(tead_cli, "run", "wf.yaml", "-q")
    state = final_state(proc)
    assert state["first"] == [
        ["ok1", True, None, {"ok": 1}],
        ["exits", False, "WorkerCrashedError", None],
        ["killed", False, "WorkerCrashedError", None],
        ["ok2", True, None, {"ok": 2}],
    ]
    assert state["second"] == [["again[0]", True, 1], ["again[1]", True, 4], ["again[2]", True, 9]]
    assert elapsed < HANG_BOUND_S


# --- nested fan-outs -----------------------------------------------------------------------


@pytest.mark.parametrize("inner", ["thread", "process"])
def test_a_process_branch_can_fan_out_again(tead_cli, write_workflow, inner):
    """Inside each process branch, a for_each fan-out of its own (threads of that worker,
    or processes of their own)."""
    write_workflow(
        fill(
            """
            settings:
              parallel: {strategy: process, max_workers: 2}
            initial_state: {items: [1, 2]}
            nodes:
              - name: src
                run: |
                  import os
                  return {"parent": os.getpid()}
              - name: outer
                run: |
                  import os
                  return {"outer_pid": os.getpid(), "subs": [state["item"] * 10,
                                                             state["item"] * 10 + 1]}
              - name: inner
                run: |
                  import os
                  return {"inner_pid": os.getpid(), "value": state["sub"] + 1}
              - name: inner_join
                run: |
                  return {"values": [r.state["value"] for r in parallel_results],
                          "inner_pids": [r.state["inner_pid"] for r in parallel_results]}
              - name: join
                run: |
                  return {"results": [[r.branch, r.success, r.state["values"]]
                                      for r in parallel_results],
                          "pids": [[r.state["outer_pid"], r.state["inner_pids"]]
                                   for r in parallel_results]}
            edges:
              - {from: src, to: outer, parallel: true, for_each: "state['items']", fan_in: join}
              - {from: outer, to: inner, parallel: true, for_each: "state['subs']", item_var: sub,
                 fan_in: inner_join, parallel_strategy: $inner}
              - {from: inner_join, to: join}
            """,
            inner=inner,
        )
    )
    proc, elapsed = timed_run(tead_cli, "run", "wf.yaml", "-q")
    state = final_state(proc)
    assert state["results"] == [["outer[0]", True, [11, 12]], ["outer[1]", True, [21, 22]]]
    parent = state["parent"]
    for outer_pid, inner_pids in state["pids"]:
        assert outer_pid != parent
        if inner == "thread":
            assert inner_pids == [outer_pid, outer_pid]
        else:
            assert outer_pid not in inner_pids and parent not in inner_pids
    assert elapsed < HANG_BOUND_S


# --- streamed events -----------------------------------------------------------------------


def test_stream_shows_a_timed_out_process_branch(tead_cli, write_workflow):
    write_workflow(
        """
        settings:
          parallel: {strategy: process, max_workers: 2, timeout_seconds: 1}
        nodes:
          - name: src
          - name: quick
            run: |
              return {"quick": True}
          - name: stuck
            run: |
              import time
              time.sleep(30)
          - name: join
        edges:
          - {from: src, to: [quick, stuck], parallel: true, fan_in: join}
          - {from: quick, to: join}
          - {from: stuck, to: join}
        """
    )
    proc, elapsed = timed_run(tead_cli, "run", "wf.yaml", "--stream")
    assert proc.returncode == 0, proc.stderr
    assert elapsed < HANG_BOUND_S
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    fanout = [e for e in events if e["event"] == "fanout_started"]
    assert [(e["node"], e["strategy"], e["branches"]) for e in fanout] == [
        ("src", "process", ["quick", "stuck"])
    ]
    finished = {e["branch"]: e for e in events if e["event"] == "branch_finished"}
    assert set(finished) == {"quick", "stuck"}
    stuck = finished["stuck"]
    assert (stuck["success"], stuck["timeout"], stuck["error_type"], stuck["error"]) == (
        False,
        True,
        "TimeoutError",
        "branch timed out after 1 s",
    )
    quick = finished["quick"]
    assert (quick["success"], quick["timeout"], quick["error_type"]) == (True, False, None)
    fan_in = [e for e in events if e["event"] == "fan_in"]
    assert [(e["node"], e["branches"], e["failed"]) for e in fan_in] == [("join", 2, 1)]
    assert events[-1]["event"] == "run_finished"
    assert events[-1]["status"] == "succeeded"


def test_a_branch_state_that_cannot_come_back_fails_the_branch_and_keeps_its_events(
    tead_cli, write_workflow
):
    """A process branch whose final state holds a lambda: the branch fails naming the key,
    and its nodes still appear in `--stream` (they ran)."""
    write_workflow(
        """
        settings:
          parallel: {strategy: process}
        nodes:
          - name: src
          - name: make
            run: |
              return {"f": lambda: 1}
          - name: then
          - name: other
          - name: join
        edges:
          - {from: src, to: [make, other], parallel: true, fan_in: join}
          - {from: make, to: then}
          - {from: then, to: join}
          - {from: other, to: join}
        """
    )
    proc = tead_cli("run", "wf.yaml", "--stream")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    in_make = [(e["event"], e.get("node")) for e in events if e.get("path") == "make"]
    assert in_make == [
        ("branch_started", "src"),
        ("node_started", "make"),
        ("node_finished", "make"),
        ("node_started", "then"),
        ("node_finished", "then"),
        ("branch_finished", "src"),
    ]
    make = next(e for e in events if e["event"] == "branch_finished" and e["branch"] == "make")
    assert make["error_type"] == "PickleValidationError"
    assert make["error"].startswith(
        "branch 'make': state key 'f' cannot be sent back from its worker process"
    )


# --- callbacks with the process strategy ---------------------------------------------------


def _worker_pid(state: dict[str, Any]) -> dict[str, Any]:
    return {"pid": os.getpid()}


def _collect(state: dict[str, Any], parallel_results: list[ParallelFlowResult]) -> dict[str, Any]:
    return {
        "results": [(r.branch, r.success, r.state and r.state["pid"]) for r in parallel_results]
    }


class LockedRecorder:
    """A typical callback: it holds a lock, so it cannot be pickled."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str]] = []

    def on_flow_start(self, branch: str, state: dict[str, Any]) -> None:
        with self.lock:
            self.calls.append(("start", branch))

    def on_flow_complete(self, branch: str, result: ParallelFlowResult) -> None:
        with self.lock:
            self.calls.append(("complete", branch))


def test_callbacks_with_the_process_strategy_are_called_in_the_calling_process():
    """Callbacks stay in the caller (they need not be picklable) and see every branch."""
    recorder = LockedRecorder()
    graph = Graph("proc_callbacks")
    graph.add_node("src")
    graph.add_node("a", _worker_pid)
    graph.add_node("b", _worker_pid)
    graph.add_node("join", _collect)
    graph.add_parallel_edge(
        "src",
        ["a", "b"],
        fan_in="join",
        config=ParallelConfig(strategy="process", max_workers=2, callbacks=(recorder,)),
    )
    graph.add_edge("a", "join")
    graph.add_edge("b", "join")
    results = graph.compile().invoke()["results"]
    assert [r[:2] for r in results] == [("a", True), ("b", True)]
    assert os.getpid() not in {r[2] for r in results}
    assert sorted(recorder.calls) == [
        ("complete", "a"),
        ("complete", "b"),
        ("start", "a"),
        ("start", "b"),
    ]


NESTED_BREAKER = """\
name: nested
settings:
  parallel: {strategy: process, max_workers: 1}
nodes:
  - name: start
  - name: outer
  - name: flaky
    run: |
      raise ValueError("down")
  - name: inner_join
    run: |
      return {"inner": [r.error_type for r in parallel_results]}
  - name: join
    run: |
      return {"outer": [r.state.get("inner") for r in parallel_results]}
edges:
  - {from: start, to: outer, parallel: true, fan_in: join}
  - {from: outer, to: flaky, parallel: true, fan_in: inner_join, parallel_strategy: thread,
     circuit_breaker: {failure_threshold: 1, reset_timeout: 3600}}
  - {from: flaky, to: inner_join}
  - {from: inner_join, to: join}
"""


def test_a_breaker_of_a_fan_out_nested_in_a_process_branch_is_the_runs_breaker(tmp_path):
    """The nested fan-out runs in a worker process, yet its breaker is the run's own: the
    failure opens it here (named as in a thread branch), and the next run's worker starts
    from it and turns the branch away."""
    path = tmp_path / "nested.yaml"
    path.write_text(NESTED_BREAKER)
    workflow = load_workflow(path)
    assert workflow.invoke()["outer"] == [["ValueError"]]
    assert workflow.get_circuit_states() == {"nested:flaky": "open"}
    assert workflow.invoke()["outer"] == [["CircuitOpenError"]]
    workflow.reset_circuit("nested:flaky")
    assert workflow.invoke()["outer"] == [["ValueError"]]


def test_a_later_branch_of_the_same_process_fan_out_sees_the_breaker_an_earlier_opened(
    tead_cli, write_workflow
):
    """Branches run one after another (max_workers 1): the second and third start from the
    breaker the first one's nested fan-out opened, as thread branches do (each worker was
    seeded with the states from before the fan-out)."""
    text = NESTED_BREAKER.replace(
        "to: outer, parallel: true,", "to: outer, parallel: true, for_each: '[1, 2, 3]',"
    )
    outers = {}
    for strategy in ("thread", "process"):
        write_workflow(
            text.replace("strategy: process", f"strategy: {strategy}"), f"{strategy}.yaml"
        )
        outers[strategy] = final_state(tead_cli("run", f"{strategy}.yaml", "-q"))["outer"]
    assert (
        outers["process"]
        == outers["thread"]
        == [
            ["ValueError"],
            ["CircuitOpenError"],
            ["CircuitOpenError"],
        ]
    )
