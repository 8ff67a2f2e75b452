"""Branches stopped on a real cluster (tests/dask_fixture.py: a `dask scheduler` and two
`dask worker` processes of their own per test) by what happens to their dask worker:
nothing a stopped branch started keeps running beside its re-run."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from tests.dask_fixture import dask_cluster_in
from tests.executors.dask_common import cluster_folder, for_each_flow, tead_run
from tests.helpers import alive, wait_until

#: two branches; each starts `sleep 600`, writes the mark `$marks/ITEM-PID` holding its
#: dask worker process's pid and the sleep's, then runs until the file `$go` exists
SLEEPERS = for_each_flow(
    "sleepers",
    start='return {"items": [1, 2]}',
    work="""\
        import os, subprocess, time
        sleep = subprocess.Popen(["sleep", "600"])
        with open(f"$marks/{state['item']}-{os.getpid()}", "w") as f:
            f.write(f"{os.getppid()} {sleep.pid}")
        held = time.monotonic() + 90
        while not os.path.exists("$go") and time.monotonic() < held:
            time.sleep(0.05)
        return {"done": state["item"]}
        """,
    join='return {"done": [r.state["done"] for r in parallel_results]}',
)


def test_a_worker_closed_cleanly_stops_its_branch_at_once(tmp_path: Path) -> None:
    """`dask worker` told to stop (SIGTERM) while it runs a branch: the scheduler runs the
    branch again elsewhere at once, and the closing worker kills the branch's process
    group (it and its `sleep`) at once too, not when its executor gives up waiting for
    the branch (8 s later here before): the branch does not run twice at once."""
    marks, go = tmp_path / "marks", tmp_path / "go"
    marks.mkdir()
    with dask_cluster_in(cluster_folder(tmp_path)) as cluster:
        text = SLEEPERS.replace("$address", cluster.address).replace("$marks", str(marks))
        flow = tmp_path / "wf.yaml"
        flow.write_text(text.replace("$go", str(go)), encoding="utf-8")
        run = tead_run(flow)
        try:
            wait_until(lambda: len(list(marks.iterdir())) == 2, "both branches to start")
            [first] = marks.glob("1-*")
            worker, sleep = (int(pid) for pid in first.read_text().split())
            os.kill(_parent(worker), signal.SIGTERM)  # `dask worker`: its nanny closes it
            branch = int(first.name.split("-")[1])
            wait_until(lambda: not alive(branch) and not alive(sleep), "the branch killed", 4)
            go.touch()
            out, err = run.communicate(timeout=90)
        finally:
            run.kill()
    assert run.returncode == 0, err
    assert json.loads(out)["done"] == [1, 2]
    assert len(list(marks.glob("1-*"))) == 2  # run again on the other worker
    assert err.count("was lost while it held this branch") == 1, err


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
