"""The worker's side of one branch: checking what a task message carries, and the forked
child that runs the branch (worker.py forks it) and writes its report as one frame."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from dataclasses import dataclass
from typing import Any

from tead.engine.seam import BranchReport
from tead.engine.task import BranchTask, check_json_state, failure_result
from tead.engine.walk import run_branch_elsewhere
from tead.errors import TeadError
from tead.executors.registry import Executors
from tead.executors.remote.protocol import frame, report_to_json
from tead.parallel.breaker import BreakerSnapshot, CircuitState

PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Branch:
    """A task as the worker received it, checked."""

    id: int
    task: BranchTask
    env: dict[str, str]
    seed: tuple[BreakerSnapshot, ...]
    listening: bool
    deadline: float | None


def parse_env(data: Any) -> dict[str, str]:
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k and "=" not in k and "\0" not in k + v
        for k, v in data.items()
    ):
        raise ValueError("a task's env is an object of variable names to strings")
    return data


def parse_breakers(data: Any) -> tuple[BreakerSnapshot, ...]:
    if not data:
        return ()
    return tuple(
        BreakerSnapshot(name=str(n), state=CircuitState(s), failure_count=int(c), opened_at=o)
        for n, s, c, o in data
    )


def run_child(branch: Branch, *, close: tuple[int, ...], write: int) -> None:
    """In the forked child: lead a new process group, die with the worker, run the branch
    and write its result frame to the pipe."""
    code = 0
    try:
        os.setpgid(0, 0)
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        for fd in close:
            os.close(fd)
        os.environ.update(branch.env)
        executors = Executors()
        try:
            report = run_branch_elsewhere(
                branch.task, executors, branch.seed, listening=branch.listening
            )
        finally:
            executors.close()
        data = _result_frame(branch.id, branch.task, report)
        view = memoryview(data)
        while view:
            view = view[os.write(write, view) :]
    except BaseException:
        code = 70
    finally:
        os._exit(code)


def _result_frame(task_id: int, task: BranchTask, report: BranchReport) -> bytes:
    """The report as a frame; if its final state is no JSON, the branch fails instead
    (naming the key), its events kept; nested results that are not are left out."""
    state = report.result.state
    try:
        if state is not None:
            check_json_state(task.branch, state)
    except TeadError as exc:
        failed = failure_result(task, exc, timing_ms=report.result.timing_ms)
        report = BranchReport(failed, report.events, report.breakers)
    try:
        return frame({"kind": "result", "id": task_id, "report": report_to_json(report)})
    except (TypeError, ValueError):
        report = BranchReport(report.result, report.events, report.breakers)
        return frame({"kind": "result", "id": task_id, "report": report_to_json(report)})
