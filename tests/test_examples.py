"""Every example under examples/ validates and runs to its documented final state (or, for
reliability_fail_fast.yaml, its documented failure); callbacks_api.py prints its output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import tead
from tead.engine.events import BranchFinished, Event, NodeStarted

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RunTead = Callable[..., subprocess.CompletedProcess[str]]  # the `tead_cli` fixture
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))


class _Absent:
    """Marks a key that must not be in the final state."""

    def __repr__(self) -> str:
        return "<absent>"


ABSENT = _Absent()


@dataclass(frozen=True)
class RunFails:
    """An example whose run fails on purpose: its exit code and last line on stderr."""

    exit_code: int
    message: str


def _outcome(
    ok: bool, error_type: str | None = None, error: str | None = None, circuit: str = "closed"
) -> dict[str, Any]:
    """One branch's entry in reliability_circuit_breaker's `rounds_log`."""
    return {"ok": ok, "error_type": error_type, "error": error, "circuit_state": circuit}


PRICES_DOWN = _outcome(False, "ConnectionError", "price service unreachable")
PRICES_OPENED = _outcome(False, "ConnectionError", "price service unreachable", circuit="open")
PRICES_SKIPPED = _outcome(
    False,
    "CircuitOpenError",
    "circuit 'reliability_circuit_breaker:fetch_prices' is open",
    circuit="open",
)
STOCK_OK = _outcome(True)


def _rounds_log(rounds: int) -> list[dict[str, Any]]:
    """Rounds 1 and 2 run fetch_prices and fail (round 2's failure opens the breaker, and
    its result says so); the breaker is open from round 3 on."""
    return [
        {
            "round": n,
            "fetch_prices": PRICES_DOWN if n == 1 else PRICES_OPENED if n == 2 else PRICES_SKIPPED,
            "fetch_stock": STOCK_OK,
        }
        for n in range(1, rounds + 1)
    ]


EXPECTED: dict[str, Any] = {
    "hello.yaml": {"who": "world", "greeting": "HELLO, WORLD!"},
    "fanout_static.yaml": {
        "x": 4,
        "branches": ["square", "cube", "negate"],
        "values": [16, 64, -4],
        "value_in_main_state": False,
        "value": ABSENT,
    },
    "fanout_tea_style.yaml": {
        "order": ["count_words", "count_chars", "first_letters"],
        "summary": {"words": 9, "longest": "quick", "chars": 35, "initials": "tqbfjotld"},
        "words_count": ABSENT,
    },
    "fanout_nested.yaml": {
        "numbers": [1, 3, 4, 5, 6, 8],
        "outer_order": ["evens", "odds"],
        "inner_order": ["evens_sum", "evens_max"],
        "evens": {"sum": 18, "max": 8},
        "odds": [1, 3, 5],
        "picked_in_main_state": False,
    },
    "fanout_chained.yaml": {
        "count": 6,
        "low": [35, 58, 44],
        "high": [72, 90, 81],
        "second_order": ["total", "spread"],
        "totals": {"low": 137, "high": 243},
        "spreads": {"low": 23, "high": 18},
        "result": ABSENT,
    },
    "fanout_two_fan_ins.yaml": {
        "order_id": "A-17",
        "invoice": {"net": 42.5, "tax": 8.5, "total": 51.0},
        "invoice_branches": ["price", "tax"],
        "shipment": {"weight_g": 2000, "label": "A-17/2", "paid": 51.0},
        "shipment_branches": ["pack", "label"],
    },
    "fanout_for_each.yaml": {
        "numbers": [3, 1, 4, 2],
        "branches": ["square[0]", "square[1]", "square[2]", "square[3]"],
        "squares": [9, 1, 16, 4],
        "job_in_main_state": False,
    },
    "fanout_partial_failure.yaml": {
        "received": 4,
        "numbers": [10, 20, 40],
        "total": 70,
        "failed": [
            {
                "branch": "parse[2]",
                "error_type": "ValueError",
                "error": "invalid literal for int() with base 10: 'thirty'",
            }
        ],
    },
    "conditional.yaml": {
        "n": 1,
        "valid": True,
        "path": [7, 22, 11, 34, 17, 52, 26, 13, 40, 20, 10, 5, 16, 8, 4, 2, 1],
        "steps": 16,
        "label": "medium",
    },
    "uses_module.yaml": {
        "words": ["the", "fox", "saw", "the", "dog", "the", "dog", "saw", "the", "fox"],
        "word_counts": {"the": 4, "fox": 2, "cat": 0},
        "branches": ["count_the", "count_fox", "count_cat"],
        "total_words": 10,
    },
    "entry_exit.yaml": {
        "rows": [{"name": " grace ", "amount": "12.25"}, {"name": "alan", "amount": "  7.75"}],
        "checked": 2,
        "records": [{"name": "Grace", "cents": 1225}, {"name": "Alan", "cents": 775}],
        "loaded": 2,
        "total_cents": 2000,
        "message": "loaded 2 records, 2000 cents",
    },
    "notify_webhook.yaml": {
        "message": "nightly-import run example failed: an example",
        "posted": False,
    },
    "thumbnails.yaml": {
        "size": 128,
        "files": ["inbox/beach.jpg", "inbox/broken.jpg", "inbox/cat.jpg"],
        "thumbs": ["thumbs/beach_128q85.jpg", "thumbs/cat_128q85.jpg"],
        "failed": ["resize[1]"],
    },
    "reliability_timeout.yaml": {
        "slow_seconds": 3,
        "branches": [
            {
                "branch": "lookup_cache",
                "success": True,
                "timeout": False,
                "error_type": None,
                "error": None,
                "answer": "cached",
            },
            {
                "branch": "query_slow_api",
                "success": False,
                "timeout": True,
                "error_type": "TimeoutError",
                "error": "branch timed out after 0.3 s",
                "answer": None,
            },
        ],
        "gave_up_early": True,
    },
    "reliability_retry.yaml": {
        "workdir": None,
        "results": [
            {
                "branch": "flaky_download",
                "success": True,
                "retry_count": 2,
                "attempt_errors": [
                    "ConnectionError: connection reset (attempt 1)",
                    "ConnectionError: connection reset (attempt 2)",
                ],
                "error": None,
                "download": "ok on attempt 3",
            },
            {
                "branch": "bad_input",
                "success": False,
                "retry_count": 0,
                "attempt_errors": ["ValueError: malformed record"],
                "error": "ValueError: malformed record",
                "download": None,
            },
            {
                "branch": "always_down",
                "success": False,
                "retry_count": 3,
                "attempt_errors": [
                    "ConnectionError: host unreachable (attempt 1)",
                    "ConnectionError: host unreachable (attempt 2)",
                    "ConnectionError: host unreachable (attempt 3)",
                    "ConnectionError: host unreachable (attempt 4)",
                ],
                "error": "ConnectionError: host unreachable (attempt 4)",
                "download": None,
            },
        ],
    },
    "reliability_fail_fast.yaml": RunFails(
        exit_code=1,
        message=(
            "tead: fan-out at 'checkout' failed fast: "
            "branch 'charge_card' failed: ValueError: card declined"
        ),
    ),
    "reliability_circuit_breaker.yaml": {
        "rounds": 4,
        "round": 4,
        "rounds_log": _rounds_log(4),
    },
    "strategy_process.yaml": {
        "limits": [100000, 200000, 300000, 400000],
        "branches": ["count_primes[0]", "count_primes[1]", "count_primes[2]", "count_primes[3]"],
        "prime_counts": [9592, 17984, 25997, 33860],
        "ran_in_worker_processes": True,
        "distinct_workers_ok": True,
        "fan_in_in_main_process": True,
        "pid": ABSENT,
    },
    "strategy_per_edge.yaml": {
        "digests": {
            "alpha": "d4842aee02c5f9c8",
            "beta": "1a580f4fa2379b1a",
            "gamma": "00d94ab7ea67dc99",
        },
        "digests_in_worker_processes": True,
        "steps": [
            {"branch": "step_one", "success": True, "timeout": False},
            {"branch": "step_two", "success": True, "timeout": False},
            {"branch": "step_stuck", "success": False, "timeout": True},
        ],
        "steps_in_main_process": True,
        "steps_one_at_a_time": True,
        "word": ABSENT,
    },
}


def subset(state: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """The keys of `expected` as found in `state` (ABSENT where missing), for one `==`."""
    return {key: state.get(key, ABSENT) for key in expected}


def run_cli(tead_cli: RunTead, tmp_path: Path, example: str, *args: str) -> dict[str, Any]:
    """Run an example with `tead run ... --output`, assert success, return the final state."""
    out = tmp_path / "out.json"
    proc = tead_cli("run", str(EXAMPLES / example), "--output", str(out), *args)
    assert proc.returncode == 0, proc.stderr
    state: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return state


def test_examples_exist() -> None:
    assert len(EXAMPLE_FILES) >= 12
    assert (EXAMPLES / "example_ops.py").is_file()


def test_every_example_has_an_expected_state() -> None:
    assert set(EXPECTED) == {path.name for path in EXAMPLE_FILES}


def test_validate_accepts_every_example(tead_cli: RunTead) -> None:
    proc = tead_cli("validate", *map(str, EXAMPLE_FILES))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    ok_lines = [line for line in proc.stdout.splitlines() if ": ok (" in line]
    assert len(ok_lines) == len(EXAMPLE_FILES)


@pytest.mark.parametrize("example", [path.name for path in EXAMPLE_FILES])
def test_example_runs_to_expected_state(tead_cli: RunTead, tmp_path: Path, example: str) -> None:
    expected = EXPECTED[example]
    if isinstance(expected, RunFails):
        out = tmp_path / "out.json"
        proc = tead_cli("run", str(EXAMPLES / example), "--output", str(out))
        last_line = proc.stderr.splitlines()[-1:]
        assert (proc.returncode, last_line) == (expected.exit_code, [expected.message])
        assert not out.exists()
        return
    assert subset(run_cli(tead_cli, tmp_path, example), expected) == expected


def test_hello_quick_start(tead_cli: RunTead, tmp_path: Path) -> None:
    """The README's quick start prints exactly this state."""
    state = run_cli(tead_cli, tmp_path, "hello.yaml", "--input", '{"who": "tead"}')
    assert state == {"who": "tead", "greeting": "HELLO, TEAD!"}


