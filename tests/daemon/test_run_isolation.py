"""End to end, on a real daemon: each run in a worker process of its own.

A node that exits, segfaults, runs out of its memory, CPU or file limit, spins forever or
changes its process (working directory, environment, `sys.path`) affects its own run only;
cancel, timeouts and the daemon's death kill the run's whole process group; the daemon
logs a run's output with its id; breakers changed in a worker reach the daemon's store."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.daemon.test_daemon_runs import end_of
from tests.daemon_fixture import DaemonProcess
from tests.helpers import alive, descendants, wait_status

Factory = Callable[..., DaemonProcess]


def node(body: str, name: str = "a") -> str:
    """A one-node workflow's node list with `body` as its `run:` code."""
    indented = "\n".join(f"      {line}" for line in body.strip().splitlines())
    return f"nodes:\n  - name: {name}\n    run: |\n{indented}\n"


# records its pid and start time in <dir>/<tag>.start, then runs `rest`
NOTE = """
import json, os, time
path = os.path.join(state["dir"], state["tag"] + ".start")
with open(path + ".tmp", "w") as f:
    json.dump({"t": time.time(), "pid": os.getpid(), "pgid": os.getpgid(0)}, f)
os.replace(path + ".tmp", path)
"""


def started(d: DaemonProcess, folder: Path, tag: str) -> dict[str, Any]:
    path = folder / f"{tag}.start"
    return d.wait_for(  # type: ignore[no-any-return]
        lambda: json.loads(path.read_text()) if path.exists() else None,
        timeout_s=60,
        what=f"{tag} to start",
    )


def error_of(d: DaemonProcess, run_id: str) -> str:
    return str(d.get(f"/api/v1/runs/{run_id}").json()["error"])


def test_a_dying_run_fails_alone_and_the_next_run_succeeds(daemon_factory: Factory) -> None:
    d = daemon_factory()
    d.write("exits.yaml", "name: exits\n" + node("import os\nos._exit(3)", name="leave"))
    d.write("segv.yaml", "name: segv\n" + node("import ctypes\nctypes.string_at(0)", "crash"))
    d.write(
        "hog.yaml",
        "name: hog\nlimits: {memory: 400M}\n" + node("x = bytearray(2 * 1024**3)", "grab"),
    )
    d.write("fine.yaml", "name: fine\n" + node("return {'ok': True}"))
    d.start()
    exits, segv, hog = (d.dispatch(w)["id"] for w in ("exits", "segv", "hog"))
    assert end_of(d, exits, timeout_s=60) == "failed"
    assert error_of(d, exits) == (
        "the run's worker process died while running node 'leave': it exited with code 3"
    )
    assert end_of(d, segv, timeout_s=60) == "failed"
    assert "while running node 'crash': killed by SIGSEGV" in error_of(d, segv)
    assert end_of(d, hog, timeout_s=60) == "failed"
    assert error_of(d, hog).startswith("the run hit its memory limit (400M): ")
    assert "MemoryError" in error_of(d, hog)
    assert d.get("/healthz").status_code == 200
    fine = d.dispatch("fine")["id"]
    assert end_of(d, fine, timeout_s=60) == "succeeded"
    assert d.get(f"/api/v1/runs/{fine}").json()["final_state"]["ok"] is True


def test_cpu_time_and_open_files_limits_name_the_limit(daemon_factory: Factory) -> None:
    d = daemon_factory()
    d.write("spin.yaml", "name: spin\nlimits: {cpu_time: 1s}\n" + node("while True:\n  pass"))
    d.write(
        "files.yaml",
        "name: files\nlimits: {open_files: 64}\n"
        + node("kept = [open('/dev/null') for _ in range(200)]"),
    )
    d.start()
    spin, files = d.dispatch("spin")["id"], d.dispatch("files")["id"]
    assert end_of(d, spin, timeout_s=60) == "failed"
    assert "killed by SIGXCPU" in error_of(d, spin)
    assert "(the run hit its cpu_time limit, 1 s)" in error_of(d, spin)
    assert end_of(d, files, timeout_s=60) == "failed"
    assert error_of(d, files).startswith("the run hit its open_files limit (64): ")


