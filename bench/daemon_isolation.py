"""Runs in worker processes against runs in the daemon's process, on real `tead serve`s.

    python bench/daemon_isolation.py [--trials 60] [--runs 300] [--rounds 5]

Two daemons, one after the other, alike but for `isolation` (`process`, the default: a
warm worker process per run; `thread`: the run on a thread of the daemon, the baseline),
each measured the same way:

- dispatch -> run started: a trivial workflow dispatched over HTTP `--trials` times, one
  at a time (each waited for); latency = the run's `started_at` minus the wall time read
  just before the POST;
- file saved -> run started: a watch workflow, `--trials` files written one at a time;
  latency = `started_at` minus the wall time read just before the write;
- throughput: `--runs` runs of ONE workflow (one concurrency group: run one after another)
  dispatched at once; completed runs per second until the daemon is idle. Both daemons
  stay up and take turns, `--rounds` times: each round's ratio compares two batches run
  back to back, and the median round is reported (a shared machine's load comes and goes).

Goals (issue 16): process dispatch -> started p50 <= 5 ms, file -> started p95 <= 50 ms,
throughput >= 0.7x the thread baseline's.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.daemon_common import client, daemon, ms, parse_time, percentile, verdict, wait_idle
from tests.daemon_fixture import DaemonProcess

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


def latencies(proc: DaemonProcess, http: httpx.Client, trials: int) -> dict[str, float]:
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
    return {
        "dispatch_p50": percentile(dispatch, 50),
        "dispatch_p95": percentile(dispatch, 95),
        "saved_p50": percentile(saved, 50),
        "saved_p95": percentile(saved, 95),
    }


def throughput(http: httpx.Client, runs: int) -> float:
    """Runs of one workflow per second, all dispatched at once."""
    began = time.monotonic()
    for _ in range(runs):
        http.post("/api/v1/workflows/noop/dispatch", json={})
    finished = wait_idle(http, timeout_s=600, poll_s=0.02)
    return runs / (finished - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    files = {"noop.yaml": NOOP, "on_drop.yaml": ON_DROP}
    modes = ("thread", "process")
    with contextlib.ExitStack() as stack:
        procs, https = {}, {}
        for mode in modes:
            env = {"TEAD_ISOLATION": mode, "TEAD_MAX_CONCURRENT_RUNS": "4"}
            procs[mode] = stack.enter_context(daemon(files, env=env))
            https[mode] = stack.enter_context(client(procs[mode]))
        time.sleep(2.0)  # the warm workers start
        lat = {mode: latencies(procs[mode], https[mode], args.trials) for mode in modes}
        rates: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(args.rounds):
            for mode in modes:
                rates[mode].append(throughput(https[mode], args.runs))
    for label, mode in (("thread (baseline)", "thread"), ("process", "process")):
        m = lat[mode]
        print(
            f"{label}: dispatch -> started p50 {ms(m['dispatch_p50'])} p95 "
            f"{ms(m['dispatch_p95'])} | file saved -> started p50 {ms(m['saved_p50'])} p95 "
            f"{ms(m['saved_p95'])} | one workflow: "
            + " ".join(f"{r:.0f}" for r in rates[mode])
            + " runs/s"
        )
    ratios = [p / t for t, p in zip(rates["thread"], rates["process"], strict=True)]
    ratio = statistics.median(ratios)
    process = lat["process"]
    print(
        f"process dispatch -> started p50 {ms(process['dispatch_p50'])} (goal <= 5 ms: "
        f"{verdict(process['dispatch_p50'] <= 0.005)})"
    )
    print(
        f"process file saved -> started p95 {ms(process['saved_p95'])} (goal <= 50 ms: "
        f"{verdict(process['saved_p95'] <= 0.050)})"
    )
    print(
        "throughput ratio process / thread per round: "
        + " ".join(f"{r:.2f}" for r in ratios)
        + f"; median {ratio:.2f}x (goal >= 0.7x: {verdict(ratio >= 0.7)})"
    )


if __name__ == "__main__":
    main()
