"""The state folder through a real daemon: private modes, a full disk, big states."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.daemon_fixture import DaemonProcess
from tests.helpers import wait_status

Factory = Callable[..., DaemonProcess]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def test_state_folder_and_database_are_private_whatever_the_umask(
    daemon_factory: Factory,
) -> None:
    """Under umask 022 the state folder is 0700 and the database, its -wal / -shm files
    and the lock file are 0600: other local users cannot read the run history."""
    daemon = daemon_factory()
    daemon.write("quick.yaml", "name: quick\nnodes: [{name: a, run: 'return {\"x\": 1}'}]\n")
    with umask(0o022):
        daemon.start()
    run = daemon.dispatch("quick")
    assert daemon.wait_run(run["id"])["status"] == "succeeded"
    state = daemon.state_dir
    assert mode(state) == 0o700
    files = [state / n for n in ("tead.db", "tead.db-wal", "tead.db-shm", "tead.lock")]
    assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}


def test_a_loose_existing_state_folder_is_tightened_with_a_warning(
    daemon_factory: Factory,
) -> None:
    """An existing 0755 state folder with a 0644 database (and a WAL left by a crash)
    becomes 0700 / 0600 at start-up, and the log says so."""
    daemon = daemon_factory()
    daemon.state_dir.mkdir(mode=0o755)
    os.chmod(daemon.state_dir, 0o755)
    for name in ("tead.db", "tead.db-wal"):
        (daemon.state_dir / name).touch()
        os.chmod(daemon.state_dir / name, 0o644)
    daemon.start()
    assert mode(daemon.state_dir) == 0o700
    assert mode(daemon.state_dir / "tead.db") == 0o600
    assert "was mode 0755; made it 0700" in daemon.logs()


# --- a full disk -----------------------------------------------------------------------------


@pytest.fixture
def small_state_fs(daemon_factory: Factory) -> Iterator[DaemonProcess]:
    """A daemon (not started) whose state folder is a fresh 16 MiB tmpfs."""
    daemon = daemon_factory()
    daemon.state_dir.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(daemon.state_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:  # CI runs as root; this needs CAP_SYS_ADMIN
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield daemon
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait(timeout=10)
        subprocess.run(["umount", "-l", str(daemon.state_dir)], check=False)


def fill_up(folder: Path) -> Path:
    """Write a file into `folder` until its file system has no space left."""
    filler = folder / "filler"
    chunk = b"\0" * (64 * 1024)
    with filler.open("wb", buffering=0) as handle:
        while True:
            try:
                handle.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    with filler.open("ab", buffering=0) as handle:  # the last few bytes too
        for _ in range(4096):
            try:
                handle.write(b"\0" * 512)
            except OSError:
                break
    return filler


def stored_runs(db: Path) -> dict[str, tuple[str, str | None]]:
    """Run id -> (status, final state JSON) as SQLite itself has them on disk."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT id, status, final_state FROM runs").fetchall()
    return {row[0]: (row[1], row[2]) for row in rows}


