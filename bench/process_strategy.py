"""The process strategy against threads and against a plain ProcessPoolExecutor.

    python bench/process_strategy.py [--cpu-branches 8] [--work-s 0.5] [--noop 200]

1. CPU-bound fan-out (pure-Python work): process strategy vs thread strategy, same run.
2. Warm pool: per-branch overhead of no-op branches, tead's process strategy (executors
   kept across runs) vs a plain, warm ProcessPoolExecutor doing the same, same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import interleaved
from tead import Executors, Workflow, load_workflow_text

CPU_WORKFLOW = """
name: cpu
nodes:
  - name: start
  - name: burn
    run: |
      total, n = 0, state["loops"]
      for i in range(n):
          total += i * i % 7
      return {"total": total}
  - name: done
    run: |
      return {"totals": [r.state["total"] for r in parallel_results]}
edges:
  - {from: start, to: burn, parallel: true, for_each: "range(state['branches'])", fan_in: done}
  - {from: burn, to: done}
"""

NOOP_WORKFLOW = """
name: noop
nodes:
  - name: start
  - name: noop
  - name: done
    run: |
      return {"n": len(parallel_results)}
edges:
  - {from: start, to: noop, parallel: true, for_each: "range(state['branches'])", fan_in: done}
  - {from: noop, to: done}
"""


def _with(text: str, strategy: str, workers: int) -> Workflow:
    settings = f"settings: {{parallel: {{strategy: {strategy}, max_workers: {workers}}}}}\n"
    return load_workflow_text(settings + text, f"/tmp/bench_{strategy}.yaml")


def loops_for(seconds: float) -> int:
    """Loop count of the burn node that takes about `seconds` here."""
    n = 200_000
    started = time.perf_counter()
    total = 0
    for i in range(n):
        total += i * i % 7
    return int(n * seconds / (time.perf_counter() - started))


def cpu_bound(branches: int, work_s: float) -> None:
    workers = os.cpu_count() or 2
    loops = loops_for(work_s)
    state = {"branches": branches, "loops": loops}
    thread_wf = _with(CPU_WORKFLOW, "thread", workers)
    process_wf = _with(CPU_WORKFLOW, "process", workers)
    with Executors() as executors:
        process_wf.invoke(state, executors=executors)  # start the pool once
        medians = interleaved(
            {
                "thread": lambda: thread_wf.invoke(state),
                "process": lambda: process_wf.invoke(state, executors=executors),
            },
            rounds=3,
            warmup=0,
        )
    speedup = medians["thread"] / medians["process"]
    print(
        f"CPU-bound: {branches} branches x ~{work_s} s on {workers} cores: "
        f"thread {medians['thread']:.2f} s | process {medians['process']:.2f} s | "
        f"process is {speedup:.2f}x faster (goal >= 1.8x: {'met' if speedup >= 1.8 else 'NOT met'})"
    )


def _noop(i: int) -> int:
    return i


def warm_overhead(branches: int, rounds: int) -> None:
    workers = os.cpu_count() or 2
    workflow = _with(NOOP_WORKFLOW, "process", workers)
    state = {"branches": branches}
    with Executors() as executors, ProcessPoolExecutor(workers) as plain:

        def plain_run() -> None:
            futures = [plain.submit(_noop, i) for i in range(branches)]
            assert len([f.result() for f in futures]) == branches

        def tead_run() -> None:
            assert workflow.invoke(state, executors=executors)["n"] == branches

        medians = interleaved({"plain": plain_run, "tead": tead_run}, rounds=rounds)
    plain_us = medians["plain"] / branches * 1e6
    tead_us = medians["tead"] / branches * 1e6
    ratio = medians["tead"] / medians["plain"]
    print(
        f"warm pool, {branches} no-op branches, {workers} workers: plain pool "
        f"{plain_us:.1f} us/branch | tead {tead_us:.1f} us/branch | ratio {ratio:.2f}x "
        f"(goal <= 2.0x: {'met' if ratio <= 2 else 'NOT met'})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-branches", type=int, default=8)
    parser.add_argument("--work-s", type=float, default=0.5)
    parser.add_argument("--noop", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    cpu_bound(args.cpu_branches, args.work_s)
    warm_overhead(args.noop, args.rounds)


if __name__ == "__main__":
    main()
