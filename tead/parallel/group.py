"""Parallel groups in Python code (CONTRACT §5): `async with` a group, `add` members, then
`gather()`, `gather_dict()` or `stream()`.

Members start as they are added, at most `max_workers` at a time (one semaphore, first come
first served), each in an asyncio task whose context carries its deterministic key
(scope.py). Awaitables run on the loop; plain callables through a `CallRunner` (tead.groups
runs them on a strategy's executor). The fan-outs' policy, with the same values: a failure
is a result; `retry` retries members added as callables (an awaitable runs once); a
`circuit_breaker` (off unless given) guards the group; callbacks get the same hooks. The
`timeout` counts from entering the block: at the deadline unfinished members get timeout
results, finished ones stay. `fail_fast` raises GroupError at the first failure and cancels
the rest. Leaving the block, however, cancels and awaits every member still running.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Awaitable, Callable, Sequence
from types import CoroutineType
from typing import Any

from tead.errors import CircuitOpenError, FanOutCancelledError, GroupError, UsageError
from tead.parallel.breaker import BreakerRegistry, CircuitBreaker, Transition
from tead.parallel.callbacks import CallbackDispatcher
from tead.parallel.config import CircuitBreakerConfig, ParallelFlowResult, RetryPolicy
from tead.parallel.journal import Journal
from tead.parallel.members import (
    CallRunner,
    GroupListener,
    GroupMetrics,
    GroupStream,
    Member,
    attempt_of,
    check_settings,
    close_if_coroutine,
    drain,
    failed_result,
    metrics_of,
    ms,
    value_result,
)
from tead.parallel.scope import AsyncClock, LoopClock, Scope, current_scope, enter_member


class ParallelGroup:
    """A group of members run concurrently under one failure policy (see the module)."""

    def __init__(
        self,
        *,
        name: str = "group",
        max_workers: int = 5,
        fail_fast: bool = False,
        timeout: float | None = None,
        strategy: str = "thread",
        retry: RetryPolicy | None = None,
        circuit_breaker: CircuitBreakerConfig | None = None,
        journal: Journal | None = None,
        callbacks: Sequence[object] = (),
        include_traceback: bool = False,
        listener: GroupListener | None = None,
        breakers: BreakerRegistry | None = None,
        run_call: CallRunner | None = None,
        clock: AsyncClock | None = None,
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        check_settings(name, max_workers, timeout)
        self.name = name
        self.max_workers = max_workers
        self.fail_fast = fail_fast
        self.timeout = timeout
        self.strategy = strategy
        self.retry = retry
        self.circuit_breaker = circuit_breaker
        self.include_traceback = include_traceback
        self.key = ""
        self._journal = journal
        self._listener = listener
        self._breakers = breakers
        self._run_call = run_call
        self._clock = clock or LoopClock()
        self._now = self._clock.monotonic
        self._plain = circuit_breaker is None and not callbacks  # no policy around an attempt
        self._on_exit = on_exit
        self._attempt_of = functools.partial(
            attempt_of, retry=retry, awaited=self._awaited, run_call=run_call
        )
        self._callbacks = CallbackDispatcher(callbacks)
        self._members: list[Member] = []
        self._names: set[str] = set()
        self._slots = asyncio.Semaphore(max_workers)
        self._breaker: CircuitBreaker | None = None
        self._done = 0
        self._settled: list[int] = []  # member indices in the order they finished
        self._wake = asyncio.Event()
        self._streams = 0
        self._stop_error: BaseException | None = None
        self._failed: ParallelFlowResult | None = None
        self._raised = False
        self._entered = False
        self._closed = False
        self._started = 0.0
        self._ended: float | None = None
        self._running = 0
        self._max_running = 0
        self._retries = 0
        self._deadline: asyncio.Task[None] | None = None
        self._side: list[asyncio.Future[None]] = []  # callback calls to await at exit

    async def __aenter__(self) -> ParallelGroup:
        if self._entered:
            raise UsageError(f"group {self.name!r} was already entered; make a new one")
        self._entered = True
        parent = current_scope()
        self.key = parent.child_key(self.name)
        self._breakers = self._breakers or parent.breakers or BreakerRegistry()
        self._journal = self._journal or parent.journal
        self._listener = self._listener or parent.listener
        if self.circuit_breaker is not None:
            self._breaker = self._breakers.get(f"group:{self.key}", self.circuit_breaker)
        self._started = self._clock.monotonic()
        if self._listener is not None:
            self._listener.group_started(self.key, self.strategy)
        if self.timeout is not None:
            self._deadline = asyncio.get_running_loop().create_task(self._expire(self.timeout))
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self._closed = True
        how = "left" if exc_type is None else f"left by {exc_type.__name__}"
        try:
            self._stop(FanOutCancelledError(f"cancelled: group {self.key!r} was {how}"))
            if self._deadline is not None:
                self._deadline.cancel()
                self._side.append(self._deadline)
            await drain([*(m.task for m in self._members if m.task), *self._side])
        finally:
            for member in self._members:
                if member.coro is not None:
                    member.coro.close()  # one cancelled before it began (no-op otherwise)
            self._ended = self._clock.monotonic()
            self._callbacks.close()
            if self._listener is not None:
                self._listener.group_finished(self.key, self.results(), self._elapsed())
            if self._on_exit is not None:
                self._on_exit()
        if exc_type is None and self._failed is not None and not self._raised:
            self._raise_failed()

    def add(
        self, item: Any, /, *args: Any, name: str | None = None, **kwargs: Any
    ) -> ParallelGroup:
        """Add a member: an awaitable (a coroutine), an async function with its arguments,
        or a plain callable with its arguments (run on the group's strategy). `name`
        (default: its index in add order) ends its key and names it in `gather_dict()`."""
        if not self._entered or self._closed:
            close_if_coroutine(item)
            raise UsageError("add members inside `async with tead.parallel(...) as group:`")
        index = len(self._members)
        own = str(index) if name is None else name
        if not own or "/" in own or own in self._names:
            close_if_coroutine(item)
            raise UsageError(
                f"group {self.key!r}: member name {own!r} is empty, has '/' or is taken"
            )
        key = f"{self.key}/{own}"
        attempt = self._attempt_of(key, item, args, kwargs)
        member = Member(key=key, name=own, attempt=attempt)
        if type(item) is CoroutineType:
            member.coro = item
        self._names.add(own)
        self._members.append(member)
        if self._listener is not None:
            self._listener.member_added(self.key, key)
        recorded = self._journal.get(key) if self._journal is not None else None
        if recorded is not None:
            member.replayed = True
            self._settle(member, index, recorded.evolve(branch=key))
        elif self._stop_error is not None:  # too late: the group timed out or failed fast
            self._settle(member, index, self._stopped(member, self._stop_error))
        else:
            member.task = asyncio.get_running_loop().create_task(self._run(index, member))
        return self

    async def _awaited(self, key: str, awaitable: Awaitable[Any]) -> ParallelFlowResult:
        started = self._now()
        try:
            value = await awaitable
        except Exception as exc:
            return self._failure(key, exc, started)
        return value_result(key, value, ms(self._now() - started))

    async def _run(self, index: int, member: Member) -> None:
        scope = Scope(key=member.key, breakers=self._breakers, journal=self._journal)
        enter_member(scope, self._listener)
        coro = member.coro
        try:
            if coro is None or not self._plain:
                result = await self._attempts(member)
            else:  # the hot path: one awaitable, no breaker or callbacks around it
                async with self._slots:
                    member.first_started = started = self._now()
                    self._running += 1
                    self._max_running = max(self._max_running, self._running)
                    try:
                        value = await coro
                    except Exception as exc:
                        result = self._failure(member.key, exc, started, attempt=True)
                    else:
                        result = value_result(member.key, value, ms(self._now() - started))
                    finally:
                        self._running -= 1
        except Exception as exc:  # a CallRunner's own failure: the member's failure
            result = self._failure(member.key, exc, member.first_started)
        self._settle(member, index, result)

    async def _attempts(self, member: Member) -> ParallelFlowResult:
        """Run attempts until one succeeds, the retry policy gives up or the breaker says no."""
        attempts = 0
        errors: list[str] = []
        breaker = self._breaker
        while True:
            async with self._slots:
                if breaker is not None:
                    allowed, change = breaker.allow()
                    self._transition(change)
                    if not allowed:
                        error = CircuitOpenError(f"circuit {breaker.name!r} is open")
                        failed = self._failure(member.key, error, member.first_started)
                        return self._totals(member, failed, attempts, errors)
                if self._callbacks.has("on_flow_start"):
                    await self._fire("on_flow_start", member.key, {})
                member.first_started = member.first_started or self._clock.monotonic()
                attempts += 1
                self._running += 1
                self._max_running = max(self._max_running, self._running)
                try:
                    result = await member.attempt()
                finally:
                    self._running -= 1
            if breaker is not None:
                record = breaker.record_success if result.success else breaker.record_failure
                self._transition(record())
                if self._breakers is not None:
                    self._breakers.save(breaker)
            if result.success:
                return self._totals(member, result, attempts, errors)
            message = f"{result.error_type}: {result.error}"
            errors.append(message)
            if self._callbacks.has("on_flow_error"):
                await self._fire(
                    "on_flow_error", member.key, result.error, result.error_type, attempts
                )
            retry = self.retry
            if retry is None or not retry.retries(attempts, result.error_mro):
                return self._totals(member, result, attempts, errors)
            delay = retry.delay_s(attempts, random.random())
            self._retries += 1
            if self._callbacks.has("on_flow_retry"):
                await self._fire("on_flow_retry", member.key, attempts + 1, delay, message)
            await self._clock.sleep(delay)

    def _totals(
        self, member: Member, result: ParallelFlowResult, attempts: int, errors: list[str]
    ) -> ParallelFlowResult:
        """The final result: attempts, their errors, the breaker's state, time since the first."""
        if attempts == 1 and result.success and self._breaker is None:
            return result  # nothing to add
        first = member.first_started
        timing = result.timing_ms if first is None else ms(self._clock.monotonic() - first)
        return result.evolve(
            retry_count=max(attempts - 1, 0),
            attempt_errors=tuple(errors),
            circuit_state=str(self._breaker.state) if self._breaker is not None else None,
            timing_ms=timing,
        )

    def _settle(self, member: Member, index: int, result: ParallelFlowResult) -> None:
        if member.result is not None:
            return
        member.result = result
        self._done += 1
        self._settled.append(index)
        if result.success and not member.replayed and self._journal is not None:
            self._journal.put(member.key, result)
        if self._listener is not None:
            self._listener.member_finished(self.key, result)
        if self._callbacks.has("on_flow_complete"):
            self._side.append(
                asyncio.ensure_future(self._fire("on_flow_complete", member.key, result))
            )
        if self._streams or self._done == len(self._members):
            self._wake.set()
        if self.fail_fast and not result.success and self._stop_error is None:
            self._failed = result
            self._stop(FanOutCancelledError(f"cancelled: member {member.key!r} failed"))

    def _stop(self, error: BaseException) -> None:
        """Give every unfinished member its result now (`error`) and cancel it."""
        if self._stop_error is None:
            self._stop_error = error
        for index, member in enumerate(self._members):
            if member.result is None:
                self._settle(member, index, self._stopped(member, error))
                if member.task is not None:
                    member.task.cancel()

    def _stopped(self, member: Member, error: BaseException) -> ParallelFlowResult:
        timeout = isinstance(error, TimeoutError)
        return self._failure(member.key, error, member.first_started, timeout=timeout)

    async def _expire(self, after_s: float) -> None:
        await self._clock.sleep(self._started + after_s - self._clock.monotonic())
        late = [m.key for m in self._members if m.result is None]
        for key in late if self._callbacks.has("on_flow_timeout") else ():
            self._side.append(asyncio.ensure_future(self._fire("on_flow_timeout", key, after_s, 1)))
        self._stop(TimeoutError(f"group {self.key!r} timed out after {after_s:g} s"))

    def _failure(
        self, key: str, error: BaseException, started: float | None, **flags: bool
    ) -> ParallelFlowResult:
        now = self._clock.monotonic()
        timing_ms = ms(now - (started or now))
        return failed_result(key, error, timing_ms, self.include_traceback, **flags)

    def _transition(self, change: Transition | None) -> None:
        if change is not None and self._callbacks.has("on_circuit_state_change"):
            args = (change.name, str(change.old), str(change.new))
            self._side.append(asyncio.ensure_future(self._fire("on_circuit_state_change", *args)))

    async def _fire(self, hook: str, *args: Any) -> None:
        """A callback on a helper thread (it may block up to its timeout), not the loop."""
        await asyncio.to_thread(self._callbacks.fire, hook, *args)

    async def _wait_all(self) -> None:
        while self._done < len(self._members):
            self._wake.clear()
            await self._wake.wait()

    def _raise_failed(self) -> None:
        assert self._failed is not None
        self._raised = True
        raise GroupError(self.key, self._failed, self.results())

    def results(self) -> list[ParallelFlowResult]:
        """The results so far, in add order (members still running have none yet)."""
        return [m.result for m in self._members if m.result is not None]

    async def gather(self) -> list[ParallelFlowResult]:
        """Every member's result, in add order (GroupError under fail_fast)."""
        await self._wait_all()
        if self._failed is not None:
            self._raise_failed()
        return self.results()

    async def gather_dict(self) -> dict[str, ParallelFlowResult]:
        """Every member's result by name (its index as a string if it has none)."""
        results = await self.gather()
        return {m.name: r for m, r in zip(self._members, results, strict=True)}

    def stream(self) -> GroupStream:
        """Each member's result as it finishes (`async for r in group.stream()`); raises
        GroupError at a fail_fast failure. Breaking out early leaves the members to the
        block, which cancels and awaits them."""
        return GroupStream(self._finished_at)

    async def _finished_at(self, position: int) -> ParallelFlowResult | None:
        """The `position`-th result to finish (waiting for it), None past the last member."""
        self._streams += 1
        try:
            while position >= len(self._settled):
                if position >= len(self._members):
                    return None
                self._wake.clear()
                await self._wake.wait()
        finally:
            self._streams -= 1
        result = self._members[self._settled[position]].result
        assert result is not None
        if result is self._failed:
            self._raise_failed()
        return result

    @property
    def metrics(self) -> GroupMetrics:
        """Counts of the members' outcomes so far, retries, peak concurrency, elapsed time."""
        return metrics_of(
            self._members, self._retries, max_running=self._max_running, elapsed_s=self._elapsed()
        )

    def _elapsed(self) -> float:
        end = self._ended if self._ended is not None else self._clock.monotonic()
        return round(end - self._started, 6)
