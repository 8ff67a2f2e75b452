"""Regressions of the fan-out coordinator found by the examples and e2e tests."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

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


def test_fail_fast_in_one_of_two_sibling_fan_outs_stops_the_other_at_once() -> None:
    """A node fanning out to two fan-ins: a fail-fast failure in one cancels the other."""
    from tead.errors import FanOutError

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


def test_a_cancelled_half_open_probe_frees_its_slot() -> None:
    from tead.parallel.breaker import CircuitBreaker, CircuitState
    from tests.fakes import FakeClock

    clock = FakeClock()
    breaker = CircuitBreaker(
        "w:a", CircuitBreakerConfig(failure_threshold=1, reset_timeout=1), clock=clock
    )
    breaker.record_failure()
    clock.advance(1)
    assert breaker.allow()[0] is True  # the probe
    assert breaker.allow()[0] is False
    breaker.release_probe()  # the probe was cancelled
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.allow()[0] is True
