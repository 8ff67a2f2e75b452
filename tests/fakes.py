"""Fakes for the narrow seams tests replace: a clock that moves only when told to (or when
the supervisor would wait), and a launcher whose attempts end as a script says, on that
clock."""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import math
import queue
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tead.parallel.config import ParallelFlowResult
from tead.parallel.launcher import Attempt, Gate, Settle
from tead.parallel.outcomes import Crashed, Finished, Lost, Outcome, TimedOut
from tead.parallel.task import failure_result

_T = TypeVar("_T")


@dataclass(slots=True)
class _Timer:
    at: float
    seq: int
    action: Callable[[], object]
    cancelled: bool = False

    def __lt__(self, other: _Timer) -> bool:
        return (self.at, self.seq) < (other.at, other.seq)

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """A clock that moves only when told to, or when its `wait` would block: then it jumps
    to the next timer (`call_at`) or to the deadline, whichever is first. Callable (the
    time), as circuit breakers want; a `Clock` (tead.parallel.clock) for the supervisor."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now
        self._timers: list[_Timer] = []
        self._seq = itertools.count()

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time on by `seconds`, running the timers that fall due on the way."""
        until = self.now + seconds
        while self._timers and self._timers[0].at <= until:
            self._fire(heapq.heappop(self._timers))
        self.now = until

    def call_at(self, at: float, action: Callable[[], object]) -> _Timer:
        """Run `action` when the clock reaches `at` (in `advance` or `wait`)."""
        timer = _Timer(at, next(self._seq), action)
        heapq.heappush(self._timers, timer)
        return timer

    def wait(self, inbox: queue.SimpleQueue[_T], until: float | None) -> _T | None:
        """The next item of `inbox`; while there is none, jump to the next timer and run
        it; None once the clock reaches `until` first. Never blocks: with no deadline and
        nothing scheduled, the caller would wait forever, which fails the test."""
        while True:
            try:
                return inbox.get_nowait()
            except queue.Empty:
                pass
            if self._timers and (until is None or self._timers[0].at <= until):
                self._fire(heapq.heappop(self._timers))
                continue
            if until is None:
                raise AssertionError("waiting forever: no outcome is coming and no deadline")
            self.now = max(self.now, until)
            return None

    def _fire(self, timer: _Timer) -> None:
        if not timer.cancelled:
            self.now = max(self.now, timer.at)
            timer.action()


@dataclass(frozen=True, slots=True, kw_only=True)
class FakeTask:
    """A branch task as the supervisor sees it, with nothing to run."""

    branch: str
    state: dict[str, Any] = field(default_factory=dict)
    include_traceback: bool = False
    breaker_name: str = "wf:work"


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """What one attempt does: run `after` fake seconds (inf: until stopped), then end as
    `end(task)` says (an exception: the launcher failed)."""

    after: float = 0.0
    end: Callable[[FakeTask], Outcome | BaseException] = lambda task: Lost()


def ok(after: float = 0.0, **state: Any) -> Step:
    """Succeeds after `after` seconds with `state`."""
    return Step(
        after=after,
        end=lambda t: Finished(
            result=ParallelFlowResult(branch=t.branch, success=True, state=state)
        ),
    )


def fails(error: BaseException, after: float = 0.0) -> Step:
    """The branch raises `error` after `after` seconds (as run_branch records it)."""
    return Step(
        after=after,
        end=lambda t: Finished(result=failure_result(t, error, timing_ms=after * 1000)),
    )


def crashes(detail: str, after: float = 0.0) -> Step:
    return Step(after=after, end=lambda t: Crashed(detail=detail))


def lost(after: float = 0.0) -> Step:
    return Step(after=after, end=lambda t: Lost(detail="its worker was killed"))


def times_out(after: float = 0.0) -> Step:
    return Step(after=after, end=lambda t: TimedOut())


def hangs() -> Step:
    """Runs until it is stopped."""
    return Step(after=math.inf)


def launcher_fails(error: BaseException) -> Step:
    """The launcher cannot run it (the attempt's future raises `error`)."""
    return Step(end=lambda t: error)


@dataclass(eq=False, slots=True)
class _Job:
    future: Attempt
    task: FakeTask
    gate: Gate | None
    settle: Settle | None
    timer: _Timer | None = None