def test_default_limits_come_from_the_config(daemon_factory: Factory, tmp_path: Path) -> None:
    config = tmp_path / "tead.yaml"
    config.write_text("limits: {memory: 300M}\n")
    d = daemon_factory(extra_args=["--config", str(config)])
    d.write("hog.yaml", "name: hog\n" + node("x = bytearray(2 * 1024**3)"))
    d.write(
        "roomy.yaml", "name: roomy\nlimits: {memory: 4G}\n" + node("x = bytearray(600 * 1024**2)")
    )
    d.start()
    hog, roomy = d.dispatch("hog")["id"], d.dispatch("roomy")["id"]
    assert end_of(d, hog, timeout_s=60) == "failed"
    assert error_of(d, hog).startswith("the run hit its memory limit (300M): ")
    assert end_of(d, roomy, timeout_s=60) == "succeeded"  # the workflow's own limit wins


def test_a_run_cannot_change_the_next_runs_process(daemon_factory: Factory) -> None:
    d = daemon_factory()
    d.write(
        "meddle.yaml",
        "name: meddle\n"
        + node(
            "import os, sys\n"
            "os.chdir('/')\n"
            "os.environ['LEAKED'] = 'yes'\n"
            "sys.path.insert(0, '/nowhere')\n"
            "import helper\n"
            "helper.VALUE = 'changed'\n"
            "return {'cwd': os.getcwd()}"
        ),
    )
    d.write(
        "probe.yaml",
        "name: probe\n"
        + node(
            "import os, sys, helper\n"
            "return {'cwd': os.getcwd(), 'leaked': os.environ.get('LEAKED'),\n"
            "        'nowhere': '/nowhere' in sys.path, 'value': helper.VALUE}"
        ),
    )
    d.write("helper.py", "VALUE = 'original'\n")
    d.start()
    meddle = d.dispatch("meddle")["id"]
    assert end_of(d, meddle, timeout_s=60) == "succeeded"
    assert d.get(f"/api/v1/runs/{meddle}").json()["final_state"]["cwd"] == "/"
    probe = d.dispatch("probe")["id"]
    assert end_of(d, probe, timeout_s=60) == "succeeded"
    state = d.get(f"/api/v1/runs/{probe}").json()["final_state"]
    assert state["cwd"] == str(d.workflows.resolve())
    assert state["leaked"] is None
    assert state["nowhere"] is False
    assert state["value"] == "original"
    # a changed module file is what the next run imports
    d.write("helper.py", "VALUE = 'edited'\n")
    again = d.dispatch("probe")["id"]
    assert end_of(d, again, timeout_s=60) == "succeeded"
    assert d.get(f"/api/v1/runs/{again}").json()["final_state"]["value"] == "edited"


def test_nodes_see_pass_env_and_the_workflows_env_only(daemon_factory: Factory) -> None:
    d = daemon_factory(
        env={
            "TEAD_PASS_ENV": "PATH,ALLOWED_*",
            "ALLOWED_ONE": "1",
            "HIDDEN_SECRET": "s3cret",
        }
    )
    d.write(
        "envy.yaml",
        "name: envy\nenv: {GREETING: hello, ALLOWED_ONE: overridden}\n"
        + node("import os\nreturn {'env': dict(os.environ)}"),
    )
    d.start()
    run = d.dispatch("envy")["id"]
    assert end_of(d, run, timeout_s=60) == "succeeded"
    env = d.get(f"/api/v1/runs/{run}").json()["final_state"]["env"]
    assert set(env) == {"PATH", "ALLOWED_ONE", "GREETING"}
    assert env["GREETING"] == "hello"
    assert env["ALLOWED_ONE"] == "overridden"


def test_a_spinning_node_is_cancelled_within_2s_and_frees_its_group_at_once(
    daemon_factory: Factory, tmp_path: Path
) -> None:
    d = daemon_factory()
    d.write(
        "spin.yaml",
        "name: spin\ninitial_state: {tag: x}\n"
        + node(
            "import subprocess\n"
            + "subprocess.Popen(['sleep', '300'])\n"  # before the note: in the group by then
            + NOTE
            + "if state['tag'] == 'first':\n  while True:\n    pass"
        ),
    )
    d.start()
    first = d.dispatch("spin", {"tag": "first", "dir": str(tmp_path)})["id"]
    note = started(d, tmp_path, "first")
    group = [p for p in descendants(d.proc.pid) if _pgid(p) == note["pgid"]]  # type: ignore[union-attr]
    assert note["pid"] in group and len(group) >= 2  # the worker and its `sleep`
    began = time.monotonic()
    answer = d.post(f"/api/v1/runs/{first}/cancel")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "cancelled"
    second = d.dispatch("spin", {"tag": "second", "dir": str(tmp_path)})["id"]
    second_note = started(d, tmp_path, "second")
    assert time.monotonic() - began < 2.0
    assert not any(alive(p) for p in group)  # the worker and what it started
    assert second_note["pid"] != note["pid"]
    assert end_of(d, second, timeout_s=60) == "succeeded"