def test_entry_exit_scoped_run(tead_cli: RunTead, tmp_path: Path) -> None:
    """Starting at `check` and stopping before `load` still fans out, and runs nothing else."""
    rows = [{"name": " ada ", "amount": "1.50"}, {"name": "bob", "amount": "2"}]
    state = run_cli(
        tead_cli,
        tmp_path,
        "entry_exit.yaml",
        "--entry-point",
        "check",
        "--exit-point",
        "load",
        "--input",
        json.dumps({"rows": rows}),
    )
    expected = {
        "rows": rows,
        "checked": 2,
        "records": [{"name": "Ada", "cents": 150}, {"name": "Bob", "cents": 200}],
        "loaded": ABSENT,
        "total_cents": ABSENT,
        "message": ABSENT,
    }
    assert subset(state, expected) == expected


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, {"n": 0, "valid": False, "path": [0], "steps": ABSENT, "label": ABSENT}),
        (27, {"n": 1, "valid": True, "steps": 111, "label": "long"}),
        (3, {"n": 1, "valid": True, "path": [3, 10, 5, 16, 8, 4, 2, 1], "label": "short"}),
    ],
)
def test_conditional_takes_each_route(
    tead_cli: RunTead, tmp_path: Path, n: int, expected: dict[str, Any]
) -> None:
    """n=0 takes the conditional edge to __end__; other n pick the first true `when:`."""
    state = run_cli(tead_cli, tmp_path, "conditional.yaml", "--input", json.dumps({"n": n}))
    assert subset(state, expected) == expected