class FakeLauncher:
    """Runs each branch's scripted steps (attempt n takes step n, the last one repeats)
    on a FakeClock. With `runs_gate`, it queues attempts for `workers` slots and gates
    each as it starts, like the thread and process launchers; without, it starts every
    attempt at once (so that the supervisor's own cap shows). Its workers take `startup`
    seconds to get ready, from its creation."""

    def __init__(
        self,
        clock: FakeClock,
        script: Mapping[str, Sequence[Step]],
        *,
        workers: int = 1,
        runs_gate: bool = True,
        copies_state: bool = False,
        startup: float = 0.0,
    ) -> None:
        self.clock = clock
        self.script = script
        self.workers = workers
        self.runs_gate = runs_gate
        self.copies_state = copies_state
        self.starts: list[tuple[float, str]] = []  # (time, branch) of attempts that ran
        self.stopped: list[str] = []  # branches whose running attempt was stopped
        self.peak = 0  # the most attempts running at once
        self.prepared = 0
        self.closed = False
        self._waiting: deque[_Job] = deque()
        self._running: dict[Attempt, _Job] = {}
        self._attempts: dict[str, int] = {}
        # workers are ready (attempts can start) from then on: start-up is no attempt's time
        self.ready_at = clock.now + startup
        self._booting: _Timer | None = None

    def launch(
        self, task: FakeTask, *, gate: Gate | None = None, settle: Settle | None = None
    ) -> Attempt:
        job = _Job(Future(), task, gate, settle)
        self._waiting.append(job)
        self._pump()
        return job.future

    def prepare(self) -> None:
        self.prepared += 1

    def stop(self, attempts: Collection[Attempt]) -> None:
        for attempt in attempts:
            waiting = next((j for j in self._waiting if j.future is attempt), None)
            if waiting is not None:
                self._waiting.remove(waiting)
                attempt.cancel()
            elif (job := self._running.pop(attempt, None)) is not None:
                if job.timer is not None:
                    job.timer.cancel()
                self.stopped.append(job.task.branch)
                attempt.set_result(Lost(detail="stopped"))
        self._pump()

    def close(self) -> None:
        self.closed = True

    def _pump(self) -> None:
        if self.clock.now < self.ready_at:
            if self._booting is None:
                self._booting = self.clock.call_at(self.ready_at, self._pump)
            return
        while self._waiting and (not self.runs_gate or len(self._running) < self.workers):
            job = self._waiting.popleft()
            if not job.future.set_running_or_notify_cancel():
                continue
            denied = job.gate() if job.gate is not None else None
            if denied is not None:
                if job.settle is not None:
                    job.settle(denied)
                job.future.set_result(denied)
                continue
            branch = job.task.branch
            steps = self.script[branch]
            number = self._attempts.get(branch, 0)
            self._attempts[branch] = number + 1
            step = steps[min(number, len(steps) - 1)]
            self.starts.append((self.clock.now, branch))
            self._running[job.future] = job
            self.peak = max(self.peak, len(self._running))
            if step.after != math.inf:
                end = functools.partial(self._end, job, step)
                job.timer = self.clock.call_at(self.clock.now + step.after, end)

    def _end(self, job: _Job, step: Step) -> None:
        del self._running[job.future]
        outcome = step.end(job.task)
        if isinstance(outcome, BaseException):
            job.future.set_exception(outcome)
        else:
            if job.settle is not None:
                job.settle(outcome)
            job.future.set_result(outcome)
        self._pump()


class FakeAsyncClock:
    """An `AsyncClock` (tead.parallel.scope) for parallel groups: time moves only when the
    test calls `advance`, which wakes the sleepers whose time has come."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, future))
        await future

    @property
    def sleeping(self) -> int:
        """How many sleeps are waiting."""
        return sum(not future.done() for _, future in self._sleepers)

    async def advance(self, seconds: float) -> None:
        """Move time on, wake the sleepers that are due, and let the loop run them."""
        self.now += seconds
        for due, future in self._sleepers:
            if due <= self.now and not future.done():
                future.set_result(None)
        self._sleepers = [(d, f) for d, f in self._sleepers if not f.done()]
        await settle()


async def settle(rounds: int = 20) -> None:
    """Let every task that can run do so (a few passes of the event loop)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
