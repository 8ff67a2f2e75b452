"""The executor protocol, the registry, and the thread executor on its own and under fan-outs
(timeouts, callbacks, breakers and fail_fast for real)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from tead import (
    BranchTask,
    CircuitBreakerConfig,
    Graph,
    ParallelConfig,
    ParallelExecutor,
    ParallelFlowResult,
    UnknownStrategyError,
    available_strategies,
    get_executor,
    register_executor,
    run_branch,
)
from tead.errors import FanOutError
from tead.executors import base
from tead.executors.thread import ThreadExecutor


@pytest.fixture
def clean_registry() -> Iterator[None]:
    saved = dict(base._registry)
    yield
    base._registry.clear()
    base._registry.update(saved)


def test_thread_executor_satisfies_the_protocol() -> None:
    assert isinstance(get_executor("thread"), ParallelExecutor)
    assert isinstance(get_executor("thread"), ThreadExecutor)
    assert available_strategies()[0] == "thread"


def test_unknown_strategy_names_the_available_ones() -> None:
    with pytest.raises(
        UnknownStrategyError, match=r"unknown parallel strategy 'gpu' \(available: thread"
    ):
        get_executor("gpu")


class RecordingExecutor:
    """Runs branches one after another in the calling thread and records their names."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def execute(
        self, tasks: Sequence[BranchTask], config: ParallelConfig, on_result: object = None
    ) -> list[ParallelFlowResult]:
        self.seen.extend(task.branch for task in tasks)
        return [run_branch(task) for task in tasks]

    def close(self) -> None:
        pass


def test_a_registered_executor_is_used_by_fan_outs_that_name_it(clean_registry: None) -> None:
    recorder = RecordingExecutor()
    register_executor("inline", lambda: recorder)
    graph = Graph()
    graph.add_node("s")
    graph.add_node("a", lambda s: {"t": threading.current_thread().name})
    graph.add_node("m", lambda s, parallel_results: {"t": parallel_results[0].state["t"]})
    graph.add_parallel_edge("s", "a", fan_in="m", config={"strategy": "inline"})
    assert "inline" in available_strategies()
    final = graph.compile().invoke()
    assert recorder.seen == ["a"]
    assert final["t"] == threading.main_thread().name


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
    task = BranchTask(workflow=graph.compile(), entry="a", exit="c", state={}, branch="a")
    result = run_branch(task)
    assert result.success and result.state == {"trail": ["a", "b"]}
    assert result.timing_ms >= 0


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
