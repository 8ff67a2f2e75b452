"""Fan-out overhead of the thread strategy against a plain ThreadPoolExecutor.

    python bench/fanout_overhead.py [--branches 200] [--workers 8] [--rounds 40]

Both sides run the same number of callables with the same worker count, in this process
and this run, alternating so that machine noise hits both. tead's side is a whole
`Workflow.invoke()`: the source node, a `for_each` fan-out of no-op branches (each on its
copy-on-access view of the state), the fan-in and the results.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import interleaved
from tead import Graph, ParallelConfig, Workflow


def build(branches: int, workers: int, sleep_s: float) -> Workflow:
    graph = Graph("bench", initial_state={"n": branches})
    graph.add_node("start")
    graph.add_node("work", (lambda state: time.sleep(sleep_s)) if sleep_s else None)
    graph.add_node("merge", lambda state, parallel_results: {"n": len(parallel_results)})
    graph.add_parallel_edge(
        "start", "work", fan_in="merge", for_each=lambda s: range(s["n"]), item_var="item"
    )
    graph.add_edge("work", "merge")
    return graph.compile(parallel_config=ParallelConfig(max_workers=workers))


def plain_pool(branches: int, workers: int, sleep_s: float) -> None:
    def job(item: int) -> int:
        if sleep_s:
            time.sleep(sleep_s)
        return item

    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(job, i) for i in range(branches)]
        results = [f.result() for f in futures]
    assert len(results) == branches


def measure(branches: int, workers: int, sleep_s: float, rounds: int) -> float:
    workflow = build(branches, workers, sleep_s)

    def tead_run() -> None:
        assert workflow.invoke()["n"] == branches

    medians = interleaved(
        {"plain": lambda: plain_pool(branches, workers, sleep_s), "tead": tead_run},
        rounds=rounds,
    )
    plain_us = medians["plain"] / branches * 1e6
    tead_us = medians["tead"] / branches * 1e6
    ratio = medians["tead"] / medians["plain"]
    label = f"{sleep_s * 1000:g} ms sleep" if sleep_s else "no-op"
    print(
        f"{branches} branches, {workers} workers, {label:>12}: "
        f"plain pool {plain_us:8.1f} us/branch | tead {tead_us:8.1f} us/branch | "
        f"ratio {ratio:.2f}x"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--branches", type=int, default=200)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    noop = measure(args.branches, args.workers, 0.0, args.rounds)
    slept = measure(args.branches, args.workers, 0.001, max(args.rounds // 2, 5))
    # no-op goals: <= 1.5x a plain pool up to 200 branches, <= 2.5x at 10 000
    goal = 1.5 if args.branches <= 200 else 2.5
    print(
        f"goal: no-op ratio <= {goal} ({'met' if noop <= goal else 'NOT met'}); "
        f"1 ms ratio <= 1.10 ({'met' if slept <= 1.10 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
