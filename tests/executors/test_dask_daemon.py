"""The dask strategy under a real daemon (tests/daemon_fixture.py) and a real cluster (a
`dask scheduler` and two `dask worker` processes, tests/dask_fixture.py): a branch's
output in the run's logs, re-runs after a lost worker in /metrics, and one client kept by
a run worker across the runs it serves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from distributed import Client
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon_fixture import ROOT, DaemonProcess
from tests.dask_fixture import DaskProcesses, dask_cluster_in
from tests.helpers import alive

Factory = Callable[..., DaemonProcess]

SECRET = "s3cr3t-Dask-Token-42"


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskProcesses]:
    """A scheduler and two workers on loopback, shared by this module's tests."""
    with dask_cluster_in(tmp_path_factory.mktemp("dask-cluster")) as cluster:
        yield cluster


def _workflow_loaded(daemon: DaemonProcess, name: str) -> None:
    def loaded() -> bool:
        listed = daemon.get("/api/v1/workflows").json()["workflows"]
        return any(w["name"] == name and w["valid"] for w in listed)

    daemon.wait_for(loaded, timeout_s=60, what=f"workflow {name}")


def _cli(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEAD_")}
    env.update({"PYTHONPATH": str(ROOT), "NO_COLOR": "1"})
    return subprocess.run(
        [sys.executable, "-m", "tead", *args, "--url", daemon.url],
        cwd=daemon.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


CHATTY = """\
name: chatty
env:
  TOKEN: {secret: token}
settings:
  parallel: {strategy: dask, dask: {address: $address}}
nodes:
  - name: start
    run: |
      import os
      return {"items": [[0, os.environ["TOKEN"]], [1, os.environ["TOKEN"]]]}
  - name: work
    run: |
      import subprocess, sys
      n, token = state["item"]
      print(f"python {n} prints the token {token}")
      sys.stderr.write(f"python {n} on stderr\\n")
      subprocess.run(["sh", "-c", f"echo shell {n} says {token}; echo shell {n} err >&2"])
      return {"done": n}
  - name: join
    run: |
      return {"done": [r.state["done"] for r in parallel_results]}
edges:
  - {from: __start__, to: start}
  - {from: start, to: work, parallel: true, for_each: "state['items']", fan_in: join}
  - {from: work, to: join}
  - {from: join, to: __end__}
"""


def test_a_dask_branch_output_reaches_the_run_logs_attributed_and_masked(
    daemon_factory: Factory, dask_cluster: DaskProcesses
) -> None:
    """What a branch on a dask worker writes (Python's print and stderr, and a subprocess
    writing to descriptors 1 and 2) comes back with its result into the run's logs, each
    line with its node and branch; the secret it prints is masked (API and CLI)."""
    daemon = daemon_factory(env={"TEAD_SECRET_TOKEN": SECRET})
    daemon.write("chatty.yaml", CHATTY.replace("$address", dask_cluster.address))
    daemon.start()
    _workflow_loaded(daemon, "chatty")
    run = daemon.wait_run(daemon.dispatch("chatty")["id"], timeout_s=120)
    assert run["status"] == "succeeded", run
    assert run["final_state"]["done"] == [0, 1]
    path = f"/api/v1/runs/{run['id']}/logs"
    daemon.wait_for(lambda: "shell 1 err" in daemon.get(path).text, what="the branch's lines")
    lines = daemon.get(path).json()
    seen = {(e["node"], e["branch"], e["stream"], e["line"]) for e in lines}
    for n in (0, 1):
        branch = f"work[{n}]"
        assert {
            ("work", branch, "stdout", f"python {n} prints the token ***"),
            ("work", branch, "stderr", f"python {n} on stderr"),
            ("work", branch, "stdout", f"shell {n} says ***"),
            ("work", branch, "stderr", f"shell {n} err"),
        } <= seen, lines
    shown = _cli(daemon, "runs", "logs", run["id"], "--node", "work")
    assert shown.returncode == 0, shown.stderr
    assert "work[1]" in shown.stdout
    assert "shell 0 says ***" in shown.stdout, shown.stdout
    assert SECRET not in shown.stdout
    assert SECRET not in daemon.get(path).text
    assert SECRET not in daemon.get(f"/api/v1/runs/{run['id']}").text


LOST = """\
name: lost
settings:
  parallel: {strategy: dask, dask: {address: $address}}
nodes:
  - name: start
    run: |
      return {"items": [1, 2, 3, 4]}
  - name: work
    run: |
      import os, time
      with open(f"$marks/{state['item']}-{os.getpid()}", "w") as f:
          f.write(str(os.getppid()))
      held = time.monotonic() + 90  # until the test has killed a worker
      while not os.path.exists("$release") and time.monotonic() < held:
          time.sleep(0.05)
      return {"done": state["item"]}
  - name: join
    run: |
      return {"done": [r.state["done"] for r in parallel_results]}
edges:
  - {from: __start__, to: start}
  - {from: start, to: work, parallel: true, for_each: "state['items']", fan_in: join}
  - {from: work, to: join}
  - {from: join, to: __end__}
"""


def _reruns(daemon: DaemonProcess, workflow: str) -> float | None:
    for family in text_string_to_metric_families(daemon.get("/metrics").text):
        for sample in family.samples:
            if (
                sample.name == "tead_dask_task_reruns_total"
                and sample.labels.get("workflow") == workflow
            ):
                return float(sample.value)
    return None


def test_reruns_after_a_lost_worker_are_counted_in_the_daemons_metrics(
    daemon: DaemonProcess, dask_cluster: DaskProcesses, tmp_path: Path
) -> None:
    """A dask worker killed while it holds branches of a daemon run (in a run worker
    process): each branch Dask runs again counts in `tead_dask_task_reruns_total` by
    workflow (born at 0 when the workflow loads), and the run still succeeds. The
    branches run until the worker is killed: one that had ended before would not run
    again (a branch slept 3 s; under load the four started up to 2.8 s apart)."""
    marks, release = tmp_path / "marks", tmp_path / "release"
    marks.mkdir()
    text = (
        LOST.replace("$address", dask_cluster.address)
        .replace("$marks", str(marks))
        .replace("$release", str(release))
    )
    daemon.write("lost.yaml", text)
    _workflow_loaded(daemon, "lost")
    assert _reruns(daemon, "lost") == 0.0
    run_id = daemon.dispatch("lost")["id"]
    deadline = time.monotonic() + 90
    while len(list(marks.iterdir())) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    first = sorted(marks.iterdir())
    assert len(first) == 4, first
    victim = int(first[0].read_text())  # the dask worker process running one branch
    on_victim = [int(m.name.split("-")[1]) for m in first if int(m.read_text()) == victim]
    os.kill(victim, signal.SIGKILL)
    release.touch()
    try:
        run = daemon.wait_run(run_id, timeout_s=120)
        assert run["status"] == "succeeded", run
        assert run["final_state"]["done"] == [1, 2, 3, 4]
        assert not any(alive(pid) for pid in on_victim)
        logs = daemon.get(f"/api/v1/runs/{run_id}/logs").text
        daemon.wait_for(
            lambda: _reruns(daemon, "lost") == len(on_victim),
            what=f"{len(on_victim)} re-runs counted (now {_reruns(daemon, 'lost')}); {logs}",
        )
    finally:
        dask_cluster.wait_for_workers(2)  # its nanny starts it again


KEPT = """\
name: kept
settings:
  parallel: {strategy: dask, dask: {address: $address}}
nodes:
  - name: start
    run: |
      import os
      return {"items": [1, 2, 3], "run_worker": os.getpid()}
  - name: work
    run: |
      return {"twice": state["item"] * 2}
  - name: join
    run: |
      return {"twice": [r.state["twice"] for r in parallel_results]}
edges:
  - {from: __start__, to: start}
  - {from: start, to: work, parallel: true, for_each: "state['items']", fan_in: join}
  - {from: work, to: join}
  - {from: join, to: __end__}
"""


def _tead_clients(client: Client) -> set[str]:
    """The clients the scheduler has, other than `client` (the test's own) and those of
    its workers (which ask for branches' stop Events)."""

    def clients(dask_scheduler: Any) -> list[str]:
        return [
            str(c)
            for c in dask_scheduler.clients
            if c != "fire-and-forget" and not str(c).startswith("Client-worker-")
        ]

    return set(client.run_on_scheduler(clients)) - {client.id}


def test_a_run_worker_keeps_its_dask_client_across_runs(
    daemon: DaemonProcess, dask_cluster: DaskProcesses
) -> None:
    """Consecutive runs of one workflow version run in one run worker, on one dask client
    (connected once, by the first run); the daemon's shutdown ends it, with a goodbye (a
    client that just drops makes the scheduler log a critical error and a traceback)."""
    scheduler_log = dask_cluster.folder / "sched.log"
    logged = scheduler_log.stat().st_size
    daemon.write("kept.yaml", KEPT.replace("$address", dask_cluster.address))
    _workflow_loaded(daemon, "kept")
    with Client(dask_cluster.address, timeout=30, set_as_default=False) as client:
        before = _tead_clients(client)
        runs = []
        for _ in range(3):
            run = daemon.wait_run(daemon.dispatch("kept")["id"], timeout_s=120)
            assert run["status"] == "succeeded", (len(runs), run.get("error"), daemon.logs())
            assert run["final_state"]["twice"] == [2, 4, 6]
            runs.append(run)
            if len(runs) == 1:
                ours = daemon.wait_for(
                    lambda: _tead_clients(client) - before, what="the run worker's client"
                )
        assert len({r["final_state"]["run_worker"] for r in runs}) == 1, runs
        assert _tead_clients(client) - before == ours
        assert len(ours) == 1
        assert daemon.stop() == 0
        deadline = time.monotonic() + 60
        while _tead_clients(client) & ours and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _tead_clients(client) & ours
    with scheduler_log.open("rb") as log:
        log.seek(logged)
        since = log.read().decode(errors="replace")
    (tead_client,) = ours
    assert f"Remove client {tead_client}" in since, since
    assert "CRITICAL" not in since and "Traceback" not in since, since


LEAKY = """\
name: leaky
settings:
  parallel: {strategy: dask, dask: {address: $address}}
nodes:
  - name: start
    run: |
      import os, threading, time
      def later():  # starts a thread of the run's while the fan-out runs
          while not os.path.exists("$marks/fanning"):
              time.sleep(0.05)
          threading.Thread(target=time.sleep, args=(600,), name="left-behind", daemon=True).start()
      left = [t.name for t in threading.enumerate() if t.name == "left-behind"]
      if not left:
          if os.path.exists("$marks/fanning"):  # the last run's fan-out's
              os.remove("$marks/fanning")
          threading.Thread(target=later, daemon=True).start()
      return {
          "items": [1, 2],
          "run_worker": os.getpid(),
          "left": left,
      }
  - name: work
    run: |
      import time
      open("$marks/fanning", "w").close()
      time.sleep(3)
      return {}
  - name: join
    run: |
      return {}
edges:
  - {from: __start__, to: start}
  - {from: start, to: work, parallel: true, for_each: "state['items']", fan_in: join}
  - {from: work, to: join}
  - {from: join, to: __end__}
"""


def test_a_thread_a_run_starts_while_its_dask_fan_out_runs_is_left_running(
    daemon: DaemonProcess, dask_cluster: DaskProcesses, tmp_path: Path
) -> None:
    """A thread the run's own code starts while a dask fan-out runs is the run's, not the
    kept client's: the run left it running, so its worker serves no other run."""
    text = LEAKY.replace("$address", dask_cluster.address).replace("$marks", str(tmp_path))
    daemon.write("leaky.yaml", text)
    _workflow_loaded(daemon, "leaky")
    runs = []
    for _ in range(2):
        run = daemon.wait_run(daemon.dispatch("leaky")["id"], timeout_s=120)
        assert run["status"] == "succeeded", (run.get("error"), daemon.logs())
        runs.append(run["final_state"])
    assert runs[1]["left"] == [], "the thread the first run left reached the second"
    assert runs[0]["run_worker"] != runs[1]["run_worker"]
