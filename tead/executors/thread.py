"""The thread strategy: branches run on threads of the calling process.

Threads cannot be killed: a branch that times out (or is cancelled by `fail_fast`) is
abandoned. Its thread runs on until the node returns, the branch's later nodes do not run,
it emits no more events, its result is ignored, and a fresh thread takes its place so the
fan-out keeps its `max_workers`. Branch threads are daemon
threads, so an abandoned one never keeps the process from exiting.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Collection
from concurrent.futures import Future

from tead.engine.seam import FanOutJob, RunHere
from tead.engine.task import BranchTask
from tead.parallel.cancel import CancelToken
from tead.parallel.config import ParallelFlowResult
from tead.parallel.launcher import Attempt, Gate, Settle
from tead.parallel.outcomes import Finished, Outcome
from tead.parallel.supervisor import supervise

_Job = tuple[Attempt, BranchTask, Gate | None, Settle | None]


class ThreadExecutor:
    """Runs each fan-out on threads of its own (so nested fan-outs never wait on a pool)."""

    def execute(self, job: FanOutJob) -> list[ParallelFlowResult]:
        workers = min(job.config.workers, len(job.tasks))
        config = job.config
        # Only a timeout, fail_fast or a cancellable run ever gives an attempt up.
        stoppable = bool(config.timeout_seconds or config.fail_fast or job.hooks.cancel)
        launcher = ThreadLauncher(workers, job.run_here, stoppable=stoppable)
        return supervise(job.tasks, config, launcher, job.hooks)

    def close(self) -> None:
        """Nothing to release: threads live for one fan-out."""


class ThreadLauncher:
    """Queues attempts for up to `workers` threads (abandoned threads are replaced)."""

    copies_state = False
    runs_gate = True

    def __init__(self, workers: int, run: RunHere, *, stoppable: bool = True) -> None:
        self._workers = workers
        self._run = run  # runs a branch on this thread, in its run's context
        # whether attempts may be given up (each then gets a stop token: a small cost)
        self._stoppable = stoppable
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._busy = 0  # attempts launched and neither finished nor abandoned
        self._live = 0  # threads not abandoned
        self._owners: dict[Attempt, threading.Thread] = {}
        self._stops: dict[Attempt, CancelToken] = {}  # gives a running attempt up
        self._abandoned: set[Attempt] = set()

    def launch(
        self, task: BranchTask, *, gate: Gate | None = None, settle: Settle | None = None
    ) -> Attempt:
        attempt: Attempt = Future()
        self._jobs.put((attempt, task, gate, settle))
        with self._lock:
            self._busy += 1
            spawn = self._live < min(self._busy, self._workers)
            if spawn:
                self._live += 1
        if spawn:
            threading.Thread(target=self._work, name="tead-branch", daemon=True).start()
        return attempt

    def prepare(self) -> None:
        """Nothing to prepare: threads start in microseconds."""

    def stop(self, attempts: Collection[Attempt]) -> None:
        """Abandon running attempts (their threads are replaced), cancel queued ones."""
        for attempt in attempts:
            with self._lock:
                running = attempt in self._owners
                stop = self._stops.get(attempt)
                if running:
                    self._abandoned.add(attempt)
                    self._busy -= 1
                    self._live -= 1
            if stop is not None:
                stop.cancel("abandoned")  # its listeners run without this launcher's lock
            elif not running:
                attempt.cancel()
        self._spawn_for_waiting()

    def _spawn_for_waiting(self) -> None:
        """Start threads for queued attempts that lost theirs (one per missing thread)."""
        with self._lock:
            missing = min(self._busy, self._workers) - self._live
            self._live += max(missing, 0)
        for _ in range(missing):
            threading.Thread(target=self._work, name="tead-branch", daemon=True).start()

    def close(self) -> None:
        """Let idle threads end; abandoned ones end when their branch returns."""
        with self._lock:
            live, self._live = self._live, 0
        for _ in range(live):
            self._jobs.put(None)

    def _work(self) -> None:
        me = threading.current_thread()
        while (job := self._jobs.get()) is not None:
            attempt, task, gate, settle = job
            if not attempt.set_running_or_notify_cancel():
                with self._lock:
                    self._busy -= 1
                continue
            stop = CancelToken() if self._stoppable else None
            with self._lock:
                self._owners[attempt] = me
                if stop is not None:
                    self._stops[attempt] = stop
            try:
                denied = gate() if gate is not None else None
                result = denied or Finished(result=self._run(task, stop))
                if settle is not None:
                    settle(result)
            except BaseException as exc:  # the run records branch errors; this is ours
                outcome: Outcome | BaseException = exc
            else:
                outcome = result
            with self._lock:
                del self._owners[attempt]
                self._stops.pop(attempt, None)
                abandoned = attempt in self._abandoned
                self._abandoned.discard(attempt)
                if not abandoned:
                    self._busy -= 1
            if isinstance(outcome, BaseException):
                attempt.set_exception(outcome)
            else:
                attempt.set_result(outcome)
            if abandoned:
                return  # a replacement thread has taken this one's place
