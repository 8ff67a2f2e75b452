"""The process strategy: branches run in worker processes, past the GIL.

What is sent is plain data: the `BranchTask` pickled up front, whose workflow pickles as
its source text and path (the worker loads it once and caches it; `uses:` modules beside
the file import there too). Pickling every task before the first one starts doubles as
the check that the state can be sent: a value that cannot is named by key and branch.

Workers come from a `concurrent.futures` pool started with `forkserver` (no fork of a
threaded parent) and kept for the executor's life: across the fan-outs of a run, and
across runs when the daemon keeps the executor. A branch that times out, or that
`fail_fast` cancels, is killed with its pool; siblings caught in it run again. A worker
that dies (os._exit, a signal, the OOM killer) breaks its pool: each branch that was in
it runs again alone, in a pool of its own, so the one that crashes fails by itself.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
import time
from collections.abc import Collection, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from tead.errors import PickleValidationError
from tead.executors.base import FanOutHooks
from tead.launcher import Attempt, Gate, Settle
from tead.reliability import ParallelConfig, ParallelFlowResult
from tead.supervisor import supervise

if TYPE_CHECKING:
    from tead.task import BranchTask

_PRELOAD = ["tead.engine", "tead.loader", "tead.executors.thread"]


def _context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" not in methods:  # not on Windows / macOS without it: spawn is safe
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def run_pickled(payload: bytes) -> ParallelFlowResult:
    """The worker side: unpickle a BranchTask and run it."""
    from tead.engine import run_branch

    task: BranchTask = pickle.loads(payload)
    return run_branch(task)


def pickle_tasks(tasks: Sequence[BranchTask]) -> list[bytes]:
    """Pickle every task, or raise PickleValidationError naming the offending key."""
    payloads = []
    for task in tasks:
        try:
            payloads.append(pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL))
        except Exception as exc:
            for key, value in task.state.items():
                try:
                    pickle.dumps(value)
                except Exception as key_exc:
                    raise PickleValidationError(task.branch, key, key_exc) from None
            raise PickleValidationError(task.branch, None, exc) from None
    return payloads


class ProcessExecutor:
    """Runs fan-outs on a reused process pool (one per worker count)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pools: dict[int, ProcessPoolExecutor] = {}

    def pool(self, workers: int) -> ProcessPoolExecutor:
        """The shared pool of `workers` processes, started (again) if needed."""
        with self._lock:
            pool = self._pools.get(workers)
            if pool is None or getattr(pool, "_broken", False):
                pool = self._pools[workers] = started_pool(workers)
            return pool

    def discard(self, pool: ProcessPoolExecutor) -> None:
        """Kill a pool's processes and forget it (the next fan-out starts a new one)."""
        with self._lock:
            for workers, known in list(self._pools.items()):
                if known is pool:
                    del self._pools[workers]
        kill_pool(pool)

    def execute(
        self,
        tasks: Sequence[BranchTask],
        config: ParallelConfig,
        hooks: FanOutHooks | None = None,
    ) -> list[ParallelFlowResult]:
        if not tasks:
            return []
        payloads = pickle_tasks(tasks)
        launcher = ProcessLauncher(self, min(config.workers, len(tasks)), tasks, payloads)
        return supervise(tasks, config, launcher, hooks)

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)


def _ready() -> None:
    """A task that does nothing: answering it shows that a worker is up."""


def _watch_parent(pid: int) -> None:
    """Worker initializer: exit when the process that started the pool is gone (killed
    with -9, say), instead of waiting forever on a pipe nobody will close."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:  # the pid was reused by another user's process
                os._exit(0)

    threading.Thread(target=watch, name="tead-parent-watch", daemon=True).start()


def started_pool(workers: int) -> ProcessPoolExecutor:
    """A pool whose workers are all up, so that no branch's clock pays for their start."""
    pool = ProcessPoolExecutor(
        workers, mp_context=_context(), initializer=_watch_parent, initargs=(os.getpid(),)
    )
    for future in [pool.submit(_ready) for _ in range(workers)]:
        future.result()
    return pool


def kill_pool(pool: ProcessPoolExecutor) -> None:
    """Kill every process of a pool at once (its pending futures then fail)."""
    processes: dict[int, Any] = getattr(pool, "_processes", None) or {}
    for process in list(processes.values()):
        process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


class ProcessLauncher:
    """Submits pre-pickled tasks; kills pools to stop attempts."""

    copies_state = True
    runs_gate = False

    def __init__(
        self,
        executor: ProcessExecutor,
        workers: int,
        tasks: Sequence[BranchTask],
        payloads: list[bytes],
    ) -> None:
        self._executor = executor
        self._workers = workers
        self._payloads = {id(task): payload for task, payload in zip(tasks, payloads, strict=True)}
        self._pools: dict[Attempt, ProcessPoolExecutor] = {}
        self._own: set[ProcessPoolExecutor] = set()  # single-process pools of isolated attempts
        self._next_own: ProcessPoolExecutor | None = None  # started by prepare()

    def prepare(self, *, isolated: bool = False) -> None:
        """Start the pool the next launch uses, so that no branch's clock pays for it."""
        if isolated:
            self._next_own = self._next_own or started_pool(1)
        else:
            self._executor.pool(self._workers)

    def launch(
        self,
        task: BranchTask,
        *,
        isolated: bool = False,
        gate: Gate | None = None,
        settle: Settle | None = None,
    ) -> Attempt:
        payload = self._payloads.get(id(task)) or pickle_tasks([task])[0]
        if isolated:
            pool, self._next_own = self._next_own or started_pool(1), None
            self._own.add(pool)
        else:
            pool = self._executor.pool(self._workers)
        try:
            attempt = pool.submit(run_pickled, payload)
        except (RuntimeError, BrokenProcessPool):  # killed by another fan-out just now
            self._executor.discard(pool)
            pool = self._executor.pool(self._workers)
            attempt = pool.submit(run_pickled, payload)
        self._pools[attempt] = pool
        attempt.add_done_callback(self._forget)
        return attempt

    def close(self) -> None:
        """Drop a pool that prepare() started but no launch used."""
        if self._next_own is not None:
            self._next_own.shutdown(wait=False)
            self._next_own = None

    def _forget(self, attempt: Attempt) -> None:
        pool = self._pools.pop(attempt, None)
        if pool in self._own:
            self._own.discard(pool)
            pool.shutdown(wait=False)

    def stop(self, attempts: Collection[Attempt], running: Collection[Attempt]) -> set[Attempt]:
        """Kill the pools running `attempts`; return the other attempts that were in them."""
        doomed = {self._pools[a] for a in attempts if a in self._pools}
        collateral = {a for a in running if self._pools.get(a) in doomed} - set(attempts)
        for pool in doomed:
            if pool in self._own:
                self._own.discard(pool)
                kill_pool(pool)
            else:
                self._executor.discard(pool)
        return collateral
