"""End-to-end checks of the daemon's life: kill -9 and restart, catch-up, SIGTERM drain,
SIGHUP reload, the single-instance lock and JSON logs."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.daemon.test_daemon_runs import PID_THEN_SLEEP, process_fanout
from tests.daemon_fixture import DaemonProcess
from tests.helpers import alive, running_then_queued, sleeper, status_of, wait_status, when

Factory = Callable[..., DaemonProcess]


BREAKY = """
name: breaky
settings:
  parallel:
    circuit_breaker: {failure_threshold: 2, reset_timeout: 1h}
nodes:
  - name: start
  - name: boom
    run: |
      raise ConnectionError("service down")
  - name: fine
    run: |
      return {"fine": True}
  - name: join
    run: |
      return {"results": {r.branch: [r.success, r.error_type] for r in parallel_results}}
edges:
  - {from: __start__, to: start}
  - {from: start, to: [boom, fine], parallel: true, fan_in: join}
  - {from: boom, to: join}
  - {from: fine, to: join}
  - {from: join, to: __end__}
"""

PIDS_FANOUT = process_fanout("workers", PID_THEN_SLEEP, join="  - name: join\n")


def simple(name: str, code: str) -> str:
    """A workflow of one node running `code` (one line)."""
    return f"name: {name}\nnodes:\n  - name: only\n    run: |\n      {code}\n"


def restart(factory: Factory, old: DaemonProcess, **kwargs: Any) -> DaemonProcess:
    """A new daemon on the same folders (workflows and state) as `old`."""
    return factory(root=old.root, env=old.env, extra_args=old.extra_args, **kwargs).start()


def metric(daemon: DaemonProcess, name: str, **labels: str) -> float:
    """The value of one sample in /metrics (0 if absent)."""
    text = daemon.get("/metrics").text
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(2))
    return 0.0


def breaker_states(daemon: DaemonProcess) -> dict[str, str]:
    return {b["name"]: b["state"] for b in daemon.get("/api/v1/breakers").json()["breakers"]}


# --- kill -9 and restart ---------------------------------------------------------------------


def test_kill_9_then_restart_keeps_history_and_breakers(daemon_factory: Factory) -> None:
    """A running run comes back interrupted, a queued one runs; history and breakers survive."""
    d = daemon_factory()
    d.write(
        "quick.yaml",
        """
        name: quick
        nodes:
          - name: double
            run: |
              return {"double": state["x"] * 2}
        """,
    )
    d.write("slow.yaml", sleeper("slow", seconds=30))
    d.write("breaky.yaml", BREAKY)
    d.start()
    done = [d.wait_run(d.dispatch("quick", {"x": x})["id"]) for x in (1, 2)]
    assert [r["final_state"]["double"] for r in done] == [2, 4]
    for _ in range(2):
        failed = d.wait_run(d.dispatch("breaky")["id"])
        assert failed["status"] == "succeeded"  # a failed branch is a result
        assert failed["final_state"]["results"]["boom"] == [False, "ConnectionError"]
    assert breaker_states(d) == {"breaky:boom": "open", "breaky:fine": "closed"}
    slow, waiting = running_then_queued(d, "slow", inputs={"sleep": 0})

    d.kill()
    again = restart(daemon_factory, d)

    interrupted = again.get(f"/api/v1/runs/{slow}").json()
    assert interrupted["status"] == "interrupted"
    assert interrupted["error"]
    assert interrupted["finished_at"] is not None
    for before in done:
        after = again.get(f"/api/v1/runs/{before['id']}").json()
        assert after == before
    assert breaker_states(again)["breaky:boom"] == "open"
    run = again.wait_run(again.dispatch("breaky")["id"])
    assert run["final_state"]["results"] == {
        "boom": [False, "CircuitOpenError"],
        "fine": [True, None],
    }
    boom = [b for b in run["branches"] if b["branch"] == "boom"]
    assert len(boom) == 1 and boom[0]["error_type"] == "CircuitOpenError"
    # the queued run is queued again and runs; the interrupted one is not run again
    requeued = again.wait_run(waiting)
    assert requeued["status"] == "succeeded"
    assert requeued["inputs"] == {"sleep": 0}
    assert requeued["trigger"] == {"kind": "dispatch"}
    assert status_of(again, slow) == "interrupted"
    assert again.stop() == 0


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_kill_9_leaves_no_pool_processes(daemon_factory: Factory, tmp_path: Path) -> None:
    """After kill -9, the process strategy's workers and helpers do not linger (runs in the
    daemon's process keep their pools across runs; with run workers, see
    test_run_isolation.py)."""
    pids = tmp_path / "pids"
    pids.mkdir()
    d = daemon_factory(env={"TEAD_ISOLATION": "thread"})
    d.write("workers.yaml", PIDS_FANOUT.replace("time.sleep(30)", "time.sleep(0.2)"))
    d.start()
    run = d.wait_run(d.dispatch("workers", {"piddir": str(pids)})["id"], timeout_s=60)
    assert run["status"] == "succeeded"
    assert d.proc is not None
    helpers = children(d.proc.pid)  # the forkserver and the resource tracker
    workers = [int(p.read_text()) for p in pids.glob("*.pid")]
    assert len(workers) == 2 and all(alive(pid) for pid in workers)
    d.kill()
    try:
        d.wait_for(
            lambda: not any(alive(pid) for pid in workers + helpers),
            timeout_s=10,
            what="the pool's processes to exit after kill -9",
        )
    finally:  # do not leave them behind on this machine either way
        for pid in workers + helpers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_catchup_policies_after_downtime(daemon_factory: Factory) -> None:
    """latest fires one catch-up run, skip none, all every missed fire; never twice."""
    d = daemon_factory()
    for policy in ("latest", "skip", "all"):
        d.write(
            f"c_{policy}.yaml",
            f"""
            name: c_{policy}
            on:
              schedule:
                - every: 1s
              catchup: {policy}
            nodes:
              - name: noop
            """,
        )
    d.start()
    d.wait_for(
        lambda: all(d.runs(workflow=f"c_{p}") for p in ("latest", "skip", "all")),
        what="a scheduled run of each workflow",
    )
    d.kill()
    time.sleep(4)
    d2 = restart(daemon_factory, d)

    def catchups(daemon: DaemonProcess, name: str) -> list[dict[str, Any]]:
        runs = daemon.runs(workflow=name, limit=1000)
        return [r for r in runs if r["trigger"]["kind"] == "catchup"]

    latest, skip, every = (catchups(d2, f"c_{p}") for p in ("latest", "skip", "all"))
    assert len(latest) == 1
    assert skip == []
    assert 3 <= len(every) <= 15  # about one per second of downtime
    assert all("scheduled_time" in r["trigger"] for r in latest + every)
    missed_skip = metric(d2, "tead_missed_schedules_total", workflow="c_skip", policy="skip")
    missed_latest = metric(d2, "tead_missed_schedules_total", workflow="c_latest", policy="latest")
    assert abs(missed_skip - len(every)) <= 1
    assert abs(missed_latest + 1 - len(every)) <= 1
    assert metric(d2, "tead_missed_schedules_total", workflow="c_all", policy="all") == 0

    # two quick restarts: no moment fires twice
    d2.kill()
    d3 = restart(daemon_factory, d2)
    d3.kill()
    d4 = restart(daemon_factory, d3)
    for policy in ("latest", "skip", "all"):
        runs = d4.runs(workflow=f"c_{policy}", limit=1000)
        moments = [r["trigger"]["scheduled_time"] for r in runs]
        assert len(moments) == len(set(moments)), f"c_{policy} fired a moment twice"
    # with `all`, every second from the first fire on ran exactly once
    runs = d4.runs(workflow="c_all", limit=1000)
    fired = sorted(when(r["trigger"]["scheduled_time"]) for r in runs)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(fired)]
    assert len(gaps) >= 5
    assert all(abs(gap - 1.0) < 0.01 for gap in gaps), gaps  # ms-rounded ISO times
    assert d4.stop() == 0


# --- SIGTERM -----------------------------------------------------------------------------------


def test_sigterm_lets_the_running_run_finish(daemon_factory: Factory) -> None:
    """SIGTERM: the running run succeeds, the queued one is interrupted, exit code 0."""
    d = daemon_factory()
    d.write("drain.yaml", sleeper("drain", seconds=1.5))
    d.start()
    running, queued = running_then_queued(d, "drain")
    d.signal(signal.SIGTERM)
    d.wait_for(lambda: "stopping" in d.logs(), what="the drain to begin")
    refused = d.post("/api/v1/workflows/drain/dispatch", json={})  # still serving meanwhile
    assert refused.status_code == 503
    assert "error" in refused.json()
    assert d.proc is not None
    assert d.proc.wait(timeout=30) == 0

    again = restart(daemon_factory, d)
    finished = again.get(f"/api/v1/runs/{running}").json()
    assert finished["status"] == "succeeded"
    assert finished["final_state"]["t1"] > finished["final_state"]["t0"]
    dropped = again.get(f"/api/v1/runs/{queued}").json()
    assert dropped["status"] == "interrupted"
    assert dropped["started_at"] is None
    assert dropped["error"]
    time.sleep(0.5)
    assert status_of(again, queued) == "interrupted"  # not queued again after the restart


def test_sigterm_after_shutdown_grace_interrupts(daemon_factory: Factory, tmp_path: Path) -> None:
    """TEAD_SHUTDOWN_GRACE=1: runs stuck for 30 s (thread or process) are interrupted."""
    pids = tmp_path / "pids"
    pids.mkdir()
    d = daemon_factory(env={"TEAD_SHUTDOWN_GRACE": "1"})
    d.write("stuck.yaml", sleeper("stuck", seconds=30))
    d.write("workers.yaml", PIDS_FANOUT)
    d.start()
    stuck = d.dispatch("stuck")["id"]
    fan = d.dispatch("workers", {"piddir": str(pids)})["id"]
    wait_status(d, stuck, "running")
    files = d.wait_for(
        lambda: sorted(pids.glob("*.pid")) if len(list(pids.glob("*.pid"))) == 2 else None,
        timeout_s=30,
        what="both process branches to start",
    )
    workers = [int(p.read_text()) for p in files]
    queued = d.dispatch("stuck")["id"]

    began = time.monotonic()
    d.signal(signal.SIGTERM)
    assert d.proc is not None
    assert d.proc.wait(timeout=30) == 0
    assert time.monotonic() - began < 15  # did not wait for the 30 s nodes
    d.wait_for(
        lambda: not any(alive(pid) for pid in workers),
        timeout_s=15,
        what="the worker processes to go",
    )

    again = restart(daemon_factory, d)
    for run_id in (stuck, fan, queued):
        record = again.get(f"/api/v1/runs/{run_id}").json()
        assert record["status"] == "interrupted", record
        assert record["error"]
    assert again.get(f"/api/v1/runs/{queued}").json()["started_at"] is None


# --- SIGHUP --------------------------------------------------------------------------------


def test_sighup_reloads_the_config(daemon_factory: Factory, tmp_path: Path) -> None:
    """max_concurrent_runs 1 -> 2 and log_level warning -> info take effect on SIGHUP."""
    config = tmp_path / "tead.yaml"
    config.write_text("max_concurrent_runs: 1\nlog_level: warning\n")
    d = daemon_factory(extra_args=["--config", str(config)])
    d.write("ha.yaml", sleeper("ha", seconds=1.2))
    d.write("hb.yaml", sleeper("hb", seconds=1.2))
    d.start()

    def pair() -> tuple[dict[str, Any], dict[str, Any]]:
        a = d.dispatch("ha")["id"]
        wait_status(d, a, "running")
        b = d.dispatch("hb")["id"]
        return d.wait_run(a), d.wait_run(b)

    a, b = pair()
    assert b["final_state"]["t0"] >= a["final_state"]["t1"]  # one at a time
    assert f"run {a['id']} succeeded" not in d.logs()  # info lines are off

    config.write_text("max_concurrent_runs: 2\nlog_level: info\n")
    d.signal(signal.SIGHUP)
    d.wait_for(lambda: "config reloaded" in d.logs(), what="the reload")  # an info line
    a, b = pair()
    assert b["final_state"]["t0"] < a["final_state"]["t1"]  # now side by side
    d.wait_for(lambda: f"run {b['id']} succeeded" in d.logs(), what="the run's log line")

    config.write_text("max_concurrent_runs: 0\n")
    d.signal(signal.SIGHUP)
    d.wait_for(lambda: "keeping the old config" in d.logs(), what="the rejected reload")
    a, b = pair()
    assert b["final_state"]["t0"] < a["final_state"]["t1"]  # still 2
    assert d.stop() == 0


def test_sighup_rescans_the_folder(daemon_factory: Factory, tmp_path: Path) -> None:
    """A workflow change that no file event reports (a write through a hard link from
    another folder) shows up after SIGHUP."""
    outside = tmp_path / "outside"
    outside.mkdir()
    source = outside / "late.yaml"
    source.write_text("name: placeholder\nnodes:\n  - name: noop\n")
    d = daemon_factory(env={"TEAD_RESCAN_INTERVAL": "3600"})
    d.workflows.mkdir(parents=True)
    os.link(source, d.workflows / "late.yaml")
    d.start()

    def names() -> set[str]:
        found = d.get("/api/v1/workflows").json()["workflows"]
        return {w["name"] for w in found if w["valid"]}

    assert names() == {"placeholder"}
    with source.open("r+") as f:  # same inode: the workflow folder sees no event
        f.truncate(0)
        f.write(simple("late", "return {'late': True}"))
    time.sleep(1.5)
    assert names() == {"placeholder"}  # not seen without a rescan
    d.signal(signal.SIGHUP)
    d.wait_for(lambda: names() == {"late"}, what="the rescan to load `late`")
    run = d.wait_run(d.dispatch("late")["id"])
    assert run["final_state"]["late"] is True
    assert d.post("/api/v1/workflows/placeholder/dispatch", json={}).status_code == 404


# --- the lock and the logs ---------------------------------------------------------------------


def test_second_daemon_on_the_same_state_dir_exits_2(daemon_factory: Factory) -> None:
    first = daemon_factory()
    first.write("hello.yaml", simple("hello", "return {'x': 1}"))
    first.start()
    assert first.proc is not None
    second = daemon_factory(root=first.root).start(wait=False)
    assert second.proc is not None
    assert second.proc.wait(timeout=30) == 2
    message = second.logs().strip()
    assert len(message.splitlines()) == 1, message
    assert f"pid {first.proc.pid}" in message
    assert "Traceback" not in message
    # the first one keeps working
    assert first.get("/healthz").status_code == 200
    assert first.wait_run(first.dispatch("hello")["id"])["status"] == "succeeded"
    assert first.stop() == 0


def test_json_log_format(daemon_factory: Factory) -> None:
    """--log-format json: every stderr line is a JSON object with ts, level and message."""
    d = daemon_factory(extra_args=["--log-format", "json"])
    d.write("ok.yaml", simple("ok", "return {'x': 1}"))
    d.write("bad.yaml", "name: bad\nnodes:\n  - name: hi\n    run: [\n")
    d.write("fails.yaml", simple("fails", "raise ValueError('no')"))
    d.start()
    assert d.wait_run(d.dispatch("ok")["id"])["status"] == "succeeded"
    assert d.wait_run(d.dispatch("fails")["id"])["status"] == "failed"
    assert d.post("/api/v1/workflows/nope/dispatch", json={}).status_code == 404
    assert d.stop() == 0
    lines = [line for line in d.logs().splitlines() if line.strip()]
    assert len(lines) >= 5
    for line in lines:
        entry = json.loads(line)
        assert isinstance(entry, dict), line
        assert {"ts", "level", "message"} <= set(entry), line
        assert entry["level"] in {"debug", "info", "warning", "error", "critical"}
    messages = [json.loads(line)["message"] for line in lines]
    assert any("does not load" in m for m in messages)
    assert any("failed" in m and "fails" in m for m in messages)
    assert messages[-1] == "stopped"


def test_a_catch_up_past_the_counting_cap_says_at_least(daemon_factory: Factory) -> None:
    """An every-second cron whose last fire was three years ago (94 million fires missed):
    the daemon starts at once and the log says `at least 10000 fire(s) missed`, not that
    exactly 10000 were."""
    d = daemon_factory()
    d.write(
        "c.yaml",
        """
        name: c
        on:
          schedule: [{cron: "* * * * * *"}]
          catchup: latest
        nodes: [{name: noop}]
        """,
    )
    d.start()
    d.wait_for(lambda: d.runs(workflow="c"), what="a scheduled run")
    assert d.stop() == 0
    with contextlib.closing(sqlite3.connect(d.state_dir / "tead.db")) as db, db:
        db.execute("UPDATE schedule_marks SET last_fire = ?", (time.time() - 3 * 365 * 86400,))
    d2 = restart(daemon_factory, d)
    d2.wait_for(lambda: "fire(s) missed" in d2.logs(), what="the catch-up log line")
    assert "at least 10000 fire(s) missed; catchup=latest runs 1, skips at least 9999" in (
        d2.logs()
    )
