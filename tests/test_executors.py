"""The executor protocol, the registry, and the thread executor on its own."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import pytest

from tead import (
    BranchTask,
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
