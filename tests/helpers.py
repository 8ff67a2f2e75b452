"""Small helpers that several test files share."""

from __future__ import annotations

import json
import string
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.daemon_fixture import DaemonProcess


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


def when(value: str | None) -> datetime:
    """An API timestamp (`...Z`) as an aware datetime."""
    assert value is not None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def status_of(daemon: DaemonProcess, run_id: str) -> str:
    return str(daemon.get(f"/api/v1/runs/{run_id}").json()["status"])


def wait_status(daemon: DaemonProcess, run_id: str, status: str, timeout_s: float = 20) -> None:
    daemon.wait_for(
        lambda: status_of(daemon, run_id) == status,
        timeout_s=timeout_s,
        what=f"run {run_id} to be {status}",
    )


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
