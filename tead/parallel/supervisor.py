"""One fan-out's coordinator: the failure policy shared by every built-in executor.

The supervisor starts at most `max_workers` branch attempts at a time through a
`Launcher` (threads, processes), so an attempt's clock starts when it starts. It then
waits for whichever comes first: an attempt finishing, an attempt's timeout, or a retry
falling due. Timed-out attempts are given up at once (threads abandoned, processes killed)
and never waited for; retries are scheduled here, so a backoff wait holds no worker;
circuit breakers are asked before each attempt and told its outcome; with `fail_fast` the
first failure cancels everything else. Results come back in task order.
"""

from __future__ import annotations

import copy
import functools
import heapq
import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from tead.errors import CircuitOpenError, FanOutCancelledError, WorkerCrashedError
from tead.parallel.breaker import BreakerRegistry, CircuitBreaker, Transition
from tead.parallel.callbacks import CallbackDispatcher
from tead.parallel.config import ParallelConfig, ParallelFlowResult
from tead.parallel.launcher import Attempt, Launcher

if TYPE_CHECKING:
    from tead.engine.task import BranchTask
    from tead.parallel.hooks import FanOutHooks

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Branch:
    index: int
    task: BranchTask
    breaker: CircuitBreaker | None
    attempts: int = 0  # attempts started
    errors: list[str] = field(default_factory=list)
    first_started: float | None = None
    started: float | None = None  # the running attempt's start; None until it starts
    isolated: bool = False
    attempt: Attempt | None = None  # the latest attempt
    pristine: dict[str, Any] | None = None  # the state before the first attempt, if kept
    denied: ParallelFlowResult | None = None
    settled: int = 0  # the last attempt whose outcome the breaker was told
    result: ParallelFlowResult | None = None


