"""The cost of every run's journal of completed steps (resume), on real `tead serve`s.

    python bench/daemon_journal.py [--runs 5] [--items 2000] [--nodes 50]

Two daemons, one after the other, alike but for `journal` (`false`: the baseline;
`true`, the default), each running the same workflows `--runs` times, one at a time:

- wide: a `for_each` over `--items` items (thread branches), each branch one node that
  returns a small update, then a fan-in: one journal entry per branch;
- long: `--nodes` nodes in a row on the main path, each returning a small update.

Reported: the median run time (`finished_at - started_at`) of each, and the ratio
journal / baseline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.daemon_common import client, daemon, parse_time

WIDE = """
name: wide
initial_state: {items: [ITEMS]}
nodes:
  - name: start
  - name: work
    run: |
      return {"out": state["item"] * 2}
  - name: merge
    run: |
      return {"total": sum(r.state["out"] for r in parallel_results)}
edges:
  - {from: __start__, to: start}
  - {from: start, to: work, parallel: true, for_each: "state['items']", item_var: item,
     fan_in: merge, max_workers: 4}
  - {from: work, to: merge}
  - {from: merge, to: __end__}
"""


def long_workflow(nodes: int) -> str:
    body = "".join(
        f"  - name: n{i}\n    run: |\n      return {{'v{i}': {i}}}\n" for i in range(nodes)
    )
    return f"name: long\nnodes:\n{body}"


def measure(journal: str, runs: int, items: int, nodes: int) -> dict[str, float]:
    files = {
        "wide.yaml": WIDE.replace("ITEMS", ", ".join(str(i) for i in range(items))),
        "long.yaml": long_workflow(nodes),
    }
    found: dict[str, float] = {}
    with daemon(files, env={"TEAD_JOURNAL": journal}) as proc, client(proc) as http:
        time.sleep(2.0)  # the warm workers start
        for name in ("wide", "long"):
            times = []
            for _ in range(runs + 1):  # the first run warms up
                run_id = http.post(f"/api/v1/workflows/{name}/dispatch", json={}).json()["id"]
                while True:
                    run = http.get(f"/api/v1/runs/{run_id}").json()
                    if run["status"] not in ("queued", "running"):
                        break
                    time.sleep(0.01)
                assert run["status"] == "succeeded", run["error"]
                times.append(parse_time(run["finished_at"]) - parse_time(run["started_at"]))
            found[name] = statistics.median(times[1:])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--nodes", type=int, default=50)
    args = parser.parse_args()
    base = measure("false", args.runs, args.items, args.nodes)
    with_journal = measure("true", args.runs, args.items, args.nodes)
    for name, what in (("wide", f"{args.items} branches"), ("long", f"{args.nodes} nodes")):
        ratio = with_journal[name] / base[name]
        print(
            f"{name} ({what}): journal off (baseline) {base[name] * 1000:.0f} ms, "
            f"on {with_journal[name] * 1000:.0f} ms: {ratio:.2f}x"
        )


if __name__ == "__main__":
    main()
