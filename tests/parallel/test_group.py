"""Parallel groups with awaitable members (tead.parallel.group through `tead.parallel`):
results, order, keys, concurrency, failure policy, timeouts, cleanup."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Coroutine
from typing import Any

import pytest

import tead
from tead.errors import GroupError, UsageError
from tests.fakes import FakeAsyncClock, settle


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


async def value_after(value: Any, delay: float = 0.0) -> Any:
    await asyncio.sleep(delay)
    return value


async def boom(message: str = "boom", delay: float = 0.0) -> None:
    await asyncio.sleep(delay)
    raise ValueError(message)


def test_gather_returns_results_in_add_order_not_completion_order() -> None:
    """Members finishing in reverse order still come back in add order, each with its own
    value, key and (for dicts) state; failures are results by default."""

    async def main() -> list[tead.ParallelFlowResult]:
        async with tead.parallel(name="fetch") as group:
            for i in range(4):
                group.add(value_after({"i": i}, (4 - i) * 0.02))
            group.add(boom())
            return await group.gather()

    results = run(main())
    assert [r.branch for r in results] == [f"fetch/{i}" for i in range(5)]
    assert [r.value for r in results[:4]] == [{"i": i} for i in range(4)]
    assert [r["i"] for r in results[:4]] == [0, 1, 2, 3]  # dict access reads the state
    assert all(r.success for r in results[:4])
    failed = results[4]
    assert (failed.success, failed.error_type, failed.error) == (False, "ValueError", "boom")
    assert failed.error_mro[:2] == ("ValueError", "Exception")


def test_gather_dict_by_name_or_index() -> None:
    async def main() -> dict[str, tead.ParallelFlowResult]:
        async with tead.parallel(name="g") as group:
            group.add(value_after(1), name="one")
            group.add(value_after(2))
            return await group.gather_dict()

    results = run(main())
    assert {k: r.value for k, r in results.items()} == {"one": 1, "1": 2}
    assert results["one"].branch == "g/one"


def test_async_functions_take_arguments() -> None:
    async def main() -> list[Any]:
        async with tead.parallel() as group:
            group.add(value_after, "x", delay=0.01)
            return [r.value for r in await group.gather()]

    assert run(main()) == ["x"]


def test_stream_yields_in_completion_order() -> None:
    async def main() -> list[str]:
        async with tead.parallel(name="s") as group:
            for i in range(4):
                group.add(value_after(i, (4 - i) * 0.03))
            return [r.branch async for r in group.stream()]

    assert run(main()) == ["s/3", "s/2", "s/1", "s/0"]


def test_bad_members_and_names_get_one_clear_error() -> None:
    async def main() -> None:
        async with tead.parallel(name="g") as group:
            group.add(value_after(1), name="a")
            with pytest.raises(UsageError, match=r"member name 'a' .* taken"):
                group.add(value_after(2), name="a")
            with pytest.raises(UsageError, match="neither awaitable nor callable"):
                group.add(42)
            await group.gather()
        with pytest.raises(UsageError, match="inside `async with"):
            group.add(value_after(3))

    run(main())
    with pytest.raises(UsageError, match="max_workers"):
        tead.parallel(max_workers=0)
    with pytest.raises(tead.UnknownStrategyError):
        tead.parallel(strategy="nope")


def test_concurrency_limit_is_honoured_under_load() -> None:
    """300 members with max_workers=7: never more than 7 run at once, and 7 do."""
    running = 0
    peak = 0

    async def member(delay: float) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(delay)
        running -= 1

    async def main() -> tead.GroupMetrics:
        rng = random.Random(7)
        async with tead.parallel(max_workers=7) as group:
            for _ in range(300):
                group.add(member(rng.random() * 0.003))
            results = await group.gather()
        assert all(r.success for r in results)
        return group.metrics

    metrics = run(main())
    assert peak == 7
    assert metrics.max_running == 7
    assert (metrics.total, metrics.succeeded) == (300, 300)


def test_fail_fast_cancels_siblings_within_100_ms() -> None:
    """The first failure raises GroupError and every sibling is cancelled (its own cleanup
    ran) within 100 ms of it; siblings' results say they were cancelled."""
    failed_at: list[float] = []
    cancelled_at: list[float] = []

    async def fails() -> None:
        await asyncio.sleep(0.05)
        failed_at.append(time.monotonic())
        raise ConnectionError("down")

    async def hangs() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled_at.append(time.monotonic())

    async def main() -> GroupError:
        async with tead.parallel(name="ff", fail_fast=True, max_workers=10) as group:
            for _ in range(8):
                group.add(hangs())
            group.add(fails(), name="bad")
            with pytest.raises(GroupError) as caught:
                await group.gather()
        return caught.value

    error = run(main())
    assert len(cancelled_at) == 8
    assert max(cancelled_at) - failed_at[0] < 0.1
    assert error.result.branch == "ff/bad"
    assert error.result.error_type == "ConnectionError"
    assert [r.error_type for r in error.results[:8]] == ["FanOutCancelledError"] * 8
    assert "group 'ff' failed fast: member 'ff/bad' failed: ConnectionError: down" in str(error)


