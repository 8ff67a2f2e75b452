"""The remote strategy against real sshds on loopback (tests/executors/sshd.py): the same
results as threads and processes, code shipped once per host and version, timeouts that
kill the remote process group, failover when a host dies, host keys checked, hostile
values inert, cleanup, and the environment whitelist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tead.daemon.metrics import Metrics
from tead.executors.registry import Executors
from tead.executors.remote.executor import RemoteExecutor
from tead.graph.loader import load_workflow
from tead.parallel.breaker import BreakerRegistry, CircuitState
from tead.workflow import Workflow
from tests.daemon_fixture import DaemonProcess
from tests.executors.sshd import SshHost, SshLab

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
RunTead = Callable[..., subprocess.CompletedProcess[str]]


def fan_out(remote: dict[str, Any], branch: str, join: str, **parallel: Any) -> dict[str, Any]:
    """A workflow: `items` fanned out (one branch per item, running `branch`), then `join`."""
    return {
        "name": "remote_test",
        "initial_state": {"items": [0, 1, 2, 3, 4, 5]},
        "settings": {"parallel": {"strategy": "remote", "remote": remote, **parallel}},
        "nodes": [
            {"name": "start"},
            {"name": "work", "run": branch},
            {"name": "join", "run": join},
        ],
        "edges": [
            {"from": "__start__", "to": "start"},
            {
                "from": "start",
                "to": "work",
                "parallel": True,
                "for_each": "state['items']",
                "fan_in": "join",
            },
            {"from": "work", "to": "join"},
            {"from": "join", "to": "__end__"},
        ],
    }


RESULTS = (
    "return {'results': [{'ok': r.success, 'error_type': r.error_type, 'error': r.error,"
    " 'timeout': r.timeout, 'state': {k: v for k, v in (r.state or {}).items()"
    " if k not in ('items', 'item')}} for r in parallel_results]}"
)


def write(folder: Path, data: dict[str, Any], name: str = "wf.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run(path: Path, executors: Executors, **kwargs: Any) -> dict[str, Any]:
    return Workflow(load_workflow(path), **kwargs).invoke(executors=executors)


def remote_executor(executors: Executors) -> RemoteExecutor:
    executor = executors.get("remote")
    assert isinstance(executor, RemoteExecutor)
    return executor


# --- the same results everywhere ------------------------------------------------------------


def _with_strategy(source: Path, target: Path, strategy: str, remote: dict[str, Any]) -> Path:
    data = yaml.safe_load(source.read_text())
    parallel = data.setdefault("settings", {}).setdefault("parallel", {})
    parallel["strategy"] = strategy
    if strategy == "remote":
        parallel["remote"] = remote
    for edge in data.get("edges", []):
        edge.pop("parallel_strategy", None)  # every fan-out on the strategy under test
    target.mkdir(exist_ok=True)
    (target / "example_ops.py").write_text((EXAMPLES / "example_ops.py").read_text())
    return write(target, data, source.name)


@pytest.mark.parametrize(
    "example",
    [
        "fanout_static.yaml",
        "fanout_for_each.yaml",
        "fanout_nested.yaml",
        "fanout_partial_failure.yaml",
        "uses_module.yaml",
    ],
)
def test_examples_give_the_same_output_on_thread_process_and_remote(
    lab: SshLab, tead_cli: RunTead, tmp_path: Path, example: str
) -> None:
    """`tead run --output` writes the same final state whichever strategy runs the branches."""
    outputs = {}
    for strategy in ("thread", "process", "remote"):
        folder = tmp_path / strategy
        path = _with_strategy(EXAMPLES / example, folder, strategy, lab.remote(tmp_path / "jobs"))
        out = folder / "out.json"
        proc = tead_cli("run", "-q", str(path), "--output", str(out))
        assert proc.returncode == 0, proc.stderr
        outputs[strategy] = json.loads(out.read_text())
    assert outputs["remote"] == outputs["thread"] == outputs["process"]


# --- code shipping ------------------------------------------------------------------------


def test_uses_modules_are_shipped_once_per_host_and_version(lab: SshLab, tmp_path: Path) -> None:
    """Two runs ship the bundle once to each host; an edited module is shipped again, as
    a new `code/<hash>/` folder, and its new code runs."""
    jobs = tmp_path / "jobs"
    (tmp_path / "shipped_ops.py").write_text("def work(state):\n    return {'v': 1}\n")
    data = fan_out(lab.remote(jobs), "", RESULTS)
    data["nodes"][1] = {"name": "work", "uses": "shipped_ops:work"}
    path = write(tmp_path, data)
    with Executors() as executors:
        for _ in range(2):
            final = run(path, executors)
            assert [r["state"]["v"] for r in final["results"]] == [1] * 6
        hosts = remote_executor(executors).hosts()
        assert sorted(h.bundles for h in hosts) == [1, 1, 1]
        assert sum(h.commands for h in hosts) == 12
        assert len(list((jobs / "code").iterdir())) == 1
        (tmp_path / "shipped_ops.py").write_text("def work(state):\n    return {'v': 2}\n")
        final = run(path, executors)
        assert [r["state"]["v"] for r in final["results"]] == [2] * 6
        assert sorted(h.bundles for h in remote_executor(executors).hosts()) == [2, 2, 2]
        assert len(list((jobs / "code").iterdir())) == 2


def test_cleanup_leaves_the_workdir_as_it_was(lab: SshLab, tmp_path: Path) -> None:
    """`cleanup: true` removes what tead made (a missing workdir, or its code/ folder) when
    the executor closes; a user's file in an existing workdir stays."""
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "mine.txt").write_text("keep")
    missing = tmp_path / "made" / "jobs"
    # one host: on loopback the hosts share one file system, where real hosts do not
    for workdir in (existing, missing):
        remote = lab.remote(workdir, hosts=lab.hosts[:1])
        path = write(tmp_path, fan_out(remote, "return {'x': 1}", RESULTS))
        with Executors() as executors:
            final = run(path, executors)
            assert all(r["ok"] for r in final["results"])
            assert (workdir / "code").is_dir()
        assert sorted(p.name for p in existing.iterdir()) == ["mine.txt"]
    assert not (tmp_path / "made").exists()
    kept = tmp_path / "kept"
    remote = lab.remote(kept, hosts=lab.hosts[:1], cleanup=False)
    path = write(tmp_path, fan_out(remote, "return {}", RESULTS))
    with Executors() as executors:
        run(path, executors)
    assert len(list((kept / "code").iterdir())) == 1


