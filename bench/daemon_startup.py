"""Start-up of `tead serve` with 1 000 workflow files, against an empty folder.

    python bench/daemon_startup.py [--files 1000] [--rounds 5]

Time from starting the process to the first 200 from /readyz (polled every 10 ms), on a
fresh state folder each time. Half the generated files have a schedule (cron, or an
interval), the other half a dispatch trigger; each has three nodes. Rounds alternate an
empty workflow folder (the baseline: interpreter, imports, HTTP server), the full one, and
the full one on a daemon whose series are not born at 0 (`Metrics.workflow_loaded`
replaced, in that process only, by one that only notes the name): the cost of the zero
series (issue 13) in the same run. One untimed round first warms the caches; medians are
compared, of the wall time and of the CPU time the daemon's process used until ready (the
steadier figure on a shared machine).
"""

from __future__ import annotations

import argparse
import os
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
#: `tead serve` with the zero series switched off: the daemon's own entry point, after
#: replacing the method that creates them (nothing else differs)
WITHOUT_ZERO_SERIES = [
    sys.executable,
    "-c",
    "import sys\n"
    "from tead.daemon.metrics import Metrics\n"
    "Metrics.workflow_loaded = lambda self, workflow: self.known.add(workflow.name)\n"
    "from tead.cli.main import main\n"
    "raise SystemExit(main(sys.argv[1:]))\n",
]
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


def startup_s(
    template: Path, expected: int, command: list[str] | None = None
) -> tuple[float, float]:
    """Seconds from process start to /readyz 200, on a copy of `template`, fresh state,
    and the CPU seconds the daemon's process used by then (less swayed by a busy machine
    than the wall time: its other processes, such as the forkserver, are not counted)."""
    with tempfile.TemporaryDirectory(prefix="tead-bench-") as tmp:
        root = Path(tmp)
        shutil.copytree(template, root / "workflows")
        proc = DaemonProcess(root=root, port=free_port(), env=dict(DEFAULT_ENV))
        if command is not None:
            proc.command = command
        began = time.perf_counter()
        proc.start(wait=False)
        try:
            elapsed = _wait_ready(proc, began)
            cpu = _cpu_s(proc)
            loaded = httpx.get(f"{proc.url}/api/v1/workflows", timeout=30).json()["workflows"]
            valid = sum(1 for w in loaded if w["valid"])
            if valid != expected:
                raise AssertionError(f"{valid} valid workflows loaded, expected {expected}")
        finally:
            try:
                proc.stop(timeout_s=30)
            except subprocess.TimeoutExpired:  # never leave a daemon behind
                proc.kill()
    return elapsed, cpu


def _cpu_s(proc: DaemonProcess) -> float:
    """User + system CPU seconds of the daemon's process so far (from /proc)."""
    assert proc.proc is not None
    stat = Path(f"/proc/{proc.proc.pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after the command name, from field 3
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
        variants = {
            "0 files": lambda: startup_s(empty, 0),
            f"{args.files} files": lambda: startup_s(full, args.files),
            f"{args.files} files, no zero series": lambda: startup_s(
                full, args.files, WITHOUT_ZERO_SERIES
            ),
        }
        for run in variants.values():  # untimed: warm the page cache and the .pyc files
            run()
        walls: dict[str, list[float]] = {name: [] for name in variants}
        cpus: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, run in variants.items():
                wall, cpu = run()
                walls[name].append(wall)
                cpus[name].append(cpu)
    for what, samples in (("wall seconds", walls), ("the daemon's CPU seconds", cpus)):
        medians = {name: statistics.median(times) for name, times in samples.items()}
        print(f"start-up to /readyz 200, {what}, median of {args.rounds} (samples):")
        for name, times in samples.items():
            print(f"  {name}: {medians[name]:.2f} ({', '.join(f'{t:.2f}' for t in times)})")
        base, loaded, bare = medians.values()
        per_file_ms = (loaded - base) / args.files * 1000 if args.files else 0.0
        print(
            f"  {args.files} files: {loaded / base:.2f}x the empty start-up, "
            f"+{per_file_ms:.2f} ms per file (no goal set); the series born at 0: "
            f"{loaded - bare:+.2f} s ({(loaded - bare) / loaded:+.0%})"
        )


if __name__ == "__main__":
    main()
