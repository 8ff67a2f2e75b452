"""The dask strategy against a plain `client.map` and against threads.

    python bench/dask_strategy.py [--noop 200] [--cpu-branches 16] [--work-s 0.5]
                                  [--daemon-runs 6] [--only noop|cpu|daemon]

Needs the dask extra (pip install -e '.[dask]'). Both parts use a 2-worker LocalCluster
(one thread per worker) that this script starts; tead connects to it by address and keeps
its client across runs (one `Executors`), as a daemon's run does within itself.

1. No-op branches: per-branch time of a fan-out of N no-op branches on the dask strategy
   vs a plain `client.map` of N no-op functions on the same cluster (goal: <= 1.5x).
2. CPU-bound fan-out (N x work-s of pure-Python work): dask strategy vs thread strategy,
   same run (goal: >= 1.8x faster). Where the dask fan-outs' time went, by CPU time: the
   branches' share of the two workers' cores (what other load on the machine left them),
   and what this process (scheduler and client) and the cluster's other processes used.
3. Connecting: what a new client costs.
4. A real daemon (`tead serve`) running one dask workflow (20 no-op branches) several
   times in a row: its run worker keeps its client across the runs it serves, so the first
   run pays for connecting (and the checks, and warming the workers' children), the next
   ones do not. Run duration (started to finished, from the API), first vs the next ones.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil  # a dependency of distributed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from distributed import Client, LocalCluster

from bench.common import interleaved, median, timed
from bench.daemon_common import daemon, parse_time
from bench.process_strategy import CPU_WORKFLOW, NOOP_WORKFLOW
from tead import Executors, Workflow, load_workflow_text

FOLDER = tempfile.mkdtemp(prefix="tead-bench-dask-")


def loops_for(seconds: float) -> int:
    """Loop count of the burn node that takes about `seconds` of CPU here (CPU time, so
    that other load on the machine while measuring does not shorten the branches)."""
    n = 1_000_000
    started = time.process_time()
    total = 0
    for i in range(n):
        total += i * i % 7
    return int(n * seconds / (time.process_time() - started))


def _noop(value: int) -> int:
    return value


def _on(text: str, strategy: str, address: str, workers: int | None = None) -> Workflow:
    limit = f", max_workers: {workers}" if workers else ""
    settings = (
        f"settings: {{parallel: {{strategy: {strategy}{limit}, dask: {{address: '{address}'}}}}}}\n"
    )
    # a folder of its own: the workflow's folder is what is shipped to the workers
    return load_workflow_text(settings + text, f"{FOLDER}/bench_dask_{strategy}.yaml")


def noop_overhead(address: str, branches: int) -> None:
    workflow = _on(NOOP_WORKFLOW, "dask", address)
    state = {"branches": branches}
    with Executors() as executors, Client(address, set_as_default=False) as client:

        def plain_map() -> None:
            client.gather(client.map(_noop, range(branches), pure=False))

        medians = interleaved(
            {
                "tead": lambda: workflow.invoke(state, executors=executors),
                "map": plain_map,
            },
            rounds=7,
        )
    tead_ms = medians["tead"] / branches * 1000
    map_ms = medians["map"] / branches * 1000
    print(f"no-op branches ({branches}, 2 workers):")
    print(f"  tead dask strategy   {tead_ms:7.2f} ms per branch")
    print(f"  plain client.map     {map_ms:7.2f} ms per task")
    print(f"  ratio                {tead_ms / map_ms:7.2f}x   (goal <= 1.5x)")


class CpuTimes:
    """CPU seconds used by this process and its descendants while calls run, summed over
    the calls: the dask children running branches, and the rest."""

    def __init__(self) -> None:
        self.wall = self.branches = self.others = 0.0

    def measured(self, fn: Callable[[], object]) -> Callable[[], None]:
        def call() -> None:
            before, started = _cpu_by_process(), time.perf_counter()
            fn()
            after, self.wall = _cpu_by_process(), self.wall + time.perf_counter() - started
            for pid, (is_branch, cpu) in after.items():
                used = cpu - before.get(pid, (is_branch, 0.0))[1]
                if is_branch:
                    self.branches += used
                else:
                    self.others += used

        return call


def _cpu_by_process() -> dict[int, tuple[bool, float]]:
    """Each process's CPU seconds so far, and whether it is a dask child (runs branches)."""
    me = psutil.Process()
    found = {}
    for process in [me, *me.children(recursive=True)]:
        try:
            with process.oneshot():
                times, command = process.cpu_times(), process.cmdline()
        except psutil.Error:  # ended meanwhile
            continue
        found[process.pid] = ("tead.executors.dask.child" in command, times.user + times.system)
    return found


