"""The dask strategy's bundles, result fetches and kept clients under trouble: a real
cluster per test (tests/dask_fixture.py: a `dask scheduler` and two `dask worker`
processes) where a test kills or adds workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from distributed import Client

from tests.conftest import ROOT
from tests.dask_fixture import dask_cluster_in

ITEMS_WORKFLOW = """\
name: items
settings:
  parallel: {strategy: dask, dask: {address: $address}}
nodes:
  - name: start
    run: |
      return {"items": list(range(1, $count + 1))}
  - name: work
    run: |
      import os, time
      open(f"$marks/{state['item']}-{os.getpid()}", "w").close()
      time.sleep($sleep)
      return {"done": state["item"]}
  - name: join
    run: |
      return {"done": [r.state["done"] if r.error is None else r.error for r in parallel_results]}
edges:
  - {from: __start__, to: start}
  - {from: start, to: work, parallel: true, for_each: "state['items']", fan_in: join}
  - {from: work, to: join}
  - {from: join, to: __end__}
"""


def _items(folder: Path, address: str, *, count: int, sleep: float) -> Path:
    marks = folder / "marks"
    marks.mkdir(exist_ok=True)
    text = (
        ITEMS_WORKFLOW.replace("$address", address)
        .replace("$marks", str(marks))
        .replace("$count", str(count))
        .replace("$sleep", str(sleep))
    )
    flow = folder / "wf.yaml"
    flow.write_text(text, encoding="utf-8")
    return flow


def _cluster_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "cluster"
    folder.mkdir()
    return folder


def _tead_run(flow: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "tead", "run", str(flow), "-q"],
        cwd=flow.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _bundle_holders(client: Client) -> dict[str, list[str]]:
    """The workers (addresses) holding each scattered bundle, as the scheduler knows."""

    def holders(dask_scheduler: Any) -> dict[str, list[str]]:
        return {
            str(key): [ws.address for ws in ts.who_has or ()]
            for key, ts in dask_scheduler.tasks.items()
            if str(key).startswith("tead-bundle-")
        }

    result: dict[str, list[str]] = client.run_on_scheduler(holders)
    return result


def test_the_worker_holding_the_bundle_killed_mid_fan_out(tmp_path: Path) -> None:
    """The dask worker process the bundle was scattered to is killed while the fan-out
    runs: the branches run again elsewhere, on workers that may not have fetched the
    bundle yet (its nanny's new process has not), and every branch still succeeds."""
    with dask_cluster_in(_cluster_folder(tmp_path)) as cluster:
        flow = _items(tmp_path, cluster.address, count=12, sleep=2)
        run = _tead_run(flow)
        try:
            with Client(cluster.address, timeout=30, set_as_default=False) as client:
                deadline = time.monotonic() + 60
                while not list((tmp_path / "marks").iterdir()) and time.monotonic() < deadline:
                    time.sleep(0.05)
                (holders,) = _bundle_holders(client).values()
                pids = client.run(os.getpid)
                os.kill(pids[holders[0]], signal.SIGKILL)
            out, err = run.communicate(timeout=120)
        finally:
            run.kill()
    assert run.returncode == 0, err
    assert json.loads(out)["done"] == list(range(1, 13)), err
