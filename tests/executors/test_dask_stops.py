"""Branches stopped on a real cluster (tests/dask_fixture.py: a `dask scheduler` and two
`dask worker` processes of their own per test) by what happens to their dask worker:
nothing a stopped branch started keeps running beside its re-run."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from tests.dask_fixture import dask_cluster_in
from tests.executors.dask_common import cluster_folder, ended, held_workflow, release, tead_run
from tests.helpers import alive, wait_until


def test_a_worker_closed_cleanly_stops_its_branch_at_once(tmp_path: Path) -> None:
    """`dask worker` told to stop (SIGTERM) while it runs a branch: the scheduler runs the
    branch again elsewhere at once, and the closing worker kills the branch's process
    group (it and its `sleep`) at once too, not when its executor gives up waiting for
    the branch (8 s later here before): the branch does not run twice at once."""
    marks = tmp_path / "marks"
    with dask_cluster_in(cluster_folder(tmp_path)) as cluster:
        text = held_workflow(cluster.address, marks, count=2, sleeper=True)
        flow = tmp_path / "wf.yaml"
        flow.write_text(text, encoding="utf-8")
        run = tead_run(flow)
        try:
            wait_until(lambda: len(list(marks.iterdir())) == 2, "both branches to start")
            [first] = marks.glob("1-*")
            worker, sleep = (int(pid) for pid in first.read_text().split())
            os.kill(_parent(worker), signal.SIGTERM)  # `dask worker`: its nanny closes it
            branch = int(first.name.split("-")[1])
            wait_until(lambda: not alive(branch) and not alive(sleep), "the branch killed", 4)
            release(marks).touch()
            out, err = run.communicate(timeout=90)
        finally:
            ended(run)
    assert run.returncode == 0, err
    assert json.loads(out)["done"] == [1, 2]
    assert len(list(marks.glob("1-*"))) == 2  # run again on the other worker
    assert err.count("was lost while it held this branch") == 1, err


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
