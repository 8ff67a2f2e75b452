"""The cost of series born at 0: /metrics with 1 000 loaded workflows.

    python bench/metrics_series.py [--files 1000] [--rounds 20]

The workflows of bench/daemon_startup.py (half scheduled, half dispatched), loaded into a
`Metrics`. Compared, each built in the same run: the exposition (bytes, series, time to
render) when every workflow's series are born at load (what the daemon does), against the
baseline of each workflow having run once and nothing born (the series one run creates:
its runs counter, duration and queue-wait histograms). Also the time to birth them all.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import interleaved
from bench.daemon_startup import generate
from tead.daemon.metrics import Metrics
from tead.graph.compiled import WorkflowGraph
from tead.graph.loader import load_workflow


def ran_once(workflows: list[WorkflowGraph]) -> Metrics:
    metrics = Metrics()
    for workflow in workflows:
        kind = "schedule" if workflow.spec and workflow.spec.on.schedule else "dispatch"
        metrics.runs.labels(workflow.name, kind, "succeeded").inc()
        metrics.run_duration.labels(workflow.name, "succeeded").observe(0.2)
        metrics.queue_wait.labels(workflow.name).observe(0.01)
        metrics.runs_in_progress.labels(workflow.name)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tead-bench-") as tmp:
        generate(Path(tmp), args.files)
        workflows = [load_workflow(p) for p in sorted(Path(tmp).glob("*.yaml"))]
    born = Metrics()
    started = time.perf_counter()
    for workflow in workflows:
        born.workflow_loaded(workflow)
    birth_ms = (time.perf_counter() - started) * 1000
    baseline = ran_once(workflows)
    times = interleaved(
        {"ran once": baseline.exposition, "born at 0": born.exposition}, rounds=args.rounds
    )
    sizes = {"ran once": baseline.exposition(), "born at 0": born.exposition()}
    for name, text in sizes.items():
        series = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
        print(
            f"{name}: {len(text) / 1e6:.2f} MB, {series} series, "
            f"rendered in {times[name] * 1000:.1f} ms (median of {args.rounds})"
        )
    ratio = times["born at 0"] / times["ran once"]
    print(
        f"{args.files} workflows born at 0: /metrics renders in {ratio:.2f}x the time of "
        f"each having run once; birth of all: {birth_ms:.0f} ms (no goal set)"
    )


if __name__ == "__main__":
    main()