def test_a_whole_run_timeout_kills_the_worker(daemon_factory: Factory, tmp_path: Path) -> None:
    d = daemon_factory()
    d.write(
        "slow.yaml",
        "name: slow\ntimeout: 1s\ninitial_state: {tag: slow}\n" + node(NOTE + "time.sleep(60)"),
    )
    d.start()
    run = d.dispatch("slow", {"dir": str(tmp_path)})["id"]
    pid = started(d, tmp_path, "slow")["pid"]
    assert end_of(d, run, timeout_s=60) == "timed_out"
    d.wait_for(lambda: not alive(pid), timeout_s=5, what="the worker to be gone")


def test_killing_the_daemon_leaves_no_run_worker(daemon_factory: Factory, tmp_path: Path) -> None:
    """kill -9 of the daemon: its run workers (busy and idle) and the processes they
    started (a process branch, a node's subprocess) are gone within a second."""
    d = daemon_factory()
    d.write(
        "busy.yaml",
        """\
        name: busy
        initial_state: {tag: branch, items: [0]}
        settings: {parallel: {strategy: process, max_workers: 1}}
        nodes:
          - name: plan
          - name: work
            run: |
              import json, os, subprocess, time
              subprocess.Popen(["sleep", "300"])
              path = os.path.join(state["dir"], "branch.start")
              with open(path + ".tmp", "w") as f:
                  json.dump({"t": time.time(), "pid": os.getpid(), "pgid": os.getpgid(0)}, f)
              os.replace(path + ".tmp", path)
              time.sleep(300)
          - name: join
        edges:
          - {from: plan, to: work, parallel: true, for_each: "state['items']", fan_in: join}
          - {from: work, to: join}
        """,
    )
    d.start()
    d.dispatch("busy", {"dir": str(tmp_path)})
    branch = started(d, tmp_path, "branch")
    assert d.proc is not None
    below = descendants(d.proc.pid)
    assert branch["pid"] in below
    assert any(_pgid(p) == branch["pgid"] and p != branch["pid"] for p in below)
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(timeout=10)
    time.sleep(1.0)
    left = [p for p in below if alive(p)]
    if left:  # allow a loaded machine a little more, but say how long it took
        time.sleep(2.0)
        still = [p for p in below if alive(p)]
        assert not still, f"alive 3 s after the daemon's death: {still}"
        raise AssertionError(f"alive 1 s after the daemon's death (gone by 3 s): {left}")


def test_a_runs_output_is_logged_with_its_id(daemon_factory: Factory) -> None:
    d = daemon_factory()
    d.write(
        "talk.yaml",
        "name: talk\n"
        + node(
            "import os, subprocess, sys\n"
            "print('from print')\n"
            "print('to stderr', file=sys.stderr)\n"
            "os.write(1, b'from a raw write\\n')\n"
            "subprocess.run(['echo', 'from a child'], check=True)"
        ),
    )
    d.start()
    run = d.dispatch("talk")["id"]
    assert end_of(d, run, timeout_s=60) == "succeeded"
    logs = d.wait_for(
        lambda: d.logs() if f"run {run} stdout: from a child" in d.logs() else None,
        timeout_s=10,
        what="the output in the log",
    )
    for line in ("stdout: from print", "stderr: to stderr", "stdout: from a raw write"):
        assert f"run {run} {line}" in logs


