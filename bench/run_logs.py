"""What capturing a run's output costs, on a real `tead serve`.

    python bench/run_logs.py [--trials 5] [--lines 100000] [--isolation process]

One daemon, two workflows alike but for where their node's output goes: `loud` prints
`--lines` lines (each captured, attributed, sent to the daemon and stored with the run),
`quiet` (the baseline) prints the same lines to a file opened on /dev/null. They are run
in turns, `--trials` times each; a run's time is its `finished_at - started_at` (so the
writing of its logs counts). Reported: the median of each, and the median of the rounds'
ratios (loud over the quiet run just before it: a shared machine's load swings single
runs by 2x, a round's two runs see about the same load).

Goal (issue 12): loud <= 1.2x quiet.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.daemon_common import client, daemon, parse_time, verdict

NODE = """
name: {name}
nodes:
  - name: talk
    run: |
      import os
      out = {out}
      for i in range(state["lines"]):
          print("line", i, "of the node's output", file=out)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=15)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--isolation", default="process", choices=["process", "thread"])
    args = parser.parse_args()
    workflows = {
        "loud.yaml": NODE.format(name="loud", out="None"),
        "quiet.yaml": NODE.format(name="quiet", out="open(os.devnull, 'w')"),
    }
    env = {"TEAD_ISOLATION": args.isolation}
    times: dict[str, list[float]] = {"loud": [], "quiet": []}
    with daemon(workflows, env=env) as proc, client(proc) as http:
        for trial in range(args.trials + 1):  # the first round warms up
            for name in ("quiet", "loud"):
                answer = http.post(
                    f"/api/v1/workflows/{name}/dispatch", json={"inputs": {"lines": args.lines}}
                )
                run_id = answer.json()["id"]
                while (run := http.get(f"/api/v1/runs/{run_id}").json())["status"] in (
                    "queued",
                    "running",
                ):
                    pass
                assert run["status"] == "succeeded", run
                took = parse_time(run["finished_at"]) - parse_time(run["started_at"])
                if trial:
                    times[name].append(took)
                if name == "loud" and trial == 1:
                    lines = http.get(f"/api/v1/runs/{run_id}/logs").json()
                    assert len(lines) == args.lines, len(lines)
                    assert lines[-1]["line"] == f"line {args.lines - 1} of the node's output"
    quiet, loud = statistics.median(times["quiet"]), statistics.median(times["loud"])
    print(f"isolation {args.isolation}, {args.lines} lines, {args.trials} trials each")
    print(f"quiet (output to /dev/null): median {quiet * 1000:.0f} ms  {_all(times['quiet'])}")
    print(f"loud (output captured):      median {loud * 1000:.0f} ms  {_all(times['loud'])}")
    rounds = [lo / qu for lo, qu in zip(times["loud"], times["quiet"], strict=True)]
    ratio = statistics.median(rounds)
    print(f"ratio of the medians {loud / quiet:.2f}x")
    print(f"median round ratio {ratio:.2f}x (goal <= 1.2x: {verdict(ratio <= 1.2)})")


def _all(samples: list[float]) -> str:
    return "[" + ", ".join(f"{s * 1000:.0f}" for s in samples) + "]"


if __name__ == "__main__":
    main()
