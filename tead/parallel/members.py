"""The pieces of a parallel group (group.py) that are not its coordination: the seams it
is given (how plain callables run, who is told of progress), a member's record, its
metrics, and waiting for tasks without leaking any."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from types import CoroutineType
from typing import Any, Protocol

from tead.errors import UsageError
from tead.parallel.config import ParallelFlowResult, RetryPolicy
from tead.parallel.task import failure_result


class CallRunner(Protocol):
    """Runs one attempt of a plain callable (on an executor); a failure is a result."""

    async def __call__(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], key: str
    ) -> ParallelFlowResult: ...


class GroupListener(Protocol):
    """Told what a group does, on the event loop's thread (a progress display)."""

    def group_started(self, key: str, strategy: str) -> None: ...

    def member_added(self, key: str, member: str) -> None: ...

    def member_finished(self, key: str, result: ParallelFlowResult) -> None: ...

    def group_finished(
        self, key: str, results: Sequence[ParallelFlowResult], elapsed_s: float
    ) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberTask:
    """A member as `failure_result` sees it."""

    branch: str
    state: dict[str, Any] = field(default_factory=dict)
    include_traceback: bool = False
    breaker_name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupMetrics:
    """What a group did: counts of its members' outcomes, retries, the most members that
    ran at once, and its time from entering the block to leaving it (or now)."""

    total: int
    succeeded: int
    failed: int
    timed_out: int
    cancelled: int
    circuit_open: int
    replayed: int
    retries: int
    max_running: int
    elapsed_s: float


@dataclass(slots=True, kw_only=True)
class Member:
    """One member of a group, as the group keeps it (changed on the loop thread only)."""

    key: str
    name: str
    attempt: Callable[[], Awaitable[ParallelFlowResult]]
    coro: Coroutine[Any, Any, Any] | None = None  # a coroutine object added as is
    task: asyncio.Task[None] | None = None
    first_started: float | None = None
    result: ParallelFlowResult | None = None
    replayed: bool = False


Attempt = Callable[[], Awaitable[ParallelFlowResult]]
#: awaits a member's awaitable into its result
Awaiter = Callable[[str, Awaitable[Any]], Awaitable[ParallelFlowResult]]


def attempt_of(
    key: str,
    item: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    retry: RetryPolicy | None,
    awaited: Awaiter,
    run_call: CallRunner | None,
) -> Attempt:
    """How to make one attempt of a member; UsageError for an item that cannot be one."""
    if type(item) is CoroutineType or inspect.isawaitable(item):
        if args or kwargs or (retry is not None and retry.max_retries > 0):
            close_if_coroutine(item)
            why = "takes no arguments" if args or kwargs else "runs once and cannot be retried"
            raise UsageError(
                f"member {key!r}: an awaitable {why}; add the async function and its "
                "arguments instead: group.add(fetch, url)"
            )
        return lambda: awaited(key, item)
    if not callable(item):
        raise UsageError(f"member {key!r}: {type(item).__name__} is neither awaitable nor callable")
    if inspect.iscoroutinefunction(item) or inspect.iscoroutinefunction(type(item).__call__):
        return lambda: awaited(key, item(*args, **kwargs))
    if run_call is None:
        raise UsageError(f"member {key!r}: this group runs no plain callables (no executor)")
    return lambda: run_call(item, args, kwargs, key)


def check_settings(name: str, max_workers: int, timeout: float | None) -> None:
    """UsageError for a group setting that cannot work."""
    if not name or "/" in name:
        raise UsageError(f"a group name must be non-empty without '/': {name!r}")
    if max_workers < 1:
        raise UsageError(f"max_workers must be at least 1, not {max_workers}")
    if timeout is not None and timeout <= 0:
        raise UsageError(f"a group timeout must be positive, not {timeout}")


def failed_result(
    key: str,
    error: BaseException,
    timing_ms: float,
    include_traceback: bool,
    *,
    timeout: bool = False,
    attempt: bool = False,
) -> ParallelFlowResult:
    """A member's failure; `timeout`: stopped by the group's deadline; `attempt`: the error
    of its one attempt, kept in `attempt_errors` as fan-outs keep it."""
    task = MemberTask(branch=key, include_traceback=include_traceback)
    kept = (f"{type(error).__name__}: {str(error) or type(error).__name__}",)
    extra = {"attempt_errors": kept} if attempt else {}
    return failure_result(task, error, timing_ms=timing_ms, timeout=timeout, **extra)


def value_result(key: str, value: Any, timing_ms: float) -> ParallelFlowResult:
    """A member's success: what it returned (its state too, when that is a dict)."""
    state = value if isinstance(value, dict) else None
    return ParallelFlowResult(
        branch=key, success=True, value=value, state=state, timing_ms=timing_ms
    )


def metrics_of(
    members: Sequence[Member], retries: int, *, max_running: int, elapsed_s: float
) -> GroupMetrics:
    results = [m.result for m in members if m.result is not None]
    return GroupMetrics(
        total=len(members),
        succeeded=sum(r.success for r in results),
        failed=sum(not r.success for r in results),
        timed_out=sum(r.timeout for r in results),
        cancelled=sum(r.error_type == "FanOutCancelledError" for r in results),
        circuit_open=sum(r.error_type == "CircuitOpenError" for r in results),
        replayed=sum(m.replayed for m in members),
        retries=retries,
        max_running=max_running,
        elapsed_s=elapsed_s,
    )


class GroupStream:
    """An async iterator over a group's results in the order they finish."""

    def __init__(self, finished_at: Callable[[int], Awaitable[ParallelFlowResult | None]]) -> None:
        self._finished_at = finished_at
        self._next = 0

    def __aiter__(self) -> GroupStream:
        return self

    async def __anext__(self) -> ParallelFlowResult:
        result = await self._finished_at(self._next)
        if result is None:
            raise StopAsyncIteration
        self._next += 1
        return result


async def drain(futures: Sequence[asyncio.Future[Any]]) -> None:
    """Wait until every future is done, even if this task is cancelled meanwhile (then
    re-raise the cancellation once they are)."""
    pending = {f for f in futures if not f.done()}
    cancelled = False
    while pending:
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError:
            cancelled = True
        pending = {f for f in pending if not f.done()}
    for future in futures:
        if future.done() and not future.cancelled():
            future.exception()  # retrieved: nothing is logged as "never retrieved"
    if cancelled:
        raise asyncio.CancelledError


def close_if_coroutine(item: object) -> None:
    if inspect.iscoroutine(item):
        item.close()


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