class Supervisor:
    """Runs one fan-out's tasks through a launcher under one ParallelConfig."""

    def __init__(
        self,
        tasks: Sequence[BranchTask],
        config: ParallelConfig,
        launcher: Launcher,
        hooks: FanOutHooks | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        from tead.parallel.hooks import FanOutHooks

        self.config = config
        self.launcher = launcher
        self.hooks = hooks or FanOutHooks()
        self.rng = rng or random.Random()
        self.callbacks = CallbackDispatcher(config.callbacks, timeout_s=config.callback_timeout_s)
        breakers = self.hooks.breakers if config.circuit_breaker else None
        by_entry: dict[str, CircuitBreaker | None] = {}
        for task in tasks:
            if task.entry not in by_entry:
                by_entry[task.entry] = _breaker_for(task, config, breakers)
        self.branches = [
            _Branch(index=i, task=task, breaker=by_entry[task.entry])
            for i, task in enumerate(tasks)
        ]
        self.ready: deque[_Branch] = deque(self.branches)
        self.waiting: list[tuple[float, int]] = []  # (due time, branch index) for retries
        self.running: dict[Attempt, _Branch] = {}
        self.inbox: queue.SimpleQueue[Attempt | None] = queue.SimpleQueue()  # None: wake up
        self.unfinished = len(self.branches)
        self._settle_lock = threading.Lock()
        # (start time, branch, attempt number) of started attempts, appended by the gates
        # (on worker threads) as they start, so in deadline order: one timeout for all.
        self.started: deque[tuple[float, _Branch, int]] = deque()
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
        try:
            while self.unfinished:
                if cancel is not None and cancel.reason is not None:
                    self._cancel_all(f"cancelled: the run was {cancel.reason.replace('_', ' ')}")
                    break
                self._launch_ready()
                if not self.unfinished:
                    break
                try:
                    done = self.inbox.get(timeout=self._next_wake())
                except queue.Empty:
                    done = None
                if done is not None and done in self.running:
                    self._finished(done)
                self._expire_timeouts()
                self._release_due_retries()
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
            if self.ready[0].isolated and self._isolated_running() >= workers:
                break
            branch = self.ready.popleft()
            task = self._task_for(branch)
            branch.attempts += 1
            branch.started = None
            if eager:
                gate = functools.partial(self._gate, branch, task)
                settle = functools.partial(self._settle, branch, branch.attempts)
                attempt = self.launcher.launch(
                    task, isolated=branch.isolated, gate=gate, settle=settle
                )
            else:
                self.launcher.prepare(isolated=branch.isolated)  # no clock for pool start-up
                denied = self._gate(branch, task)
                if denied is not None:
                    self._finish(branch, denied)
                    continue
                attempt = self.launcher.launch(task, isolated=branch.isolated)
            self.running[attempt] = branch
            branch.attempt = attempt
            attempt.add_done_callback(self.inbox.put)

    def _task_for(self, branch: _Branch) -> BranchTask:
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

    def _isolated_running(self) -> int:
        return sum(1 for b in self.running.values() if b.isolated)

    def _gate(self, branch: _Branch, task: BranchTask) -> ParallelFlowResult | None:
        """At an attempt's start: ask the breaker, tell the callbacks, start the clock.

        Returns the result of a branch the breaker turns away, else None. With threads this
        runs on the worker thread, right before the branch.
        """
        cancel = self.hooks.cancel
        if cancel is not None and cancel.reason is not None:
            self.stopping = f"cancelled: the run was {cancel.reason.replace('_', ' ')}"
        if self.stopping is not None:  # fail_fast or a cancel is on its way: do not start
            branch.denied = self._failure(branch, FanOutCancelledError(self.stopping))
            return branch.denied
        if branch.breaker is not None:
            allowed, change = branch.breaker.allow()
            self._transition(change)
            if not allowed:
                error = CircuitOpenError(f"circuit {branch.breaker.name!r} is open")
                branch.denied = self._failure(branch, error)
                return branch.denied
        if self.callbacks.has("on_flow_start"):  # before the clock: a slow callback costs
            self.callbacks.fire("on_flow_start", task.branch, copy.deepcopy(task.state))
        now = time.monotonic()
        branch.first_started = branch.first_started or now
        branch.started = now
        if self.config.timeout_seconds is not None:
            self.started.append((now, branch, branch.attempts))
        if self.hooks.on_start is not None:
            self.hooks.on_start(branch.index)
        return None

    def _settle(self, branch: _Branch, attempt_no: int, result: ParallelFlowResult) -> None:
        """On the worker thread, as an attempt returns: tell the breaker at once, so that
        the next branch's gate (maybe on this very thread) already sees the outcome."""
        if result is not branch.denied:
            self._record_breaker(branch, attempt_no, success=result.success)
            retry = self.config.retry
            final = retry is None or not retry.retries(attempt_no, result.error_mro)
            if self.config.fail_fast and not result.success and final:
                self.stopping = f"cancelled: branch {branch.task.branch!r} failed"

    def _live_deadline(self) -> float | None:
        """The first deadline of an attempt still running (forgetting finished ones)."""
        timeout = self.config.timeout_seconds or 0.0
        while self.started:
            started, branch, attempt_no = self.started[0]
            if branch.attempts == attempt_no and branch.attempt in self.running:
                return started + timeout
            self.started.popleft()
        return None

    def _next_wake(self) -> float | None:
        """Seconds until the next deadline or retry. With a timeout, never sleep longer
        than it: an attempt that starts after this look has a deadline at least one
        timeout away, so seeing it at the next look is never late."""
        times = [due for due, _ in self.waiting[:1]]
        timeout = self.config.timeout_seconds
        if timeout is not None and self.running:
            times.append(time.monotonic() + timeout)
            if (deadline := self._live_deadline()) is not None:
                times.append(deadline)
        if not times:
            return None
        return max(0.0, min(times) - time.monotonic())

    # --- outcomes ---------------------------------------------------------------------------

    def _finished(self, attempt: Attempt) -> None:
        branch = self.running.pop(attempt)
        if attempt.cancelled():  # its shared pool was killed by another fan-out: run again
            self._run_again(branch)
            return
        error = attempt.exception()
        if isinstance(error, BrokenProcessPool):
            self._crashed(branch)
            return
        if error is not None:  # the launcher failed (e.g. the state could not be sent)
            self._attempt_failed(branch, self._failure(branch, error))
            return
        result = attempt.result()
        if result is branch.denied:  # turned away by its breaker: not a failure of its own
            self._finish(branch, result)
        elif result.success:
            self._record_breaker(branch, branch.attempts, success=True)
            if branch.attempts > 1 or branch.breaker is not None:  # else nothing to add
                result = result.evolve(**self._totals(branch))
            self._finish(branch, result)
        else:
            self._attempt_failed(branch, result.evolve(**self._totals(branch)))

    def _crashed(self, branch: _Branch) -> None:
        """A broken pool: an isolated branch crashed for real; others are run again alone."""
        if branch.isolated:
            crash = WorkerCrashedError("the worker process running this branch died")
            self._attempt_failed(branch, self._failure(branch, crash))
        else:
            branch.isolated = True
            self._run_again(branch)  # caught in a sibling's crash: not an attempt of its own

    def _run_again(self, branch: _Branch) -> None:
        """Put back an attempt that ended through no fault of its own (its pool was killed
        or broke under it): it does not count, and its half-open probe is handed back."""
        if branch.breaker is not None and branch.settled < branch.attempts:
            branch.breaker.release_probe()
        branch.attempts -= 1
        self.ready.appendleft(branch)

    def _expire_timeouts(self) -> None:
        timeout = self.config.timeout_seconds
        if timeout is None:
            return
        now = time.monotonic()
        expired: list[Attempt] = []
        while (deadline := self._live_deadline()) is not None and deadline <= now:
            _, branch, _ = self.started.popleft()
            assert branch.attempt is not None
            expired.append(branch.attempt)
        if not expired:
            return
        for attempt in self._stop(expired):
            self._run_again(self.running.pop(attempt))  # killed with a timed-out sibling
        for attempt in expired:
            if attempt not in self.running:  # cancelled by fail_fast earlier in this loop
                continue
            branch = self.running.pop(attempt)
            if self.callbacks:
                self.callbacks.fire("on_flow_timeout", branch.task.branch, timeout, branch.attempts)
            error = TimeoutError(f"branch timed out after {timeout:g} s")
            self._attempt_failed(branch, self._failure(branch, error, timeout=True))

    def _stop(self, attempts: list[Attempt]) -> set[Attempt]:
        collateral = self.launcher.stop(attempts, list(self.running))
        return {a for a in collateral if a in self.running and a not in attempts}

    def _attempt_failed(self, branch: _Branch, result: ParallelFlowResult) -> None:
        self._record_breaker(branch, branch.attempts, success=False)
        message = f"{result.error_type}: {result.error}"
        branch.errors.append(message)
        # the breaker state this failure left, and every failed attempt's error
        result = result.evolve(circuit_state=_state(branch), attempt_errors=tuple(branch.errors))
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
            delay = retry.delay_s(branch.attempts, self.rng.random())
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
            heapq.heappush(self.waiting, (time.monotonic() + delay, branch.index))
            return
        self._finish(branch, result)
        if self.config.fail_fast:
            self._cancel_all(f"cancelled: branch {branch.task.branch!r} failed")

    def _release_due_retries(self) -> None:
        now = time.monotonic()
        while self.waiting and self.waiting[0][0] <= now:
            _, index = heapq.heappop(self.waiting)
            self.ready.append(self.branches[index])

    def _cancel_all(self, message: str) -> None:
        """Stop every unfinished branch (abandon threads, kill processes)."""
        reason = FanOutCancelledError(message)
        running = list(self.running)
        if running:
            self.launcher.stop(running, running)
        for branch in self.running.values():  # stopped mid-attempt: no outcome to record
            if branch.breaker is not None and branch.settled < branch.attempts:
                branch.breaker.release_probe()
        leftover = [*self.running.values(), *self.ready]
        leftover += [self.branches[i] for _, i in self.waiting]
        self.running.clear()
        self.ready.clear()
        self.waiting.clear()
        for branch in leftover:
            if branch.result is None:
                self._finish(branch, self._failure(branch, reason))

    def _finish(self, branch: _Branch, result: ParallelFlowResult) -> None:
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
        self, branch: _Branch, error: BaseException, *, timeout: bool = False
    ) -> ParallelFlowResult:
        from tead.engine.task import failure_result

        elapsed = time.monotonic() - (branch.first_started or time.monotonic())
        totals = {**self._totals(branch), "timing_ms": round(elapsed * 1000, 3)}
        return failure_result(branch.task, error, timeout=timeout, **totals)

    def _totals(self, branch: _Branch) -> dict[str, Any]:
        totals: dict[str, Any] = {
            "retry_count": max(branch.attempts - 1, 0),
            "attempt_errors": tuple(branch.errors),
            "circuit_state": _state(branch),
        }
        if branch.attempts > 1 and branch.first_started is not None:  # all attempts' time
            totals["timing_ms"] = round((time.monotonic() - branch.first_started) * 1000, 3)
        return totals

    def _record_breaker(self, branch: _Branch, attempt_no: int, *, success: bool) -> None:
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


def _state(branch: _Branch) -> str | None:
    return str(branch.breaker.state) if branch.breaker is not None else None


def _breaker_for(
    task: BranchTask, config: ParallelConfig, breakers: BreakerRegistry | None
) -> CircuitBreaker | None:
    if config.circuit_breaker is None or breakers is None:
        return None
    return breakers.get(f"{task.workflow.name}:{task.entry}", config.circuit_breaker)


def supervise(
    tasks: Sequence[BranchTask],
    config: ParallelConfig,
    launcher: Launcher,
    hooks: FanOutHooks | None = None,
) -> list[ParallelFlowResult]:
    """Run a fan-out's tasks through `launcher` under `config`, then close the launcher."""
    if not tasks:
        return []
    try:
        return Supervisor(tasks, config, launcher, hooks).run()
    finally:
        launcher.close()
