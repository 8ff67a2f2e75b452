"""The worker's children: each a forked process (worker.py forks them) leading a process
group of its own, that runs branches one at a time and writes each report as one frame.
A child is reused for the next branch (a fork per branch costs 10-30 ms on a loaded
machine: the child's first writes copy the parent's pages) until the worker kills its group
(a deadline, a cancel) or it dies."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from typing import Any

from tead.engine.bundle import LoadedWorkflows, WorkflowBundle
from tead.engine.logs import FdCapture
from tead.engine.seam import BranchReport
from tead.engine.task import BranchTask, check_json_state, failure_result
from tead.engine.walk import run_branch_elsewhere
from tead.errors import TeadError
from tead.executors.registry import Executors
from tead.executors.remote.base import HostBases
from tead.executors.remote.protocol import FrameBuffer, frame, report_to_json
from tead.parallel.breaker import BreakerSnapshot, CircuitState

PR_SET_PDEATHSIG = 1
READ_SIZE = 1 << 16


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


def child_main(
    tasks: int, results: int, workflows: LoadedWorkflows, *, close: tuple[int, ...]
) -> None:
    """In a forked child: lead a new process group, die with the worker, then run the
    branches the worker sends on `tasks` one at a time (bundles it lacks come first) and
    write each result frame to `results`, until `tasks` closes. What a branch writes to
    descriptors 1 and 2 is caught (`FdCapture`) and goes back in its report as its nodes'
    log lines. The environment and the working directory are put back after each branch."""
    code = 0
    try:
        os.setpgid(0, 0)
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        for fd in close:
            os.close(fd)
        # what a branch writes to descriptors 1 and 2 (print, C code, its subprocesses)
        # becomes its nodes' log lines, sent back in its report
        FdCapture.install()
        environ, cwd = dict(os.environ), os.getcwd()
        frames = FrameBuffer()
        bases = HostBases()
        while data := os.read(tasks, READ_SIZE):
            for message in frames.feed(data):
                kind = message["kind"]
                if kind == "bundle":
                    workflows.receive(WorkflowBundle.from_json(message["bundle"]))
                    continue
                if kind in ("base", "drop"):
                    with contextlib.suppress(ValueError):  # a bad base fails its tasks
                        if kind == "base":
                            bases.put(message["digest"], message["state"])
                        else:
                            bases.drop(message["digest"])
                    continue
                _write_all(results, _run(message, workflows, bases))
                os.environ.clear()
                os.environ.update(environ)
                os.chdir(cwd)
    except BaseException:
        code = 70
    finally:
        os._exit(code)


def _run(message: dict[str, Any], workflows: LoadedWorkflows, bases: HostBases) -> bytes:
    """Run one task message (over its base, if it names one: its report then carries
    what the branch changed); its result frame (a `crashed` frame if it cannot run)."""
    task_id = message.get("id")
    try:
        task = BranchTask.from_json(message.get("task"), workflows.get)
        task, base = bases.task_over(task, message.get("base"), message.get("entries"))
        os.environ.update(parse_env(message.get("env")))
        seed = parse_breakers(message.get("breakers"))
        executors = Executors()
        try:
            report = run_branch_elsewhere(
                task, executors, seed, listening=message.get("listening") is not False, base=base
            )
        finally:
            executors.close()
        if base is not None:
            report = bases.without_unchanged(report, message["base"], task.state)
    except Exception as exc:
        return frame({"kind": "crashed", "id": task_id, "detail": f"{type(exc).__name__}: {exc}"})
    return _result_frame(task_id, task, report)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _result_frame(task_id: Any, task: BranchTask, report: BranchReport) -> bytes:
    """The report as a frame; if its final state (or what it changed) is no JSON, the
    branch fails instead (naming the key), its events kept; nested results that are not
    are left out."""
    state = report.delta.changed if report.delta is not None else report.result.state
    try:
        if state is not None:
            check_json_state(task.branch, state)
    except TeadError as exc:
        failed = failure_result(task, exc, timing_ms=report.result.timing_ms)
        report = BranchReport(failed, report.events, report.breakers, logs=report.logs)
    try:
        return frame({"kind": "result", "id": task_id, "report": report_to_json(report)})
    except (TypeError, ValueError):
        report = BranchReport(report.result, report.events, report.breakers, logs=report.logs)
        return frame({"kind": "result", "id": task_id, "report": report_to_json(report)})