def test_fail_fast_raises_at_block_exit_without_gather() -> None:
    async def main() -> None:
        async with tead.parallel(fail_fast=True) as group:
            group.add(boom())
            await asyncio.sleep(0.05)

    with pytest.raises(GroupError, match="ValueError: boom"):
        run(main())


def test_timeout_keeps_finished_results() -> None:
    """At the group's deadline (a fake clock), finished members keep their results and the
    others get timeout results; nothing waits for real time."""
    clock = FakeAsyncClock()

    async def main() -> list[tead.ParallelFlowResult]:
        async def sleeps(seconds: float, value: str) -> str:
            await clock.sleep(seconds)
            return value

        async with tead.parallel(name="t", timeout=5, clock=clock) as group:
            group.add(value_after("now"))
            group.add(sleeps(2, "soon"))
            group.add(sleeps(60, "never"))
            gathering = asyncio.ensure_future(group.gather())
            await settle()
            await clock.advance(2)
            assert not gathering.done()
            await clock.advance(3)
            return await gathering

    results = run(main())
    assert [r.value for r in results] == ["now", "soon", None]
    late = results[2]
    assert (late.success, late.timeout, late.error_type) == (False, True, "TimeoutError")
    assert late.error == "group 't' timed out after 5 s"
    assert late.timing_ms == 5000.0


def test_stream_under_timeout_yields_each_result_as_it_completes() -> None:
    """stream() with a timeout yields a result as soon as it is ready, not at the end."""
    clock = FakeAsyncClock()

    async def main() -> None:
        gate = asyncio.Event()

        async def waits() -> str:
            await gate.wait()
            return "late"

        async with tead.parallel(timeout=10, clock=clock) as group:
            group.add(value_after("early"))
            group.add(waits())
            stream = group.stream()
            first = await asyncio.wait_for(stream.__anext__(), timeout=5)
            assert first.value == "early"
            assert clock.now == 1000.0  # no time passed on the group's clock
            await clock.advance(10)
            second = await stream.__anext__()
            assert second.timeout
            with pytest.raises(StopAsyncIteration):
                await stream.__anext__()

    run(main())


def _only_this_task() -> bool:
    return asyncio.all_tasks() == {asyncio.current_task()}


def test_breaking_out_of_stream_cancels_and_awaits_the_rest() -> None:
    cleaned: list[int] = []

    async def slow(i: int) -> int:
        try:
            await asyncio.sleep(0 if i == 0 else 30)
            return i
        finally:
            cleaned.append(i)

    async def main() -> None:
        async with tead.parallel(max_workers=2) as group:
            for i in range(6):
                group.add(slow(i))
            async for result in group.stream():
                assert result.value == 0
                break
        assert sorted(cleaned) == [0, 1, 2]  # 3..5 never started; 1 and 2 were cancelled
        assert _only_this_task()
        assert [r.error_type for r in group.results()[1:]] == ["FanOutCancelledError"] * 5

    run(main())