def test_a_full_disk_answers_503_and_records_finished_runs_truthfully_later(
    small_state_fs: DaemonProcess,
) -> None:
    """With the state folder's file system full: runs that succeed are never recorded as
    failed (the API shows them succeeded), dispatch answers 503 JSON and creates nothing,
    a queued run waits, /healthz answers; once space returns the runs' ends and final
    states are written and the queued run runs."""
    daemon = small_state_fs
    pad = "x" * 300_000
    for name in ("slow_a", "slow_b"):
        daemon.write(
            f"{name}.yaml",
            f"""\
            name: {name}
            nodes:
              - name: work
                run: |
                  import time
                  time.sleep(2)
                  return {{"pad": "p" * 300_000}}
            """,
        )
    daemon.write("quick.yaml", "name: quick\nnodes: [{name: a, run: 'return {\"x\": 1}'}]\n")
    daemon.start()
    runs = [daemon.dispatch(name)["id"] for name in ("slow_a", "slow_b")]
    for run_id in runs:
        wait_status(daemon, run_id, "running")
    behind = daemon.dispatch("slow_a")["id"]  # queued: slow_a's group is busy
    filler = fill_up(daemon.state_dir)

    refused = daemon.post("/api/v1/workflows/quick/dispatch", json={"inputs": {"big": pad}})
    assert refused.status_code == 503, refused.text
    assert "disk is full" in refused.json()["error"]
    for run_id in runs:
        shown = daemon.wait_run(run_id)
        assert shown["status"] == "succeeded", shown["error"]
        assert len(shown["final_state"]["pad"]) == 300_000
    assert daemon.get("/healthz").status_code == 200
    assert daemon.runs(workflow="slow_b")[0]["status"] == "succeeded"
    assert not {r["id"] for r in daemon.runs(status="running")} & set(runs)
    time.sleep(1.5)  # a few retries while the disk stays full
    assert daemon.get(f"/api/v1/runs/{behind}").json()["status"] == "queued"
    on_disk = stored_runs(daemon.state_dir / "tead.db")
    assert [on_disk[r][0] for r in runs] == ["running", "running"]  # not written: no space
    assert on_disk[behind][0] == "queued"  # it starts only once its start can be written
    assert len(on_disk) == 3  # the refused dispatch created nothing

    filler.unlink()
    daemon.wait_for(
        lambda: all(stored_runs(daemon.state_dir / "tead.db")[r][0] != "running" for r in runs),
        what="the runs' ends to be written",
    )
    on_disk = stored_runs(daemon.state_dir / "tead.db")
    for run_id in runs:
        status, state = on_disk[run_id]
        assert status == "succeeded"
        assert state is not None and len(state) > 300_000
    assert daemon.wait_run(behind)["status"] == "succeeded"
    later = daemon.dispatch("quick")
    assert daemon.wait_run(later["id"])["status"] == "succeeded"
    assert stored_runs(daemon.state_dir / "tead.db")[behind][0] == "succeeded"
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.logs()


def start_a_slow_run(daemon: DaemonProcess) -> str:
    """Start the daemon with a workflow `slow` (1.5 s), dispatch it; once its run runs, its id."""
    daemon.write(
        "slow.yaml", "name: slow\nnodes: [{name: a, run: 'import time; time.sleep(1.5)'}]\n"
    )
    daemon.start()
    run_id = str(daemon.dispatch("slow")["id"])
    wait_status(daemon, run_id, "running")
    return run_id


def test_an_end_still_unwritten_at_shutdown_is_logged_and_never_reads_as_a_lie(
    small_state_fs: DaemonProcess,
) -> None:
    """SIGTERM while a finished run's end still waits for space: the log names the run and
    its outcome, and after a restart the run reads `interrupted` with an error saying its
    end was not recorded (not `failed`, not a made-up success)."""
    daemon = small_state_fs
    run_id = start_a_slow_run(daemon)
    filler = fill_up(daemon.state_dir)
    assert daemon.wait_run(run_id)["status"] == "succeeded"
    assert daemon.stop() == 0
    assert f"run {run_id} succeeded, but the disk is still full: not recorded" in daemon.logs()
    filler.unlink()
    daemon.start()
    run = daemon.get(f"/api/v1/runs/{run_id}").json()
    assert run["status"] == "interrupted"
    assert run["error"] == "the daemon stopped before the run's end was recorded"


def test_a_status_filter_finds_a_run_whose_end_waits_for_space(
    small_state_fs: DaemonProcess,
) -> None:
    """While the disk is full, a run that succeeded (its end kept in memory) is listed by
    `?status=succeeded`, and not by `?status=running` (its row on disk still says running)."""
    daemon = small_state_fs
    run_id = start_a_slow_run(daemon)
    filler = fill_up(daemon.state_dir)
    assert daemon.wait_run(run_id)["status"] == "succeeded"
    assert stored_runs(daemon.state_dir / "tead.db")[run_id][0] == "running"
    assert run_id in {r["id"] for r in daemon.runs(status="succeeded")}
    assert run_id not in {r["id"] for r in daemon.runs(status="running")}
    assert [r["id"] for r in daemon.runs(status="succeeded", limit=1)] == [run_id]
    filler.unlink()


