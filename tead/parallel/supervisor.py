"""One fan-out's coordinator: the failure policy shared by every executor.

The supervisor starts branch attempts through a `Launcher` (threads, worker processes,
remote hosts) and decides from their typed outcomes alone (outcomes.py): it knows no pool.
Attempts start at most `max_workers` at a time, and an attempt's clock starts when it
does. It then waits for whichever comes first: an attempt's outcome, an attempt's timeout,
or a retry falling due. Timed-out attempts are given up at once (threads abandoned,
processes killed) and never waited for; retries are scheduled here, so a backoff wait
holds no worker; circuit breakers are asked before each attempt and told its outcome; with
`fail_fast` the first failure cancels everything else. Results come back in task order.

All its time comes from an injected `Clock` (clock.py): its waiting too, so that tests
make time jump instead of sleeping.
"""

from __future__ import annotations

import copy
import functools
import logging
import queue
import random
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Generic, TypeVar

from tead.errors import CircuitOpenError, FanOutCancelledError, WorkerCrashedError
from tead.parallel.branch import Branch, branches_for
from tead.parallel.breaker import Transition
from tead.parallel.callbacks import CallbackDispatcher
from tead.parallel.clock import Clock, MonotonicClock
from tead.parallel.config import ParallelConfig, ParallelFlowResult
from tead.parallel.hooks import FanOutHooks
from tead.parallel.launcher import Attempt, Launcher
from tead.parallel.outcomes import Crashed, Denied, Finished, Lost, Outcome, TimedOut
from tead.parallel.task import SupervisedTask, failure_result
from tead.parallel.timetable import Timetable

log = logging.getLogger(__name__)

#: a branch whose attempts are lost this many times (its worker or host keeps going away
#: under it) fails as crashed instead of running again forever
MAX_LOST = 5

T = TypeVar("T", bound=SupervisedTask)