# --- timeouts and cancel ------------------------------------------------------------------

SPAWNS = (
    "import subprocess, time\n"
    'subprocess.Popen(["sleep", "417.%d" % state["item"]])\n'
    "time.sleep(60)\n"
)


def _sleepers(lab: SshLab) -> list[str]:
    return [p for host in lab.hosts for p in host.processes() if "sleep 417." in p]


def test_a_timeout_kills_the_remote_process_group(lab: SshLab, tmp_path: Path) -> None:
    """Timed-out branches end as timeouts, and nothing they started runs on any host
    (checked through the sshds' process trees) while the workers stay warm."""
    path = write(
        tmp_path, fan_out(lab.remote(tmp_path / "jobs"), SPAWNS, RESULTS, timeout_seconds=1)
    )
    with Executors() as executors:
        started = time.monotonic()
        final = run(path, executors)
        assert time.monotonic() - started < 20
        assert [r["timeout"] for r in final["results"]] == [True] * 6
        deadline = time.monotonic() + 5
        while _sleepers(lab) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _sleepers(lab) == []
        workers = [p for h in lab.hosts for p in h.processes() if "remote.worker" in p]
        assert len(workers) >= 3  # warm: the next fan-out reuses them


def test_fail_fast_kills_the_other_branches_on_their_hosts(lab: SshLab, tmp_path: Path) -> None:
    """With fail_fast, the first failure kills the branches still running on hosts."""
    branch = (
        "import subprocess, time\n"
        "if state['item'] == 0:\n    time.sleep(0.5)\n    raise ValueError('boom')\n"
    ) + SPAWNS
    data = fan_out(lab.remote(tmp_path / "jobs"), branch, RESULTS, fail_fast=True)
    path = write(tmp_path, data)
    proc = subprocess.run(
        [sys.executable, "-m", "tead", "run", "-q", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "boom" in proc.stderr
    assert _sleepers(lab) == []


# --- failover -----------------------------------------------------------------------------

ON_HOST = (
    "import os, time\n"
    "time.sleep(state.get('nap', 1.5))\n"
    "return {'host': os.environ['SSH_CONNECTION'].split()[2]}\n"
)

#: ON_HOST that first leaves a file `<host ip>-<item>` in the folder TEAD_TEST_MARKS names
#: (the test's: one file system on loopback), so a test sees where branches run
MARKED = (
    "import os, pathlib\n"
    "host = os.environ['SSH_CONNECTION'].split()[2]\n"
    "pathlib.Path(os.environ['TEAD_TEST_MARKS'], f\"{host}-{state['item']}\").touch()\n"
) + ON_HOST


def kill_once_running(host: SshHost, marks: Path, timeout_s: float = 60) -> threading.Thread:
    """A thread that kills `host` as soon as a branch runs on it (polled, with a generous
    deadline: the machine is loaded); if none ever does, the host is left alive and the
    test's own checks fail."""

    def watch() -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(p.name.startswith(f"{host.ip}-") for p in marks.iterdir()):
                host.kill()
                return
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_host_dying_mid_fan_out_sends_its_branches_elsewhere(
    own_lab: SshLab, tmp_path: Path
) -> None:
    """Kill one host (its sshd, sessions and worker) while its branches run: they finish on
    the other hosts, and its breaker `host:<user@host>` opens."""
    marks = tmp_path / "marks"
    marks.mkdir()
    remote = own_lab.remote(tmp_path / "jobs", env_vars={"include": ["TEAD_TEST_MARKS"]})
    remote["hosts"] = [{"host": h.address, "slots": 2} for h in own_lab.hosts]
    data = fan_out(remote, MARKED, RESULTS)
    data["initial_state"]["nap"] = 2  # still running when the watcher sees the mark
    path = write(tmp_path, data)
    victim = own_lab.hosts[0]
    breakers = BreakerRegistry()
    os.environ["TEAD_TEST_MARKS"] = str(marks)
    try:
        with Executors() as executors:
            killer = kill_once_running(victim, marks)
            started = time.monotonic()
            final = run(path, executors, breakers=breakers)
            elapsed = time.monotonic() - started
            killer.join()
    finally:
        del os.environ["TEAD_TEST_MARKS"]
    assert victim.process is None, "no branch ever ran on the victim host"
    results = final["results"]
    assert [r["ok"] for r in results] == [True] * 6, results
    assert victim.ip not in {r["state"]["host"] for r in results}
    state = breakers.states()[f"host:{victim.address}"]
    assert state.state is CircuitState.OPEN
    assert breakers.states()[f"host:{own_lab.hosts[1].address}"].state is CircuitState.CLOSED
    assert elapsed < 30


def test_a_silent_host_is_dropped_by_keepalive(own_lab: SshLab, tmp_path: Path) -> None:
    """A frozen host (SIGSTOP: no RST, no FIN) is noticed by keepalives (1 s x 3) and its
    branches finish on the others."""
    remote = own_lab.remote(tmp_path / "jobs")
    remote["hosts"] = [{"host": h.address, "slots": 2} for h in own_lab.hosts]
    path = write(tmp_path, fan_out(remote, ON_HOST, RESULTS))
    victim = own_lab.hosts[2]
    try:
        with Executors() as executors:
            killer = threading.Timer(0.7, victim.freeze)
            killer.start()
            final = run(path, executors)
            killer.join()
            results = final["results"]
            assert [r["ok"] for r in results] == [True] * 6, results
            assert victim.ip not in {r["state"]["host"] for r in results}
    finally:
        victim.freeze(False)


def test_no_reachable_host_fails_each_branch_with_the_reason(lab: SshLab, tmp_path: Path) -> None:
    """With every host down, branches fail (WorkerCrashedError) naming each host's problem."""
    remote = lab.remote(tmp_path / "jobs")
    remote["hosts"] = ["root@127.0.0.9:1"]
    path = write(tmp_path, fan_out(remote, "return {}", RESULTS))
    with Executors() as executors:
        final = run(path, executors)
    errors = {r["error_type"] for r in final["results"]}
    assert errors == {"WorkerCrashedError"}
    assert "remote host root@127.0.0.9:1: cannot connect" in final["results"][0]["error"]


# --- security -----------------------------------------------------------------------------


def test_an_unknown_host_key_is_refused(lab: SshLab, tmp_path: Path) -> None:
    """A host whose key is not in known_hosts (here: another host's key under its name) is
    never used: nothing runs, and the error says why."""
    known = tmp_path / "known_hosts"
    host, other = lab.hosts[0], lab.hosts[1]
    known.write_text(f"[{host.ip}]:{host.port} {other.host_key}\n")
    remote = lab.remote(tmp_path / "jobs", hosts=[host], known_hosts=str(known))
    path = write(tmp_path, fan_out(remote, "open('ran', 'w').close()", RESULTS))
    with Executors() as executors:
        final = run(path, executors)
    error = final["results"][0]["error"]
    assert "its host key is not in" in error and "never trusts a host key" in error
    assert not (tmp_path / "jobs").exists()


HOSTILE = [
    "$(touch {marker})",
    "`touch {marker}`",
    "'; touch {marker}; '",
    '"; touch {marker}; "',
    "\n touch {marker}\n",
    "{{{{ __import__('os').system('touch {marker}') }}}}",
]


def test_hostile_state_values_execute_nothing(lab: SshLab, tmp_path: Path) -> None:
    """Shell and template syntax in state values reaches the branch as plain data."""
    marker = tmp_path / "pwned"
    values = [v.format(marker=marker) for v in HOSTILE]
    data = fan_out(lab.remote(tmp_path / "jobs"), "return {'seen': state['item']}", RESULTS)
    data["initial_state"]["items"] = values
    path = write(tmp_path, data)
    with Executors() as executors:
        final = run(path, executors)
    assert [r["state"]["seen"] for r in final["results"]] == values
    assert not marker.exists()


def test_hostile_settings_and_node_names_execute_nothing(
    lab: SshLab, tead_cli: RunTead, tmp_path: Path
) -> None:
    """A node name with shell syntax is refused at load; an interpreter setting with shell
    syntax is quoted (the worker does not start, and nothing else runs)."""
    marker = tmp_path / "pwned"
    data = fan_out(lab.remote(tmp_path / "jobs"), "return {}", RESULTS)
    data["nodes"][1]["name"] = f"w;touch {marker}"
    proc = tead_cli("validate", str(write(tmp_path, data)))
    assert proc.returncode == 2 and "wf.yaml:" in proc.stderr
    remote = lab.remote(tmp_path / "jobs", python=f"python3;touch${{IFS}}{marker}")
    path = write(tmp_path, fan_out(remote, "return {}", RESULTS))
    with Executors() as executors:
        final = run(path, executors)
    assert "the tead worker did not start" in final["results"][0]["error"]
    assert not marker.exists()


def test_state_that_json_cannot_carry_is_named_before_anything_runs(
    lab: SshLab, tead_cli: RunTead, tmp_path: Path
) -> None:
    """A set in the state fails the run with the key and branch named, on no host."""
    data = fan_out(lab.remote(tmp_path / "jobs"), "open('ran', 'w').close()", RESULTS)
    data["nodes"][0]["run"] = "return {'tags': {1, 2}}"
    proc = tead_cli("run", "-q", str(write(tmp_path, data)))
    assert proc.returncode == 1
    assert "state key 'tags' cannot be sent to a host as JSON" in proc.stderr
    assert not (tmp_path / "jobs").exists()


def test_the_environment_whitelist_travels_with_the_task(
    lab: SshLab, tead_cli: RunTead, tmp_path: Path
) -> None:
    """Only `env_vars.include` names not matching `exclude_patterns` reach the branch."""
    remote = lab.remote(
        tmp_path / "jobs",
        env_vars={"include": ["LOG_LEVEL", "API_SECRET"], "exclude_patterns": ["*_SECRET"]},
    )
    branch = (
        "import os\nreturn {k: os.environ.get(k) for k in ('LOG_LEVEL', 'API_SECRET', 'OTHER')}"
    )
    path = write(tmp_path, fan_out(remote, branch, RESULTS))
    env = {**os.environ, "LOG_LEVEL": "debug", "API_SECRET": "s3cret", "OTHER": "x"}
    proc = subprocess.run(
        [sys.executable, "-m", "tead", "run", "-q", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    states = [r["state"] for r in json.loads(proc.stdout)["results"]]
    assert states == [{"LOG_LEVEL": "debug", "API_SECRET": None, "OTHER": None}] * 6
    assert "s3cret" not in proc.stdout + proc.stderr


def test_a_host_without_tead_gets_one_clear_error(lab: SshLab, tmp_path: Path) -> None:
    """An interpreter without tead: the worker's own error, and what to install."""
    bare = tmp_path / "bare-python"
    bare.write_text("#!/bin/sh\necho 'No module named tead' >&2\nexit 1\n")
    bare.chmod(0o755)
    path = write(tmp_path, fan_out(lab.remote(tmp_path / "jobs", python=str(bare)), "", RESULTS))
    with Executors() as executors:
        final = run(path, executors)
    error = final["results"][0]["error"]
    assert "No module named tead" in error and "must be installed" in error


def test_remote_settings_are_checked_at_load(tead_cli: RunTead, tmp_path: Path) -> None:
    """known_hosts is required; bad hosts and slots are named with file and line."""
    data = fan_out({"hosts": ["a.example"]}, "return {}", RESULTS)
    proc = tead_cli("validate", str(write(tmp_path, data)))
    assert proc.returncode == 2
    assert "known_hosts" in proc.stderr and "wf.yaml:" in proc.stderr
    data = fan_out(
        {"hosts": [{"host": "a b", "slots": 0}], "known_hosts": "/k"}, "return {}", RESULTS
    )
    proc = tead_cli("validate", str(write(tmp_path, data)))
    assert proc.returncode == 2 and "wf.yaml:" in proc.stderr


def test_metrics_count_commands_per_host_and_mark_hosts_up(lab: SshLab, tmp_path: Path) -> None:
    """`tead_remote_host_up` and `tead_remote_commands_total` by host, and the branch
    metrics with strategy="remote", from the run's events."""
    metrics = Metrics()
    observer = metrics.run_observer("remote_test")
    remote = lab.remote(tmp_path / "jobs")
    remote["hosts"] = [h.address for h in lab.hosts] + ["root@127.0.0.9:1"]
    path = write(tmp_path, fan_out(remote, "return {}", RESULTS))
    with Executors() as executors:
        Workflow(load_workflow(path)).invoke(executors=executors, on_event=observer)
    text = metrics.exposition().decode()
    sent = 0.0
    for host in lab.hosts:
        assert f'tead_remote_host_up{{host="{host.address}"}} 1.0' in text
        line = next(
            x
            for x in text.splitlines()
            if x.startswith(f'tead_remote_commands_total{{host="{host.address}"')
        )
        sent += float(line.split()[-1])
    assert sent == 6
    assert 'tead_remote_host_up{host="root@127.0.0.9:1"} 0.0' in text
    assert (
        'tead_parallel_flows_total{outcome="success",strategy="remote",workflow="remote_test"} 6.0'
        in text
    )


def test_a_tea_basefile_is_accepted_with_a_warning(tead_cli: RunTead, tmp_path: Path) -> None:
    """The seeds' `basefile:` loads, with one line saying tead ships the code itself."""
    data = fan_out({"hosts": ["a.example"], "known_hosts": "/k"}, "return {}", RESULTS)
    data["settings"]["parallel"]["remote"]["basefile"] = "./tead-binary"
    proc = tead_cli("validate", str(write(tmp_path, data)))
    assert proc.returncode == 0, proc.stderr
    assert "warning: settings.parallel.remote.basefile is ignored: tead ships" in proc.stderr


def test_the_daemon_persists_host_breakers_reports_hosts_and_cancel_kills_remote_work(
    lab: SshLab, daemon: DaemonProcess, tmp_path: Path
) -> None:
    """In the daemon (runs in run workers): a host that cannot be reached has an open
    `host:` breaker in `/api/v1/breakers`, live hosts show in /metrics, and cancelling a
    run kills its branches' process groups on the hosts."""
    remote = lab.remote(tmp_path / "jobs")
    remote["hosts"] = [lab.hosts[0].address, "root@127.0.0.9:1"]
    data = fan_out(remote, "return {'ok': True}", RESULTS)
    data["name"] = "remote_ok"
    data["on"] = {"dispatch": {}}
    daemon.write("remote_ok.yaml", yaml.safe_dump(data, sort_keys=False))
    data = fan_out(lab.remote(tmp_path / "jobs"), SPAWNS, RESULTS)
    data["name"] = "remote_slow"
    data["on"] = {"dispatch": {}}
    daemon.write("remote_slow.yaml", yaml.safe_dump(data, sort_keys=False))
    daemon.wait_for(lambda: len(daemon.get("/api/v1/workflows").json()["workflows"]) == 2)

    run = daemon.wait_run(daemon.dispatch("remote_ok")["id"])
    assert run["status"] == "succeeded", run["error"]
    breakers = {b["name"]: b["state"] for b in daemon.get("/api/v1/breakers").json()["breakers"]}
    assert breakers["host:root@127.0.0.9:1"] == "open"
    assert breakers[f"host:{lab.hosts[0].address}"] == "closed"
    metrics = daemon.get("/metrics").text
    assert f'tead_remote_host_up{{host="{lab.hosts[0].address}"}} 1.0' in metrics
    assert 'tead_remote_host_up{host="root@127.0.0.9:1"} 0.0' in metrics

    slow = daemon.dispatch("remote_slow")["id"]
    daemon.wait_for(lambda: len(_sleepers(lab)) == 6, timeout_s=30, what="6 remote sleepers")
    assert daemon.post(f"/api/v1/runs/{slow}/cancel").status_code == 200
    assert daemon.wait_run(slow)["status"] == "cancelled"
    daemon.wait_for(lambda: not _sleepers(lab), timeout_s=15, what="no remote sleepers")


def test_a_host_with_another_tead_version_is_refused(lab: SshLab, tmp_path: Path) -> None:
    """The handshake compares versions: a worker of another tead version is not used."""
    other = tmp_path / "other-tead"
    code = (
        "import tead.version as v; v.__version__ = '9.9.9'; import runpy; "
        "runpy.run_module('tead.executors.remote.worker', run_name='__main__')"
    )
    other.write_text(f'#!/bin/sh\nexec {sys.executable} -c "{code}"\n')
    other.chmod(0o755)
    path = write(tmp_path, fan_out(lab.remote(tmp_path / "jobs", python=str(other)), "", RESULTS))
    with Executors() as executors:
        final = run(path, executors)
    error = final["results"][0]["error"]
    assert "the host has tead 9.9.9" in error and "install the same version on both" in error
