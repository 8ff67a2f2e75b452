"""Callbacks, retries, timeouts and circuit breakers from the Python API.

    start ──┬── fetch ──┐   succeeds
            ├── flaky ──┼── join   fails once (ConnectionError), then succeeds on its retry
            └── slow ───┘   sleeps 1 s: always stopped by the 0.2 s timeout

The workflow is built in code and compiled with one `tead.ParallelConfig` for all its
fan-outs: `callbacks=` takes objects whose `on_flow_*` / `on_circuit_state_change`
methods tead calls as branches start, fail, time out, are retried and complete (a
callback defines only the hooks it wants; one that raises or hangs never changes a
branch's outcome), together with `retry=`, `timeout_seconds=` and `circuit_breaker=`.

What you see, for each run: the callback events of each branch in the order they
happened (branches one after another; breakers last), then the fan-in's results.
In run 1, `flaky` fails, is retried after 10 ms and succeeds; `slow` times out
(TimeoutError is not in `retry_on`, so it is not retried). In run 2 `slow` times out
again: its breaker (failure_threshold 2) opens. In run 3 the open breaker turns `slow`
away without running it: no `start` event, error_type CircuitOpenError. Then
`workflow.get_circuit_states()` lists every breaker (`<workflow>:<branch>`), and after
`workflow.reset_circuit("callbacks_demo:slow")` run 4 runs `slow` again. Breakers live
as long as the workflow object.

    python examples/callbacks_api.py
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

import tead

BRANCHES = ("fetch", "flaky", "slow")


class EventLog:
    """A callback object: tead calls the hooks it defines (all six here)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []  # (branch or breaker name, what happened)

    def on_flow_start(self, branch: str, state: dict[str, Any]) -> None:
        self.events.append((branch, "start"))

    def on_flow_error(self, branch: str, error: str, error_type: str, attempt: int) -> None:
        self.events.append((branch, f"error on attempt {attempt}: {error_type}: {error}"))

    def on_flow_timeout(self, branch: str, timeout_seconds: float, attempt: int) -> None:
        self.events.append((branch, f"timeout after {timeout_seconds:g} s on attempt {attempt}"))

    def on_flow_retry(self, branch: str, attempt: int, delay_s: float, error: str) -> None:
        self.events.append((branch, f"retry: attempt {attempt} in {delay_s:g} s after {error}"))

    def on_flow_complete(self, branch: str, result: tead.ParallelFlowResult) -> None:
        outcome = "ok" if result.success else f"failed ({result.error_type})"
        self.events.append((branch, f"complete: {outcome}"))

    def on_circuit_state_change(self, name: str, old: str, new: str) -> None:
        self.events.append((name, f"circuit {old} -> {new}"))

    def take(self) -> list[tuple[str, str]]:
        """The events so far, grouped by branch (breakers last), each group in order."""
        events, self.events = self.events, []
        keys = [*BRANCHES, *sorted({key for key, _ in events} - set(BRANCHES))]
        return [(key, text) for key in keys for k, text in events if k == key]


_flaky_calls = itertools.count(1)


def flaky(state: dict[str, Any]) -> dict[str, Any]:
    """Fails on every odd call: the first attempt of each run, never its retry."""
    if next(_flaky_calls) % 2 == 1:
        raise ConnectionError("connection reset")
    return {"flaky": "ok"}


def slow(state: dict[str, Any]) -> dict[str, Any]:
    time.sleep(1.0)  # longer than timeout_seconds: abandoned, finishes in the background
    return {"slow": "ok"}


def join(
    state: dict[str, Any], parallel_results: Sequence[tead.ParallelFlowResult]
) -> dict[str, Any]:
    return {
        "results": [
            {
                "branch": r.branch,
                "success": r.success,
                "error_type": r.error_type,
                "timeout": r.timeout,
                "retry_count": r.retry_count,
                "attempt_errors": list(r.attempt_errors),
            }
            for r in parallel_results
        ]
    }


def build(log: EventLog) -> tead.Workflow:
    config = tead.ParallelConfig(
        max_workers=3,
        timeout_seconds=0.2,
        retry=tead.RetryPolicy(
            max_retries=2,
            base_delay=0.01,
            backoff_multiplier=2,
            jitter=0.0,
            retry_on=("ConnectionError",),
        ),
        circuit_breaker=tead.CircuitBreakerConfig(failure_threshold=2, reset_timeout=60),
        callbacks=(log,),
    )
    graph = tead.Graph("callbacks_demo")
    graph.add_node("start")
    graph.add_node("fetch", lambda state: {"fetch": "ok"})
    graph.add_node("flaky", flaky)
    graph.add_node("slow", slow)
    graph.add_node("join", join)
    graph.add_parallel_edge("start", list(BRANCHES), fan_in="join")
    for branch in BRANCHES:
        graph.add_edge(branch, "join")
    return graph.compile(parallel_config=config)


def run(workflow: tead.Workflow, log: EventLog, number: int) -> None:
    final = workflow.invoke()
    print(f"run {number}: callback events")
    for key, text in log.take():
        print(f"  {key}: {text}")
    print(f"run {number}: results")
    for result in final["results"]:
        print(f"  {result}")


def main() -> None:
    log = EventLog()
    workflow = build(log)
    for number in (1, 2, 3):
        run(workflow, log, number)
    print("circuit states:", workflow.get_circuit_states())
    workflow.reset_circuit("callbacks_demo:slow")
    print("after reset_circuit('callbacks_demo:slow'):", workflow.get_circuit_states())
    run(workflow, log, 4)  # `slow` runs again (and times out: one failure, still closed)
    print("circuit states:", workflow.get_circuit_states())


if __name__ == "__main__":
    main()