class Supervisor(Generic[T]):
    """Runs one fan-out's tasks through a launcher under one ParallelConfig."""

    def __init__(
        self,
        tasks: Sequence[T],
        config: ParallelConfig,
        launcher: Launcher[T],
        hooks: FanOutHooks | None = None,
        *,
        rng: random.Random | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.launcher = launcher
        self.hooks = hooks or FanOutHooks()
        # jitter; the module's generator unless a test seeds one (a new Random() per
        # fan-out would cost a seed from os.urandom, ~0.5 ms)
        self.rng = rng
        self.clock = clock or MonotonicClock()
        self._now = self.clock.monotonic
        self.callbacks = CallbackDispatcher(config.callbacks, timeout_s=config.callback_timeout_s)
        self.branches = branches_for(tasks, config, self.hooks)
        self.ready: deque[Branch[T]] = deque(self.branches)
        self.running: dict[Attempt, Branch[T]] = {}
        self.inbox: queue.SimpleQueue[Attempt | None] = queue.SimpleQueue()  # None: wake up
        self.unfinished = len(self.branches)
        self._settle_lock = threading.Lock()
        # Deadlines of started attempts (the gates add them, on worker threads, as the
        # attempts start) and due times of retries.
        self.timetable: Timetable[Branch[T]] = Timetable(config.timeout_seconds, self._now)
        # Set (on any thread) as soon as an attempt's failure stops the fan-out (fail_fast)
        # or the run is cancelled: attempts not yet started are turned away at their gate.
        self.stopping: str | None = None
        # A retry runs on a fresh copy of the fan-out state: from the engine if it can make
        # one, else from a copy kept before the first attempt could change the state.
        self.keep_pristine = (
            config.retry is not None and not launcher.copies_state and not self.hooks.fresh_state
        )

    def run(self) -> list[ParallelFlowResult]:
        cancel = self.hooks.cancel
        stop_listening = cancel.subscribe(lambda: self.inbox.put(None)) if cancel else None
        # without a timeout or a retry policy there is no time to watch (the hot path)
        timed = self.config.timeout_seconds is not None
        clocked = timed or self.config.retry is not None
        try:
            while self.unfinished:
                if cancel is not None and cancel.reason is not None:
                    self._cancel_all(f"cancelled: the run was {cancel.reason.replace('_', ' ')}")
                    break
                self._launch_ready()
                if not self.unfinished:
                    break
                until = (
                    self.timetable.next_wake(bool(self.running), self._live) if clocked else None
                )
                done = self.clock.wait(self.inbox, until)
                if done is not None and done in self.running:
                    self._finished(done)
                if clocked:
                    if timed:
                        self._expire_timeouts()
                    for index in self.timetable.due_retries():
                        self.ready.append(self.branches[index])
        finally:
            if stop_listening is not None:
                stop_listening()
            self.callbacks.close()
        return [b.result for b in self.branches if b.result is not None]

    # --- launching --------------------------------------------------------------------------

    def _launch_ready(self) -> None:
        eager = self.launcher.runs_gate  # the launcher queues and gates at the real start
        # Without a gate, start no more than max_workers at once when clocks matter, so
        # that an attempt's clock starts when it does.
        capped = not eager and self.config.timeout_seconds is not None
        workers = self.config.workers
        while self.ready:
            if capped and len(self.running) >= workers:
                break
            branch = self.ready.popleft()
            task = self._task_for(branch)
            branch.attempts += 1
            branch.started = None
            if eager:
                gate = functools.partial(self._gate, branch, task)
                settle = functools.partial(self._settle, branch, branch.attempts)
                attempt = self.launcher.launch(task, gate=gate, settle=settle)
            else:
                self.launcher.prepare()  # no clock for a worker's start-up
                denied = self._gate(branch, task)
                if denied is not None:
                    self._finish(branch, denied.result)
                    continue
                attempt = self.launcher.launch(task)
            self.running[attempt] = branch
            branch.attempt = attempt
            attempt.add_done_callback(self.inbox.put)

    def _task_for(self, branch: Branch[T]) -> T:
        """The task of the next attempt: the original first, then fresh copies."""
        task = branch.task
        if self.launcher.copies_state or self.config.retry is None:
            return task
        if branch.attempts == 0:
            if self.keep_pristine:
                branch.pristine = copy.deepcopy(task.state)
            return task
        if self.hooks.fresh_state is not None:
            return replace(task, state=self.hooks.fresh_state(branch.index))
        return replace(task, state=copy.deepcopy(branch.pristine or {}))

    def _gate(self, branch: Branch[T], task: T) -> Denied | None:
        """At an attempt's start: ask the breaker, tell the callbacks, start the clock.

        Returns a Denied for a branch turned away, else None. With threads this runs on
        the worker thread, right before the branch.
        """
        cancel = self.hooks.cancel
        if cancel is not None and cancel.reason is not None:
            self.stopping = f"cancelled: the run was {cancel.reason.replace('_', ' ')}"
        if self.stopping is not None:  # fail_fast or a cancel is on its way: do not start
            return Denied(result=self._failure(branch, FanOutCancelledError(self.stopping)))
        if branch.breaker is not None:
            allowed, change = branch.breaker.allow()
            self._transition(change)
            if not allowed:
                error = CircuitOpenError(f"circuit {branch.breaker.name!r} is open")
                return Denied(result=self._failure(branch, error))
        if self.callbacks.has("on_flow_start"):  # before the clock: a slow callback costs
            self.callbacks.fire("on_flow_start", task.branch, copy.deepcopy(task.state))
        now = self._now()
        branch.first_started = branch.first_started or now
        branch.started = now
        if self.config.timeout_seconds is not None:
            self.timetable.started(now, branch, branch.attempts)
        if self.hooks.on_start is not None:
            self.hooks.on_start(branch.index)
        return None

    def _settle(self, branch: Branch[T], attempt_no: int, outcome: Outcome) -> None:
        """On the worker thread, as an attempt returns: tell the breaker at once, so that
        the next branch's gate (maybe on this very thread) already sees the outcome."""
        if type(outcome) is not Finished:  # the coordinator deals with the others
            return
        result = outcome.result
        self._record_breaker(branch, attempt_no, success=result.success)
        retry = self.config.retry
        final = retry is None or not retry.retries(attempt_no, result.error_mro)
        if self.config.fail_fast and not result.success and final:
            self.stopping = f"cancelled: branch {branch.task.branch!r} failed"

    def _live(self, branch: Branch[T], attempt_no: int) -> bool:
        """Whether attempt `attempt_no` of `branch` is still running."""
        return branch.attempts == attempt_no and branch.attempt in self.running

    # --- outcomes ---------------------------------------------------------------------------

    def _finished(self, attempt: Attempt) -> None:
        branch = self.running.pop(attempt)
        if attempt.cancelled():  # given up by its launcher: as if lost
            self._run_again(branch)
            return
        error = attempt.exception()
        if error is not None:  # the launcher failed (e.g. the state could not be sent)
            self._attempt_failed(branch, self._failure(branch, error))
            return
        outcome = attempt.result()
        if type(outcome) is Finished:  # the common case first, without a match
            result = outcome.result
            if not result.success:
                self._attempt_failed(branch, result.evolve(**self._totals(branch)))
                return
            self._record_breaker(branch, branch.attempts, success=True)
            if branch.attempts > 1 or branch.breaker is not None:  # else nothing to add
                result = result.evolve(**self._totals(branch))
            self._finish(branch, result)
            return
        match outcome:
            case Denied(result=result):  # turned away at the gate: not a failure of its own
                self._finish(branch, result)
            case Crashed(detail=detail):
                self._attempt_failed(branch, self._failure(branch, WorkerCrashedError(detail)))
            case Lost(detail=detail):
                branch.lost += 1
                if branch.lost < MAX_LOST:
                    self._run_again(branch)
                    return
                error = WorkerCrashedError(f"lost {branch.lost} times: {detail}")
                self._attempt_failed(branch, self._failure(branch, error))
            case TimedOut():
                self._timed_out(branch)

    def _run_again(self, branch: Branch[T]) -> None:
        """Put back an attempt that ended through no fault of its own (its worker was
        killed or closed under it): it does not count, and its half-open probe is handed
        back."""
        if branch.breaker is not None and branch.settled < branch.attempts:
            branch.breaker.release_probe()
        branch.attempts -= 1
        self.ready.appendleft(branch)

    def _expire_timeouts(self) -> None:
        expired = self.timetable.expired(self._live)
        if not expired:
            return
        self.launcher.stop([b.attempt for b in expired if b.attempt is not None])
        for branch in expired:
            if branch.attempt not in self.running:  # cancelled by fail_fast earlier in this loop
                continue
            del self.running[branch.attempt]
            self._timed_out(branch)

    def _timed_out(self, branch: Branch[T]) -> None:
        timeout = self.config.timeout_seconds
        if self.callbacks:
            self.callbacks.fire("on_flow_timeout", branch.task.branch, timeout, branch.attempts)
        after = f" after {timeout:g} s" if timeout is not None else ""
        error = TimeoutError(f"branch timed out{after}")
        self._attempt_failed(branch, self._failure(branch, error, timeout=True))

    def _attempt_failed(self, branch: Branch[T], result: ParallelFlowResult) -> None:
        self._record_breaker(branch, branch.attempts, success=False)
        message = f"{result.error_type}: {result.error}"
        branch.errors.append(message)
        # the breaker state this failure left, and every failed attempt's error
        result = result.evolve(
            circuit_state=branch.circuit_state, attempt_errors=tuple(branch.errors)
        )
        if self.callbacks and not result.timeout:
            self.callbacks.fire(
                "on_flow_error",
                branch.task.branch,
                result.error,
                result.error_type,
                branch.attempts,
            )
        retry = self.config.retry
        if retry is not None and retry.retries(branch.attempts, result.error_mro):
            rand = self.rng.random() if self.rng is not None else random.random()
            delay = retry.delay_s(branch.attempts, rand)
            log.info(
                "branch %s: attempt %d failed (%s); retrying in %.3f s",
                branch.task.branch,
                branch.attempts,
                message,
                delay,
            )
            if self.callbacks:
                self.callbacks.fire(
                    "on_flow_retry", branch.task.branch, branch.attempts + 1, delay, message
                )
            if self.hooks.on_retry is not None:
                self.hooks.on_retry(branch.index, branch.attempts + 1, delay, message)
            self.timetable.retry_at(self._now() + delay, branch.index)
            return
        self._finish(branch, result)
        if self.config.fail_fast:
            self._cancel_all(f"cancelled: branch {branch.task.branch!r} failed")

    def _cancel_all(self, message: str) -> None:
        """Stop every unfinished branch (abandon threads, kill processes)."""
        reason = FanOutCancelledError(message)
        running = list(self.running)
        if running:
            self.launcher.stop(running)
        for branch in self.running.values():  # stopped mid-attempt: no outcome to record
            if branch.breaker is not None and branch.settled < branch.attempts:
                branch.breaker.release_probe()
        leftover = [*self.running.values(), *self.ready]
        leftover += [self.branches[i] for i in self.timetable.clear_retries()]
        self.running.clear()
        self.ready.clear()
        for branch in leftover:
            if branch.result is None:
                self._finish(branch, self._failure(branch, reason))

    def _finish(self, branch: Branch[T], result: ParallelFlowResult) -> None:
        if branch.result is not None:
            return
        branch.result = result
        self.unfinished -= 1
        if self.callbacks:
            self.callbacks.fire("on_flow_complete", branch.task.branch, result)
        if self.hooks.on_result is not None:
            self.hooks.on_result(branch.index, result)

    # --- helpers ----------------------------------------------------------------------------

    def _failure(
        self, branch: Branch[T], error: BaseException, *, timeout: bool = False
    ) -> ParallelFlowResult:
        now = self._now()
        elapsed = now - (branch.first_started or now)
        totals = {**self._totals(branch), "timing_ms": round(elapsed * 1000, 3)}
        return failure_result(branch.task, error, timeout=timeout, **totals)

    def _totals(self, branch: Branch[T]) -> dict[str, Any]:
        totals: dict[str, Any] = {
            "retry_count": max(branch.attempts - 1, 0),
            "attempt_errors": tuple(branch.errors),
            "circuit_state": branch.circuit_state,
        }
        if branch.attempts > 1 and branch.first_started is not None:  # all attempts' time
            totals["timing_ms"] = round((self._now() - branch.first_started) * 1000, 3)
        return totals

    def _record_breaker(self, branch: Branch[T], attempt_no: int, *, success: bool) -> None:
        """Tell the breaker an attempt's outcome, once per attempt (the worker thread's
        settle, a timeout or the coordinator may each be first)."""
        breaker = branch.breaker
        if breaker is None or self.hooks.breakers is None:
            return
        with self._settle_lock:
            if branch.settled >= attempt_no:
                return
            branch.settled = attempt_no
        change = breaker.record_success() if success else breaker.record_failure()
        self.hooks.breakers.save(breaker)
        self._transition(change)

    def _transition(self, change: Transition | None) -> None:
        if change is None:
            return
        log.info("circuit %s: %s -> %s", change.name, change.old, change.new)
        if self.callbacks:
            self.callbacks.fire(
                "on_circuit_state_change", change.name, str(change.old), str(change.new)
            )
        if self.hooks.on_transition is not None:
            self.hooks.on_transition(change)


def supervise(
    tasks: Sequence[T],
    config: ParallelConfig,
    launcher: Launcher[T],
    hooks: FanOutHooks | None = None,
    *,
    clock: Clock | None = None,
) -> list[ParallelFlowResult]:
    """Run a fan-out's tasks through `launcher` under `config`, then close the launcher."""
    if not tasks:
        return []
    try:
        return Supervisor(tasks, config, launcher, hooks, clock=clock).run()
    finally:
        launcher.close()
