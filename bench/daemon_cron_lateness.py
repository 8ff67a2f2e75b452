"""How late a every-second cron schedule starts its runs, on a real `tead serve`.

    python bench/daemon_cron_lateness.py [--fires 62]

One workflow with `schedule: [{cron: "* * * * * *"}]` (6 fields: every second).
Lateness of a fire = the run's `started_at` minus its trigger's `scheduled_time` (both
stored to the millisecond, truncated). Every `kind: schedule` run counts.

Baseline, same run and same moments: a thread in this process that sleeps until each
whole second (time.sleep) and records how late it woke: the floor that this machine's
timers and scheduler noise set for any process.
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from pathlib import Path
from typing import Any

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

WORKFLOW = """
name: every_second
on:
  schedule:
    - cron: "* * * * * *"
nodes:
  - name: noop
"""
GOAL_P99_S = 0.100


class SleepBaseline:
    """Wakes at every whole second (wall clock) and records how late it woke."""

    def __init__(self) -> None:
        self.lateness: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> SleepBaseline:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(3)

    def _loop(self) -> None:
        while not self._stop.is_set():
            target = math.floor(time.time()) + 1
            time.sleep(max(target - time.time(), 0))
            self.lateness.append(time.time() - target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fires", type=int, default=62)
    args = parser.parse_args()

    with (
        daemon({"every_second.yaml": WORKFLOW}) as proc,
        client(proc) as http,
        SleepBaseline() as baseline,
    ):
        deadline = time.monotonic() + args.fires + 30
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            time.sleep(5)
            found = http.get(
                "/api/v1/runs", params={"workflow": "every_second", "limit": 1000}
            ).json()["runs"]
            runs = [r for r in found if r["trigger"]["kind"] == "schedule" and r["started_at"]]
            if len(runs) >= args.fires:
                break
        metric = histogram(http.get("/metrics").text, "tead_schedule_delay_seconds")

    late = [
        parse_time(str(r["started_at"])) - parse_time(str(r["trigger"]["scheduled_time"]))
        for r in runs
    ]
    scheduled = sorted({parse_time(str(r["trigger"]["scheduled_time"])) for r in runs})
    missing = round(scheduled[-1] - scheduled[0]) + 1 - len(scheduled) if scheduled else 0
    b = baseline.lateness
    p50, p95, p99 = (percentile(late, q) for q in (50, 95, 99))
    print(
        f"plain time.sleep until each second, {len(b)} wake-ups: p50 {ms(percentile(b, 50))} | "
        f"p95 {ms(percentile(b, 95))} | p99 {ms(percentile(b, 99))} | max {ms(max(b))}"
    )
    print(
        f"tead cron '* * * * * *', {len(late)} fires: lateness p50 {ms(p50)} | p95 {ms(p95)} | "
        f"p99 {ms(p99)} | max {ms(max(late))} | min {ms(min(late))}"
    )
    print(
        f"fires: {len(late)} runs, {len(scheduled)} distinct scheduled seconds, "
        f"{missing} second(s) skipped between the first and the last"
    )
    print(f"tead_schedule_delay_seconds (same runs): {describe_histogram(metric)}")
    print(
        f"goal: >= 60 fires, none skipped or doubled: {len(late)} fires, {missing} skipped "
        f"({verdict(len(late) >= 60 and missing == 0 and len(scheduled) == len(late))}); "
        f"lateness p99 < {ms(GOAL_P99_S)}: {ms(p99)} ({verdict(p99 < GOAL_P99_S)})"
    )


if __name__ == "__main__":
    main()
