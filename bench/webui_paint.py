"""How fast the web page's runs list paints with 100 000 runs in history, in a real
headless chromium (Debian's, driven by playwright) against a real `tead serve`.

    python bench/webui_paint.py [--runs 100000] [--loads 15]

Two daemons: one whose database holds `--runs` finished runs (written straight into its
SQLite through the project's Store, in one transaction, before it starts; its
`retention_runs` raised so that it keeps them), and a
baseline with none. Each load of `/#/runs` is in a fresh browser context (no cache, no
storage); from the page's own `performance` entries: first paint, first contentful paint
(`getEntriesByType('paint')`), and when the first page of runs was shown (the page's
`tead:runs-shown` mark, after the API answered and the table was filled). Reported: the
median of each over `--loads` loads, per daemon, and the ratio 100k / empty; and the
API's answer time for the first page, a page deep in the history (`before=`), and a
status none of the runs has (`status=queued`, as the page's filter polls it).

Goal (issue 13): first paint of the runs page < 300 ms with 100 000 runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.daemon_common import client, daemon, verdict
from tead.daemon.store import Store
from tests.browser import chromium, new_page
from tests.daemon_fixture import DaemonProcess

WORKFLOW = "name: w{n}\nnodes:\n  - name: a\n    run: |\n      return {{}}\n"
STATUSES = ["succeeded"] * 8 + ["failed", "cancelled"]
PAINT = """() => {
  const paint = Object.fromEntries(
    performance.getEntriesByType('paint').map(e => [e.name, e.startTime]));
  const shown = performance.getEntriesByName('tead:runs-shown')[0];
  return [paint['first-paint'], paint['first-contentful-paint'], shown ? shown.startTime : null];
}"""


def fill(state_dir: Path, count: int) -> list[str]:
    """`count` finished runs of five workflows, one a second up to now; their ids."""
    state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(state_dir / "tead.db")
    start = time.time() - count
    rows = []
    for i in range(count):
        created = start + i
        run_id = f"{int(created * 1000):012x}{i:08x}"
        trigger = json.dumps({"kind": "dispatch"})
        status = STATUSES[i % len(STATUSES)]
        error = "node 'a' failed: ValueError: no" if status == "failed" else None
        rows.append(
            (
                run_id,
                f"w{i % 5}",
                "0" * 64,
                trigger,
                status,
                created,
                created + 0.01,
                created + 0.2,
                error,
                "{}",
                "{}",
                "[]",
            )
        )
    with store._write() as db:  # one transaction: ~1 s for 100 000 runs
        db.executemany(
            "INSERT INTO runs (id, workflow, workflow_hash, trigger, status, created_at,"
            " started_at, finished_at, error, inputs, final_state, nodes)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    store.close()
    return [row[0] for row in rows]


def measure(url: str, loads: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {
        "first paint": [],
        "first contentful paint": [],
        "runs shown": [],
    }
    with chromium() as browser:
        for _ in range(loads + 1):  # the first warms the daemon and the browser up
            page, errors = new_page(browser)
            page.goto(f"{url}/#/runs")
            page.wait_for_function(
                "() => performance.getEntriesByName('tead:runs-shown').length > 0"
            )
            fp, fcp, shown = page.evaluate(PAINT)
            assert not errors, errors
            page.context.close()
            for name, value in zip(samples, (fp, fcp, shown), strict=True):
                samples[name].append(value)
    return {name: statistics.median(values[1:]) for name, values in samples.items()}


def api_ms(proc: DaemonProcess, path: str, repeat: int = 30) -> float:
    """The median time of `GET path`, in ms."""
    times = []
    with client(proc) as http:
        for _ in range(repeat):
            began = time.perf_counter()
            http.get(path).raise_for_status()
            times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--loads", type=int, default=15)
    args = parser.parse_args()
    workflows = {f"w{n}.yaml": WORKFLOW.format(n=n) for n in range(5)}
    results = {}
    for label, count in (("empty", 0), (f"{args.runs} runs", args.runs)):
        with tempfile.TemporaryDirectory(prefix="tead-bench-") as folder:
            root = Path(folder)
            began = time.perf_counter()
            ids = fill(root / "state", count)
            filled = time.perf_counter() - began
            env = {"TEAD_RETENTION_RUNS": str(max(count, 1))}  # keep them all (default 10 000)
            with daemon(workflows, root=root, env=env) as proc:
                if ids:  # all kept: the oldest is still there
                    oldest = proc.get(f"/api/v1/runs?before={ids[1]}").json()["runs"]
                    assert [r["id"] for r in oldest] == ids[:1], "runs were pruned"
                results[label] = measure(proc.url, args.loads)
                listed = api_ms(proc, "/api/v1/runs?limit=50")
                deep = (
                    api_ms(proc, f"/api/v1/runs?limit=50&before={ids[len(ids) // 10]}")
                    if ids
                    else 0.0
                )
                rare = api_ms(proc, "/api/v1/runs?limit=50&status=queued")  # none queued
            print(
                f"{label}: {count} runs written in {filled:.2f} s;"
                f" GET /api/v1/runs {listed:.1f} ms,"
                f" a page 90% deep (before=) {deep:.1f} ms, status=queued {rare:.1f} ms"
            )
            for name, value in results[label].items():
                print(f"  {name}: median {value:.0f} ms over {args.loads} loads")
    full, empty = results[f"{args.runs} runs"], results["empty"]
    for name in full:
        print(
            f"{name}: {full[name]:.0f} ms with {args.runs} runs, {empty[name]:.0f} ms empty"
            f" ({full[name] / empty[name]:.2f}x)"
        )
    fp = full["first paint"]
    print(f"goal: first paint < 300 ms with {args.runs} runs: {fp:.0f} ms {verdict(fp < 300)}")


if __name__ == "__main__":
    main()
