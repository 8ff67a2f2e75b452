"""Start-up of `tead serve` with 1 000 workflow files, against an empty folder.

    python bench/daemon_startup.py [--files 1000] [--rounds 5]

Time from starting the process to the first 200 from /readyz (polled every 10 ms), on a
fresh state folder each time. Half the generated files have a schedule (cron, or an
interval), the other half a dispatch trigger; each has three nodes. Rounds alternate an
empty workflow folder (the baseline: interpreter, imports, HTTP server) and the full one,
after one untimed pair that warms the caches; medians are compared.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.daemon_common import DEFAULT_ENV
from tests.daemon_fixture import DaemonProcess, free_port

SCHEDULED = """
name: wf{i:04d}
description: generated workflow {i} (schedule)
on:
  schedule:
    - {schedule}
  catchup: skip
nodes:
  - name: fetch
    run: |
      return {{"items": list(range(3))}}
  - name: count
    run: |
      return {{"n": len(state["items"])}}
  - name: done
"""
DISPATCHED = """
name: wf{i:04d}
description: generated workflow {i} (dispatch)
on:
  dispatch:
    inputs:
      who: {{type: string, default: world}}
nodes:
  - name: fetch
    run: |
      return {{"items": list(range(3))}}
  - name: count
    run: |
      return {{"n": len(state["items"])}}
  - name: done
"""
SCHEDULES = ['cron: "{m} {h} * * *"', 'every: "{s}s"', 'cron: "*/{k} * * * *"']


def generate(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        if i % 2:
            text = DISPATCHED.format(i=i)
        else:
            schedule = SCHEDULES[i % 3].format(m=i % 60, h=i % 24, s=60 + i, k=i % 30 + 1)
            text = SCHEDULED.format(i=i, schedule=schedule)
        (folder / f"wf{i:04d}.yaml").write_text(text.lstrip())


def startup_s(template: Path, expected: int) -> float:
    """Seconds from process start to /readyz 200, on a copy of `template`, fresh state."""
    with tempfile.TemporaryDirectory(prefix="tead-bench-") as tmp:
        root = Path(tmp)
        shutil.copytree(template, root / "workflows")
        proc = DaemonProcess(root=root, port=free_port(), env=dict(DEFAULT_ENV))
        began = time.perf_counter()
        proc.start(wait=False)
        try:
            elapsed = _wait_ready(proc, began)
            loaded = httpx.get(f"{proc.url}/api/v1/workflows", timeout=30).json()["workflows"]
            valid = sum(1 for w in loaded if w["valid"])
            if valid != expected:
                raise AssertionError(f"{valid} valid workflows loaded, expected {expected}")
        finally:
            try:
                proc.stop(timeout_s=30)
            except subprocess.TimeoutExpired:  # never leave a daemon behind
                proc.kill()
    return elapsed


def _wait_ready(proc: DaemonProcess, began: float, timeout_s: float = 120) -> float:
    assert proc.proc is not None
    with httpx.Client(base_url=proc.url, timeout=5) as http:
        while time.perf_counter() - began < timeout_s:
            if proc.proc.poll() is not None:
                raise AssertionError(f"daemon exited {proc.proc.returncode}:\n{proc.logs()}")
            try:
                if http.get("/readyz").status_code == 200:
                    return time.perf_counter() - began
            except httpx.TransportError:
                pass
            time.sleep(0.01)
    raise AssertionError(f"not ready after {timeout_s} s:\n{proc.logs()[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tead-bench-templates-") as tmp:
        empty, full = Path(tmp) / "empty", Path(tmp) / "full"
        generate(empty, 0)
        generate(full, args.files)
        startup_s(empty, 0)  # untimed: warm the page cache and the interpreter's .pyc files
        startup_s(full, args.files)
        samples: dict[str, list[float]] = {"empty": [], "full": []}
        for _ in range(args.rounds):
            samples["empty"].append(startup_s(empty, 0))
            samples["full"].append(startup_s(full, args.files))
    base = statistics.median(samples["empty"])
    loaded = statistics.median(samples["full"])
    per_file_ms = (loaded - base) / args.files * 1000 if args.files else 0.0
    print(
        f"start-up to /readyz 200, median of {args.rounds}: 0 files {base:.2f} s "
        f"({', '.join(f'{s:.2f}' for s in samples['empty'])}) | {args.files} files "
        f"{loaded:.2f} s ({', '.join(f'{s:.2f}' for s in samples['full'])})"
    )
    print(
        f"{args.files} files: {loaded:.2f} s = {loaded / base:.2f}x the empty start-up, "
        f"+{per_file_ms:.2f} ms per file (no goal set)"
    )


if __name__ == "__main__":
    main()
