"""File saved in a watched folder → run started, on a real `tead serve`.

    python bench/daemon_trigger_latency.py [--trials 60]

Each trial writes a new `inbox/tNNN.txt` under the workflow folder, for a workflow with
`on.watch: {paths: ["inbox/*.txt"], events: [added]}`. Latency = the run record's
`started_at` minus the wall time (UTC) read just before the file was written; both clocks
are this machine's, and `started_at` is stored to the millisecond (truncated).

Baseline, same run, trials alternating with the daemon's: a plain `watchfiles.watch`
thread in this process, with the daemon's step / debounce settings, on a folder of its
own; its latency is the wall time when the batch holding the file arrived minus the wall
time before the write. The daemon cannot beat it: its own share is the difference.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import watchfiles

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.daemon_common import (
    client,
    daemon,
    describe_histogram,
    histogram,
    ms,
    parse_time,
    percentile,
    verdict,
)
from tead.daemon.watcher import DEBOUNCE_MS, STEP_MS

WORKFLOW = """
name: on_drop
on:
  watch:
    paths: ["inbox/*.txt"]
    events: [added]
nodes:
  - name: noop
"""
GOAL_P95_S = 0.150


class PlainWatcher:
    """watchfiles in a thread: when (wall time) each path was first reported."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._arrived = threading.Condition()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> PlainWatcher:
        self._thread.start()
        self._ready.wait(5)
        time.sleep(0.2)  # let the inotify watch settle
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _watch(self) -> None:
        self._ready.set()
        for batch in watchfiles.watch(
            self.folder,
            stop_event=self._stop,
            step=STEP_MS,
            debounce=DEBOUNCE_MS,
            rust_timeout=200,
            yield_on_timeout=True,
        ):
            now = time.time()
            with self._arrived:
                for _, path in batch:
                    self.seen.setdefault(path, now)
                self._arrived.notify_all()

    def trial(self, name: str) -> float:
        path = self.folder / name
        before = time.time()
        path.write_text("x")
        with self._arrived:
            self._arrived.wait_for(lambda: str(path) in self.seen, timeout=10)
        return self.seen[str(path)] - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60)
    args = parser.parse_args()

    tead_s: list[float] = []
    plain_s: list[float] = []
    with (
        daemon({"on_drop.yaml": WORKFLOW}) as proc,
        client(proc) as http,
        tempfile.TemporaryDirectory(prefix="tead-bench-plain-") as plain_dir,
        PlainWatcher(Path(plain_dir)) as plain,
    ):
        inbox = proc.workflows / "inbox"
        inbox.mkdir()
        time.sleep(0.5)
        for i in range(args.trials):
            path = inbox / f"t{i:03d}.txt"
            before = time.time()
            path.write_text("x")
            started = _wait_started(http, str(path))
            tead_s.append(started - before)
            time.sleep(random.uniform(0.05, 0.15))  # do not beat in step with anything
            plain_s.append(plain.trial(f"t{i:03d}.txt"))
            time.sleep(random.uniform(0.05, 0.15))
        metric = histogram(http.get("/metrics").text, "tead_trigger_latency_seconds", kind="watch")

    n = len(tead_s)
    p50, p95 = percentile(tead_s, 50), percentile(tead_s, 95)
    b50, b95 = percentile(plain_s, 50), percentile(plain_s, 95)
    print(
        f"plain watchfiles (step {STEP_MS} ms, debounce {DEBOUNCE_MS} ms), {len(plain_s)} "
        f"trials: p50 {ms(b50)} | p95 {ms(b95)} | max {ms(max(plain_s))}"
    )
    print(
        f"tead file saved -> run started, {n} trials: p50 {ms(p50)} | p95 {ms(p95)} | "
        f"max {ms(max(tead_s))} | p50 ratio to plain watchfiles {p50 / b50:.2f}x"
    )
    print(
        "tead_trigger_latency_seconds{kind=watch} (event seen -> started): "
        + describe_histogram(metric)
    )
    print(
        f"goal: file saved -> run started p95 < {ms(GOAL_P95_S)}: {ms(p95)} "
        f"({verdict(p95 < GOAL_P95_S)})"
    )


def _wait_started(http: httpx.Client, path: str, timeout_s: float = 10) -> float:
    """The started_at (POSIX) of the run that the file at `path` triggered."""
    time.sleep(0.15)  # most runs start before this: fewer polls disturb the daemon less
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = http.get("/api/v1/runs", params={"workflow": "on_drop", "limit": 5}).json()
        for run in runs["runs"]:
            changes = run["trigger"].get("changes", [])
            if run["started_at"] and any(c["path"] == path for c in changes):
                return parse_time(run["started_at"])
        time.sleep(0.05)
    raise TimeoutError(f"no run started for {path} within {timeout_s} s")


if __name__ == "__main__":
    main()
