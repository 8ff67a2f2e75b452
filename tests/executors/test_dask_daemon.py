"""The dask strategy under a real daemon (tests/daemon_fixture.py) and a real cluster (a
`dask scheduler` and two `dask worker` processes, tests/dask_fixture.py): a branch's
output in the run's logs, re-runs after a lost worker in /metrics, and one client kept by
a run worker across the runs it serves."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distributed import Client

from tests.daemon_fixture import DaemonProcess
from tests.dask_fixture import DaskProcesses
from tests.executors.dask_common import for_each_flow, held_workflow, kill_a_worker_of
from tests.helpers import alive, daemon_cli, samples, wait_loaded

Factory = Callable[..., DaemonProcess]

SECRET = "s3cr3t-Dask-Token-42"


CHATTY = for_each_flow(
    "chatty",
    header="env:\n  TOKEN: {secret: token}\n",
    start="""\
        import os
        return {"items": [[0, os.environ["TOKEN"]], [1, os.environ["TOKEN"]]]}
        """,
    work="""\
        import subprocess, sys
        n, token = state["item"]
        print(f"python {n} prints the token {token}")
        sys.stderr.write(f"python {n} on stderr\\n")
        subprocess.run(["sh", "-c", f"echo shell {n} says {token}; echo shell {n} err >&2"])
        return {"done": n}
        """,
    join='return {"done": [r.state["done"] for r in parallel_results]}',
)


def test_a_dask_branch_output_reaches_the_run_logs_attributed_and_masked(
    daemon_factory: Factory, dask_cluster: DaskProcesses
) -> None:
    """What a branch on a dask worker writes (Python's print and stderr, and a subprocess
    writing to descriptors 1 and 2) comes back with its result into the run's logs, each
    line with its node and branch; the secret it prints is masked (API and CLI)."""
    daemon = daemon_factory(env={"TEAD_SECRET_TOKEN": SECRET})
    daemon.write("chatty.yaml", CHATTY.replace("$address", dask_cluster.address))
    daemon.start()
    wait_loaded(daemon, {"chatty"}, timeout_s=60)
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
    shown = daemon_cli(daemon, "runs", "logs", run["id"], "--node", "work")
    assert shown.returncode == 0, shown.stderr
    assert "work[1]" in shown.stdout
    assert "shell 0 says ***" in shown.stdout, shown.stdout
    assert SECRET not in shown.stdout
    assert SECRET not in daemon.get(path).text
    assert SECRET not in daemon.get(f"/api/v1/runs/{run['id']}").text


def _reruns(daemon: DaemonProcess, workflow: str) -> float | None:
    for name, labels, value in samples(daemon.get("/metrics").text):
        if name == "tead_dask_task_reruns_total" and labels.get("workflow") == workflow:
            return float(value)
    return None


def test_reruns_after_a_lost_worker_are_counted_in_the_daemons_metrics(
    daemon: DaemonProcess, dask_cluster: DaskProcesses, tmp_path: Path
) -> None:
    """A dask worker killed while it holds branches of a daemon run (in a run worker
    process): each branch Dask runs again counts in `tead_dask_task_reruns_total` by
    workflow (born at 0 when the workflow loads), and the run still succeeds."""
    marks = tmp_path / "marks"
    daemon.write("held.yaml", held_workflow(dask_cluster.address, marks))
    wait_loaded(daemon, {"held"}, timeout_s=60)
    assert _reruns(daemon, "held") == 0.0
    run_id = daemon.dispatch("held")["id"]
    _, on_victim = kill_a_worker_of(marks, timeout_s=90)
    try:
        run = daemon.wait_run(run_id, timeout_s=120)
        assert run["status"] == "succeeded", run
        assert run["final_state"]["done"] == [1, 2, 3, 4]
        assert not any(alive(pid) for pid in on_victim)
        logs = daemon.get(f"/api/v1/runs/{run_id}/logs").text
        daemon.wait_for(
            lambda: _reruns(daemon, "held") == len(on_victim),
            what=f"{len(on_victim)} re-runs counted (now {_reruns(daemon, 'lost')}); {logs}",
        )
    finally:
        dask_cluster.wait_for_workers(2)  # its nanny starts it again


KEPT = for_each_flow(
    "kept",
    start="""\
        import os
        return {"items": [1, 2, 3], "run_worker": os.getpid()}
        """,
    work='return {"twice": state["item"] * 2}',
    join='return {"twice": [r.state["twice"] for r in parallel_results]}',
)


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
    wait_loaded(daemon, {"kept"}, timeout_s=60)
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


#: starts a thread of its own while the fan-out runs, unless the last run left one
LEAKY_START = """\
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
"""

LEAKY = for_each_flow(
    "leaky",
    start=LEAKY_START,
    work="""\
        import time
        open("$marks/fanning", "w").close()
        time.sleep(3)
        return {}
        """,
    join="return {}",
)


def test_a_thread_a_run_starts_while_its_dask_fan_out_runs_is_left_running(
    daemon: DaemonProcess, dask_cluster: DaskProcesses, tmp_path: Path
) -> None:
    """A thread the run's own code starts while a dask fan-out runs is the run's, not the
    kept client's: the run left it running, so its worker serves no other run."""
    text = LEAKY.replace("$address", dask_cluster.address).replace("$marks", str(tmp_path))
    daemon.write("leaky.yaml", text)
    wait_loaded(daemon, {"leaky"}, timeout_s=60)
    runs = []
    for _ in range(2):
        run = daemon.wait_run(daemon.dispatch("leaky")["id"], timeout_s=120)
        assert run["status"] == "succeeded", (run.get("error"), daemon.logs())
        runs.append(run["final_state"])
    assert runs[1]["left"] == [], "the thread the first run left reached the second"
    assert runs[0]["run_worker"] != runs[1]["run_worker"]
