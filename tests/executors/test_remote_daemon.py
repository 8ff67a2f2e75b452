"""The remote strategy in a real daemon, against real sshds (tests/executors/sshd.py): a run
worker keeps its host connections across the runs it serves, remote branches' output is in
the run's logs (secrets masked), and `host_failure_threshold` decides when a host's breaker
opens."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.daemon_fixture import DaemonProcess
from tests.executors.sshd import SshLab
from tests.executors.test_remote import RESULTS, fan_out
from tests.helpers import daemon_cli

Factory = Callable[..., DaemonProcess]


def dispatchable(remote: dict[str, Any], branch: str, name: str, **parallel: Any) -> str:
    data = fan_out(remote, branch, RESULTS, **parallel)
    data["name"] = name
    data["on"] = {"dispatch": {}}
    return yaml.safe_dump(data, sort_keys=False)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def host_workers(lab: SshLab) -> set[str]:
    """The warm tead workers on the hosts, as `ip:pid` (not their children, which are
    forks of them and show the same command line)."""
    found = set()
    for host in lab.hosts:
        for pid in host.session_pids():
            if "tead.executors.remote.worker" not in _cmdline(pid):
                continue
            try:
                parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if "tead.executors.remote.worker" not in _cmdline(parent):
                found.add(f"{host.ip}:{pid}")
    return found


def test_a_run_worker_keeps_its_host_connections_across_runs(
    lab: SshLab, daemon_factory: Factory, tmp_path: Path
) -> None:
    """Runs of one workflow version served by one run worker reuse its SSH connections
    and the hosts' warm workers (the same worker processes); when the daemon stops (its
    run workers killed), the hosts' workers see their connections close and exit."""
    d = daemon_factory()
    d.write("kept.yaml", dispatchable(lab.remote(tmp_path / "jobs"), "return {}", "kept"))
    d.start()
    first = d.wait_run(d.dispatch("kept")["id"], timeout_s=60)
    assert first["status"] == "succeeded", first["error"]
    workers = host_workers(lab)
    assert len(workers) == 3, workers
    for _ in range(2):
        again = d.wait_run(d.dispatch("kept")["id"], timeout_s=60)
        assert again["status"] == "succeeded", again["error"]
        assert host_workers(lab) == workers  # the same connections, the same workers
    d.stop()
    d.wait_for(lambda: not host_workers(lab), timeout_s=20, what="the hosts' workers to exit")


SECRET = "s3cr3t-Remote-Token-77"

PRINTS = (
    "import os, logging\n"
    "print('branch', state['item'], 'token', os.environ['API_TOKEN'])\n"
    "os.system('echo below python %d >&2' % state['item'])\n"
    "return {'n': state['item']}\n"
)


def test_remote_branch_output_is_in_the_run_logs_with_secrets_masked(
    lab: SshLab, daemon_factory: Factory, tmp_path: Path
) -> None:
    """What a remote branch writes (print, a subprocess's stderr) comes back with its
    report: `tead runs logs` shows it under the branch's node and branch, with a secret
    the branch printed masked."""
    d = daemon_factory(env={"TEAD_SECRET_API_TOKEN": SECRET})
    remote = lab.remote(tmp_path / "jobs", env_vars={"include": ["API_TOKEN"]})
    data = yaml.safe_load(dispatchable(remote, PRINTS, "prints"))
    data["env"] = {"API_TOKEN": {"secret": "api_token"}}
    d.write("prints.yaml", yaml.safe_dump(data, sort_keys=False))
    d.start()
    run = d.wait_run(d.dispatch("prints")["id"], timeout_s=60)
    assert run["status"] == "succeeded", run["error"]
    shown = daemon_cli(d, "runs", "logs", run["id"], "--json")
    assert shown.returncode == 0, shown.stderr
    entries = [json.loads(line) for line in shown.stdout.splitlines()]
    for item in range(6):
        mine = [e for e in entries if e["branch"] == f"work[{item}]"]
        assert {e["node"] for e in mine} == {"work"}, entries
        said = {(e["stream"], e["line"]) for e in mine}
        assert ("stdout", f"branch {item} token ***") in said, said
        assert ("stderr", f"below python {item}") in said, said
    text = daemon_cli(d, "runs", "logs", run["id"]).stdout
    assert "branch 0 token ***" in text and SECRET not in text
    assert SECRET not in d.get(f"/api/v1/runs/{run['id']}/logs").text


def test_host_failure_threshold_opens_a_host_breaker_after_that_many_failures(
    lab: SshLab, daemon_factory: Factory, tmp_path: Path
) -> None:
    """With `host_failure_threshold: 2`, a host that cannot be reached keeps its breaker
    closed after one failed run and opens it at the second; its branches run on the live
    host meanwhile."""
    remote = lab.remote(tmp_path / "jobs", host_failure_threshold=2)
    remote["hosts"] = [lab.hosts[0].address, "root@127.0.0.9:1"]
    d = daemon_factory()
    d.write("threshold.yaml", dispatchable(remote, "return {'ok': True}", "threshold"))
    d.start()

    def breaker() -> dict[str, Any]:
        found = d.get("/api/v1/breakers").json()["breakers"]
        return next(b for b in found if b["name"] == "host:root@127.0.0.9:1")

    for expected in ("closed", "open"):
        run = d.wait_run(d.dispatch("threshold")["id"], timeout_s=60)
        assert run["status"] == "succeeded", run["error"]
        assert all(b["success"] for b in run["branches"]), run["branches"]
        assert breaker()["state"] == expected, breaker()


def test_a_bad_host_failure_threshold_is_named_at_load(
    tead_cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    """`host_failure_threshold` is a positive integer: 0 is refused with file and key."""
    remote = {"hosts": ["a.example"], "known_hosts": "/k", "host_failure_threshold": 0}
    path = tmp_path / "wf.yaml"
    path.write_text(dispatchable(remote, "return {}", "bad_threshold"))
    proc = tead_cli("validate", str(path))
    assert proc.returncode == 2, proc.stderr
    assert "wf.yaml:" in proc.stderr and "host_failure_threshold" in proc.stderr
    assert "Traceback" not in proc.stderr