def test_breakers_changed_in_a_worker_are_kept_by_the_daemon(daemon_factory: Factory) -> None:
    d = daemon_factory()
    d.write(
        "flaky.yaml",
        """\
        name: flaky
        settings:
          parallel: {circuit_breaker: {failure_threshold: 1, reset_timeout: 1h}}
        nodes:
          - name: start
          - name: fail
            run: |
              raise RuntimeError("down")
          - name: join
            run: |
              return {"types": [r.error_type for r in parallel_results]}
        edges:
          - {from: start, to: [fail], parallel: true, fan_in: join}
          - {from: fail, to: join}
        """,
    )
    d.start()
    first = d.dispatch("flaky")["id"]
    wait_status(d, first, "succeeded", timeout_s=60)
    assert d.get(f"/api/v1/runs/{first}").json()["final_state"]["types"] == ["RuntimeError"]
    breakers = {b["name"]: b for b in d.get("/api/v1/breakers").json()["breakers"]}
    assert breakers["flaky:fail"]["state"] == "open"
    second = d.dispatch("flaky")["id"]
    wait_status(d, second, "succeeded", timeout_s=60)
    assert d.get(f"/api/v1/runs/{second}").json()["final_state"]["types"] == ["CircuitOpenError"]
    assert 'tead_circuit_breaker_state{breaker="flaky:fail"} 2.0' in d.get("/metrics").text


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_cancel_in_progress_kills_the_spinning_run(daemon_factory: Factory, tmp_path: Path) -> None:
    d = daemon_factory()
    d.write(
        "latest.yaml",
        "name: latest\nconcurrency: {cancel_in_progress: true}\ninitial_state: {tag: x}\n"
        + node(NOTE + "if state['tag'] == 'first':\n  while True:\n    pass"),
    )
    d.start()
    first = d.dispatch("latest", {"tag": "first", "dir": str(tmp_path)})["id"]
    pid = started(d, tmp_path, "first")["pid"]
    second = d.dispatch("latest", {"tag": "second", "dir": str(tmp_path)})["id"]
    assert end_of(d, second, timeout_s=60) == "succeeded"
    assert d.get(f"/api/v1/runs/{first}").json()["status"] == "cancelled"
    assert not alive(pid)
    assert started(d, tmp_path, "second")["pid"] != pid


def test_sighup_reloads_pass_env_and_limits(daemon_factory: Factory, tmp_path: Path) -> None:
    config = tmp_path / "tead.yaml"
    config.write_text("pass_env: [PATH]\n")
    d = daemon_factory(extra_args=["--config", str(config)], env={"FEATURE_FLAG": "on"})
    d.write(
        "look.yaml",
        "name: look\n"
        + node(
            "import os, resource\n"
            "return {'flag': os.environ.get('FEATURE_FLAG'),\n"
            "        'nofile': resource.getrlimit(resource.RLIMIT_NOFILE)[0]}"
        ),
    )
    d.start()
    before = d.wait_run(d.dispatch("look")["id"], timeout_s=60)["final_state"]
    assert before["flag"] is None
    config.write_text("pass_env: [PATH, FEATURE_*]\nlimits: {open_files: 100}\n")
    d.signal(signal.SIGHUP)
    d.wait_for(lambda: "config reloaded" in d.logs(), what="the reload")
    after = d.wait_run(d.dispatch("look")["id"], timeout_s=60)["final_state"]
    assert after == {"trigger": {"kind": "dispatch"}, "flag": "on", "nofile": 100}


def test_uses_modules_are_imported_in_a_worker_never_in_the_daemon(
    daemon_factory: Factory,
) -> None:
    """A `uses:` module whose import calls os._exit takes down only the process that
    checks it: its file gets a load error, the daemon serves on; a module that imports
    fine runs; a missing callable is the usual load error."""
    d = daemon_factory()
    d.write("evil.py", "import os\nos._exit(7)\n")
    d.write(
        "kind.py",
        "import os\n"
        "PID = os.getpid()\n"
        "with open('imported-by', 'a') as f:\n"
        "    f.write(f'{PID}\\n')\n"
        "def f(state):\n"
        "    return {'pid': PID}\n",
    )
    d.write("evil.yaml", "name: evil\nnodes:\n  - name: a\n    uses: evil:f\n")
    d.write("kind.yaml", "name: kind\nnodes:\n  - name: a\n    uses: kind:f\n")
    d.write("typo.yaml", "name: typo\nnodes:\n  - name: a\n    uses: kind:g\n")
    d.start()
    files = {w["name"]: w for w in d.get("/api/v1/workflows").json()["workflows"]}
    assert files["evil"]["valid"] is False
    assert files["evil"]["error"].endswith(
        "evil.yaml: importing its uses: modules ended the process (it exited with code 7)"
    )
    assert files["typo"]["error"].endswith("typo.yaml:4:11: uses: 'kind' has no callable 'g'")
    assert files["kind"]["valid"] is True
    run = d.dispatch("kind")["id"]
    assert end_of(d, run, timeout_s=60) == "succeeded"
    assert d.proc is not None
    assert d.get(f"/api/v1/runs/{run}").json()["final_state"]["pid"] != d.proc.pid
    importers = {int(p) for p in (d.workflows / "imported-by").read_text().split()}
    assert len(importers) >= 2  # the load check (kind.yaml, typo.yaml) and the run
    assert d.proc.pid not in importers
    assert d.get("/healthz").status_code == 200


