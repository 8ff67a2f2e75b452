"""Dispatch throughput of a trivial workflow over HTTP, on a real `tead serve`.

    python bench/daemon_dispatch.py [--seconds 10] [--clients 4] [--workflows 8]

Client threads (one keep-alive httpx.Client each) POST /api/v1/workflows/NAME/dispatch
for `--seconds`, as fast as answers come back; then we wait until every dispatched run has
finished. TEAD_MAX_CONCURRENT_RUNS is 64.

A run's concurrency group defaults to its workflow's name, and the group can only be set
per workflow file (not per run), so runs of ONE workflow always run one at a time. Two
phases, each on a fresh daemon:

- one workflow: every run in one group, serialised (the worst case, reported as is);
- `--workflows` copies of it (w0, w1, ...), dispatched round-robin: that many groups.

Baseline, same clients and same moments: every 5th request of each client is a
GET /healthz, whose round trip is the HTTP stack's floor under the same load.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.daemon_common import (
    client,
    counter_total,
    daemon,
    ms,
    percentile,
    wait_idle,
)

WORKFLOW = """
name: {name}
on:
  dispatch: {{}}
nodes:
  - name: noop
"""
ENV = {"TEAD_MAX_CONCURRENT_RUNS": "64"}
HEALTH_EVERY = 5


@dataclass
class Phase:
    dispatch_s: list[float] = field(default_factory=list)
    health_s: list[float] = field(default_factory=list)
    errors: int = 0
    window_s: float = 0.0
    drain_s: float = 0.0
    succeeded: float = 0.0

    @property
    def runs(self) -> int:
        return len(self.dispatch_s)


def run_phase(names: list[str], *, seconds: float, clients: int) -> Phase:
    phase = Phase()
    files = {f"{n}.yaml": WORKFLOW.format(name=n) for n in names}
    lock = threading.Lock()
    with daemon(files, env=ENV) as proc, client(proc) as http:
        start = threading.Barrier(clients + 1)
        stop_at = [0.0]

        def work(index: int) -> None:
            dispatched: list[float] = []
            health: list[float] = []
            errors = 0
            with client(proc) as own:
                own.get("/healthz")  # open the connection before the clock runs
                start.wait()
                i = index
                while time.monotonic() < stop_at[0]:
                    i += 1
                    if i % HEALTH_EVERY == 0:
                        began = time.perf_counter()
                        own.get("/healthz")
                        health.append(time.perf_counter() - began)
                        continue
                    name = names[i % len(names)]
                    began = time.perf_counter()
                    response = own.post(f"/api/v1/workflows/{name}/dispatch", json={})
                    elapsed = time.perf_counter() - began
                    if response.status_code == 202:
                        dispatched.append(elapsed)
                    else:
                        errors += 1
            with lock:
                phase.dispatch_s.extend(dispatched)
                phase.health_s.extend(health)
                phase.errors += errors

        threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        began = time.monotonic()
        stop_at[0] = began + seconds
        start.wait()
        for thread in threads:
            thread.join()
        phase.window_s = time.monotonic() - began
        finished = wait_idle(http, timeout_s=300, poll_s=0.1)
        phase.drain_s = finished - began
        phase.succeeded = counter_total(
            http.get("/metrics").text, "tead_runs_total", status="succeeded"
        )
    return phase


def report(label: str, phase: Phase) -> None:
    rate = phase.runs / phase.window_s
    completed = phase.succeeded / phase.drain_s
    d50, d99 = percentile(phase.dispatch_s, 50), percentile(phase.dispatch_s, 99)
    h50, h99 = percentile(phase.health_s, 50), percentile(phase.health_s, 99)
    print(
        f"{label}: dispatched {phase.runs} runs in {phase.window_s:.1f} s = {rate:.0f} runs/s "
        f"(errors {phase.errors}) (no goal set)"
    )
    print(
        f"{label}: POST dispatch round trip p50 {ms(d50)} | p99 {ms(d99)}; GET /healthz "
        f"same load p50 {ms(h50)} | p99 {ms(h99)}; p99 ratio {d99 / h99:.2f}x (no goal set)"
    )
    print(
        f"{label}: all finished {phase.drain_s:.1f} s after the first dispatch "
        f"({phase.drain_s - phase.window_s:.1f} s after the last); {phase.succeeded:.0f} "
        f"succeeded = {completed:.0f} runs/s completed, {completed / rate:.2f}x the dispatch "
        f"rate (no goal set)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workflows", type=int, default=8)
    args = parser.parse_args()
    one = run_phase(["w0"], seconds=args.seconds, clients=args.clients)
    report("1 workflow (serialised)", one)
    names = [f"w{i}" for i in range(args.workflows)]
    many = run_phase(names, seconds=args.seconds, clients=args.clients)
    report(f"{args.workflows} workflows", many)


if __name__ == "__main__":
    main()
