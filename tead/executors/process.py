"""The process strategy: branches run in worker processes, past the GIL.

What is sent is plain data: the `BranchTask` pickled up front, whose workflow pickles as
its source text and path (the worker loads it once and keeps it: `tead.engine.task`;
`uses:` modules beside the file import there too). Pickling every task before the first
one starts doubles as the check that the state can be sent: a value that cannot is named
by key and branch.

Workers come from a `WorkerPool` (workerpool.py) kept for the executor's life: across the
fan-outs of a run, and across runs when the daemon keeps the executor. A task is given to
a worker only when one is idle, and the supervisor's gate (breaker, callbacks, the start
of the branch's clock) runs at that moment, so neither queueing nor a worker's start-up
counts against a timeout. Stopping an attempt (a timeout, `fail_fast`, a cancelled run)
kills that attempt's worker alone; a worker that dies fails only the branch it was
running. Other fan-outs and runs sharing the pool never notice.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Collection, Sequence

from tead.engine.task import BranchTask
from tead.executors.base import FanOutHooks
from tead.executors.workerpool import WorkerPool
from tead.parallel.config import ParallelConfig, ParallelFlowResult
from tead.parallel.launcher import Attempt, Gate, Settle
from tead.parallel.supervisor import supervise


def run_pickled(payload: bytes) -> ParallelFlowResult:
    """The worker side: unpickle a BranchTask (its workflow loaded once) and run it."""
    from tead.engine.runner import run_branch

    task = BranchTask.from_pickle(payload)
    return run_branch(task)


def pickle_tasks(tasks: Sequence[BranchTask]) -> list[bytes]:
    """Pickle every task, or raise PickleValidationError naming the offending key."""
    return [task.to_pickle() for task in tasks]


class ProcessExecutor:
    """Runs fan-outs on reused worker pools (one per worker count)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pools: dict[int, WorkerPool] = {}

    def pool(self, workers: int) -> WorkerPool:
        """The shared pool of `workers` processes, started on first use."""
        with self._lock:
            pool = self._pools.get(workers)
            if pool is None:
                pool = self._pools[workers] = WorkerPool(workers, run_pickled)
            return pool

    def execute(
        self,
        tasks: Sequence[BranchTask],
        config: ParallelConfig,
        hooks: FanOutHooks | None = None,
    ) -> list[ParallelFlowResult]:
        if not tasks:
            return []
        payloads = pickle_tasks(tasks)
        pool = self.pool(min(config.workers, len(tasks)))
        return supervise(tasks, config, ProcessLauncher(pool, tasks, payloads), hooks)

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()


class ProcessLauncher:
    """Submits pre-pickled tasks to a shared pool; stops attempts one by one."""

    copies_state = True
    runs_gate = True  # the pool calls the gate as a worker takes the task

    def __init__(
        self, pool: WorkerPool, tasks: Sequence[BranchTask], payloads: list[bytes]
    ) -> None:
        self._pool = pool
        self._payloads = {id(task): payload for task, payload in zip(tasks, payloads, strict=True)}

    def prepare(self, *, isolated: bool = False) -> None:
        """Nothing to prepare: the gate runs when a ready worker takes the task."""

    def launch(
        self,
        task: BranchTask,
        *,
        isolated: bool = False,
        gate: Gate | None = None,
        settle: Settle | None = None,
    ) -> Attempt:
        payload = self._payloads.get(id(task)) or pickle_tasks([task])[0]

        def dispatch(attempt: Attempt) -> bool:
            denied = gate() if gate is not None else None
            if denied is None:
                return True
            attempt.set_result(denied)  # turned away by its breaker: it does not run
            return False

        attempt: Attempt = self._pool.submit(payload, dispatch)
        if settle is not None:  # before the supervisor hears of it (callbacks run in order)
            attempt.add_done_callback(functools.partial(_settle, settle))
        return attempt

    def stop(self, attempts: Collection[Attempt], running: Collection[Attempt]) -> set[Attempt]:
        """Stop each attempt alone (waiting ones never start, running ones are killed)."""
        for attempt in attempts:
            self._pool.stop(attempt)
        return set()

    def close(self) -> None:
        """Nothing to release: the pool belongs to the executor."""


def _settle(settle: Settle, attempt: Attempt) -> None:
    if not attempt.cancelled() and attempt.exception() is None:
        settle(attempt.result())