def test_a_queued_run_stopped_on_a_full_disk_is_logged_as_what_a_restart_does(
    small_state_fs: DaemonProcess,
) -> None:
    """SIGTERM on a full disk while a run waits in the queue: its `interrupted` cannot be
    written, so the log says a restart queues it again and runs it (not that it will read
    as interrupted), and that is what the restart does."""
    daemon = small_state_fs
    first = start_a_slow_run(daemon)
    behind = daemon.dispatch("slow")["id"]  # queued: its group is busy
    filler = fill_up(daemon.state_dir)
    assert daemon.stop() == 0
    assert (
        f"run {behind} interrupted, but the disk is still full: not recorded (it is still "
        "queued on disk: a restart queues it again and runs it)"
    ) in daemon.logs()
    filler.unlink()
    daemon.start()
    assert daemon.wait_run(behind)["status"] == "succeeded"
    assert daemon.get(f"/api/v1/runs/{first}").json()["status"] == "interrupted"


def test_a_daemon_started_on_a_full_disk_says_so_in_one_line(
    small_state_fs: DaemonProcess,
) -> None:
    """A new state folder on a full file system: `tead serve` exits 1 with one line naming
    the full disk, no traceback."""
    daemon = small_state_fs
    fill_up(daemon.state_dir)
    daemon.start(wait=False)
    assert daemon.proc is not None
    assert daemon.proc.wait(timeout=30) == 1
    assert "tead: the state folder's disk is full" in daemon.logs()
    assert "Traceback" not in daemon.logs()


def test_schedule_fires_on_a_full_disk_are_one_line_each_and_resume_with_space(
    small_state_fs: DaemonProcess,
) -> None:
    """A schedule falling due while the disk is full creates no run and logs one warning
    line saying so (no traceback); once space returns its runs are created again."""
    daemon = small_state_fs
    daemon.write("tick.yaml", "name: tick\non: {schedule: [{every: 1s}]}\nnodes: [{name: a}]\n")
    daemon.start()
    daemon.wait_for(lambda: daemon.runs(workflow="tick"), what="a first tick")
    filler = fill_up(daemon.state_dir)
    daemon.wait_for(
        lambda: (
            daemon.logs().count(
                "a trigger fired, but no run was created: the state folder's disk is full"
            )
            >= 2
        ),
        timeout_s=30,
        what="two refused fires",
    )
    assert "Traceback" not in daemon.logs()
    filler.unlink()
    before = {r["id"] for r in daemon.runs(workflow="tick", limit=500)}
    daemon.wait_for(
        lambda: {r["id"] for r in daemon.runs(workflow="tick", limit=500)} - before,
        timeout_s=30,
        what="a tick after space returned",
    )
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.logs()


