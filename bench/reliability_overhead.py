"""Thread strategy with every reliability feature configured but never triggered, against
the same fan-out without them (same run, interleaved).

    python bench/reliability_overhead.py [--branches 200] [--workers 8] [--rounds 40]

Configured: a 30 s per-branch timeout, 3 retries with backoff, a circuit breaker, a
callback object, include_traceback. No branch fails, so none of them fires.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import interleaved
from tead import CircuitBreakerConfig, Graph, ParallelConfig, RetryPolicy, Workflow


class Quiet:
    """A callback object with a hook that only counts."""

    def __init__(self) -> None:
        self.completed = 0

    def on_flow_error(self, *args: object) -> None:
        self.completed += 1


def build(branches: int, config: ParallelConfig) -> Workflow:
    graph = Graph("bench", initial_state={"n": branches})
    graph.add_node("start")
    graph.add_node("work", lambda state: {"x": state["item"]})
    graph.add_node("merge", lambda state, parallel_results: {"n": len(parallel_results)})
    graph.add_parallel_edge("start", "work", fan_in="merge", for_each=lambda s: range(s["n"]))
    graph.add_edge("work", "merge")
    return graph.compile(parallel_config=config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--branches", type=int, default=200)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    plain = build(args.branches, ParallelConfig(max_workers=args.workers))
    full = build(
        args.branches,
        ParallelConfig(
            max_workers=args.workers,
            timeout_seconds=30,
            retry=RetryPolicy(max_retries=3, base_delay=0.01),
            circuit_breaker=CircuitBreakerConfig(failure_threshold=5),
            callbacks=(Quiet(),),
            include_traceback=True,
        ),
    )
    medians = interleaved({"without": plain.invoke, "with": full.invoke}, rounds=args.rounds)
    ratio = medians["with"] / medians["without"]
    print(
        f"{args.branches} branches, {args.workers} workers: without features "
        f"{medians['without'] / args.branches * 1e6:.1f} us/branch | with all configured "
        f"{medians['with'] / args.branches * 1e6:.1f} us/branch | ratio {ratio:.2f}x "
        f"(goal <= 1.10x: {'met' if ratio <= 1.10 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
