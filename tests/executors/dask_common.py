"""What the dask strategy's tests (test_dask*.py) share: the shape of their fan-out
workflows, the workflow whose worker a test kills, and the killing; a folder for a test's
own cluster, and a `tead run` of a workflow."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.helpers import node_yaml, start_tead

#: a workflow's settings: every fan-out on the cluster at `$address` (the test fills it)
ON_DASK = "settings:\n  parallel: {strategy: dask, dask: {address: $address}}\n"


def for_each_flow(
    name: str,
    *,
    start: str,
    work: str,
    join: str,
    settings: str = ON_DASK,
    header: str = "",
    node: str = "work",
) -> str:
    """A workflow's text: node `start` returns `items`, node `node` runs once per item (a
    fan-out), `join` gathers their `parallel_results`; `start`, `work` and `join` are the
    nodes' Python code. `header` comes before the settings (an `env:`, say)."""
    return (
        f"name: {name}\n{header}{settings}nodes:\n"
        + node_yaml("start", start)
        + node_yaml(node, work)
        + node_yaml("join", join)
        + "edges:\n"
        + "  - {from: __start__, to: start}\n"
        + f"  - {{from: start, to: {node}, parallel: true, for_each: \"state['items']\","
        + " fan_in: join}\n"
        + f"  - {{from: {node}, to: join}}\n"
        + "  - {from: join, to: __end__}\n"
    )


#: branches (items 1..$count); each makes the mark `$marks/ITEM-PID` holding its dask
#: worker process's pid (and, with a sleeper, the pid of a `sleep 600` it started), then
#: runs until the file `$release` exists (the test makes it when it is ready: a branch
#: that had ended before a worker was killed would not run again; with a 3 s sleep, under
#: load four branches started up to 2.8 s apart)
HELD = for_each_flow(
    "held",
    start='return {"items": list(range(1, $count + 1))}',
    work="""\
        import os, subprocess, time
        mark = str(os.getppid())
        if $sleeper:
            mark += f" {subprocess.Popen(['sleep', '600']).pid}"
        name = f"{state['item']}-{os.getpid()}"
        with open(f"$marks-{name}", "w") as f:  # beside, then moved: never read half written
            f.write(mark)
        os.rename(f"$marks-{name}", f"$marks/{name}")
        held = time.monotonic() + 90  # until the test releases it
        while not os.path.exists("$release") and time.monotonic() < held:
            time.sleep(0.05)
        return {"done": state["item"]}
        """,
    join='return {"done": [r.state["done"] for r in parallel_results]}',
)


def held_workflow(address: str, marks: Path, *, count: int = 4, sleeper: bool = False) -> str:
    """HELD on the cluster at `address`, writing its marks into `marks` (made here),
    released by `release(marks)`."""
    marks.mkdir()
    return (
        HELD.replace("$address", address)
        .replace("$marks", str(marks))
        .replace("$release", str(release(marks)))
        .replace("$count", str(count))
        .replace("$sleeper", str(sleeper))
    )


def release(marks: Path) -> Path:
    """The file that lets HELD's branches end."""
    return marks.with_name(f"{marks.name}-release")


def kill_a_worker_of(marks: Path, *, timeout_s: float) -> tuple[list[Path], list[int]]:
    """Once HELD's four branches have written their marks in `marks` (waiting up to
    `timeout_s`), kill -9 the dask worker process running the first, then let the
    branches end. The marks then, and the pids of the branches that worker ran."""
    deadline = time.monotonic() + timeout_s
    while len(list(marks.iterdir())) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    first = sorted(marks.iterdir())
    assert len(first) == 4, first
    victim = int(first[0].read_text())  # the dask worker process running branch 1
    on_victim = [int(m.name.split("-")[1]) for m in first if int(m.read_text()) == victim]
    os.kill(victim, signal.SIGKILL)
    release(marks).touch()
    return first, on_victim


def cluster_folder(tmp_path: Path) -> Path:
    """A folder for a test's own cluster (`dask_cluster_in`): its logs."""
    folder = tmp_path / "cluster"
    folder.mkdir()
    return folder


def tead_run(flow: Path) -> subprocess.Popen[str]:
    """`tead run FLOW -q` started in the workflow's folder, its output piped."""
    return start_tead(
        "run", str(flow), "-q", cwd=flow.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def ended(run: subprocess.Popen[str]) -> None:
    """Kill `run` if it still runs (a test failed), reap it and close its pipes (left
    open, they and the process are reported by a later test's garbage collection)."""
    run.kill()
    run.communicate()