ESCAPE = """
import json, os, subprocess, time
child = subprocess.Popen(["sleep", "300"], start_new_session=True)
with open(os.path.join(state["dir"], state["tag"] + ".escapee"), "w") as f:
    f.write(str(child.pid))
"""


def test_processes_that_leave_the_group_die_with_their_run(
    daemon_factory: Factory, tmp_path: Path
) -> None:
    """A node's child in a session of its own dies when the run is cancelled, and when
    the run ends normally: nothing outlives its run."""
    d = daemon_factory()
    d.write(
        "escape.yaml",
        "name: escape\ninitial_state: {tag: x}\n"
        + node(ESCAPE + "if state['tag'] == 'spin':\n  while True:\n    pass"),
    )
    d.start()
    ended = d.dispatch("escape", {"tag": "done", "dir": str(tmp_path)})["id"]
    assert end_of(d, ended, timeout_s=60) == "succeeded"
    spinning = d.dispatch("escape", {"tag": "spin", "dir": str(tmp_path)})["id"]
    spin_pid = d.wait_for(
        lambda: (tmp_path / "spin.escapee").exists() and (tmp_path / "spin.escapee").read_text(),
        timeout_s=60,
        what="the escapee to start",
    )
    assert alive(int(spin_pid))
    assert d.post(f"/api/v1/runs/{spinning}/cancel").json()["status"] == "cancelled"
    for tag in ("done", "spin"):
        pid = int((tmp_path / f"{tag}.escapee").read_text())
        d.wait_for(lambda pid=pid: not alive(pid), timeout_s=5, what=f"escapee {pid} to die")


FORGE = """
import os, pickle, struct
class Boom:
    def __reduce__(self):
        return (exec, ("open({!r}, 'w').write(str(__import__('os').getpid()))",))
payload = pickle.dumps(Boom())
for fd in range(3, 64):
    try:
        if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
            os.write(fd, struct.pack("!i", len(payload)) + payload)
    except OSError:
        pass
return {"sent": True}
"""


