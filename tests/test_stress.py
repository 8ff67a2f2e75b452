"""Stress: many runs with timeouts leak no threads or processes; many runs keep memory flat.

Marked `stress`; CI runs them (`.ci/run`), `pytest -m "not stress"` skips them locally.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from tead import Graph, ParallelConfig, Workflow, load_workflow

pytestmark = pytest.mark.stress


def _children() -> list[int]:
    """Live (not zombie) child processes of this process."""
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, ppid = fields[0], int(fields[1])
        if ppid == me and state != "Z":
            found.append(int(entry.name))
    return found


def _rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _wait_until(check: object, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def _timeout_graph(strategy: str) -> Workflow:
    graph = Graph("stress")
    graph.add_node("s")
    graph.add_node("quick", lambda s: {"ok": True})
    graph.add_node("slow", lambda s: time.sleep(0.3))
    graph.add_node(
        "m", lambda s, parallel_results: {"timeouts": sum(r.timeout for r in parallel_results)}
    )
    graph.add_parallel_edge(
        "s", ["quick", "slow"], fan_in="m", config={"timeout_seconds": 0.05, "strategy": strategy}
    )
    graph.add_edge("quick", "m")
    graph.add_edge("slow", "m")
    return graph.compile()


def test_100_thread_runs_with_timeouts_leak_no_threads() -> None:
    """Abandoned threads end when their branch returns; nothing is left behind."""
    before = threading.active_count()
    workflow = _timeout_graph("thread")
    for _ in range(100):
        assert workflow.invoke()["timeouts"] == 1
    assert _wait_until(lambda: threading.active_count() <= before + 1), threading.enumerate()


@pytest.mark.timeout(360)  # ~80 s alone on 2 cores; a leak test, not a speed test
def test_100_process_runs_with_timeouts_leak_no_processes(tmp_path: Path) -> None:
    """Each run's timeout kills its worker; at the end no worker process is left."""
    path = tmp_path / "wf.yaml"
    path.write_text(
        "settings: {parallel: {strategy: process, timeout_seconds: 0.25, max_workers: 2}}\n"
        "nodes:\n"
        "  - name: s\n"
        "  - {name: quick, run: 'return {\"ok\": True}'}\n"
        "  - {name: slow, run: 'import time; time.sleep(5)'}\n"
        "  - {name: m, run: 'return {\"timeouts\": sum(r.timeout for r in parallel_results)}'}\n"
        "edges:\n"
        "  - {from: s, to: [quick, slow], parallel: true, fan_in: m}\n"
        "  - {from: quick, to: m}\n"
        "  - {from: slow, to: m}\n"
    )
    workflow = load_workflow(path)
    workflow.invoke()  # starts the forkserver, which stays
    baseline = len(_children())
    threads = threading.active_count()
    for _ in range(100):
        assert workflow.invoke()["timeouts"] == 1
    assert _wait_until(lambda: len(_children()) <= baseline, timeout_s=3), _children()
    assert _wait_until(lambda: threading.active_count() <= threads + 1), threading.enumerate()


def test_1000_small_runs_keep_memory_flat() -> None:
    """Bound: RSS grows by less than 20 MB over 1000 runs of a 10-branch fan-out."""
    graph = Graph("mem", initial_state={"items": list(range(10))})
    graph.add_node("s")
    graph.add_node("w", lambda s: {"sq": s["item"] ** 2, "blob": "x" * 1000})
    graph.add_node("m", lambda s, parallel_results: {"n": len(parallel_results)})
    graph.add_parallel_edge("s", "w", fan_in="m", for_each="state['items']")
    graph.add_edge("w", "m")
    workflow = graph.compile(parallel_config=ParallelConfig(max_workers=4, timeout_seconds=5))
    for _ in range(100):
        workflow.invoke()
    before = _rss_mb()
    for _ in range(1000):
        assert workflow.invoke()["n"] == 10
    growth = _rss_mb() - before
    assert growth < 20, f"RSS grew by {growth:.1f} MB"
