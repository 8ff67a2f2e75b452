"""The remote strategy's state and connection costs on loopback sshds (started here, as the
tests do: run as root).

    python bench/remote_state.py [--rounds 5] [--branches 200] [--mb 1] [--runs 6]

1. Shared base: a fan-out of N branches over a state of M MB (a for_each over a list; a
   node makes the big value, so the workflow file stays small), 3 hosts (8 slots each),
   warm: the base sent once per host with each branch's item (today's default) vs every
   branch sending the whole state (`RemoteExecutor(share_base=False)`), interleaved in the
   same run; median time and bytes written to the hosts. The process strategy (4 workers)
   on the same fan-out, for reference.
2. A daemon's runs: the same remote workflow (3 hosts, 3 branches) dispatched R times in
   a row; each run's fan-out time (from the node before it to its fan-in, as the nodes see
   it): the first run connects to the hosts, the later ones are served by the same run
   worker, which keeps its connections.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import interleaved
from bench.daemon_common import daemon
from tead import Executors, Workflow, load_workflow
from tead.executors.remote.executor import RemoteExecutor
from tests.executors.sshd import SshLab


def _data(name: str, parallel: dict[str, Any], branches: int, mb: float) -> dict[str, Any]:
    words = int(mb * 1_000_000) // 100
    return {
        "name": name,
        "initial_state": {"items": list(range(branches))},
        "settings": {"parallel": parallel},
        "nodes": [
            {
                "name": "start",
                "run": f"import time\nreturn {{'t0': time.time(), 'big': ['w' * 98] * {words}}}",
            },
            {"name": "work", "run": "return {'n': len(state['big']) + state['item']}"},
            {
                "name": "done",
                "run": "import time\nreturn {'ok': sum(r.success for r in parallel_results),"
                " 'fanout_s': time.time() - state['t0'], 'big': None}",
            },
        ],
        "edges": [
            {"from": "__start__", "to": "start"},
            {
                "from": "start",
                "to": "work",
                "parallel": True,
                "for_each": "state['items']",
                "fan_in": "done",
            },
            {"from": "work", "to": "done"},
            {"from": "done", "to": "__end__"},
        ],
    }


def _workflow(folder: Path, data: dict[str, Any]) -> Workflow:
    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_workflow(path)


def shared_base(lab: SshLab, folder: Path, branches: int, mb: float, rounds: int) -> None:
    remote = lab.remote(folder / "jobs")
    remote["hosts"] = [{"host": h.address, "slots": 8} for h in lab.hosts]
    wf = _workflow(folder, _data("big_remote", {"strategy": "remote", "remote": remote}, 1, mb))
    process_wf = _workflow(
        folder, _data("big_process", {"strategy": "process", "max_workers": 4}, 1, mb)
    )
    state = {"items": list(range(branches))}
    registries = {}
    for share in (True, False):
        executors = Executors()
        executors.register("remote", lambda deps, share=share: RemoteExecutor(share_base=share))
        registries[share] = executors
    process = Executors()
    sent: dict[bool, list[int]] = {True: [], False: []}

    def remote_run(share: bool) -> None:
        executor = registries[share].get("remote")
        assert isinstance(executor, RemoteExecutor)
        before = sum(h.bytes_sent for h in executor.hosts())
        final = wf.invoke(state, executors=registries[share])
        assert final["ok"] == branches, final
        sent[share].append(sum(h.bytes_sent for h in executor.hosts()) - before)

    try:
        medians = interleaved(
            {
                "shared": lambda: remote_run(True),
                "whole": lambda: remote_run(False),
                "process": lambda: process_wf.invoke(state, executors=process),
            },
            rounds=rounds,
            warmup=1,
        )
    finally:
        for executors in (*registries.values(), process):
            executors.close()
    mib = {share: sorted(sent[share])[len(sent[share]) // 2] / 2**20 for share in sent}
    print(f"1. {branches} branches over a {mb:g} MB state, 3 hosts (8 slots each), warm")
    print(
        f"   base once per host: {medians['shared'] * 1000:.0f} ms, {mib[True]:.1f} MiB sent\n"
        f"   whole state per branch: {medians['whole'] * 1000:.0f} ms, {mib[False]:.1f} MiB sent"
        f" ({medians['whole'] / medians['shared']:.1f}x the time, "
        f"{mib[False] / mib[True]:.0f}x the bytes)\n"
        f"   process strategy (4 workers, this machine): {medians['process'] * 1000:.0f} ms"
    )


def daemon_runs(lab: SshLab, folder: Path, runs: int) -> None:
    data = _data("kept", {"strategy": "remote", "remote": lab.remote(folder / "djobs")}, 3, 0.0)
    data["on"] = {"dispatch": {}}
    with daemon({"kept.yaml": yaml.safe_dump(data, sort_keys=False)}) as proc:
        proc.wait_for(lambda: proc.get("/api/v1/workflows").json()["workflows"], timeout_s=30)
        took = []
        for _ in range(runs):
            run = proc.wait_run(proc.dispatch("kept")["id"], timeout_s=120)
            assert run["status"] == "succeeded", run["error"]
            took.append(run["final_state"]["fanout_s"])
            time.sleep(0.2)  # the worker is kept once its end is stored
    later = sorted(took[1:])[len(took[1:]) // 2]
    print(f"2. a daemon's runs of one remote workflow (3 hosts, 3 branches), {runs} in a row")
    print(
        f"   first run's fan-out {took[0] * 1000:.0f} ms (connects), later runs' median "
        f"{later * 1000:.1f} ms ({took[0] / later:.0f}x faster; each: "
        + ", ".join(f"{t * 1000:.0f}" for t in took)
        + " ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--branches", type=int, default=200)
    parser.add_argument("--mb", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=6)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="tead-bench-remote-state-"))
    lab = SshLab(3)
    try:
        shared_base(lab, folder, args.branches, args.mb, args.rounds)
        daemon_runs(lab, folder, args.runs)
    finally:
        lab.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
