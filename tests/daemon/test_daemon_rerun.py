"""`tead runs rerun` against a real daemon: a new run of the same workflow version (even
after the file changed and the daemon restarted) with the same trigger data and inputs."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from tests.daemon_fixture import DaemonProcess
from tests.helpers import sleeper, wait_status

Factory = Callable[..., DaemonProcess]
RunTead = Callable[..., subprocess.CompletedProcess[str]]

VERSIONED = """\
name: versioned
on:
  dispatch:
    inputs:
      n: {type: integer, default: 2}
nodes:
  - name: work
    run: |
      return {"version": "VERSION", "doubled": state["n"] * 2}
"""


def test_rerun_runs_the_same_version_with_the_same_inputs(
    daemon_factory: Factory, tead_cli: RunTead
) -> None:
    daemon = daemon_factory()
    daemon.write("versioned.yaml", VERSIONED.replace("VERSION", "v1"))
    daemon.start()
    first = daemon.wait_run(daemon.dispatch("versioned", {"n": 5})["id"])
    assert first["final_state"]["version"] == "v1"
    daemon.write("versioned.yaml", VERSIONED.replace("VERSION", "v2"))
    daemon.wait_for(
        lambda: (
            daemon.wait_run(daemon.dispatch("versioned")["id"])["final_state"]["version"] == "v2"
        ),
        what="v2 loaded",
    )

    proc = tead_cli("runs", "rerun", first["id"], "--url", daemon.url)
    assert proc.returncode == 0, proc.stderr
    new_id = proc.stdout.split()[1]
    assert proc.stdout.endswith(f"(re-run of {first['id']})\n")
    again = daemon.wait_run(new_id)
    assert again["status"] == "succeeded"
    assert again["final_state"]["version"] == "v1"  # the version the first run ran
    assert again["final_state"]["doubled"] == 10
    assert again["inputs"] == {"n": 5}
    assert again["workflow_hash"] == first["workflow_hash"]
    assert again["trigger"] == {**first["trigger"], "rerun_of": first["id"]}

    assert daemon.stop() == 0  # the version's text is kept in the store
    daemon.start()
    response = daemon.post(f"/api/v1/runs/{first['id']}/rerun", json={})
    assert response.status_code == 202, response.text
    assert daemon.wait_run(response.json()["id"])["final_state"]["version"] == "v1"


def test_only_finished_runs_are_rerun(daemon_factory: Factory) -> None:
    daemon = daemon_factory()
    daemon.write("slow.yaml", sleeper("slow", seconds=30))
    daemon.start()
    run = daemon.dispatch("slow")
    wait_status(daemon, run["id"], "running")
    response = daemon.post(f"/api/v1/runs/{run['id']}/rerun")
    assert response.status_code == 409
    assert response.json()["error"] == f"run {run['id']} is running: only a finished run is re-run"
    assert daemon.post("/api/v1/runs/nope/rerun").status_code == 404
