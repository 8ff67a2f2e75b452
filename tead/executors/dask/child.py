"""The child process a dask worker runs branches in (`python -P -m tead.executors.dask.child`).

It is the leader of a process group of its own (its parent starts it in a new session), so
that killing the group stops the branch and everything the branch started. It reads
requests on its standard input and answers on its standard output, both moved to private
descriptors at start (fd 0 then reads /dev/null: what a branch prints cannot garble the
protocol). Its descriptors 1 and 2 then point at pipes it reads itself
(`tead.engine.logs.FdCapture`, as in a process branch's worker): what a branch writes,
from Python or below it (C code, its subprocesses), becomes lines of the node that wrote
it, sent back with the branch's result (at most `MAX_LOG_BYTES` of them: they cross the
network). When its parent (the dask worker) dies or lets it go (closes its pipe), it kills
its group at once: it does not exit through the interpreter's shutdown, which can take a
few hundred ms of a loaded machine's time while its branch's work would go on.

A request is a pickle of (bundle digest, the bundle's pickle or None if sent before, the
task's payload: breaker states to start from, the pickled `BranchTask`, whether the run
listens for events; the digests of the bundles to drop: the worker keeps count of what
its child keeps, the most recently used `worker.KEPT_BUNDLES`). The workflow comes from
the bundle, written under this user's private folder (`tead.engine.bundle.LoadedWorkflows`),
so `uses:` modules are imported from there, never assumed on the worker's path. An answer
is a pickle of ("result", the pickled `BranchReport`) or ("error", a line); a bundle that
cannot be received (a `uses:` module that does not import here) is answered with its
error for each of its tasks, until the worker has it dropped.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import signal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from tead.engine.bundle import LoadedWorkflows, WorkflowBundle
from tead.engine.logs import FdCapture
from tead.engine.task import BranchTask
from tead.engine.walk import run_branch_elsewhere
from tead.executors.process import pickle_report
from tead.executors.registry import Executors
from tead.executors.worker import watch_parent
from tead.graph.compiled import WorkflowGraph


class _TaskUnpickler(pickle.Unpickler):
    """Unpickles a `BranchTask` on the workflow received in a bundle, not on the sender's
    path (which need not exist here)."""

    def __init__(self, data: bytes, workflow: WorkflowGraph) -> None:
        super().__init__(io.BytesIO(data))
        self._workflow = workflow

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("tead.engine.task", "_task_from_source"):
            return self._from_bundle
        return super().find_class(module, name)

    def _from_bundle(self, text: str, path: str, *values: Any) -> BranchTask:
        return BranchTask(workflow=self._workflow, **dict(zip(_FIELDS, values, strict=True)))


#: of what a branch writes, at most this much goes back with its result (counted as a
#: run's logs count it; the daemon's default `max_log_bytes` for a whole run)
MAX_LOG_BYTES = 16 * 1024 * 1024

_FIELDS = [f.name for f in dataclasses.fields(BranchTask) if f.name != "workflow"]


def serve(requests: Connection, answers: Connection) -> None:
    """Run requests until the parent closes the pipe (or is gone)."""
    workflows = LoadedWorkflows()
    received: dict[str, WorkflowGraph | Exception] = {}
    while True:
        try:
            data = requests.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            answer: tuple[str, Any] = ("result", _run(data, workflows, received))
        except BaseException as exc:  # a bundle that cannot be received, a broken task
            answer = ("error", f"{type(exc).__name__}: {exc}")
        try:
            answers.send_bytes(pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:  # the parent is gone
            return


def _run(
    data: bytes, workflows: LoadedWorkflows, received: dict[str, WorkflowGraph | Exception]
) -> bytes:
    digest, bundle, payload, dropped = pickle.loads(data)
    for old in dropped:
        received.pop(old, None)
    if bundle is not None:
        try:
            received[digest] = workflows.receive(WorkflowBundle.from_json(pickle.loads(bundle)))
        except Exception as exc:  # the worker counts it as sent: its next tasks say why too
            received[digest] = exc
    workflow = received[digest]
    if isinstance(workflow, Exception):
        raise workflow.with_traceback(None)
    workflows.activate(digest)  # its modules, not those of a bundle received since
    seed, task_bytes, listening = pickle.loads(payload)
    source = workflow.source
    if source is not None:  # `run:` code finds the workflow's files beside it, as at home
        os.chdir(Path(source.path).parent)
    task: BranchTask = _TaskUnpickler(task_bytes, workflow).load()
    executors = Executors()
    try:
        report = run_branch_elsewhere(
            task, executors, seed, listening=listening, max_log_chars=MAX_LOG_BYTES
        )
    finally:
        executors.close()
    return pickle_report(task, report)


def _kill_group() -> None:
    os.killpg(0, signal.SIGKILL)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the dask worker's to handle
    requests = Connection(os.dup(0), writable=False)
    answers = Connection(os.dup(1), readable=False)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)  # what is written outside a branch goes to the dask worker's stderr
    FdCapture.install()
    watch_parent(os.getppid(), _kill_group)
    serve(requests, answers)
    _kill_group()


if __name__ == "__main__":
    main()
