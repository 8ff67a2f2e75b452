"""Runs in worker processes against runs in the daemon's process, on real `tead serve`s.

    python bench/daemon_isolation.py [--trials 60] [--runs 300]

Two daemons, one after the other, alike but for `isolation` (`process`, the default: a
warm worker process per run; `thread`: the run on a thread of the daemon, the baseline),
each measured the same way:

- dispatch -> run started: a trivial workflow dispatched over HTTP `--trials` times, one
  at a time (each waited for); latency = the run's `started_at` minus the wall time read
  just before the POST;
- file saved -> run started: a watch workflow, `--trials` files written one at a time;
  latency = `started_at` minus the wall time read just before the write;
- throughput: `--runs` runs of ONE workflow (one concurrency group: run one after another)
  dispatched at once; completed runs per second until the daemon is idle.

Goals (issue 16): process dispatch -> started p50 <= 5 ms, file -> started p95 <= 50 ms,
throughput >= 0.7x the thread baseline's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.daemon_common import client, daemon, ms, parse_time, percentile, verdict, wait_idle

NOOP = """
name: noop
nodes:
  - name: noop
"""
ON_DROP = """
name: on_drop
on:
  watch:
    paths: ["inbox/*.txt"]
    events: [added]
nodes:
  - name: noop
"""


def started_at(http: httpx.Client, run_id: str) -> float:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = http.get(f"/api/v1/runs/{run_id}").json()
        if run["status"] not in ("queued", "running") and run["started_at"]:
            return parse_time(run["started_at"])
        time.sleep(0.005)
    raise SystemExit(f"run {run_id} did not finish")


def measure(isolation: str, trials: int, runs: int) -> dict[str, float]:
    files = {"noop.yaml": NOOP, "on_drop.yaml": ON_DROP}
    env = {"TEAD_ISOLATION": isolation, "TEAD_MAX_CONCURRENT_RUNS": "4"}
    with daemon(files, env=env) as proc, client(proc) as http:
        time.sleep(2.0)  # the warm workers start
        dispatch: list[float] = []
        for _ in range(trials):
            before = time.time()
            answer = http.post("/api/v1/workflows/noop/dispatch", json={})
            dispatch.append(started_at(http, answer.json()["id"]) - before)
        inbox = proc.workflows / "inbox"
        inbox.mkdir()
        time.sleep(0.5)
        saved: list[float] = []
        for i in range(trials):
            before = time.time()
            (inbox / f"t{i:03d}.txt").write_text("x")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                listing = http.get("/api/v1/runs", params={"workflow": "on_drop", "limit": 1})
                found = listing.json()["runs"]
                if found and found[0]["trigger"]["changes"][0]["path"].endswith(f"t{i:03d}.txt"):
                    break
                time.sleep(0.005)
            saved.append(started_at(http, found[0]["id"]) - before)
        began = time.monotonic()
        for _ in range(runs):
            http.post("/api/v1/workflows/noop/dispatch", json={})
        finished = wait_idle(http, timeout_s=600, poll_s=0.02)
        rate = runs / (finished - began)
    return {
        "dispatch_p50": percentile(dispatch, 50),
        "dispatch_p95": percentile(dispatch, 95),
        "saved_p50": percentile(saved, 50),
        "saved_p95": percentile(saved, 95),
        "rate": rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    thread = measure("thread", args.trials, args.runs)
    process = measure("process", args.trials, args.runs)
    for label, m in (("thread (baseline)", thread), ("process", process)):
        print(
            f"{label}: dispatch -> started p50 {ms(m['dispatch_p50'])} p95 "
            f"{ms(m['dispatch_p95'])} | file saved -> started p50 {ms(m['saved_p50'])} p95 "
            f"{ms(m['saved_p95'])} | one workflow: {m['rate']:.0f} runs/s"
        )
    ratio = process["rate"] / thread["rate"]
    print(
        f"process dispatch -> started p50 {ms(process['dispatch_p50'])} (goal <= 5 ms: "
        f"{verdict(process['dispatch_p50'] <= 0.005)})"
    )
    print(
        f"process file saved -> started p95 {ms(process['saved_p95'])} (goal <= 50 ms: "
        f"{verdict(process['saved_p95'] <= 0.050)})"
    )
    print(f"throughput ratio process / thread {ratio:.2f}x (goal >= 0.7x: {verdict(ratio >= 0.7)})")


if __name__ == "__main__":
    main()
