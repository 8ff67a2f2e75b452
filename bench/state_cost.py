"""What a fan-out costs as the state grows, against baselines measured in the same run.

    python bench/state_cost.py [--only thread|for_each|process] [--rounds 5]

1. thread: 200 no-op branches over a 5 MB and a 50 MB state (a list of small dicts given
   as the run's input): tead against a plain ThreadPoolExecutor and, if installed
   (`pip install -e '.[bench]'`), LangGraph running the same graph (a `Send` per branch,
   which shares the state). Peak memory growth of tead's run (tracemalloc).
2. for_each: over 10 000 items of the state (small dicts) against a no-op fan-out of
   10 000 branches over `range` (per-branch cost); 100 000 items in a fresh process:
   its time and peak resident memory.
3. process: 20 branches over a 5 MB state (warm pool), no-op and reading the big value,
   against a plain warm ProcessPoolExecutor given the state as the argument of each task
   (which reads it).
"""

from __future__ import annotations

import argparse
import operator
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import interleaved
from tead import Executors, Graph, ParallelConfig, Workflow, load_workflow_text

MB = 1_000_000


def big_list(megabytes: float) -> list[dict[str, Any]]:
    """A list of small dicts taking about `megabytes` MB (as tracemalloc counts it)."""
    tracemalloc.start()
    probe = [{"id": i, "name": f"item-{i:08d}"} for i in range(10_000)]
    per_item = tracemalloc.get_traced_memory()[0] / len(probe)
    tracemalloc.stop()
    del probe
    return [{"id": i, "name": f"item-{i:08d}"} for i in range(int(megabytes * MB / per_item))]


def peak_growth_mb(fn: Any) -> float:
    """How far Python's allocations rose above where they were while `fn()` ran."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (peak - before) / MB


# --- 1. thread strategy, big state ---------------------------------------------------------


def noop_fanout(branches: int, workers: int) -> Workflow:
    graph = Graph("state_cost")
    graph.add_node("start")
    graph.add_node("work")
    graph.add_node("merge", lambda state, parallel_results: {"n": len(parallel_results)})
    graph.add_parallel_edge(
        "start", "work", fan_in="merge", for_each=lambda s: range(branches), item_var="item"
    )
    graph.add_edge("work", "merge")
    return graph.compile(parallel_config=ParallelConfig(max_workers=workers))


class PeerState(TypedDict, total=False):
    """LangGraph's state schema for the same graph."""

    big: list[dict[str, Any]]
    item: int
    done: Annotated[list[int], operator.add]
    n: int


def _peer_start(state: PeerState) -> dict[str, Any]:
    return {}


def _peer_work(state: PeerState) -> dict[str, Any]:
    return {"done": [state["item"]]}


def _peer_merge(state: PeerState) -> dict[str, Any]:
    return {"n": len(state["done"])}


def langgraph_fanout(branches: int) -> Any:
    """The same graph in LangGraph (None if it is not installed)."""
    try:
        from langgraph.graph import END, START, StateGraph  # deferred: an optional peer
        from langgraph.types import Send  # deferred: an optional peer
    except ImportError:
        return None

    def spread(state: PeerState) -> list[Any]:
        return [Send("work", {**state, "item": i}) for i in range(branches)]

    graph = StateGraph(PeerState)
    graph.add_node("start", _peer_start)
    graph.add_node("work", _peer_work)
    graph.add_node("merge", _peer_merge)
    graph.add_edge(START, "start")
    graph.add_conditional_edges("start", spread, ["work"])
    graph.add_edge("work", "merge")
    graph.add_edge("merge", END)
    return graph.compile()


def thread_big_state(megabytes: float, rounds: int, branches: int = 200) -> None:
    workers = 8
    big = big_list(megabytes)
    workflow = noop_fanout(branches, workers)
    peer = langgraph_fanout(branches)

    def tead_run() -> None:
        assert workflow.invoke({"big": big})["n"] == branches

    def plain_run() -> None:
        state = {"big": big}
        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(lambda s, i: (s, i), state, i) for i in range(branches)]
            assert len([f.result() for f in futures]) == branches

    fns = {"plain": plain_run, "tead": tead_run}
    if peer is not None:
        fns["langgraph"] = lambda: peer.invoke({"big": big, "done": []})
    medians = interleaved(fns, rounds=rounds, warmup=1, collect=True)
    growth = peak_growth_mb(tead_run)
    line = (
        f"thread, {branches} no-op branches, {megabytes:g} MB state: plain pool "
        f"{medians['plain'] * 1000:.1f} ms | tead {medians['tead'] * 1000:.1f} ms, peak "
        f"+{growth:.1f} MB (goal < 10 MB: {'met' if growth < 10 else 'NOT met'})"
    )
    if peer is not None:
        ratio = medians["tead"] / medians["langgraph"]
        lg_growth = peak_growth_mb(lambda: peer.invoke({"big": big, "done": []}))
        line += (
            f" | langgraph {medians['langgraph'] * 1000:.1f} ms, peak +{lg_growth:.1f} MB"
            f" | tead/langgraph {ratio:.2f}x (goal <= 3x: {'met' if ratio <= 3 else 'NOT met'})"
        )
    else:
        line += " | langgraph: skipped: langgraph not installed (pip install -e '.[bench]')"
    print(line, flush=True)


