"""Daemon memory and threads over 10 000 trivial runs, on a real `tead serve`.

    python bench/daemon_memory.py [--runs 10000] [--batch 500] [--warmup 500]

Runs are dispatched over HTTP in batches (4 client threads, keep-alive), round-robin over
8 copies of a trivial workflow (8 concurrency groups; TEAD_MAX_CONCURRENT_RUNS 16), and
each batch is waited for until nothing is queued or running. After the warm-up batch and
at the end, with the daemon idle for a moment, we read VmRSS and Threads from
/proc/PID/status; the peak thread count is sampled every 20 ms throughout. Defaults
otherwise (retention_runs 10 000: every run stays in the store).

Baseline, same run: the daemon's idle figures right after start-up, before any run.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.daemon_common import client, counter_total, daemon, proc_status, verdict, wait_idle
from tests.helpers import descendants

WORKFLOW = """
name: {name}
on:
  dispatch: {{}}
nodes:
  - name: noop
"""
WORKFLOWS = [f"m{i}" for i in range(8)]
CLIENTS = 4
GOAL_GROWTH_MB = 30
SETTLE_S = 0.5


class ThreadPeak:
    """The most threads the process had, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> ThreadPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, proc_status(self.pid)["Threads"])


def dispatch_batch(url: str, count: int, offset: int) -> int:
    """Dispatch `count` runs from CLIENTS threads; returns how many were refused."""
    refused = [0]
    lock = threading.Lock()

    def work(index: int) -> None:
        bad = 0
        with httpx.Client(base_url=url, timeout=30) as own:
            for i in range(index, count, CLIENTS):
                name = WORKFLOWS[(offset + i) % len(WORKFLOWS)]
                if own.post(f"/api/v1/workflows/{name}/dispatch", json={}).status_code != 202:
                    bad += 1
        with lock:
            refused[0] += bad

    threads = [threading.Thread(target=work, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return refused[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--isolation", choices=["process", "thread"], default="process")
    args = parser.parse_args()

    files = {f"{n}.yaml": WORKFLOW.format(name=n) for n in WORKFLOWS}
    env = {"TEAD_MAX_CONCURRENT_RUNS": "16", "TEAD_ISOLATION": args.isolation}
    trend: list[tuple[int, int, int]] = []
    with daemon(files, env=env) as proc, client(proc) as http:
        assert proc.proc is not None
        pid = proc.proc.pid
        time.sleep(SETTLE_S)
        idle = proc_status(pid)
        done = refused = 0
        warm: dict[str, int] = {}
        began = time.monotonic()
        with ThreadPeak(pid) as peak:
            while done < args.runs:
                count = min(args.batch, args.runs - done)
                refused += dispatch_batch(proc.url, count, done)
                wait_idle(http, poll_s=0.05)
                done += count
                if done == args.warmup or done % 1000 == 0 or done == args.runs:
                    time.sleep(SETTLE_S)
                    status = proc_status(pid)
                    trend.append((done, status["VmRSS"], status["Threads"]))
                    if done == args.warmup:
                        warm = status
        elapsed = time.monotonic() - began
        end = proc_status(pid)
        helpers = []
        for child in descendants(pid):
            with contextlib.suppress(OSError):  # it may end meanwhile
                helpers.append(proc_status(child))
        succeeded = counter_total(http.get("/metrics").text, "tead_runs_total", status="succeeded")

    rate = done / elapsed
    growth_mb = (end["VmRSS"] - warm["VmRSS"]) / 1024
    threads_delta = end["Threads"] - warm["Threads"]
    print(
        f"isolation {args.isolation}: {done} runs ({succeeded:.0f} succeeded, {refused} "
        f"refused) in {elapsed:.1f} s = {rate:.0f} runs/s, batches of {args.batch}"
    )
    if helpers:
        largest = max(h["VmRSS"] for h in helpers) / 1024
        print(
            f"at the end, {len(helpers)} processes below the daemon (fork server, ready run "
            f"workers, ...): largest RSS {largest:.1f} MB (a worker serves at most 100 runs)"
        )
    print(
        "trend (runs: RSS MB / threads): "
        + ", ".join(f"{n}: {rss / 1024:.1f}/{t}" for n, rss, t in trend)
    )
    print(
        f"idle before any run: RSS {idle['VmRSS'] / 1024:.1f} MB, {idle['Threads']} threads | "
        f"after {args.warmup} warm-up runs: RSS {warm['VmRSS'] / 1024:.1f} MB, "
        f"{warm['Threads']} threads | end: RSS {end['VmRSS'] / 1024:.1f} MB "
        f"(peak {end['VmHWM'] / 1024:.1f} MB), {end['Threads']} threads (peak {peak.peak})"
    )
    print(
        f"goal: RSS growth warm-up -> end < {GOAL_GROWTH_MB} MB: {growth_mb:+.1f} MB "
        f"({verdict(growth_mb < GOAL_GROWTH_MB)})"
    )
    print(
        f"goal: threads flat (idle, warm-up -> end): {warm['Threads']} -> {end['Threads']} "
        f"({threads_delta:+d}) ({verdict(threads_delta <= 0)})"
    )


if __name__ == "__main__":
    main()