def _run_api(example: str) -> tuple[dict[str, Any], list[Event]]:
    events: list[Event] = []
    final = tead.load_workflow(EXAMPLES / example).invoke(on_event=events.append)
    return final, events


def _finished_paths(events: list[Event]) -> list[str]:
    return [e.path for e in events if isinstance(e, BranchFinished)]


def test_for_each_results_in_item_order_through_api() -> None:
    """Branches finish last-to-first, yet `parallel_results` is in item order."""
    final, events = _run_api("fanout_for_each.yaml")
    assert _finished_paths(events) == ["square[3]", "square[2]", "square[1]", "square[0]"]
    expected = EXPECTED["fanout_for_each.yaml"]
    assert subset(final, expected) == expected


def test_for_each_with_other_numbers_through_api() -> None:
    """The README's Python API call: the input replaces the initial numbers."""
    final = tead.load_workflow(EXAMPLES / "fanout_for_each.yaml").invoke({"numbers": [1, 2, 3]})
    assert final["squares"] == [1, 4, 9]
    assert final["branches"] == ["square[0]", "square[1]", "square[2]"]


def test_nested_results_in_declaration_order_through_api() -> None:
    """Inner and outer fan-ins get declaration order although later branches finish first."""
    final, events = _run_api("fanout_nested.yaml")
    finished = _finished_paths(events)
    assert finished.index("evens/evens_max") < finished.index("evens/evens_sum")
    assert finished.index("odds") < finished.index("evens")
    assert sorted(finished) == ["evens", "evens/evens_max", "evens/evens_sum", "odds"]
    expected = EXPECTED["fanout_nested.yaml"]
    assert subset(final, expected) == expected