# --- 2. for_each over the state's items ------------------------------------------------------


def items_fanout(workers: int) -> Workflow:
    graph = Graph("items")
    graph.add_node("start")
    graph.add_node("work")
    graph.add_node("merge", lambda state, parallel_results: {"n": len(parallel_results)})
    graph.add_parallel_edge(
        "start", "work", fan_in="merge", for_each=lambda s: s["items"], item_var="item"
    )
    graph.add_edge("work", "merge")
    return graph.compile(parallel_config=ParallelConfig(max_workers=workers))


def for_each_linear(count: int, rounds: int) -> None:
    workers = 8
    items = [{"id": i, "name": f"item-{i}"} for i in range(count)]
    over_items = items_fanout(workers)
    over_range = noop_fanout(count, workers)
    medians = interleaved(
        {
            "range": over_range.invoke,
            "items": lambda: over_items.invoke({"items": items}),
        },
        rounds=rounds,
        warmup=1,
        collect=True,
    )
    ratio = medians["items"] / medians["range"]
    print(
        f"for_each over {count} state items: {medians['items'] / count * 1e6:.1f} us/branch "
        f"| no-op {count}-branch fan-out {medians['range'] / count * 1e6:.1f} us/branch | "
        f"ratio {ratio:.2f}x (goal <= 3x: {'met' if ratio <= 3 else 'NOT met'})",
        flush=True,
    )


def for_each_child(count: int) -> None:
    """In a fresh process: run a for_each over `count` items; print seconds and peak RSS."""
    items = [{"id": i, "name": f"item-{i}"} for i in range(count)]
    workflow = items_fanout(8)
    started = time.perf_counter()
    assert workflow.invoke({"items": items})["n"] == count
    elapsed = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1000
    print(f"{elapsed:.2f} {peak_mb:.0f}")


def for_each_huge(count: int) -> None:
    proc = subprocess.run(
        [sys.executable, __file__, "--child-for-each", str(count)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    seconds, peak = proc.stdout.split()
    ok = float(peak) < 500
    print(
        f"for_each over {count} state items (fresh process): {float(seconds):.2f} s, peak "
        f"resident {peak} MB (goal < 500 MB: {'met' if ok else 'NOT met'})",
        flush=True,
    )


# --- 3. process strategy, big state ---------------------------------------------------------

PROCESS_WORKFLOW = """
name: process_state
settings: {parallel: {strategy: process, max_workers: WORKERS}}
nodes:
  - name: start
  - name: work
    run: |
      if READS:
          return {"n": len(state["big"])}
  - name: merge
    run: |
      return {"n": len(parallel_results)}
edges:
  - {from: start, to: work, parallel: true, for_each: "range(BRANCHES)", fan_in: merge}
  - {from: work, to: merge}
"""


def _touch(state: dict[str, Any]) -> int:
    return len(state)


def process_big_state(
    megabytes: float, rounds: int, branches: int = 20, reads: bool = False
) -> None:
    """`reads`: each branch takes the big value out (len), as the plain pool's task does."""
    workers = os.cpu_count() or 2
    big = big_list(megabytes)
    text = PROCESS_WORKFLOW.replace("WORKERS", str(workers)).replace("BRANCHES", str(branches))
    text = text.replace("READS", str(reads))
    workflow = load_workflow_text(text, "/tmp/bench_process_state.yaml")
    with Executors() as executors, ProcessPoolExecutor(workers) as plain:

        def plain_run() -> None:
            state = {"big": big}
            futures = [plain.submit(_touch, state) for _ in range(branches)]
            assert len([f.result() for f in futures]) == branches

        def tead_run() -> None:
            assert workflow.invoke({"big": big}, executors=executors)["n"] == branches

        medians = interleaved(
            {"plain": plain_run, "tead": tead_run}, rounds=rounds, warmup=2, collect=True
        )
    ratio = medians["tead"] / medians["plain"]
    print(
        f"process, {branches} {'reading' if reads else 'no-op'} branches, {megabytes:g} MB "
        f"state, {workers} workers: "
        f"plain pool (state passed per task) {medians['plain'] * 1000:.1f} ms | tead "
        f"{medians['tead'] * 1000:.1f} ms | ratio {ratio:.2f}x "
        f"(goal <= 2x: {'met' if ratio <= 2 else 'NOT met'})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["thread", "for_each", "process"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child-for-each", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_for_each:
        for_each_child(args.child_for_each)
        return
    if args.only in (None, "thread"):
        thread_big_state(5, args.rounds)
        thread_big_state(50, max(args.rounds // 2, 2))
    if args.only in (None, "for_each"):
        for_each_linear(10_000, max(args.rounds // 2, 2))
        for_each_huge(100_000)
    if args.only in (None, "process"):
        process_big_state(5, args.rounds)
        process_big_state(5, args.rounds, reads=True)


if __name__ == "__main__":
    main()
