"""Daemon memory and threads over 10 000 trivial runs, on a real `tead serve`.

    python bench/daemon_memory.py [--runs 10000] [--batch 500] [--warmup 500]

Runs are dispatched over HTTP in batches (4 client threads, keep-alive), round-robin over
8 copies of a trivial workflow (8 concurrency groups; TEAD_MAX_CONCURRENT_RUNS 16), and
each batch is waited for until nothing is queued or running. After the warm-up batch and
at the end, with the daemon idle for a moment, we read VmRSS and Threads from
/proc/PID/status; the peak thread count is sampled every 20 ms throughout. Defaults
otherwise (retention_runs 10 000: every run stays in the store).

Baseline, same run: the daemon's idle figures after start-up (once its ready workers have
started), before any run.

The threads' goal is a bound, not a flat count. Two pools in the daemon start threads
lazily and keep them idle for later, so its idle count is the most it needed at once, up to
each pool's bound: asyncio's default executor (`asyncio.to_thread`) grows to its maximum,
min(32, cpus+4), within the first 500 runs; the run-session threads (`tead-run-session`,
`tead.daemon.runworkers.SessionThreads`) number the most sessions in flight at once, of
which at most max_concurrent_runs (16) are kept idle. A session's thread goes on for a
moment after its run has released its concurrency slot (reaping a worker retired after its
100 runs, at least returning), and a run starting meanwhile takes a new thread if none is
idle: so there are more of them than concurrent runs (here 8, one per workflow), and a new
peak may add one or two at any time. Measured with py-spy at the idle points (before the
cap of 16 existed): 6-8 session threads after 500 runs, 7-14 after 1 000, 9-14 after 3 000,
and in one run of 10 000, 9 from 1 000 to 8 500 runs and 11 from 9 000 on, every one idle
in the pool's queue; the other threads are the main one, an AnyIO worker, the file
watcher's and the executor's 6. The check: at the end, the idle count is at most the idle
threads before any run (once the ready workers' start-up threads are done) plus the two
pools' bounds. A thread left behind per run, or per 500 runs, exceeds it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
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
MAX_CONCURRENT_RUNS = 16
EXECUTOR_MAX = min(32, (os.cpu_count() or 1) + 4)  # asyncio's default executor (3.11)
GOAL_GROWTH_MB = 30
SETTLE_S = 0.5
QUIET_S = 2.0  # the thread count unchanged this long: the workers' start-up threads are done


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


def settled(pid: int, *, timeout_s: float = 60) -> dict[str, int]:
    """The process's /proc figures once its thread count has not changed for QUIET_S (the
    pool's ready workers start on threads of their own, 16 at start-up)."""
    status = proc_status(pid)
    since = time.monotonic()
    deadline = since + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = proc_status(pid)
        if now["Threads"] != status["Threads"]:
            since = time.monotonic()
        status = now
        if time.monotonic() - since >= QUIET_S:
            break
    return status


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
    env = {"TEAD_MAX_CONCURRENT_RUNS": str(MAX_CONCURRENT_RUNS), "TEAD_ISOLATION": args.isolation}
    trend: list[tuple[int, int, int]] = []
    with daemon(files, env=env) as proc, client(proc) as http:
        assert proc.proc is not None
        pid = proc.proc.pid
        idle = settled(pid)
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
        end = settled(pid)
        helpers = []
        for child in descendants(pid):
            with contextlib.suppress(OSError):  # it may end meanwhile
                helpers.append(proc_status(child))
        succeeded = counter_total(http.get("/metrics").text, "tead_runs_total", status="succeeded")

    rate = done / elapsed
    growth_mb = (end["VmRSS"] - warm["VmRSS"]) / 1024
    bound = idle["Threads"] + EXECUTOR_MAX + MAX_CONCURRENT_RUNS
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
        f"goal: threads (idle) within the pools' bound: {end['Threads']} at the end <= "
        f"{idle['Threads']} before any run + {EXECUTOR_MAX} (asyncio's executor) + "
        f"{MAX_CONCURRENT_RUNS} (idle run-session threads kept) = {bound} "
        f"({verdict(end['Threads'] <= bound)}; not flat: the pools keep the threads a new "
        "peak of sessions in flight needed)"
    )


if __name__ == "__main__":
    main()
