"""A pool of worker processes in which one task can be stopped without touching the others.

`concurrent.futures.ProcessPoolExecutor` cannot lose one worker: killing the process of one
task breaks the pool under every other task in it. pebble's ProcessPool can (checked:
cancelling a running task kills only its worker), but it sends tasks to a pipe all workers
share as soon as they are scheduled, so a task cancelled while it waits still runs when a
worker takes it, and its kills go through SIGTERM, a 0.1 s polling loop and a 3 s grace.
This pool is small instead: each worker has a pipe of its own and is given a task only when
it is idle; a waiting task that is stopped never starts; a running one is stopped by
SIGKILL of its own worker, which is reaped before `stop()` returns and replaced at once.

How workers start and follow their parent is in worker.py.

A task ends with a typed outcome (tead/parallel/outcomes.py): its result as Finished; a
worker that dies before it is ready ends one waiting task Crashed, naming why; one that dies
running a task ends that task Crashed; a task stopped, or running when the pool closes,
ends Lost.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from tead.executors.worker import BASE, DROP, Job, context, worker_main
from tead.parallel.outcomes import Crashed, Finished, Lost, Outcome

log = logging.getLogger(__name__)

# called with the task's future and payload as a worker takes it: returns what to send (the
# payload, or one made from it at that moment), or None: do not run it (it finished it)
Dispatch = Callable[[Future[Outcome], bytes], bytes | None]


# --- the parent side ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SharedBase:
    """Data that many tasks need (a fan-out's base state): sent to a worker once, before
    the first of those tasks it takes, and kept there until `WorkerPool.release(key)`."""

    key: str
    data: bytes


@dataclass(eq=False, slots=True)
class _Task:
    payload: bytes
    future: Future[Outcome]
    dispatch: Dispatch | None
    base: SharedBase | None = None


@dataclass(eq=False, slots=True)
class _Worker:
    process: Any  # multiprocessing.process.BaseProcess
    conn: Connection
    ready: bool = False
    task: _Task | None = None
    start_error: str | None = None
    bases: set[str] = field(default_factory=set)  # keys of the shared bases it holds
    sending: threading.Lock = field(default_factory=threading.Lock)  # one writer at a time


_live_pools: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


@atexit.register
def _close_live_pools() -> None:
    """Close pools left open at exit, before multiprocessing joins their workers (atexit
    runs this first: it is registered after multiprocessing's own hook)."""
    for pool in list(_live_pools):
        pool.close()


class WorkerPool:
    """`size` worker processes running `job(payload)`; tasks are given to idle workers in
    submission order; `stop(future)` stops one task alone. A task's future holds its
    outcome (the job's result as Finished); it raises what the job raised."""

    def __init__(self, size: int, job: Job) -> None:
        self._size = size
        self._job = job
        self._ctx = context()
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._waiting: deque[_Task] = deque()
        self._closed = False
        self._retired: list[_Worker] = []  # stopped workers whose pipes are still open
        self._wake_r, self._wake_w = multiprocessing.Pipe(duplex=False)
        self._waking = threading.Lock()  # a wake-up is not written as the pipe closes
        for _ in range(size):
            self._spawn()
        self._thread = threading.Thread(target=self._serve, name="tead-workers", daemon=True)
        self._thread.start()
        _live_pools.add(self)

    # --- public ---------------------------------------------------------------------------

    def submit(
        self, payload: bytes, dispatch: Dispatch | None = None, base: SharedBase | None = None
    ) -> Future[Outcome]:
        """Queue a task; `dispatch()` is called (on some thread) as a worker takes it; the
        worker is sent `base` first unless it has it."""
        task = _Task(payload, Future(), dispatch, base)
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is closed")
            self._waiting.append(task)
            if len(self._workers) < self._size:
                self._spawn()
        self._pump()
        return task.future

    def release(self, key: str) -> None:
        """The tasks that needed shared base `key` are done: the workers drop it."""
        with self._lock:
            holders = [w for w in self._workers if key in w.bases]
        message = DROP + key.encode()
        for worker in holders:
            with worker.sending:
                worker.bases.discard(key)
                with contextlib.suppress(OSError):  # it died: nothing to drop
                    worker.conn.send_bytes(message)

    def stop(self, future: Future[Outcome]) -> None:
        """Stop one task: a waiting one never starts (cancelled); a running one's worker
        is killed (and reaped before this returns) and replaced, and the task ends Lost.
        Other tasks are untouched."""
        with self._lock:
            for task in self._waiting:
                if task.future is future:
                    self._waiting.remove(task)
                    future.cancel()
                    return
            worker = next((w for w in self._workers if w.task and w.task.future is future), None)
            if worker is None:
                return
            self._workers.remove(worker)
            self._retired.append(worker)  # its pipe is closed by the serve thread
            if not self._closed:
                self._spawn()
        worker.process.kill()
        worker.process.join()
        _set(future, Lost(detail="stopped: its worker process was killed"))
        self._wake()

    def close(self) -> None:
        """Kill the workers (running tasks end Lost, waiting ones are cancelled)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers, self._workers = self._workers, []
            self._retired.extend(workers)  # the serve thread, which may be reading, closes
            waiting, self._waiting = list(self._waiting), deque()
        for task in waiting:
            task.future.cancel()
        for worker in workers:  # idle or not: nothing a worker holds outlives its task
            worker.process.kill()
        for worker in workers:
            worker.process.join()
            if worker.task is not None:
                _set(worker.task.future, Lost(detail="the pool was closed"))
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join()  # it has closed the workers' pipes
        with self._waking:
            self._wake_w.close()
        _live_pools.discard(self)

    # --- inside -----------------------------------------------------------------------------

    def _spawn(self) -> None:
        """Start one worker (with the lock held); it joins the pool when it says ready."""
        mine, theirs = multiprocessing.Pipe()
        process = self._ctx.Process(  # type: ignore[attr-defined]
            target=worker_main, args=(theirs, os.getpid(), self._job), name="tead-worker"
        )
        process.start()
        theirs.close()
        self._workers.append(_Worker(process, mine))
        self._wake()

    def _wake(self) -> None:
        with self._waking, contextlib.suppress(OSError):
            if not self._wake_w.closed:
                self._wake_w.send_bytes(b"")

    def _pump(self) -> None:
        """Give waiting tasks to idle, ready workers."""
        while True:
            with self._lock:
                worker = next((w for w in self._workers if w.ready and w.task is None), None)
                if worker is None or not self._waiting:
                    return
                task = self._waiting.popleft()
                worker.task = task
            if not task.future.set_running_or_notify_cancel():
                self._release(worker, task)
                continue
            try:
                sent = (
                    task.payload
                    if task.dispatch is None
                    else task.dispatch(task.future, task.payload)
                )
            except BaseException as exc:
                _set(task.future, exc)
                sent = None
            if sent is None:
                self._release(worker, task)  # the future is finished: not sent
                continue
            try:
                with worker.sending:
                    base = task.base
                    if base is not None and base.key not in worker.bases:
                        worker.conn.send_bytes(BASE + base.key.encode())
                        worker.conn.send_bytes(base.data)
                        worker.bases.add(base.key)
                    worker.conn.send_bytes(sent)
            except OSError:  # it died just now: the serve loop sees its sentinel
                continue

    def _release(self, worker: _Worker, task: _Task) -> None:
        with self._lock:
            if worker.task is task:
                worker.task = None

    def _serve(self) -> None:
        """Read results and readiness, notice deaths, keep the pool at its size."""
        while True:
            with self._lock:
                closed = self._closed
                workers = list(self._workers)
                retired, self._retired = self._retired, []
            for worker in retired:  # not while a task is sent to it
                with worker.sending:
                    worker.conn.close()
            if closed:
                self._wake_r.close()  # and close() the writing end
                return
            conns: dict[Any, _Worker] = {w.conn: w for w in workers}
            sentinels: dict[Any, _Worker] = {w.process.sentinel: w for w in workers}
            try:
                readable = wait([self._wake_r, *conns, *sentinels])
            except (OSError, ValueError):  # closed meanwhile
                continue
            for ready in readable:
                if ready is self._wake_r:
                    self._drain_wake()
                elif ready in conns:
                    self._receive(conns[ready])
                elif ready in sentinels:
                    self._died(sentinels[ready])
            self._pump()

    def _drain_wake(self) -> None:
        while self._wake_r.poll():
            self._wake_r.recv_bytes()

    def _receive(self, worker: _Worker) -> None:
        try:
            data = worker.conn.recv_bytes()
        except (EOFError, OSError):  # it is dying: its sentinel says so next
            return
        try:
            kind, value = pickle.loads(data)
        except Exception as exc:  # e.g. a class the parent cannot import
            kind, value = "error", RuntimeError(f"a worker's answer cannot be read: {exc}")
        if kind == "ready":
            worker.ready = True
        elif kind == "start_failed":
            worker.start_error = str(value)
        else:
            with self._lock:
                task, worker.task = worker.task, None
            if task is not None:
                if kind == "result":
                    _set(task.future, Finished(result=value))
                else:
                    _set(task.future, value)

    def _died(self, worker: _Worker) -> None:
        """A worker ended by itself (a crash, os._exit, a signal from outside)."""
        for _ in range(3):  # what it said before it died (why it could not start, a result)
            if worker not in self._workers or not worker.conn.poll():
                break
            self._receive(worker)
        waiting: _Task | None = None
        with self._lock:
            if worker not in self._workers:
                return  # stopped on purpose
            self._workers.remove(worker)
            task = worker.task
            started = worker.ready
            if not started and task is None and self._waiting:
                task = waiting = self._waiting.popleft()  # could not start: fail a waiting task
            if (started or self._waiting) and not self._closed:
                self._spawn()  # a failed start is tried again only for waiting tasks
        worker.process.join()
        worker.conn.close()
        if waiting is not None and not waiting.future.set_running_or_notify_cancel():
            return
        cause = _exit_cause(worker.process.exitcode)
        if not started:
            why = f": {worker.start_error}" if worker.start_error else ""
            cause = f"a worker process could not start ({cause}{why})"
            log.error("%s", cause)
        else:
            cause = f"the worker process running this branch died ({cause})"
        if task is not None:
            _set(task.future, Crashed(detail=cause))


def _exit_cause(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _set(future: Future[Outcome], outcome: Outcome | BaseException) -> None:
    """Finish a future unless it already is (a stopped task may answer late)."""
    if future.done():
        return
    try:
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
    except Exception:  # finished by another thread meanwhile
        pass