def test_cancelling_a_queued_run_on_a_full_disk_is_refused_not_lost_by_a_restart(
    small_state_fs: DaemonProcess,
) -> None:
    """While the disk is full, cancelling a queued run answers 503 and the run stays
    queued (a cancel kept only in memory would be forgotten by a restart, which would
    queue the run again and run it); with space, the cancel is recorded and outlives a
    restart."""
    daemon = small_state_fs
    daemon.write("slow.yaml", "name: slow\nnodes: [{name: a, run: 'import time; time.sleep(6)'}]\n")
    daemon.start()
    first = daemon.dispatch("slow")["id"]
    wait_status(daemon, first, "running")
    behind = daemon.dispatch("slow")["id"]  # queued: its group is busy
    filler = fill_up(daemon.state_dir)
    refused = daemon.post(f"/api/v1/runs/{behind}/cancel")
    assert refused.status_code == 503, refused.text
    assert "disk is full" in refused.json()["error"]
    assert daemon.get(f"/api/v1/runs/{behind}").json()["status"] == "queued"
    filler.unlink()
    cancelled = daemon.post(f"/api/v1/runs/{behind}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert daemon.stop() == 0
    daemon.start()
    assert daemon.get(f"/api/v1/runs/{behind}").json()["status"] == "cancelled"


# --- big states and big fan-outs -----------------------------------------------------------


@contextlib.contextmanager
def healthz_probe(daemon: DaemonProcess) -> Iterator[list[float]]:
    """Ask /healthz one request after another on a thread while the block runs; the list
    (filled at the end) holds how many seconds each took."""
    seen: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                started = time.monotonic()
                assert client.get(f"{daemon.url}/healthz").status_code == 200
                seen.append(time.monotonic() - started)
                time.sleep(0.005)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(timeout=60)


def run_while_probed(
    daemon: DaemonProcess, workflow: str, *, timeout_s: float
) -> tuple[str, list[float]]:
    """Dispatch `workflow` and wait for its run to end while /healthz is probed; the run's
    id and how many seconds each probe took."""
    with healthz_probe(daemon) as latencies:
        run_id = daemon.dispatch(workflow)["id"]
        daemon.wait_for(
            lambda: daemon.runs(workflow=workflow)[0]["status"] not in ("queued", "running"),
            timeout_s=timeout_s,
            what="the run to end",
        )
        time.sleep(0.3)
    return str(run_id), latencies


def db_size(daemon: DaemonProcess) -> int:
    """The bytes of the daemon's database files."""
    return sum(f.stat().st_size for f in daemon.state_dir.glob("tead.db*"))


def summary(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"max {ordered[-1] * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, n={len(ordered)}"


def test_a_200_mb_final_state_is_a_recorded_error_and_never_stalls_the_daemon(
    daemon_factory: Factory,
) -> None:
    """A run whose final state is 200 MB fails with an error naming max_state_bytes; its
    state is not stored (a small database) and /healthz keeps answering quickly."""
    daemon = daemon_factory()
    daemon.write(
        "huge.yaml",
        """\
        name: huge
        nodes:
          - name: make
            run: |
              import time
              time.sleep(0.5)
              return {"blob": ["x" * 1_000_000 for _ in range(200)]}  # 200 MB
        """,
    )
    daemon.start()
    run_id, latencies = run_while_probed(daemon, "huge", timeout_s=120)
    print(f"healthz while a run makes a 200 MB state: {summary(latencies)}")
    run = daemon.get(f"/api/v1/runs/{run_id}").json()
    assert run["status"] == "failed"
    assert "max_state_bytes" in str(run["error"]) and run["final_state"] is None
    assert max(latencies) < 0.5, summary(latencies)
    size = db_size(daemon)
    print(f"database after a 200 MB state: {size / 1e6:.1f} MB")
    assert size < 20_000_000


def wide_for_each(items: int, *, fan_in_run: str) -> str:
    """A workflow `wide` that fans out over `items` items, each branch a trivial node."""
    return f"""\
name: wide
nodes:
  - {{name: plan, run: 'return {{"items": list(range({items}))}}'}}
  - {{name: each, run: 'return {{"seen": state["item"]}}'}}
  - {{name: done, run: '{fan_in_run}'}}
edges:
  - {{from: __start__, to: plan}}
  - {{from: plan, to: each, parallel: true, for_each: "state['items']", fan_in: done}}
  - {{from: each, to: done}}
  - {{from: done, to: __end__}}
"""


def test_a_for_each_over_100_000_items_leaves_the_daemon_serving_and_cancellable(
    daemon_factory: Factory,
) -> None:
    """While a run fans out over 100 000 items the daemon answers /healthz and the API,
    another workflow's run succeeds, and cancelling the big run ends it promptly; what
    its finished branches left is stored within max_state_bytes."""
    daemon = daemon_factory()
    daemon.write("wide.yaml", wide_for_each(100_000, fan_in_run="return {}"))
    daemon.write("quick.yaml", "name: quick\nnodes: [{name: a, run: 'return {\"x\": 1}'}]\n")
    daemon.start()
    with healthz_probe(daemon) as latencies:
        wide = daemon.dispatch("wide")["id"]
        wait_status(daemon, wide, "running")
        time.sleep(3)
        quick = daemon.dispatch("quick")["id"]
        assert daemon.wait_run(quick, timeout_s=30)["status"] == "succeeded"
        assert daemon.get("/api/v1/runs", params={"limit": 10}).status_code == 200
        started = time.monotonic()
        cancelled = daemon.post(f"/api/v1/runs/{wide}/cancel")
        took = time.monotonic() - started
        time.sleep(0.3)
    print(f"healthz during a 100 000-item for_each: {summary(latencies)}; cancel {took:.2f} s")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert took < 10
    assert max(latencies) < 1.0, summary(latencies)
    assert db_size(daemon) < 60_000_000
    assert daemon.stop() == 0


def test_a_wide_for_each_that_finishes_is_stored_off_the_loop(daemon_factory: Factory) -> None:
    """A for_each over 2 500 items whose every branch state holds the whole list (6 M
    values in all) finishes with /healthz answering throughout; what is stored stays within
    max_state_bytes."""
    daemon = daemon_factory()
    daemon.write(
        "wide.yaml", wide_for_each(2_500, fan_in_run='return {"count": len(parallel_results)}')
    )
    daemon.start()
    wide, latencies = run_while_probed(daemon, "wide", timeout_s=180)
    print(f"healthz while a 2 500-item for_each ends: {summary(latencies)}")
    run = httpx.get(f"{daemon.url}/api/v1/runs/{wide}", timeout=60).json()
    assert run["status"] == "succeeded", run["error"]
    assert run["final_state"]["count"] == 2_500 and len(run["branches"]) == 2_500
    assert run["branches"][0]["state"]["seen"] == 0
    assert "over max_state_bytes" in run["branches"][-1]["state_note"]
    assert max(latencies) < 1.0, summary(latencies)
    assert db_size(daemon) < 60_000_000


def test_max_state_bytes_comes_from_the_environment(daemon_factory: Factory) -> None:
    """TEAD_MAX_STATE_BYTES=1000: a 5 000-byte final state fails the run naming the limit;
    a small one is stored as it is."""
    daemon = daemon_factory(env={"TEAD_MAX_STATE_BYTES": "1000"})
    daemon.write("big.yaml", 'name: big\nnodes: [{name: a, run: \'return {"p": "p" * 5000}\'}]\n')
    daemon.write("small.yaml", 'name: small\nnodes: [{name: a, run: \'return {"p": "p"}\'}]\n')
    daemon.start()
    big = daemon.wait_run(daemon.dispatch("big")["id"])
    assert big["status"] == "failed" and big["final_state"] is None
    assert "over max_state_bytes (1000 bytes)" in big["error"]
    small = daemon.wait_run(daemon.dispatch("small")["id"])
    assert small["status"] == "succeeded" and small["final_state"]["p"] == "p"


def test_listing_runs_with_big_inputs_never_stalls_the_daemon(daemon_factory: Factory) -> None:
    """150 runs with ~0.9 MB of inputs each (under max_request_bytes): listing them
    (`GET /api/v1/runs?limit=1000`) answers quickly and /healthz keeps answering, since the
    list does not read the inputs it does not show."""
    daemon = daemon_factory()
    daemon.write(
        "take.yaml",
        "name: take\non: {dispatch: {inputs: {s: {type: string}}}}\nnodes: [{name: a}]\n",
    )
    daemon.start()
    body = {"inputs": {"s": "x" * 900_000}}
    with httpx.Client(timeout=60) as client:
        for _ in range(150):
            answer = client.post(f"{daemon.url}/api/v1/workflows/take/dispatch", json=body)
            assert answer.status_code == 202, answer.text
    daemon.wait_for(
        lambda: not daemon.runs(status="queued") and not daemon.runs(status="running"),
        timeout_s=60,
        what="the runs to end",
    )
    with healthz_probe(daemon) as latencies:
        time.sleep(0.2)
        for _ in range(3):
            listed = daemon.get("/api/v1/runs", params={"limit": 1000})
            assert listed.status_code == 200 and len(listed.json()["runs"]) == 150
        time.sleep(0.2)
    print(f"healthz while listing 150 runs with 0.9 MB inputs: {summary(latencies)}")
    assert max(latencies) < 0.25, summary(latencies)


def test_reading_or_cancelling_a_run_with_a_big_state_never_stalls_the_daemon(
    daemon_factory: Factory,
) -> None:
    """A finished run whose final state is ~13 MB of small objects: reading it answers the
    whole state and cancelling it answers 409, while /healthz keeps answering quickly (the
    stored JSON is sent as it is, never decoded on the daemon's side, even when a string in
    it reads NaN or Infinity)."""
    daemon = daemon_factory()
    daemon.write(
        "big.yaml",
        """\
        name: big
        nodes:
          - name: a
            run: |
              return {"a": [{"k": i} for i in range(1_000_000)], "note": "NaN, -Infinity"}
        """,
    )
    daemon.start()
    run_id = daemon.dispatch("big")["id"]
    assert daemon.wait_run(run_id, timeout_s=120)["status"] == "succeeded"
    with healthz_probe(daemon) as latencies:
        time.sleep(0.2)
        for _ in range(3):
            answer = httpx.get(f"{daemon.url}/api/v1/runs/{run_id}", timeout=60)
            assert answer.status_code == 200
            refused = daemon.post(f"/api/v1/runs/{run_id}/cancel")
            assert refused.status_code == 409, refused.text
        time.sleep(0.2)
    print(f"healthz while reading and cancelling a 13 MB run: {summary(latencies)}")
    run = answer.json()
    assert run["status"] == "succeeded" and run["id"] == run_id
    assert len(run["final_state"]["a"]) == 1_000_000
    assert run["final_state"]["a"][-1] == {"k": 999_999}
    assert run["final_state"]["note"] == "NaN, -Infinity" and "omitted" not in run
    assert refused.json() == {"error": f"run {run_id} already succeeded"}
    assert max(latencies) < 0.25, summary(latencies)


def test_cancelling_a_run_whose_end_is_being_written_is_409(daemon_factory: Factory) -> None:
    """A cancel that arrives after a run's nodes have finished, while its 13 MB final
    state is still being encoded, answers 409 at once (the run has finished); the run
    reads as succeeded. Without a journal: with one, recording what the node returned is
    part of the node (see the README's *Resuming a run*)."""
    daemon = daemon_factory(env={"TEAD_JOURNAL": "false"})
    marker = daemon.root / "returned"
    daemon.write(
        "big.yaml",
        f"""\
        name: big
        nodes:
          - name: a
            run: |
              big = [{{"k": i}} for i in range(1_000_000)]
              open({str(marker)!r}, "w").close()
              return {{"a": big}}
        """,
    )
    daemon.start()
    run_id = daemon.dispatch("big")["id"]
    daemon.wait_for(marker.exists, timeout_s=60, what="the node to return")
    time.sleep(0.3)  # the engine hands the state over; encoding it takes seconds
    assert daemon.get(f"/api/v1/runs/{run_id}").json()["status"] == "running"
    started = time.monotonic()
    refused = daemon.post(f"/api/v1/runs/{run_id}/cancel")
    took = time.monotonic() - started
    assert refused.status_code == 409, refused.text[:300]
    assert refused.json() == {"error": f"run {run_id} already finished (its end is being recorded)"}
    assert took < 1.0
    run = daemon.wait_run(run_id, timeout_s=120)
    assert run["status"] == "succeeded" and len(run["final_state"]["a"]) == 1_000_000
