"""Parallel groups' policy (retries, breaker, callbacks) and plain callables run on the
strategies' executors (thread, process, a plug-in) through their supervisor."""

from __future__ import annotations

import asyncio
import operator
import os
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

import tead
from tead.engine.seam import FanOutJob, ParallelExecutor
from tead.errors import GroupError, UsageError
from tead.executors.registry import ExecutorDeps
from tead.executors.thread import ThreadExecutor
from tests.fakes import FakeAsyncClock, settle


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


class Flaky:
    """An async callable failing with `error` for its first `failures` calls."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"call {self.calls}")
        return "ok"


def test_retries_wait_the_backoff_on_the_groups_clock() -> None:
    """A member added as a callable is retried with the fan-outs' RetryPolicy: its delays
    (1 s, then 2 s) pass on the fake clock; the result counts retries and keeps errors."""
    clock = FakeAsyncClock()
    flaky = Flaky(2)
    retry = tead.RetryPolicy(max_retries=3, base_delay=1, backoff_multiplier=2, jitter=0)

    async def main() -> tead.ParallelFlowResult:
        async with tead.parallel(retry=retry, clock=clock) as group:
            group.add(flaky)
            gathering = asyncio.ensure_future(group.gather())
            await settle()
            assert (flaky.calls, clock.sleeping) == (1, 1)
            await clock.advance(0.99)
            assert flaky.calls == 1
            await clock.advance(0.01)
            assert flaky.calls == 2
            await clock.advance(2)
            result = (await gathering)[0]
            assert group.metrics.retries == 2
            return result

    result = run(main())
    assert (result.success, result.value, result.retry_count) == (True, "ok", 2)
    assert result.attempt_errors == ("ConnectionError: call 1", "ConnectionError: call 2")
    assert result.timing_ms == 3000.0


def test_retry_on_matches_the_original_error_class() -> None:
    retry = tead.RetryPolicy(max_retries=3, base_delay=0, jitter=0, retry_on=("TimeoutError",))
    flaky = Flaky(1, ValueError)

    async def main() -> tead.ParallelFlowResult:
        async with tead.parallel(retry=retry) as group:
            group.add(flaky)
            return (await group.gather())[0]

    result = run(main())
    assert (result.success, result.error_type, result.retry_count, flaky.calls) == (
        False,
        "ValueError",
        0,
        1,
    )


def test_an_awaitable_cannot_be_retried() -> None:
    async def main() -> None:
        async with tead.parallel(retry=tead.RetryPolicy(max_retries=1)) as group:
            with pytest.raises(UsageError, match=r"add the async function .*group.add\(fetch"):
                group.add(asyncio.sleep(0))

    run(main())


def test_breaker_is_off_unless_configured() -> None:
    """Without circuit_breaker, every failing member runs (nothing is cut short)."""
    calls = 0

    async def fails() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    async def main() -> list[tead.ParallelFlowResult]:
        async with tead.parallel(max_workers=1) as group:
            for _ in range(12):
                group.add(fails())
            return await group.gather()

    results = run(main())
    assert calls == 12
    assert {r.error_type for r in results} == {"ConnectionError"}


def test_breaker_opens_after_the_threshold_and_turns_members_away() -> None:
    calls = 0

    async def fails() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    breaker = tead.CircuitBreakerConfig(failure_threshold=3, reset_timeout=60)

    async def main() -> tuple[list[tead.ParallelFlowResult], tead.GroupMetrics]:
        async with tead.parallel(name="api", max_workers=1, circuit_breaker=breaker) as group:
            for _ in range(6):
                group.add(fails())
            return await group.gather(), group.metrics

    results, metrics = run(main())
    assert calls == 3
    assert [r.error_type for r in results] == ["ConnectionError"] * 3 + ["CircuitOpenError"] * 3
    assert results[3].error == "circuit 'group:api' is open"
    assert results[-1].circuit_state == "open"
    assert metrics.circuit_open == 3


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.lock = threading.Lock()

    def __getattr__(self, hook: str) -> Any:
        if not hook.startswith("on_"):
            raise AttributeError(hook)

        def record(*args: Any) -> None:
            with self.lock:
                self.calls.append((hook, args[0]))

        return record


def test_callbacks_get_the_fan_out_hooks() -> None:
    recorder = Recorder()
    retry = tead.RetryPolicy(max_retries=1, base_delay=0, jitter=0)

    async def main() -> None:
        async with tead.parallel(name="cb", retry=retry, callbacks=[recorder]) as group:
            group.add(Flaky(1), name="f")
            await group.gather()

    run(main())
    assert recorder.calls == [
        ("on_flow_start", "cb/f"),
        ("on_flow_error", "cb/f"),
        ("on_flow_retry", "cb/f"),
        ("on_flow_start", "cb/f"),
        ("on_flow_complete", "cb/f"),
    ]


def raises_value_error() -> None:
    raise ValueError("bad input")


def test_plain_callables_run_on_the_thread_executor() -> None:
    """Sync callables run on other threads (the loop stays free); their errors keep their
    class; a sync and an async member run side by side."""
    loop_thread = threading.get_ident()

    async def main() -> list[tead.ParallelFlowResult]:
        async with tead.parallel(strategy="thread") as group:
            group.add(operator.add, 2, 3)
            group.add(threading.get_ident)
            group.add(raises_value_error)
            group.add(asyncio.sleep, 0.01, result="async")
            return await group.gather()

    results = run(main())
    assert results[0].value == 5
    assert results[1].value != loop_thread
    assert (results[2].error_type, results[2].error) == ("ValueError", "bad input")
    assert results[3].value == "async"


def test_plain_callables_run_in_worker_processes() -> None:
    async def main() -> list[tead.ParallelFlowResult]:
        async with tead.parallel(strategy="process", timeout=60) as group:
            group.add(os.getpid)
            group.add(operator.mul, 6, 7)
            group.add(raises_value_error)
            group.add(lambda: 1)
            return await group.gather()

    results = run(main())
    assert results[0].value != os.getpid()
    assert results[1].value == 42
    assert results[2].error_type == "ValueError"
    assert not results[3].success
    assert results[3].error_type == "PickleValidationError"


def note_pid_then_sleep(path: str) -> None:
    with open(path, "w") as out:
        out.write(str(os.getpid()))
    time.sleep(60)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_fail_fast_kills_a_process_member(tmp_path: Path) -> None:
    """A sibling's failure gives up a process member: its worker is killed, not waited for."""
    note = tmp_path / "pid"

    async def fails() -> None:
        while not note.exists() or not note.read_text():
            await asyncio.sleep(0.01)
        raise RuntimeError("stop")

    async def main() -> float:
        async with tead.parallel(strategy="process", fail_fast=True) as group:
            group.add(note_pid_then_sleep, str(note))
            group.add(fails())
            with pytest.raises(GroupError):
                await group.gather()
            return time.monotonic()

    started = time.monotonic()
    run(main())
    assert time.monotonic() - started < 30
    pid = int(note.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def test_a_plug_in_strategy_runs_plain_callables() -> None:
    """A strategy registered in an Executors registry runs the group's plain callables."""
    jobs: list[int] = []

    class Counting:
        def __init__(self) -> None:
            self.inner = ThreadExecutor()

        def execute(self, job: FanOutJob) -> list[tead.ParallelFlowResult]:
            jobs.append(len(job.tasks))
            return self.inner.execute(job)

        def close(self) -> None:
            self.inner.close()

    def make(deps: ExecutorDeps) -> ParallelExecutor:
        return Counting()

    executors = tead.Executors(plugins=False)
    executors.register("counting", make)

    async def main() -> list[Any]:
        async with tead.parallel(strategy="counting", executors=executors) as group:
            for i in range(3):
                group.add(operator.neg, i)
            return [r.value for r in await group.gather()]

    with executors:
        assert run(main()) == [0, -1, -2]
    assert jobs == [1, 1, 1]


def test_thread_members_leave_no_threads_behind() -> None:
    """Groups of blocking members on threads, one timing out (its thread abandoned until
    its call returns): once the calls have returned, no thread of theirs is left."""
    before = threading.active_count()

    async def one(n: int) -> int:
        async with tead.parallel(name=f"t{n}", max_workers=4, timeout=2 if n else 0.2) as group:
            for i in range(10):
                group.add(time.sleep, 0.5 if n == 0 and i == 0 else 0.01)
            results = await group.gather()
        return sum(r.success for r in results)

    async def main() -> list[int]:
        ok = await asyncio.gather(*(one(n) for n in range(10)))
        assert asyncio.all_tasks() == {asyncio.current_task()}
        return ok

    ok = run(main())
    assert ok[0] < 10
    assert ok[1:] == [10] * 9
    deadline = time.monotonic() + 10
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before


class Concurrency:
    """Counts how many blocking calls run at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0

    def __call__(self, seconds: float) -> None:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        time.sleep(seconds)
        with self.lock:
            self.running -= 1


def test_max_workers_bounds_blocking_members_on_threads() -> None:
    counter = Concurrency()

    async def main() -> None:
        async with tead.parallel(strategy="thread", max_workers=4) as group:
            for _ in range(60):
                group.add(counter, 0.005)
            assert all(r.success for r in await group.gather())

    run(main())
    assert counter.peak == 4


class SyncFlaky:
    """A blocking callable failing with ConnectionError for its first `failures` calls."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"call {self.calls}")
        return "ok"


def test_blocking_members_are_retried_on_their_executor() -> None:
    """Each retry of a plain callable is a new attempt on the strategy's executor."""
    flaky = SyncFlaky(2)
    retry = tead.RetryPolicy(max_retries=2, base_delay=0, jitter=0)

    async def main() -> tead.ParallelFlowResult:
        async with tead.parallel(strategy="thread", retry=retry) as group:
            group.add(flaky)
            return (await group.gather())[0]

    result = run(main())
    assert (result.value, result.retry_count, flaky.calls) == ("ok", 2, 3)
    assert result.attempt_errors == ("ConnectionError: call 1", "ConnectionError: call 2")
