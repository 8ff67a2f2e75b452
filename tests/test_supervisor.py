"""Regressions of the fan-out coordinator found by the examples and e2e tests."""

from __future__ import annotations

import threading
import time
from typing import Any

from tead import CircuitBreakerConfig, Graph, ParallelConfig


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
