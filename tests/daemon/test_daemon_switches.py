"""`tead workflows disable|enable` against a real daemon: a disabled workflow's schedules and
watches do not fire, dispatch answers 409, and the switch survives a restart."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

from tests.daemon_fixture import DaemonProcess

Factory = Callable[..., DaemonProcess]
RunTead = Callable[..., subprocess.CompletedProcess[str]]

TICKER = """\
name: ticker
on:
  schedule:
    - every: 1s
  watch:
    paths: ["inbox/*.txt"]
nodes:
  - name: tick
"""


def _count(daemon: DaemonProcess) -> int:
    return len(daemon.runs(workflow="ticker", limit=1000))


def _quiet_for(daemon: DaemonProcess, seconds: float) -> None:
    """No new run of ticker starts within `seconds` (a run queued before may finish)."""
    time.sleep(0.5)
    before = _count(daemon)
    time.sleep(seconds)
    assert _count(daemon) == before


def _ticker_answer(daemon: DaemonProcess) -> dict[str, object]:
    found = daemon.get("/api/v1/workflows").json()["workflows"]
    return dict(next(w for w in found if w["name"] == "ticker"))


def test_disable_survives_a_restart_and_enable_resumes(
    daemon_factory: Factory, tead_cli: RunTead
) -> None:
    daemon = daemon_factory()
    daemon.write("ticker.yaml", TICKER)
    daemon.start()
    daemon.wait_for(lambda: _count(daemon) >= 1, what="a scheduled run")
    listed = tead_cli("workflows", "--url", daemon.url)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split("\t") == [
        "name",
        "file",
        "triggers",
        "next_fire",
        "status",
        "enabled",
    ]
    row = listed.stdout.splitlines()[1].split("\t")
    assert row[0] == "ticker" and row[3] != "-" and row[5] == "yes", row

    proc = tead_cli("workflows", "disable", "ticker", "--url", daemon.url)
    assert (proc.returncode, proc.stdout) == (0, "workflow ticker disabled\n"), proc.stderr
    answer = _ticker_answer(daemon)
    assert answer["enabled"] is False
    assert answer["triggers"]["schedule"][0]["next_fire"] is None  # type: ignore[index]
    refused = daemon.post("/api/v1/workflows/ticker/dispatch", json={"inputs": {}})
    assert refused.status_code == 409
    assert refused.json()["error"] == "workflow 'ticker' is disabled (tead workflows enable ticker)"
    (daemon.workflows / "inbox").mkdir(exist_ok=True)
    (daemon.workflows / "inbox" / "a.txt").write_text("x")
    _quiet_for(daemon, 2.5)

    assert daemon.stop() == 0
    daemon.start()
    assert _ticker_answer(daemon)["enabled"] is False
    assert daemon.post("/api/v1/workflows/ticker/dispatch").status_code == 409
    _quiet_for(daemon, 2.0)
    row = tead_cli("workflows", "--url", daemon.url).stdout.splitlines()[1].split("\t")
    assert (row[3], row[5]) == ("-", "no"), row

    enabled = daemon.post("/api/v1/workflows/ticker/enable")
    assert enabled.status_code == 200
    assert enabled.json()["enabled"] is True
    before = _count(daemon)
    daemon.wait_for(lambda: _count(daemon) > before, what="a scheduled run after enable")
    assert daemon.post("/api/v1/workflows/ticker/dispatch").status_code == 202


def test_switching_an_unknown_workflow_is_404(daemon: DaemonProcess, tead_cli: RunTead) -> None:
    assert daemon.post("/api/v1/workflows/nope/disable").status_code == 404
    proc = tead_cli("workflows", "enable", "nope", "--url", daemon.url)
    assert proc.returncode == 2
    assert proc.stderr == "tead: no workflow 'nope'\n"
