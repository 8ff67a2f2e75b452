"""Small helpers that several test files share."""

from __future__ import annotations

import json
import os
import string
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Collection
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon_fixture import ROOT, DaemonProcess


def fill(template: str, **values: object) -> str:
    """`template` with `$name` placeholders replaced."""
    return string.Template(template).substitute({k: str(v) for k, v in values.items()})


def timed_run(
    tead_cli: Callable[..., subprocess.CompletedProcess[str]], *args: str, limit: float = 20.0
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run `tead ARGS`; the process and its run time. Fails the test if it hangs."""
    started = time.monotonic()
    try:
        proc = tead_cli(*args, timeout=limit)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`tead {' '.join(args)}` hung: still running after {limit:g} s")
    return proc, time.monotonic() - started


def final_state(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON final state a successful `tead run` printed."""
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    state = json.loads(proc.stdout)
    assert isinstance(state, dict)
    return state


def node_yaml(name: str, code: str = "") -> str:
    """A workflow's node `name` running `code` (Python, any indent), as a `nodes:` entry."""
    if not code:
        return f"  - name: {name}\n"
    body = textwrap.indent(textwrap.dedent(code).rstrip("\n") + "\n", "      ")
    return f"  - name: {name}\n    run: |\n{body}"


def sleeper(name: str, *, seconds: float = 1.0, header: str = "") -> str:
    """A workflow whose one node sleeps `state["sleep"]` s and records when it ran."""
    return f"""\
name: {name}
{header}
initial_state: {{sleep: {seconds}}}
nodes:
  - name: work
    run: |
      import time
      t0 = time.time()
      time.sleep(state["sleep"])
      return {{"t0": t0, "t1": time.time()}}
"""


def naps(seconds: float) -> str:
    """A workflow `naps`: node `first` returns at once, then node `nap` sleeps `seconds` s
    (a run to see running, or to cancel)."""
    return f"""\
name: naps
nodes:
  - name: first
    run: |
      return {{}}
  - name: nap
    run: |
      import time
      time.sleep({seconds})
"""


def when(value: str | None) -> datetime:
    """An API timestamp (`...Z`) as an aware datetime."""
    assert value is not None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def tead_env(**extra: str) -> dict[str, str]:
    """The environment of a `tead` subprocess: this checkout's package, no colours."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", **extra}


def start_tead(*args: str, cwd: Path, **popen: Any) -> subprocess.Popen[str]:
    """`python -m tead ARGS` started in `cwd` (not waited for); `popen` as subprocess.Popen's."""
    return subprocess.Popen(
        [sys.executable, "-m", "tead", *args], cwd=cwd, env=tead_env(), text=True, **popen
    )


def daemon_cli(
    daemon: DaemonProcess, *args: str, env: dict[str, str] | None = None, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    """`tead ARGS --url` the daemon, in its folder, with none of the caller's TEAD_* variables
    (only those in `env`)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TEAD_")}
    clean.update({"PYTHONPATH": str(ROOT), "NO_COLOR": "1", **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "tead", *args, "--url", daemon.url],
        cwd=daemon.root,
        env=clean,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def workflow_list(daemon: DaemonProcess) -> dict[str, dict[str, Any]]:
    return {w["name"]: w for w in daemon.get("/api/v1/workflows").json()["workflows"]}


def wait_loaded(
    daemon: DaemonProcess,
    valid: Collection[str],
    invalid: Collection[str] = (),
    *,
    timeout_s: float = 15,
) -> None:
    """Wait until the daemon lists the workflows `valid` loaded and `invalid` refused."""

    def loaded() -> bool:
        found = workflow_list(daemon)
        return all(n in found and found[n]["valid"] for n in valid) and all(
            n in found and not found[n]["valid"] for n in invalid
        )

    daemon.wait_for(
        loaded, timeout_s=timeout_s, what=f"workflows {sorted([*valid, *invalid])} to load"
    )


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of a /metrics text: name, labels, value."""
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def status_of(daemon: DaemonProcess, run_id: str) -> str:
    return str(daemon.get(f"/api/v1/runs/{run_id}").json()["status"])


def wait_status(daemon: DaemonProcess, run_id: str, status: str, timeout_s: float = 20) -> None:
    daemon.wait_for(
        lambda: status_of(daemon, run_id) == status,
        timeout_s=timeout_s,
        what=f"run {run_id} to be {status}",
    )


def running_then_queued(
    daemon: DaemonProcess,
    first: str,
    second: str | None = None,
    inputs: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """Dispatch `first` and wait until its run runs, then dispatch `second` (`first` again
    if None) with `inputs`: that run must wait, queued. The two runs' ids."""
    running = str(daemon.dispatch(first)["id"])
    wait_status(daemon, running, "running")
    queued = str(daemon.dispatch(second or first, inputs)["id"])
    assert status_of(daemon, queued) == "queued"
    return running, queued


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    """Until `check()` holds (polled every 10 ms); AssertionError naming `what` after
    `timeout_s` (for real processes: a generous bound)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (children, grandchildren, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found
