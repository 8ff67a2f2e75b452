"""End to end: per-branch timeouts, fail_fast, retries, circuit breakers, callbacks and
tracebacks, through `tead run` (a real subprocess) and the Python API, for the thread and
the process strategy. Real processes and short real sleeps; time bounds only say "did not
hang"."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tead import (
    CircuitBreakerConfig,
    Graph,
    ParallelConfig,
    ParallelFlowResult,
    RetryPolicy,
    Workflow,
    load_workflow,
)
from tead.errors import FanOutError
from tests.helpers import fill, final_state, node_yaml, timed_run

STRATEGIES = ["thread", "process"]
HANG_BOUND_S = 10.0  # a stuck branch sleeps 30 s; anything under this did not wait for it

# Imported by `run:` code beside the workflow file: counts a node's attempts in a file,
# so that worker processes (which share no memory) see each other's attempts.
ATTEMPTS_PY = '''
def count(name):
    """This attempt's number (1, 2, ...) for `name`."""
    with open(f"{name}.attempts", "a") as f:
        f.write("x")
    with open(f"{name}.attempts") as f:
        return len(f.read())
'''


def alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def gone_within(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)


def other(strategy: str) -> str:
    return "process" if strategy == "thread" else "thread"


def ok(branch: str, state: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The kept fields of a successful result."""
    return {
        "branch": branch,
        "success": True,
        "state": state,
        "error": None,
        "error_type": None,
        "timeout": False,
        "retry_count": 0,
        "attempt_errors": [],
        **extra,
    }


#: a fan-in's code: every field `ok` keeps of each branch's result, as `results`
RESULTS_JOIN = """\
keys = ("branch", "success", "state", "error", "error_type", "timeout",
        "retry_count", "attempt_errors")
return {"results": [{k: r[k] for k in keys} for r in parallel_results]}
"""


#: a node's code: the pid of the process it runs in, as `parent`
PARENT_PID = 'import os\nreturn {"parent": os.getpid()}'


def branches_flow(
    parallel: str,
    branches: dict[str, str],
    join: str = RESULTS_JOIN,
    *,
    header: str = "",
    src: str = "",
    edge_extra: str = "",
) -> str:
    """A workflow: node `src` (its code) fans out to one branch per node of `branches`
    (name: its Python code), all gathered by node `join` (its code). `parallel` is
    settings.parallel (YAML); `header` comes after the settings (an `initial_state:`, say);
    `edge_extra` ends the fan-out edge's mapping (`, timeout_seconds: 1`, say)."""
    names = ", ".join(branches)
    return (
        f"settings:\n  parallel: {parallel}\n{header}nodes:\n"
        + node_yaml("src", src)
        + "".join(node_yaml(name, code) for name, code in branches.items())
        + node_yaml("join", join)
        + f"edges:\n  - {{from: src, to: [{names}], parallel: true, fan_in: join{edge_extra}}}\n"
        + "".join(f"  - {{from: {name}, to: join}}\n" for name in branches)
    )


def sleeps_after_its_pid(name: str, then: str) -> str:
    """A branch's code: it writes its pid to `NAME.pid` (whole, by a rename), sleeps 30 s,
    then runs `then`."""
    return f"""\
import os, time
with open("{name}.tmp", "w") as f:
    f.write(str(os.getpid()))
os.replace("{name}.tmp", "{name}.pid")
time.sleep(30)
{then}
"""


# --- timeouts ------------------------------------------------------------------------------

TIMEOUT_FLOW = branches_flow(
    "{strategy: $settings_strategy, max_workers: 3, timeout_seconds: $settings_timeout}",
    {
        "quick": 'import os\nreturn {"pid": os.getpid()}',
        "stuck": sleeps_after_its_pid("stuck", then='return {"pid": "finished"}'),
        "steady": 'import os, time\ntime.sleep(0.2)\nreturn {"pid": os.getpid()}',
    },
    join="""\
        import os, time
        pid = int(open("stuck.pid").read())
        gone = None  # the stuck branch ran in this process (a thread): nothing to kill
        if pid != os.getpid():
            gone = False
            deadline = time.monotonic() + 5
            while not gone and time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    gone = True
                else:
                    time.sleep(0.05)
        keys = ("branch", "success", "error", "error_type", "timeout", "retry_count")
        return {"results": [{k: r[k] for k in keys} for r in parallel_results],
                "states": [r.state for r in parallel_results],
                "stuck_pid": pid, "stuck_gone_at_fan_in": gone}
        """,
    src=PARENT_PID,
    edge_extra="$edge_extra",
)


@pytest.mark.parametrize("where", ["settings", "edge"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_stuck_branch_times_out_alone_and_the_run_does_not_wait_for_it(
    tead_cli, write_workflow, tmp_path, strategy, where
):
    """timeout_seconds (settings.parallel, or an edge overriding a 60 s default and the
    strategy): the stuck branch is a TimeoutError result, its siblings succeed, the run
    ends long before the stuck branch would; a stuck process is killed, a thread abandoned."""
    if where == "settings":
        values = {"settings_strategy": strategy, "settings_timeout": 1, "edge_extra": ""}
    else:
        values = {
            "settings_strategy": other(strategy),
            "settings_timeout": 60,
            "edge_extra": f", parallel_strategy: {strategy}, timeout_seconds: 1",
        }
    write_workflow(fill(TIMEOUT_FLOW, **values))
    proc, elapsed = timed_run(tead_cli, "run", "wf.yaml", "-q")
    state = final_state(proc)
    assert elapsed < HANG_BOUND_S
    assert state["results"] == [
        {
            "branch": "quick",
            "success": True,
            "error": None,
            "error_type": None,
            "timeout": False,
            "retry_count": 0,
        },
        {
            "branch": "stuck",
            "success": False,
            "error": "branch timed out after 1 s",
            "error_type": "TimeoutError",
            "timeout": True,
            "retry_count": 0,
        },
        {
            "branch": "steady",
            "success": True,
            "error": None,
            "error_type": None,
            "timeout": False,
            "retry_count": 0,
        },
    ]
    parent = state["parent"]
    quick, stuck, steady = state["states"]
    assert stuck is None
    assert quick["parent"] == steady["parent"] == parent
    pid = state["stuck_pid"]
    if strategy == "process":
        assert quick["pid"] != parent and steady["pid"] != parent and pid != parent
        assert state["stuck_gone_at_fan_in"] is True  # killed during the run, not at exit
        assert gone_within(pid)
    else:
        assert quick["pid"] == steady["pid"] == pid == parent
        assert state["stuck_gone_at_fan_in"] is None


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_timed_out_branch_frees_its_worker_for_queued_branches(
    tead_cli, write_workflow, strategy
):
    """max_workers 1: after the first branch times out, the queued ones still run."""
    write_workflow(
        branches_flow(
            f"{{strategy: {strategy}, max_workers: 1, timeout_seconds: 0.5}}",
            {
                "stuck": "import time\ntime.sleep(30)",
                "second": 'return {"second": True}',
                "third": 'return {"third": True}',
            },
            join="""\
                return {"results": [[r.branch, r.success, r.error_type, r.state]
                                    for r in parallel_results]}
                """,
        )
    )
    proc, elapsed = timed_run(tead_cli, "run", "wf.yaml", "-q", limit=15)
    assert final_state(proc)["results"] == [
        ["stuck", False, "TimeoutError", None],
        ["second", True, None, {"second": True}],
        ["third", True, None, {"third": True}],
    ]
    assert elapsed < HANG_BOUND_S


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_branch_clock_starts_when_the_branch_starts_not_when_it_is_queued(
    tead_cli, write_workflow, strategy
):
    """max_workers 1, four 0.3 s branches, timeout 1 s: they queue 1.2 s in all (more than
    the timeout) yet each one has its own second, so all succeed, one after another. (A
    first fan-out warms the worker pool up: its start-up has a test of its own.)"""
    write_workflow(
        fill(
            """
            settings:
              parallel: {strategy: $strategy, max_workers: 1, timeout_seconds: 1.0}
            initial_state: {items: [1, 2, 3, 4]}
            nodes:
              - name: src
              - name: warm
              - name: ready
              - name: work
                run: |
                  import time
                  started = time.time()
                  time.sleep(0.3)
                  return {"span": [started, time.time()]}
              - name: join
                run: |
                  results = [[r.branch, r.success, r.error_type] for r in parallel_results]
                  spans = [r.state and r.state["span"] for r in parallel_results]
                  return {"results": results, "spans": spans}
            edges:
              - {from: src, to: [warm], parallel: true, fan_in: ready}
              - {from: warm, to: ready}
              - {from: ready, to: work, parallel: true, for_each: "state['items']", fan_in: join}
            """,
            strategy=strategy,
        )
    )
    state = final_state(tead_cli("run", "wf.yaml", "-q"))
    assert state["results"] == [[f"work[{i}]", True, None] for i in range(4)]
    spans = state["spans"]
    for before, after in itertools.pairwise(spans):
        assert after[0] >= before[1] - 0.01  # one at a time
    assert spans[-1][1] - spans[0][0] >= 1.15  # longer than one timeout in all


# --- fail_fast -----------------------------------------------------------------------------

FAIL_FAST_FLOW = branches_flow(
    "{strategy: $strategy, max_workers: 2, fail_fast: true}",
    {
        "sleeper": sleeps_after_its_pid("sleeper", then='open("sleeper.done", "w").close()'),
        "boom": """\
            import os, time
            deadline = time.monotonic() + 5
            while not os.path.exists("sleeper.pid") and time.monotonic() < deadline:
                time.sleep(0.02)
            with open("boom.pid", "w") as f:
                f.write(str(os.getpid()))
            raise ValueError("bad input")
            """,
    },
    join='open("join.ran", "w").close()',
    src=PARENT_PID,
)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_fail_fast_ends_the_run_at_once_with_one_line_naming_fan_out_and_branch(
    tead_cli, write_workflow, tmp_path, strategy
):
    write_workflow(fill(FAIL_FAST_FLOW, strategy=strategy))
    proc, elapsed = timed_run(tead_cli, "run", "wf.yaml", "-q")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [
        "tead: fan-out at 'src' failed fast: branch 'boom' failed: ValueError: bad input"
    ]
    assert proc.stdout == ""
    assert elapsed < HANG_BOUND_S
    assert not (tmp_path / "join.ran").exists()
    assert not (tmp_path / "sleeper.done").exists()
    sleeper = int((tmp_path / "sleeper.pid").read_text())
    boom = int((tmp_path / "boom.pid").read_text())
    if strategy == "process":
        assert sleeper != boom
        assert gone_within(sleeper)  # killed, not left sleeping for 30 s
    else:
        assert sleeper == boom  # both were threads of the finished `tead run`
        assert not alive(sleeper)


def test_fail_fast_through_the_python_api_raises_fan_out_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "wf.yaml"
    path.write_text(fill(FAIL_FAST_FLOW, strategy="process"))
    started = time.monotonic()
    with pytest.raises(FanOutError) as info:
        load_workflow(path).invoke()
    assert time.monotonic() - started < HANG_BOUND_S
    assert str(info.value) == (
        "fan-out at 'src' failed fast: branch 'boom' failed: ValueError: bad input"
    )
    assert info.value.result.error_type == "ValueError"
    assert gone_within(int((tmp_path / "sleeper.pid").read_text()))


# --- retries -------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_retry_runs_a_branch_again_until_it_succeeds_on_a_fresh_state(
    tead_cli, write_workflow, tmp_path, strategy
):
    """Fails twice, succeeds on the third attempt; each attempt starts from the fan-out
    state (an attempt's in-place change is not seen by the next); retries run out."""
    write_workflow(ATTEMPTS_PY, name="attempts.py")
    write_workflow(
        branches_flow(
            f"{{strategy: {strategy}, retry: {{max_retries: 3, base_delay: 0, jitter: 0}}}}",
            {
                "flaky": """\
                    from attempts import count
                    n = count("flaky")
                    state["seen"].append(n)
                    if n < 3:
                        raise ConnectionError(f"attempt {n} failed")
                    return {"attempt": n}
                    """,
                "fine": 'from attempts import count\nreturn {"attempt": count("fine")}',
                "hopeless": """\
                    from attempts import count
                    n = count("hopeless")
                    raise ConnectionError(f"attempt {n} failed")
                    """,
            },
            header="initial_state: {seen: []}\n",
        )
    )
    flaky, fine, hopeless = final_state(tead_cli("run", "wf.yaml", "-q"))["results"]
    assert flaky == ok(
        "flaky",
        {"seen": [3], "attempt": 3},
        retry_count=2,
        attempt_errors=["ConnectionError: attempt 1 failed", "ConnectionError: attempt 2 failed"],
    )
    assert fine == ok("fine", {"seen": [], "attempt": 1})
    assert hopeless["success"] is False
    assert hopeless["error"] == "attempt 4 failed"
    assert hopeless["error_type"] == "ConnectionError"
    assert hopeless["retry_count"] == 3
    assert hopeless["attempt_errors"] == [  # one line per failed attempt, the last too
        f"ConnectionError: attempt {n} failed" for n in (1, 2, 3, 4)
    ]
    assert (tmp_path / "flaky.attempts").read_text() == "xxx"
    assert (tmp_path / "fine.attempts").read_text() == "x"
    assert (tmp_path / "hopeless.attempts").read_text() == "xxxx"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_retry_on_matches_the_error_class_or_a_base_class_by_name(
    tead_cli, write_workflow, tmp_path, strategy
):
    """retry_on [ValueError] retries a ValueError, not a KeyError; an edge's retry_on
    [LookupError] retries a KeyError (matched by name, also from a worker process)."""
    write_workflow(ATTEMPTS_PY, name="attempts.py")
    write_workflow(
        fill(
            """
            settings:
              parallel:
                strategy: $strategy
                retry: {max_retries: 2, base_delay: 0, jitter: 0, retry_on: [ValueError]}
            nodes:
              - name: src
              - name: value
                run: |
                  from attempts import count
                  n = count("value")
                  if n == 1:
                      raise ValueError("value attempt 1")
                  return {"attempt": n}
              - name: key
                run: |
                  from attempts import count
                  count("key")
                  raise KeyError("missing")
              - name: join
                run: |
                  return {"first": [[r.branch, r.success, r.error_type, r.error, r.retry_count,
                                     list(r.attempt_errors)] for r in parallel_results]}
              - name: lookup
                run: |
                  from attempts import count
                  n = count("lookup")
                  if n == 1:
                      raise KeyError("lookup attempt 1")
                  return {"attempt": n}
              - name: join2
                run: |
                  r = parallel_results[0]
                  return {"second": [r.branch, r.success, r.state, r.retry_count,
                                     list(r.attempt_errors)]}
            edges:
              - {from: src, to: [value, key], parallel: true, fan_in: join}
              - {from: value, to: join}
              - {from: key, to: join}
              - from: join
                to: [lookup]
                parallel: true
                fan_in: join2
                retry: {max_retries: 2, base_delay: 0, jitter: 0, retry_on: [LookupError]}
              - {from: lookup, to: join2}
            """,
            strategy=strategy,
        )
    )
    state = final_state(tead_cli("run", "wf.yaml", "-q"))
    assert state["first"] == [
        ["value", True, None, None, 1, ["ValueError: value attempt 1"]],
        ["key", False, "KeyError", "'missing'", 0, ["KeyError: 'missing'"]],
    ]
    assert state["second"] == [
        "lookup",
        True,
        {"first": state["first"], "attempt": 2},
        1,
        ["KeyError: 'lookup attempt 1'"],
    ]
    assert (tmp_path / "key.attempts").read_text() == "x"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_retry_attempt_gets_its_own_timeout(tead_cli, write_workflow, tmp_path, strategy):
    """The first attempt hangs and times out after 1 s; the second starts after the first
    one's deadline, so it succeeds only with a clock of its own; the hung process is
    killed."""
    write_workflow(ATTEMPTS_PY, name="attempts.py")
    write_workflow(
        branches_flow(
            f"{{strategy: {strategy}, timeout_seconds: 1,"
            " retry: {max_retries: 2, base_delay: 0, jitter: 0}}",
            {
                "hangs_once": """\
                    import os, time
                    from attempts import count
                    n = count("hangs_once")
                    if n == 1:
                        with open("hung.tmp", "w") as f:
                            f.write(str(os.getpid()))
                        os.replace("hung.tmp", "hung.pid")
                        time.sleep(30)
                    return {"attempt": n}
                    """
            },
        )
    )
    proc, elapsed = timed_run(tead_cli, "run", "wf.yaml", "-q")
    assert final_state(proc)["results"] == [
        ok(
            "hangs_once",
            {"attempt": 2},
            retry_count=1,
            attempt_errors=["TimeoutError: branch timed out after 1 s"],
        )
    ]
    assert elapsed < HANG_BOUND_S
    assert (tmp_path / "hangs_once.attempts").read_text() == "xx"
    if strategy == "process":
        assert gone_within(int((tmp_path / "hung.pid").read_text()))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_branch_whose_every_attempt_times_out_is_a_timeout_result(
    tead_cli, write_workflow, strategy
):
    """Two attempts, both past timeout_seconds: the branch ends as a TimeoutError result
    with one retry counted, and the run goes on."""
    write_workflow(
        branches_flow(
            f"{{strategy: {strategy}, timeout_seconds: 0.5,"
            " retry: {max_retries: 1, base_delay: 0, jitter: 0}}",
            {"hangs": "import time\ntime.sleep(30)"},
        )
    )
    proc, elapsed = timed_run(tead_cli, "run", "wf.yaml", "-q")
    assert final_state(proc)["results"] == [
        {
            "branch": "hangs",
            "success": False,
            "state": None,
            "error": "branch timed out after 0.5 s",
            "error_type": "TimeoutError",
            "timeout": True,
            "retry_count": 1,
            "attempt_errors": ["TimeoutError: branch timed out after 0.5 s"] * 2,
        }
    ]
    assert elapsed < HANG_BOUND_S


def test_backoff_settings_from_yaml_set_the_retry_delays(tead_cli, write_workflow):
    """base_delay 10ms, backoff_multiplier 3, max_delay 50ms, jitter 0 → waits of 0.01,
    0.03 and 0.05 s (capped); an edge's jitter 0.5 spreads 0.02 s over [0.01, 0.03]."""
    write_workflow(
        """
        settings:
          parallel:
            retry: {max_retries: 3, base_delay: 10ms, max_delay: 50ms, backoff_multiplier: 3,
                    jitter: 0}
        nodes:
          - name: src
          - name: always
            run: |
              raise ConnectionError("down")
          - name: join
          - name: jittery
            run: |
              raise ConnectionError("still down")
          - name: join2
        edges:
          - {from: src, to: [always], parallel: true, fan_in: join}
          - {from: always, to: join}
          - from: join
            to: [jittery]
            parallel: true
            fan_in: join2
            retry: {max_retries: 4, base_delay: 0.02, backoff_multiplier: 1, jitter: 0.5}
          - {from: jittery, to: join2}
        """
    )
    proc = tead_cli("run", "wf.yaml", "--stream")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    retries = [e for e in events if e["event"] == "branch_retry"]
    always = [e for e in retries if e["branch"] == "always"]
    assert [e["attempt"] for e in always] == [2, 3, 4]
    assert [e["delay_s"] for e in always] == pytest.approx([0.01, 0.03, 0.05])
    assert {e["error"] for e in always} == {"ConnectionError: down"}
    jittery = [e for e in retries if e["branch"] == "jittery"]
    assert [e["attempt"] for e in jittery] == [2, 3, 4, 5]
    assert all(0.01 <= e["delay_s"] <= 0.03 for e in jittery)
    finished = {e["branch"]: e for e in events if e["event"] == "branch_finished"}
    assert finished["always"]["retry_count"] == 3
    assert finished["jittery"]["retry_count"] == 4
    assert not finished["always"]["success"] and not finished["jittery"]["success"]


# --- circuit breakers ----------------------------------------------------------------------

BREAKER_FLOW = """
name: guarded
settings:
  parallel:
    strategy: $strategy
    max_workers: 2
    circuit_breaker: {failure_threshold: 2, reset_timeout: 60}
nodes:
  - name: src
  - name: flaky
    run: |
      with open("flaky.runs", "a") as f:
          f.write("x")
      if state["fail"]:
          raise ConnectionError("service down")
      return {"flaky": "ok"}
  - name: steady
    run: |
      return {"steady": "ok"}
  - name: join
    run: |
      return {"results": {r.branch: [r.success, r.error_type, r.error, r.circuit_state]
                          for r in parallel_results}}
edges:
  - {from: src, to: [flaky, steady], parallel: true, fan_in: join}
  - {from: flaky, to: join}
  - {from: steady, to: join}
"""


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_breaker_opens_after_threshold_turns_the_branch_away_and_resets(
    tmp_path, monkeypatch, strategy
):
    """One Workflow invoked again and again keeps its breakers, one per branch, named
    `<workflow>:<branch start node>`; an open one fails the branch without running it."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "wf.yaml"
    path.write_text(fill(BREAKER_FLOW, strategy=strategy))
    runs = tmp_path / "flaky.runs"
    workflow = load_workflow(path)
    assert workflow.get_circuit_states() == {}

    first = workflow.invoke({"fail": True})["results"]
    assert first == {
        "flaky": [False, "ConnectionError", "service down", "closed"],
        "steady": [True, None, None, "closed"],
    }
    assert workflow.get_circuit_states() == {"guarded:flaky": "closed", "guarded:steady": "closed"}

    second = workflow.invoke({"fail": True})["results"]
    assert second["flaky"] == [False, "ConnectionError", "service down", "open"]
    assert workflow.get_circuit_states() == {"guarded:flaky": "open", "guarded:steady": "closed"}
    assert runs.read_text() == "xx"

    third = workflow.invoke({"fail": False})["results"]
    assert third == {
        "flaky": [False, "CircuitOpenError", "circuit 'guarded:flaky' is open", "open"],
        "steady": [True, None, None, "closed"],
    }
    assert runs.read_text() == "xx"  # the node did not run

    workflow.reset_circuit("guarded:flaky")
    assert workflow.get_circuit_states() == {"guarded:flaky": "closed", "guarded:steady": "closed"}
    fourth = workflow.invoke({"fail": False})["results"]
    assert fourth["flaky"] == [True, None, None, "closed"]
    assert runs.read_text() == "xxx"
    with pytest.raises(KeyError):
        workflow.reset_circuit("guarded:nope")


def _shared_breaker_graph(ran: list[int], *, workers: int, delay: float = 0.0) -> Workflow:
    def work(state: dict[str, Any]) -> None:
        time.sleep(delay)
        ran.append(state["item"])
        raise ConnectionError(f"item {state['item']} failed")

    graph = Graph("shared")
    graph.add_node("src")
    graph.add_node("work", work)
    graph.add_node(
        "join",
        lambda s, parallel_results: {
            "results": [(r.branch, r.error_type, r.circuit_state) for r in parallel_results]
        },
    )
    graph.add_parallel_edge(
        "src",
        "work",
        fan_in="join",
        for_each="state['items']",
        config={
            "max_workers": workers,
            "circuit_breaker": CircuitBreakerConfig(failure_threshold=2, reset_timeout=60),
        },
    )
    return graph.compile()


def test_a_for_each_fan_out_shares_one_breaker():
    """Two items failing once each trip one breaker `shared:work`; then every item is
    turned away."""
    ran: list[int] = []
    workflow = _shared_breaker_graph(ran, workers=2)
    first = workflow.invoke({"items": [0, 1]})["results"]
    assert [(branch, error_type) for branch, error_type, _ in first] == [
        ("work[0]", "ConnectionError"),
        ("work[1]", "ConnectionError"),
    ]
    assert sorted(ran) == [0, 1]
    assert workflow.get_circuit_states() == {"shared:work": "open"}
    second = workflow.invoke({"items": [0, 1, 2]})["results"]
    assert second == [(f"work[{i}]", "CircuitOpenError", "open") for i in range(3)]
    assert sorted(ran) == [0, 1]


def test_an_open_breaker_turns_away_the_queued_items_of_its_own_fan_out():
    """max_workers 1: items run one after another, so once two have failed the breaker is
    open when the third starts, and it and the rest must not run."""
    ran: list[int] = []
    workflow = _shared_breaker_graph(ran, workers=1, delay=0.05)
    results = workflow.invoke({"items": [0, 1, 2, 3, 4]})["results"]
    assert ran == [0, 1]
    assert [error_type for _, error_type, _ in results] == [
        "ConnectionError",
        "ConnectionError",
        "CircuitOpenError",
        "CircuitOpenError",
        "CircuitOpenError",
    ]


class Recorder:
    """Records every callback hook call (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[Any, ...]] = []

    def _add(self, *call: Any) -> None:
        with self.lock:
            self.calls.append(call)

    def on_flow_start(self, branch: str, state: dict[str, Any]) -> None:
        self._add("start", branch, state)

    def on_flow_complete(self, branch: str, result: ParallelFlowResult) -> None:
        self._add("complete", branch, result)

    def on_flow_error(self, branch: str, error: str, error_type: str, attempt: int) -> None:
        self._add("error", branch, error, error_type, attempt)

    def on_flow_timeout(self, branch: str, timeout_seconds: float, attempt: int) -> None:
        self._add("timeout", branch, timeout_seconds, attempt)

    def on_flow_retry(self, branch: str, attempt: int, delay_s: float, error: str) -> None:
        self._add("retry", branch, attempt, delay_s, error)

    def on_circuit_state_change(self, name: str, old: str, new: str) -> None:
        self._add("circuit", name, old, new)

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        with self.lock:
            return [call[1:] for call in self.calls if call[0] == kind]

    def for_branch(self, branch: str) -> list[tuple[Any, ...]]:
        with self.lock:
            return [call for call in self.calls if call[0] != "circuit" and call[1] == branch]


def test_half_open_probe_closes_or_reopens_and_transitions_reach_the_callback():
    """reset_timeout 0.2 s: an open breaker reads half_open; a failing probe opens it
    again, a succeeding one closes it; on_circuit_state_change sees every move."""
    recorder = Recorder()
    fail = {"on": True}
    ran: list[str] = []

    def flaky(state: dict[str, Any]) -> dict[str, Any]:
        ran.append("flaky")
        if fail["on"]:
            raise ConnectionError("down")
        return {"up": True}

    graph = Graph("probe")
    graph.add_node("src")
    graph.add_node("flaky", flaky)
    graph.add_node("join", lambda s, parallel_results: {"result": parallel_results[0]})
    graph.add_parallel_edge("src", ["flaky"], fan_in="join")
    graph.add_edge("flaky", "join")
    config = ParallelConfig(
        circuit_breaker=CircuitBreakerConfig(failure_threshold=2, reset_timeout=0.2),
        callbacks=(recorder,),
        callback_timeout_s=1.0,
    )
    workflow = graph.compile(parallel_config=config)
    workflow.invoke()
    workflow.invoke()
    assert recorder.of("circuit") == [("probe:flaky", "closed", "open")]
    assert len(ran) == 2

    time.sleep(0.3)
    assert workflow.get_circuit_states() == {"probe:flaky": "half_open"}
    probe = workflow.invoke()["result"]
    assert (probe.success, probe.error_type) == (False, "ConnectionError")
    assert len(ran) == 3  # the probe ran
    assert workflow.get_circuit_states() == {"probe:flaky": "open"}

    time.sleep(0.3)
    fail["on"] = False
    probe = workflow.invoke()["result"]
    assert (probe.success, probe.state, probe.circuit_state) == (True, {"up": True}, "closed")
    assert len(ran) == 4
    assert workflow.get_circuit_states() == {"probe:flaky": "closed"}
    assert recorder.of("circuit") == [
        ("probe:flaky", "closed", "open"),
        ("probe:flaky", "open", "half_open"),
        ("probe:flaky", "half_open", "open"),
        ("probe:flaky", "open", "half_open"),
        ("probe:flaky", "half_open", "closed"),
    ]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_circuit_breaker_key_in_yaml_guards_a_looping_tead_run(
    tead_cli, write_workflow, tmp_path, strategy
):
    """The same fan-out runs three times in one `tead run` (a loop): two failures open
    the breaker, the third round is turned away without running the node."""
    write_workflow(
        fill(
            """
            name: looped
            initial_state: {round: 0, log: []}
            settings:
              parallel:
                strategy: $strategy
                circuit_breaker: {failure_threshold: 2, reset_timeout: 60}
            nodes:
              - name: src
                run: |
                  return {"round": state["round"] + 1}
              - name: flaky
                run: |
                  with open("flaky.runs", "a") as f:
                      f.write(str(state["round"]))
                  raise ConnectionError("down")
              - name: join
                run: |
                  r = parallel_results[0]
                  entry = [state["round"], r.error_type, r.error, r.circuit_state]
                  return {"log": state["log"] + [entry]}
            edges:
              - {from: src, to: [flaky], parallel: true, fan_in: join}
              - {from: flaky, to: join}
              - {from: join, to: src, when: "state['round'] < 3"}
              - {from: join, to: __end__}
            """,
            strategy=strategy,
        )
    )
    proc = tead_cli("run", "wf.yaml", "--stream", "--output", "out.json")
    assert proc.returncode == 0, proc.stderr
    state = json.loads((tmp_path / "out.json").read_text())
    assert state["log"] == [
        [1, "ConnectionError", "down", "closed"],
        [2, "ConnectionError", "down", "open"],
        [3, "CircuitOpenError", "circuit 'looped:flaky' is open", "open"],
    ]
    assert (tmp_path / "flaky.runs").read_text() == "12"
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    changes = [(e["name"], e["old"], e["new"]) for e in events if e["event"] == "circuit_changed"]
    assert changes == [("looped:flaky", "closed", "open")]


# --- callbacks -----------------------------------------------------------------------------


def _callback_graph(config: ParallelConfig, *, slow_s: float) -> Workflow:
    """good succeeds; flaky raises ValueError on its first attempt; slow sleeps `slow_s`.
    The fan-in keeps the results."""
    attempts = {"flaky": 0}
    lock = threading.Lock()

    def flaky(state: dict[str, Any]) -> dict[str, Any]:
        with lock:
            attempts["flaky"] += 1
            n = attempts["flaky"]
        if n == 1:
            raise ValueError("flaky attempt 1")
        return {"flaky": n}

    graph = Graph("callbacks", initial_state={"base": 1})
    graph.add_node("src")
    graph.add_node("good", lambda s: {"good": True})
    graph.add_node("flaky", flaky)
    graph.add_node("slow", lambda s: time.sleep(slow_s))
    graph.add_node("join", lambda s, parallel_results: {"results": list(parallel_results)})
    graph.add_parallel_edge("src", ["good", "flaky", "slow"], fan_in="join", config=config)
    for branch in ("good", "flaky", "slow"):
        graph.add_edge(branch, "join")
    return graph.compile()


def _callback_config(
    callbacks: tuple[object, ...], *, timeout: float | None, callback_timeout_s: float
) -> ParallelConfig:
    return ParallelConfig(
        max_workers=3,
        timeout_seconds=timeout,
        retry=RetryPolicy(max_retries=1, base_delay=0.0, jitter=0.0, retry_on=("ValueError",)),
        callbacks=callbacks,
        callback_timeout_s=callback_timeout_s,
    )


def _comparable(results: list[ParallelFlowResult]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.to_dict().items() if k != "timing_ms"} for r in results]


def test_callbacks_fire_with_the_documented_arguments():
    """Per branch, in order: start (branch, state), error (branch, error, error_type,
    attempt), retry (branch, next attempt, delay, error), timeout (branch, seconds,
    attempt), complete (branch, final result)."""
    recorder = Recorder()
    config = _callback_config((recorder,), timeout=0.5, callback_timeout_s=1.0)
    good, flaky, slow = _callback_graph(config, slow_s=1.5).invoke()["results"]
    assert (good.success, flaky.success, flaky.retry_count, slow.timeout) == (True, True, 1, True)
    fan_out_state = {"base": 1}
    assert recorder.for_branch("good") == [
        ("start", "good", fan_out_state),
        ("complete", "good", good),
    ]
    assert recorder.for_branch("flaky") == [
        ("start", "flaky", fan_out_state),
        ("error", "flaky", "flaky attempt 1", "ValueError", 1),
        ("retry", "flaky", 2, 0.0, "ValueError: flaky attempt 1"),
        ("start", "flaky", fan_out_state),
        ("complete", "flaky", flaky),
    ]
    assert recorder.for_branch("slow") == [
        ("start", "slow", fan_out_state),
        ("timeout", "slow", 0.5, 1),
        ("complete", "slow", slow),
    ]
    assert recorder.of("circuit") == []


class Raiser:
    """A callback whose every hook raises."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        if not name.startswith("on_"):
            raise AttributeError(name)

        def hook(*args: Any) -> None:
            raise RuntimeError(f"{name} exploded")

        return hook


class Hanger:
    """A callback whose every hook hangs for 2 s."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        if not name.startswith("on_"):
            raise AttributeError(name)
        return lambda *args: time.sleep(2)


def test_raising_and_hanging_callbacks_change_no_result():
    """callback_timeout_s 0.2: hooks that hang 2 s and hooks that raise leave every result
    as it is without callbacks."""
    plain = _callback_config((), timeout=None, callback_timeout_s=0.2)
    baseline = _comparable(_callback_graph(plain, slow_s=0.05).invoke()["results"])
    noisy = _callback_config((Raiser(), Hanger()), timeout=None, callback_timeout_s=0.2)
    assert _comparable(_callback_graph(noisy, slow_s=0.05).invoke()["results"]) == baseline
    assert [(r["success"], r["retry_count"]) for r in baseline] == [(True, 0), (True, 1), (True, 0)]


def test_a_raising_callback_does_not_stop_the_others():
    before, after = Recorder(), Recorder()
    config = _callback_config((before, Raiser(), after), timeout=0.5, callback_timeout_s=1.0)
    results = _callback_graph(config, slow_s=1.5).invoke()["results"]
    assert [(r.success, r.retry_count, r.timeout) for r in results] == [
        (True, 0, False),
        (True, 1, False),
        (False, 0, True),
    ]
    for recorder in (before, after):
        assert sorted(branch for branch, _ in recorder.of("complete")) == ["flaky", "good", "slow"]
        assert sorted(branch for branch, _ in recorder.of("start")) == [
            "flaky",
            "flaky",
            "good",
            "slow",
        ]
        assert recorder.of("error") == [("flaky", "flaky attempt 1", "ValueError", 1)]
        assert recorder.of("retry") == [("flaky", 2, 0.0, "ValueError: flaky attempt 1")]
        assert recorder.of("timeout") == [("slow", 0.5, 1)]


def test_a_hanging_callback_does_not_delay_the_calls_of_other_callbacks():
    """Branches start on several threads at once; every call of a well-behaved callback
    has been made when invoke() returns, although another callback hangs."""

    class HangsOnStart:
        def on_flow_start(self, branch: str, state: dict[str, Any]) -> None:
            time.sleep(2)

    recorder = Recorder()
    graph = Graph("hang", initial_state={"items": [0, 1, 2, 3]})
    graph.add_node("src")
    graph.add_node("work", lambda s: {"v": s["item"]})
    graph.add_node("join", lambda s, parallel_results: {"n": len(parallel_results)})
    graph.add_parallel_edge(
        "src",
        "work",
        fan_in="join",
        for_each="state['items']",
        config=ParallelConfig(
            max_workers=2, callbacks=(HangsOnStart(), recorder), callback_timeout_s=0.2
        ),
    )
    assert graph.compile().invoke()["n"] == 4
    assert sorted(branch for branch, _ in recorder.of("start")) == [f"work[{i}]" for i in range(4)]
    assert sorted(branch for branch, _ in recorder.of("complete")) == [
        f"work[{i}]" for i in range(4)
    ]


def test_a_slow_on_flow_start_callback_does_not_use_up_the_branch_timeout():
    """An instant branch with timeout_seconds 0.3 and an on_flow_start hook that takes
    0.5 s (callback_timeout_s 1) still succeeds: callbacks change no outcome."""

    class SlowStart:
        def on_flow_start(self, branch: str, state: dict[str, Any]) -> None:
            time.sleep(0.5)

    graph = Graph("slowstart")
    graph.add_node("src")
    graph.add_node("a", lambda s: {"a": 1})
    graph.add_node("join", lambda s, parallel_results: {"results": list(parallel_results)})
    graph.add_parallel_edge(
        "src",
        ["a"],
        fan_in="join",
        config=ParallelConfig(
            timeout_seconds=0.3, callbacks=(SlowStart(),), callback_timeout_s=1.0
        ),
    )
    graph.add_edge("a", "join")
    (result,) = graph.compile().invoke()["results"]
    assert (result.success, result.timeout, result.error_type) == (True, False, None)


def test_on_flow_start_of_a_retry_gets_the_state_the_retry_starts_from():
    """The first attempt changes its state in place and fails; the retry starts from the
    fan-out state again, and on_flow_start must report that state, not the changed one."""
    recorder = Recorder()
    attempts: list[int] = []

    def flaky(state: dict[str, Any]) -> dict[str, Any]:
        attempts.append(len(attempts) + 1)
        state["trail"].append(len(attempts))
        if len(attempts) == 1:
            raise ValueError("once")
        return {"seen": list(state["trail"])}

    graph = Graph("restart", initial_state={"trail": []})
    graph.add_node("src")
    graph.add_node("flaky", flaky)
    graph.add_node("join", lambda s, parallel_results: {"result": parallel_results[0]})
    graph.add_parallel_edge("src", ["flaky"], fan_in="join")
    graph.add_edge("flaky", "join")
    config = ParallelConfig(
        retry=RetryPolicy(max_retries=1, base_delay=0.0, jitter=0.0), callbacks=(recorder,)
    )
    result = graph.compile(parallel_config=config).invoke()["result"]
    assert result.state == {"trail": [2], "seen": [2]}  # the retry started afresh
    assert recorder.of("start") == [("flaky", {"trail": []}), ("flaky", {"trail": []})]


# --- tracebacks ----------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_include_traceback_gives_the_branch_traceback(tead_cli, write_workflow, strategy):
    """The traceback points at the `run:` line in the workflow file; without the key (an
    edge override turns it off) there is none."""
    write_workflow(
        fill(
            """
            settings:
              parallel: {strategy: $strategy, include_traceback: true}
            nodes:
              - name: src
              - name: bad
                run: |
                  value = 1
                  raise ValueError("bad value")
              - name: good
              - name: join
                run: |
                  return {"with": [[r.branch, r.traceback] for r in parallel_results]}
              - name: bad2
                run: |
                  raise ValueError("bad again")
              - name: join2
                run: |
                  return {"without": [[r.branch, r.error_type, r.traceback]
                                      for r in parallel_results]}
            edges:
              - {from: src, to: [bad, good], parallel: true, fan_in: join}
              - {from: bad, to: join}
              - {from: good, to: join}
              - {from: join, to: [bad2], parallel: true, fan_in: join2, include_traceback: false}
              - {from: bad2, to: join2}
            """,
            strategy=strategy,
        )
    )
    state = final_state(tead_cli("run", "wf.yaml", "-q"))
    (bad, trace), good = state["with"]
    assert bad == "bad"
    assert good == ["good", None]
    assert trace.startswith("Traceback (most recent call last):\n")
    assert 'File "wf.yaml", line 8' in trace
    assert 'raise ValueError("bad value")' in trace
    assert trace.endswith("ValueError: bad value\n")
    assert state["without"] == [["bad2", "ValueError", None]]