def cpu_bound(address: str, branches: int, work_s: float) -> None:
    state = {"branches": branches, "loops": loops_for(work_s)}
    thread_wf = _on(CPU_WORKFLOW, "thread", address, workers=2)
    dask_wf = _on(CPU_WORKFLOW, "dask", address)
    cpu = CpuTimes()
    with Executors() as executors:
        for workflow in (thread_wf, dask_wf):  # warm: not measured
            workflow.invoke(state, executors=executors)
        medians = interleaved(
            {
                "thread": lambda: thread_wf.invoke(state, executors=executors),
                "dask": cpu.measured(lambda: dask_wf.invoke(state, executors=executors)),
            },
            rounds=3,
            warmup=0,
        )
    print(f"CPU-bound fan-out ({branches} x {work_s:g} s, 2-worker LocalCluster):")
    print(f"  thread strategy      {medians['thread']:7.2f} s")
    print(f"  dask strategy        {medians['dask']:7.2f} s")
    print(f"  speed-up             {medians['thread'] / medians['dask']:7.2f}x   (goal >= 1.8x)")
    print(
        f"  dask fan-outs: branches used {cpu.branches / (2 * cpu.wall):.0%} of 2 cores;", end=" "
    )
    print(f"the scheduler, client and workers {cpu.others / cpu.wall:.0%} of one")


def connect_cost(address: str) -> None:
    def connect() -> None:
        Client(address, set_as_default=False).close()

    print(f"connect + close a client: {median(timed(connect, repeat=10)) * 1000:.1f} ms")


def daemon_runs(address: str, runs: int, branches: int = 20) -> None:
    settings = f"settings: {{parallel: {{strategy: dask, dask: {{address: '{address}'}}}}}}\n"
    with daemon({"noop.yaml": settings + NOOP_WORKFLOW}) as proc:
        deadline = time.monotonic() + 60
        while not any(
            w["name"] == "noop" and w["valid"]
            for w in proc.get("/api/v1/workflows").json()["workflows"]
        ):
            if time.monotonic() > deadline:
                raise SystemExit("the daemon did not load the workflow")
            time.sleep(0.1)
        durations = []
        for _ in range(runs):
            run = proc.wait_run(proc.dispatch("noop", {"branches": branches})["id"], timeout_s=120)
            if run["status"] != "succeeded":
                raise SystemExit(f"a run failed: {run.get('error')}")
            durations.append(parse_time(run["finished_at"]) - parse_time(run["started_at"]))
    first, rest = durations[0], median(durations[1:])
    print(f"daemon runs of {branches} no-op dask branches ({runs} in a row, one run worker):")
    print(f"  first run            {first * 1000:7.1f} ms   (connects, checks the workers)")
    print(f"  next runs (median)   {rest * 1000:7.1f} ms   (client kept across runs)")
    print(f"  first / next         {first / rest:7.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noop", type=int, default=200)
    parser.add_argument("--cpu-branches", type=int, default=16)
    parser.add_argument("--work-s", type=float, default=0.5)
    parser.add_argument("--daemon-runs", type=int, default=6)
    parser.add_argument("--only", choices=["noop", "cpu", "daemon"], default=None)
    args = parser.parse_args()
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        address = cluster.scheduler_address
        time.sleep(1)  # the workers settle
        if args.only in (None, "noop"):
            connect_cost(address)
            noop_overhead(address, args.noop)
        if args.only in (None, "cpu"):
            cpu_bound(address, args.cpu_branches, args.work_s)
        if args.only in (None, "daemon"):
            daemon_runs(address, args.daemon_runs)


if __name__ == "__main__":
    main()