def test_a_node_cannot_make_the_daemon_unpickle(daemon_factory: Factory, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    d = daemon_factory()
    d.write("forge.yaml", "name: forge\n" + node(FORGE.replace("{!r}", repr(str(marker)))))
    d.write("fine.yaml", "name: fine\n" + node("return {'ok': True}"))
    d.start()
    run = d.dispatch("forge")["id"]
    assert end_of(d, run, timeout_s=60) == "failed"
    assert "sent something that is not a message" in error_of(d, run)
    assert not marker.exists()
    fine = d.dispatch("fine")["id"]
    assert end_of(d, fine, timeout_s=60) == "succeeded"


def test_dead_ready_workers_are_replaced(daemon_factory: Factory) -> None:
    """Ready workers killed behind the daemon's back (OOM killer, an admin) are never
    handed a run."""
    d = daemon_factory()
    d.write("fine.yaml", "name: fine\n" + node("return {'ok': True}"))
    d.start()
    assert d.proc is not None
    assert end_of(d, d.dispatch("fine")["id"], timeout_s=60) == "succeeded"

    def ready_workers() -> list[int]:
        return [p for p in descendants(d.proc.pid) if _session(p) == p]  # type: ignore[union-attr]

    workers = d.wait_for(lambda: len(ready_workers()) >= 4 and ready_workers(), what="4 ready")
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    runs = [d.dispatch("fine")["id"] for _ in range(4)]
    assert [end_of(d, r, timeout_s=60) for r in runs] == ["succeeded"] * 4
    assert "died; it is replaced" in d.logs()


def test_shutdown_interrupts_a_run_whose_end_never_encodes(
    daemon_factory: Factory, tmp_path: Path
) -> None:
    """A final state whose repr() never returns: a cancel is refused (the nodes are done),
    but SIGTERM still stops the daemon after shutdown_grace, the run interrupted."""
    d = daemon_factory(env={"TEAD_SHUTDOWN_GRACE": "1"})
    d.write(
        "stuck.yaml",
        "name: stuck\n"
        + node(
            "import time\n"
            "class Slow:\n"
            "    def __repr__(self):\n"
            f"        open({str(tmp_path / 'encoding')!r}, 'w').close()\n"
            "        time.sleep(3600)\n"
            "return {'x': Slow()}"
        ),
    )
    d.start()
    run = d.dispatch("stuck")["id"]
    d.wait_for((tmp_path / "encoding").exists, timeout_s=60, what="the run's end to encode")
    refused = d.post(f"/api/v1/runs/{run}/cancel")
    assert refused.status_code == 409, refused.text
    d.signal(signal.SIGTERM)
    assert d.proc is not None
    assert d.proc.wait(timeout=30) == 0
    again = d  # the same folders, a new daemon
    again.start()
    record = again.get(f"/api/v1/runs/{run}").json()
    assert record["status"] == "interrupted", record


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except ProcessLookupError:
        return None


RESET = """
import logging, os, signal, socket, sys, warnings
seen = {
    "pid": os.getpid(),
    "cwd": os.getcwd(),
    "leaked": os.environ.get("LEAKED"),
    "handler": signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL,
    "umask": os.umask(0o022),
    "limit": sys.getrecursionlimit(),
    "timeout": socket.getdefaulttimeout(),
    "filters": len(warnings.filters),
    "handlers": len(logging.getLogger().handlers),
    "imported": "helper" in sys.modules,
}
import helper
helper.VALUE = "changed"
os.chdir("/")
os.environ["LEAKED"] = "yes"
signal.signal(signal.SIGUSR1, signal.SIG_IGN)
os.umask(0o077)
sys.setrecursionlimit(5000)
socket.setdefaulttimeout(3)
warnings.simplefilter("ignore")
logging.getLogger().addHandler(logging.NullHandler())
if state.get("thread"):
    import threading, time
    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
return {"seen": seen, "value": helper.VALUE}
"""


def test_a_worker_serves_its_workflows_next_run_only_after_a_reset(
    daemon_factory: Factory,
) -> None:
    """Runs of one workflow version may share a worker; what a run changed in the
    process is put back first. A run that leaves a thread gets its worker killed."""
    d = daemon_factory()
    d.write("helper.py", "VALUE = 'original'\n")
    d.write("reset.yaml", "name: reset\n" + node(RESET))
    d.start()

    def seen(inputs: dict[str, Any] | None = None) -> dict[str, Any]:
        run = d.dispatch("reset", inputs)["id"]
        assert end_of(d, run, timeout_s=60) == "succeeded", error_of(d, run)
        return d.get(f"/api/v1/runs/{run}").json()["final_state"]["seen"]  # type: ignore[no-any-return]

    first, second = seen(), seen()
    assert second["pid"] == first["pid"]  # the same worker ...
    assert {k: v for k, v in second.items() if k != "pid"} == {
        k: v for k, v in first.items() if k != "pid"
    }  # ... as it was before the first run
    assert first["cwd"] == str(d.workflows.resolve()) and first["leaked"] is None
    assert first["imported"] is False
    third = seen({"thread": True})
    assert third["pid"] == first["pid"]
    fourth = seen()
    assert fourth["pid"] != first["pid"]  # the thread left behind: a new worker
    assert not alive(first["pid"])


def test_branch_metrics_arrive_while_a_slow_sibling_runs(
    daemon_factory: Factory, tmp_path: Path
) -> None:
    """A worker sends its events in batches, but none waits for the run to end: a quick
    branch's outcome is counted while its slow sibling still runs."""
    release = tmp_path / "release"
    d = daemon_factory()
    d.write(
        "fan.yaml",
        f"""name: fan
nodes:
  - name: start
  - name: quick
    run: |
      return {{"quick": True}}
  - name: slow
    run: |
      import os, time
      deadline = time.monotonic() + 60
      while not os.path.exists({str(release)!r}) and time.monotonic() < deadline:
          time.sleep(0.05)
      return {{"slow": True}}
  - name: join
edges:
  - {{from: __start__, to: start}}
  - {{from: start, to: [quick, slow], parallel: true, fan_in: join}}
  - {{from: quick, to: join}}
  - {{from: slow, to: join}}
""",
    )
    d.start()
    run = d.dispatch("fan")["id"]
    counted = 'tead_parallel_flows_total{outcome="success",strategy="thread",workflow="fan"} 1.0'
    d.wait_for(
        lambda: counted in d.get("/metrics").text,
        timeout_s=15,
        what="the quick branch counted",
    )
    assert d.get(f"/api/v1/runs/{run}").json()["status"] == "running"
    release.touch()
    assert end_of(d, run, timeout_s=60) == "succeeded"