def test_an_exception_in_the_body_cancels_and_awaits_members() -> None:
    cleaned: list[str] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            cleaned.append("slow")

    async def body() -> None:
        async with tead.parallel() as group:
            group.add(slow())
            await asyncio.sleep(0.01)
            raise KeyError("body")

    async def main() -> None:
        with pytest.raises(KeyError):
            await body()
        assert cleaned == ["slow"]
        assert _only_this_task()

    run(main())


def test_many_groups_leak_no_tasks_or_threads() -> None:
    """100 concurrent groups of 50 members, some timing out, some failing fast: afterwards
    no task and no thread is left."""
    threads_before = threading.active_count()

    async def one_group(n: int) -> int:
        rng = random.Random(n)
        try:
            async with tead.parallel(
                name=f"g{n}", max_workers=8, timeout=0.2 if n % 3 == 0 else None,
                fail_fast=n % 5 == 0,
            ) as group:  # fmt: skip
                for i in range(50):
                    if n % 5 == 0 and i == 25:
                        group.add(boom(delay=0.01))
                    else:
                        group.add(value_after(i, rng.random() * (0.5 if i % 10 == 0 else 0.005)))
                return len(await group.gather())
        except GroupError as exc:
            return len(exc.results)

    async def main() -> None:
        counts = await asyncio.gather(*(one_group(n) for n in range(100)))
        assert counts == [50] * 100
        await settle()
        assert _only_this_task()

    run(main())
    assert threading.active_count() <= threads_before


def test_nested_groups_get_deterministic_keys_from_contextvars() -> None:
    """Keys are parent/group/name-or-index, carried by each member's own context: an inner
    group's members never see a sibling's key, however they interleave."""

    async def inner(outer_index: int) -> list[str]:
        async def report(delay: float) -> str:
            await asyncio.sleep(delay)
            return tead.current_key()

        async with tead.parallel(name="inner") as group:
            for _ in range(3):
                group.add(report(random.random() * 0.01))
            return [r.value for r in await group.gather()]

    async def main() -> tuple[list[Any], str]:
        async with tead.parallel(name="outer") as group:
            for i in range(4):
                group.add(inner(i))
            results = [r.value for r in await group.gather()]
        async with tead.parallel(name="outer") as again:
            again.add(value_after(0))
            second = (await again.gather())[0].branch
        return results, second

    results, second = run(main())
    assert results == [[f"outer/{i}/inner/{j}" for j in range(3)] for i in range(4)]
    assert second == "outer#2/0"
    assert tead.current_key() == ""


def test_tead_parallel_is_callable_and_still_the_package() -> None:
    """`tead.parallel(...)` makes a group; dotted imports of the package's modules still work."""
    import tead.parallel.config as cfg  # the form that a function named tead.parallel broke

    assert cfg.ParallelFlowResult is tead.ParallelFlowResult
    assert isinstance(tead.parallel(), tead.ParallelGroup)


def test_a_failed_member_keeps_its_error_like_a_fan_out_branch() -> None:
    """A member that failed once has its error in attempt_errors (as fan-out branches do);
    one stopped by the group's deadline has none of its own."""
    clock = FakeAsyncClock()

    async def main() -> list[tead.ParallelFlowResult]:
        async with tead.parallel(timeout=1, clock=clock) as group:
            group.add(boom("bad"))
            group.add(clock.sleep(5))
            await settle()
            await clock.advance(1)
            return await group.gather()

    failed, late = run(main())
    assert failed.attempt_errors == ("ValueError: bad",)
    assert (failed.timeout, late.timeout, late.attempt_errors) == (False, True, ())