# --- reliability and strategy examples ---------------------------------------------------------

NEW_EXAMPLES = [
    "reliability_timeout.yaml",
    "reliability_retry.yaml",
    "reliability_fail_fast.yaml",
    "reliability_circuit_breaker.yaml",
    "strategy_process.yaml",
    "strategy_per_edge.yaml",
]


@pytest.mark.parametrize("example", NEW_EXAMPLES)
def test_reliability_example_header_shows_how_to_run_it(example: str) -> None:
    """Each header explains the feature and names the exact command that runs it."""
    text = (EXAMPLES / example).read_text(encoding="utf-8")
    header = text[: text.index("\nname:")].splitlines()
    assert len(header) >= 10
    assert all(line.startswith("#") for line in header)
    assert any(line.startswith(f"#   tead run examples/{example}") for line in header)
    assert any("What you see" in line for line in header)


def _stream(
    tead_cli: RunTead, example: str, *args: str
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]], float]:
    """`tead run --stream`: the process, its events and how long it took (seconds)."""
    started = time.monotonic()
    proc = tead_cli("run", str(EXAMPLES / example), "--stream", *args)
    elapsed = time.monotonic() - started
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    return proc, events, elapsed


def _branch_events(events: list[dict[str, Any]], kind: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event["event"] == kind:
            found.setdefault(event["branch"], []).append(event)
    return found


def test_timeout_does_not_wait_for_the_slow_branch(tead_cli: RunTead) -> None:
    """The 3 s sleeper is given up at 0.3 s, and the CLI exits without waiting for it
    (typically in about 0.6 s, so the bound below only fails if tead waits)."""
    proc, events, elapsed = _stream(tead_cli, "reliability_timeout.yaml")
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 3.0
    finished = _branch_events(events, "branch_finished")
    slow = finished["query_slow_api"][0]
    assert (slow["success"], slow["timeout"], slow["error_type"]) == (False, True, "TimeoutError")
    assert 250 <= slow["timing_ms"] < 2000
    assert finished["lookup_cache"][0]["success"] is True


def test_timeout_example_in_time(tead_cli: RunTead, tmp_path: Path) -> None:
    """A branch that finishes within timeout_seconds is a plain success."""
    state = run_cli(
        tead_cli, tmp_path, "reliability_timeout.yaml", "--input", '{"slow_seconds": 0.01}'
    )
    assert [(b["branch"], b["success"], b["timeout"], b["answer"]) for b in state["branches"]] == [
        ("lookup_cache", True, False, "cached"),
        ("query_slow_api", True, False, "fresh"),
    ]


def test_retry_events_follow_the_backoff(tead_cli: RunTead) -> None:
    """One branch_retry event per retry, with base_delay * 2**(n-1) ± 50 % jitter."""
    proc, events, _ = _stream(tead_cli, "reliability_retry.yaml")
    assert proc.returncode == 0, proc.stderr
    retries = _branch_events(events, "branch_retry")
    assert sorted(retries) == ["always_down", "flaky_download"]
    assert [e["attempt"] for e in retries["flaky_download"]] == [2, 3]
    assert [e["attempt"] for e in retries["always_down"]] == [2, 3, 4]
    for event in retries["flaky_download"] + retries["always_down"]:
        nominal = 0.01 * 2 ** (event["attempt"] - 2)
        assert 0.5 * nominal - 0.001 <= event["delay_s"] <= 1.5 * nominal + 0.001, event
    assert retries["always_down"][0]["error"] == "ConnectionError: host unreachable (attempt 1)"
    final = events[-1]
    assert final["event"] == "run_finished"
    assert final["state"]["results"] == EXPECTED["reliability_retry.yaml"]["results"]


def test_retry_example_removes_its_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`prepare` makes its counter folder with tempfile.mkdtemp; `cleanup` removes it."""
    made: list[str] = []
    real_mkdtemp = tempfile.mkdtemp

    def spy(*args: Any, **kwargs: Any) -> str:
        path = real_mkdtemp(*args, **kwargs)
        made.append(path)
        return path

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(tempfile, "mkdtemp", spy)
    final = tead.load_workflow(EXAMPLES / "reliability_retry.yaml").invoke()
    expected = EXPECTED["reliability_retry.yaml"]
    assert subset(final, expected) == expected
    assert len(made) == 1
    assert Path(made[0]).parent == tmp_path
    assert list(tmp_path.iterdir()) == []


def test_fail_fast_cancels_the_other_branches_at_once(tead_cli: RunTead) -> None:
    """The 5 s branches are cancelled, the fan-in never runs, and the run fails without
    waiting for them (typically in about 0.3 s)."""
    proc, events, elapsed = _stream(tead_cli, "reliability_fail_fast.yaml")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [EXPECTED["reliability_fail_fast.yaml"].message]
    assert elapsed < 5.0
    finished = {b: e[0]["error_type"] for b, e in _branch_events(events, "branch_finished").items()}
    assert finished == {
        "charge_card": "ValueError",
        "reserve_stock": "FanOutCancelledError",
        "send_email": "FanOutCancelledError",
    }
    started = [e["node"] for e in events if e["event"] == "node_started"]
    assert "confirm" not in started
    assert events[-1]["event"] == "run_finished"
    assert events[-1]["status"] == "failed"


def test_fail_fast_through_api_raises_run_error() -> None:
    workflow = tead.load_workflow(EXAMPLES / "reliability_fail_fast.yaml")
    with pytest.raises(tead.RunError, match=r"branch 'charge_card' failed: ValueError"):
        workflow.invoke({"work_seconds": 0.5})


def test_circuit_breaker_stops_running_the_failing_branch() -> None:
    """fetch_prices runs in rounds 1 and 2 only; its breaker stays open, and a reset
    closes it so that the next run tries it (twice) again."""
    workflow = tead.load_workflow(EXAMPLES / "reliability_circuit_breaker.yaml")
    for _ in range(2):  # the second run starts after reset_circuit
        events: list[Event] = []
        final = workflow.invoke(on_event=events.append)
        assert final["rounds_log"] == _rounds_log(4)
        started = [e.node for e in events if isinstance(e, NodeStarted)]
        assert started.count("fetch_prices") == 2
        assert started.count("fetch_stock") == 4
        assert workflow.get_circuit_states() == {
            "reliability_circuit_breaker:fetch_prices": "open",
            "reliability_circuit_breaker:fetch_stock": "closed",
        }
        workflow.reset_circuit("reliability_circuit_breaker:fetch_prices")
        assert workflow.get_circuit_states()["reliability_circuit_breaker:fetch_prices"] == (
            "closed"
        )


def test_circuit_breaker_example_with_more_rounds(tead_cli: RunTead, tmp_path: Path) -> None:
    state = run_cli(
        tead_cli, tmp_path, "reliability_circuit_breaker.yaml", "--input", '{"rounds": 6}'
    )
    assert state["rounds_log"] == _rounds_log(6)


def test_process_example_uses_worker_processes(tead_cli: RunTead) -> None:
    proc, events, _ = _stream(tead_cli, "strategy_process.yaml", "--input", '{"limits": [10, 100]}')
    assert proc.returncode == 0, proc.stderr
    fanouts = [e for e in events if e["event"] == "fanout_started"]
    assert [(e["strategy"], e["branches"]) for e in fanouts] == [
        ("process", ["count_primes[0]", "count_primes[1]"])
    ]
    state = events[-1]["state"]
    assert state["prime_counts"] == [4, 25]
    assert state["ran_in_worker_processes"] is True
    assert 1 <= state["distinct_workers"] <= 2


def test_per_edge_overrides_pick_each_fan_outs_strategy(tead_cli: RunTead) -> None:
    proc, events, _ = _stream(tead_cli, "strategy_per_edge.yaml")
    assert proc.returncode == 0, proc.stderr
    fanouts = [(e["node"], e["strategy"]) for e in events if e["event"] == "fanout_started"]
    assert fanouts == [("start", "process"), ("collect_digests", "thread")]
    stuck = _branch_events(events, "branch_finished")["step_stuck"][0]
    assert (stuck["timeout"], stuck["error"]) == (True, "branch timed out after 0.5 s")
    assert stuck["timing_ms"] < 3000
    expected = EXPECTED["strategy_per_edge.yaml"]
    assert subset(events[-1]["state"], expected) == expected


CALLBACKS_RUN_EVENTS = """\
  fetch: start
  fetch: complete: ok
  flaky: start
  flaky: error on attempt 1: ConnectionError: connection reset
  flaky: retry: attempt 2 in 0.01 s after ConnectionError: connection reset
  flaky: start
  flaky: complete: ok
"""
SLOW_TIMES_OUT = """\
  slow: start
  slow: timeout after 0.2 s on attempt 1
  slow: complete: failed (TimeoutError)
"""
CALLBACKS_RESULTS = """\
  {'branch': 'fetch', 'success': True, 'error_type': None, 'timeout': False, \
'retry_count': 0, 'attempt_errors': []}
  {'branch': 'flaky', 'success': True, 'error_type': None, 'timeout': False, \
'retry_count': 1, 'attempt_errors': ['ConnectionError: connection reset']}
  {'branch': 'slow', 'success': False, 'error_type': '%s', 'timeout': %s, \
'retry_count': 0, 'attempt_errors': %s}
"""
TIMED_OUT = CALLBACKS_RESULTS % (
    "TimeoutError",
    "True",
    "['TimeoutError: branch timed out after 0.2 s']",
)
STATES = (
    "{'callbacks_demo:fetch': 'closed', 'callbacks_demo:flaky': 'closed', "
    "'callbacks_demo:slow': '%s'}"
)
CALLBACKS_API_OUTPUT = (
    "run 1: callback events\n"
    + CALLBACKS_RUN_EVENTS
    + SLOW_TIMES_OUT
    + "run 1: results\n"
    + TIMED_OUT
    + "run 2: callback events\n"
    + CALLBACKS_RUN_EVENTS
    + SLOW_TIMES_OUT
    + "  callbacks_demo:slow: circuit closed -> open\n"
    + "run 2: results\n"
    + TIMED_OUT
    + "run 3: callback events\n"
    + CALLBACKS_RUN_EVENTS
    + "  slow: complete: failed (CircuitOpenError)\n"
    + "run 3: results\n"
    + CALLBACKS_RESULTS % ("CircuitOpenError", "False", "[]")
    + "circuit states: "
    + STATES % "open"
    + "\n"
    + "after reset_circuit('callbacks_demo:slow'): "
    + STATES % "closed"
    + "\n"
    + "run 4: callback events\n"
    + CALLBACKS_RUN_EVENTS
    + SLOW_TIMES_OUT
    + "run 4: results\n"
    + TIMED_OUT
    + "circuit states: "
    + STATES % "closed"
    + "\n"
)


def test_callbacks_api_script_prints_events_results_and_circuits() -> None:
    """examples/callbacks_api.py, run as a script, prints exactly this (typically in
    about 0.7 s: it never waits for the three 1 s `slow` calls it gave up on)."""
    root = EXAMPLES.parent
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "examples/callbacks_api.py"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout == CALLBACKS_API_OUTPUT
    assert elapsed < 3.0


def test_callbacks_api_script_does_nothing_on_import() -> None:
    """The script is guarded by `if __name__ == "__main__":` (importing it runs nothing)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import runpy; runpy.run_path('examples/callbacks_api.py')"],
        cwd=EXAMPLES.parent,
        env={**os.environ, "PYTHONPATH": str(EXAMPLES.parent)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
