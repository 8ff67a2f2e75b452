"""The remote strategy on loopback sshds (started here, as the tests do: run as root).

    python bench/remote_strategy.py [--rounds 60] [--branches 200] [--skip-parallel]

1. Warm no-op branch: a 1-branch fan-out, remote vs thread (same run, interleaved); the
   difference is what sending a branch to a host and back costs.
2. 200 no-op branches over 3 hosts (warm) vs GNU Parallel `--sshlogin` running `true` 200
   times on the same hosts (with and without ControlMaster); skipped with a message when
   `parallel` is not installed.
3. A dead host: 3 hosts (4 slots each), 6 branches of 1 s; one host is killed (its
   connections close) or frozen (SIGSTOP: only keepalives, 1 s x 3, notice) 0.3 s in; how
   long after the fault the run ends, minus the 1 s a re-placed branch needs: the time to
   notice the host is gone and place its branches elsewhere.
4. Cold first fan-out (connect, handshake, ship code) vs the same fan-out warm.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import interleaved
from tead import Executors, Workflow, load_workflow
from tests.executors.sshd import SshLab

PARALLEL_TIMEOUT_S = 150


def _workflow(
    folder: Path, name: str, parallel: dict[str, Any], run: str | None = None
) -> Workflow:
    data = {
        "name": name,
        "initial_state": {"branches": 1},
        "settings": {"parallel": parallel},
        "nodes": [
            {"name": "start"},
            {"name": "work", **({"run": run} if run else {})},
            {"name": "done", "run": "return {'ok': sum(r.success for r in parallel_results)}"},
        ],
        "edges": [
            {
                "from": "start",
                "to": "work",
                "parallel": True,
                "for_each": "range(state['branches'])",
                "fan_in": "done",
            },
            {"from": "work", "to": "done"},
        ],
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_workflow(path)


def _ssh(lab: SshLab, host_index: int) -> str:
    host = lab.hosts[host_index]
    return (
        f"ssh -i {lab.identity} -p {host.port} -o UserKnownHostsFile={lab.known_hosts} "
        f"-o StrictHostKeyChecking=yes -o BatchMode=yes root@{host.ip}"
    )


def gnu_parallel(lab: SshLab, jobs: int, control_master: bool) -> float | None:
    if shutil.which("parallel") is None:
        return None
    logins = [arg for i in range(3) for arg in ("--sshlogin", f"8/{_ssh(lab, i)}")]
    command = ["parallel", *(["-M"] if control_master else []), *logins, "true", ":::"]
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [*command, *map(str, range(jobs))],
            capture_output=True,
            text=True,
            check=False,
            timeout=PARALLEL_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        print(f"   GNU Parallel did not finish within {PARALLEL_TIMEOUT_S} s")
        return float(PARALLEL_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        print(f"   GNU Parallel failed ({proc.returncode}): {proc.stderr.strip()[-300:]}")
    return elapsed


def dead_host(folder: Path, mode: str) -> float:
    lab = SshLab(3)
    try:
        remote = lab.remote(folder / "jobs-dead")
        # 4 slots each for 6 branches (2 per host): a lost branch finds a free slot at once
        remote["hosts"] = [{"host": h.address, "slots": 4} for h in lab.hosts]
        wf = _workflow(
            folder,
            f"dead_{mode}",
            {"strategy": "remote", "remote": remote},
            "import time\ntime.sleep(1)",
        )
        with Executors() as executors:
            wf.invoke({"branches": 6}, executors=executors)  # warm: connected, code shipped
            victim = lab.hosts[0]
            fault_at: list[float] = []

            def fault() -> None:
                fault_at.append(time.perf_counter())
                victim.kill() if mode == "kill" else victim.freeze()

            timer = threading.Timer(0.3, fault)
            timer.start()
            final = wf.invoke({"branches": 6}, executors=executors)
            ended = time.perf_counter()
            timer.join()
            assert final["ok"] == 6, final
        return ended - fault_at[0] - 1.0
    finally:
        lab.hosts[0].freeze(False)
        lab.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--branches", type=int, default=200)
    parser.add_argument("--skip-parallel", action="store_true", help="no GNU Parallel runs")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="tead-bench-remote-"))
    lab = SshLab(3)
    try:
        remote = lab.remote(folder / "jobs")
        remote["hosts"] = [{"host": h.address, "slots": 8} for h in lab.hosts]
        remote_wf = _workflow(folder, "noop_remote", {"strategy": "remote", "remote": remote})
        thread_wf = _workflow(folder, "noop_thread", {"strategy": "thread"})

        print("4. cold first fan-out (3 hosts, 3 branches) vs warm")
        with Executors() as executors:
            started = time.perf_counter()
            remote_wf.invoke({"branches": 3}, executors=executors)
            cold = time.perf_counter() - started
            warm = interleaved(
                {"warm": lambda: remote_wf.invoke({"branches": 3}, executors=executors)},
                rounds=20,
            )["warm"]
        print(
            f"   cold {cold * 1000:.0f} ms, warm {warm * 1000:.1f} ms: "
            f"connect + handshake + ship code ~ {(cold - warm) * 1000:.0f} ms"
        )

        with Executors() as executors:
            print("1. warm no-op branch (1-branch fan-out), remote vs thread, same run")
            medians = interleaved(
                {
                    "remote": lambda: remote_wf.invoke({"branches": 1}, executors=executors),
                    "thread": lambda: thread_wf.invoke({"branches": 1}, executors=executors),
                },
                rounds=args.rounds,
            )
            remote_ms, thread_ms = medians["remote"] * 1000, medians["thread"] * 1000
            print(
                f"   remote {remote_ms:.2f} ms, thread {thread_ms:.2f} ms: a branch on a host "
                f"costs {remote_ms - thread_ms:.2f} ms more"
            )

            n = args.branches
            print(f"2. {n} no-op branches over 3 hosts (8 slots each), warm")
            many = interleaved(
                {"remote": lambda: remote_wf.invoke({"branches": n}, executors=executors)},
                rounds=5,
                warmup=1,
            )["remote"]
            print(f"   tead remote: {many * 1000:.0f} ms")
        for master in () if args.skip_parallel else (True, False):
            took = gnu_parallel(lab, n, master)
            if took is None:
                print("   GNU Parallel not installed: comparison skipped (apt install parallel)")
                break
            label = "with ControlMaster (-M)" if master else "a new SSH connection per job"
            print(
                f"   GNU Parallel --sshlogin, {label}: {took * 1000:.0f} ms "
                f"({took / many:.1f}x tead's time)"
            )
    finally:
        lab.close()

    print("3. a dead host: fault -> run done, minus the 1 s a re-placed branch takes")
    for mode in ("kill", "freeze"):
        print(f"   {mode}: {dead_host(folder, mode):.2f} s")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
