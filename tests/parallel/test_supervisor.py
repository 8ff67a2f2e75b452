"""The fan-out supervisor's policy on a fake launcher and a fake clock: timeouts, retries
and backoff, breakers, fail_fast, cancel, every outcome type and the worker cap. Time only
jumps: no test sleeps (the real executors are tested in test_executors.py and others)."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from tead import CircuitBreakerConfig, ParallelConfig
from tead.errors import PickleValidationError
from tead.parallel.breaker import BreakerRegistry, CircuitBreaker, CircuitState, Transition
from tead.parallel.cancel import CancelToken
from tead.parallel.config import ParallelFlowResult, RetryPolicy
from tead.parallel.hooks import FanOutHooks
from tead.parallel.supervisor import MAX_LOST, Supervisor, supervise
from tests.fakes import (
    FakeClock,
    FakeLauncher,
    FakeTask,
    Step,
    crashes,
    fails,
    hangs,
    launcher_fails,
    lost,
    ok,
    times_out,
)

T0 = 1_000_000.0  # the fake clock's start


def run(
    script: Mapping[str, Sequence[Step]],
    clock: FakeClock | None = None,
    *,
    workers: int = 4,
    runs_gate: bool = True,
    hooks: FanOutHooks | None = None,
    rng: random.Random | None = None,
    **config: Any,
) -> tuple[list[ParallelFlowResult], FakeLauncher]:
    """Run one fan-out of the scripted branches; its results and the launcher."""
    clock = clock or FakeClock(T0)
    launcher = FakeLauncher(clock, script, workers=workers, runs_gate=runs_gate)
    tasks = [FakeTask(branch=name) for name in script]
    parallel = ParallelConfig(max_workers=workers, **config)
    results = Supervisor(tasks, parallel, launcher, hooks, rng=rng, clock=clock).run()
    return results, launcher


def summary(results: list[ParallelFlowResult]) -> list[tuple[str, bool, str | None]]:
    return [(r.branch, r.success, r.error_type) for r in results]


# --- timeouts -------------------------------------------------------------------------------


def test_a_timeout_fails_the_slow_branch_alone_and_stops_it() -> None:
    """The hung branch fails at its deadline exactly; its sibling keeps its result."""
    clock = FakeClock(T0)
    results, launcher = run({"slow": [hangs()], "fast": [ok(1, x=1)]}, clock, timeout_seconds=5)
    assert summary(results) == [("slow", False, "TimeoutError"), ("fast", True, None)]
    assert results[0].timeout and results[0].error == "branch timed out after 5 s"
    assert results[0].timing_ms == 5000
    assert results[1].state == {"x": 1}
    assert launcher.stopped == ["slow"]
    assert clock.now == T0 + 5


@pytest.mark.parametrize("runs_gate", [True, False])
def test_a_timeout_counts_from_the_real_start_not_from_the_queue(runs_gate: bool) -> None:
    """One worker: b waits 3 s behind a, then runs 3 s of its 4 s timeout."""
    clock = FakeClock(T0)
    results, launcher = run(
        {"a": [ok(3)], "b": [ok(3)]}, clock, workers=1, runs_gate=runs_gate, timeout_seconds=4
    )
    assert summary(results) == [("a", True, None), ("b", True, None)]
    assert launcher.starts == [(T0, "a"), (T0 + 3, "b")]
    assert launcher.peak == 1
    assert clock.now == T0 + 6


def test_a_timeout_counts_from_an_attempt_that_starts_while_the_supervisor_waits() -> None:
    """Workers get ready 2 s after launch, unseen by the supervisor: the deadline is
    still met, 5 s after the real start."""
    clock = FakeClock(T0)
    launcher = FakeLauncher(clock, {"a": [hangs()]}, startup=2)
    config = ParallelConfig(timeout_seconds=5)
    results = Supervisor([FakeTask(branch="a")], config, launcher, clock=clock).run()
    assert results[0].error_type == "TimeoutError"
    assert launcher.starts == [(T0 + 2, "a")]
    assert clock.now == T0 + 7


def test_each_attempt_gets_the_whole_timeout() -> None:
    """A retried branch times out twice: each attempt runs its full 2 s."""
    policy = RetryPolicy(max_retries=1, base_delay=1, jitter=0)
    results, launcher = run({"a": [hangs()]}, timeout_seconds=2, retry=policy)
    assert launcher.starts == [(T0, "a"), (T0 + 3, "a")]
    assert results[0].error_type == "TimeoutError" and results[0].retry_count == 1
    assert results[0].attempt_errors == ("TimeoutError: branch timed out after 2 s",) * 2


def test_an_executor_enforced_timeout_is_a_timeout() -> None:
    """TimedOut from the launcher reads like the supervisor's own timeout."""
    results, _ = run({"a": [times_out(after=2)], "b": [ok()]}, timeout_seconds=2)
    assert summary(results) == [("a", False, "TimeoutError"), ("b", True, None)]
    assert results[0].timeout and results[0].error == "branch timed out after 2 s"


# --- retries --------------------------------------------------------------------------------


def test_retries_wait_the_backoff_delays_exactly() -> None:
    """Delays 0.5, 1, 2 (x2 each time, no jitter) between attempts, then success."""
    delays: list[float] = []
    hooks = FanOutHooks(on_retry=lambda i, attempt, delay, error: delays.append(delay))
    policy = RetryPolicy(max_retries=3, base_delay=0.5, backoff_multiplier=2, jitter=0)
    script = {"a": [fails(ConnectionError("down"))] * 3 + [ok(1)]}
    results, launcher = run(script, hooks=hooks, retry=policy)
    assert delays == [0.5, 1.0, 2.0]
    assert [t - T0 for t, _ in launcher.starts] == [0, 0.5, 1.5, 3.5]
    (result,) = results
    assert result.success and result.retry_count == 3
    assert result.attempt_errors == ("ConnectionError: down",) * 3
    assert result.timing_ms == 4500  # all attempts' time, waits included


def test_jittered_delays_come_from_the_given_rng() -> None:
    policy = RetryPolicy(max_retries=1, base_delay=1, jitter=0.5)
    results, launcher = run(
        {"a": [fails(ValueError("x")), ok()]}, rng=random.Random(7), retry=policy
    )
    expected = policy.delay_s(1, random.Random(7).random())
    assert expected != 1.0
    assert launcher.starts == [(T0, "a"), (T0 + expected, "a")]
    assert results[0].success


@pytest.mark.parametrize(
    ("retry_on", "retried"),
    [(("OSError",), True), (("ConnectionError",), True), (("ValueError",), False), (None, True)],
)
def test_retry_on_matches_a_base_class_by_name(
    retry_on: tuple[str, ...] | None, retried: bool
) -> None:
    """ConnectionRefusedError is an OSError by its MRO, and retried as one."""
    policy = RetryPolicy(max_retries=1, base_delay=0, retry_on=retry_on)
    results, launcher = run({"a": [fails(ConnectionRefusedError("no")), ok()]}, retry=policy)
    assert results[0].success is retried
    assert len(launcher.starts) == (2 if retried else 1)


def test_a_retry_waiting_for_its_delay_holds_no_worker() -> None:
    """One worker: b runs while a waits 10 s for its retry."""
    policy = RetryPolicy(max_retries=1, base_delay=10, jitter=0)
    results, launcher = run(
        {"a": [fails(ValueError("x")), ok()], "b": [ok(1)]}, workers=1, retry=policy
    )
    assert launcher.starts == [(T0, "a"), (T0, "b"), (T0 + 10, "a")]
    assert summary(results) == [("a", True, None), ("b", True, None)]


def test_a_retry_runs_on_a_fresh_copy_of_the_state() -> None:
    """An attempt that changed its state in place leaves the next one the original."""
    seen: list[dict[str, Any]] = []

    def mutate_then_fail(task: FakeTask) -> Any:
        seen.append(dict(task.state))
        task.state["dirty"] = True
        return fails(ValueError("x")).end(task)

    clock = FakeClock(T0)
    launcher = FakeLauncher(clock, {"a": [Step(end=mutate_then_fail)]})
    config = ParallelConfig(retry=RetryPolicy(max_retries=2, base_delay=0))
    Supervisor([FakeTask(branch="a", state={"n": 1})], config, launcher, clock=clock).run()
    assert seen == [{"n": 1}] * 3


# --- outcomes -------------------------------------------------------------------------------


def test_a_crashed_worker_fails_its_branch_with_worker_crashed_error() -> None:
    results, _ = run({"a": [crashes("its worker died (killed by SIGKILL)")], "b": [ok()]})
    assert summary(results) == [("a", False, "WorkerCrashedError"), ("b", True, None)]
    assert results[0].error == "its worker died (killed by SIGKILL)"


def test_a_crash_is_an_attempt_that_can_be_retried() -> None:
    policy = RetryPolicy(max_retries=1, base_delay=0)
    results, _ = run({"a": [crashes("died"), ok()]}, retry=policy)
    assert results[0].success and results[0].retry_count == 1
    assert results[0].attempt_errors == ("WorkerCrashedError: died",)


def test_a_lost_attempt_runs_again_without_counting() -> None:
    """Lost twice, then finished: no retry policy needed, no retry counted."""
    results, launcher = run({"a": [lost(1), lost(1), ok(1)]})
    assert results[0].success and results[0].retry_count == 0
    assert results[0].attempt_errors == ()
    assert [t - T0 for t, _ in launcher.starts] == [0, 1, 2]


def test_a_branch_lost_again_and_again_fails_as_crashed() -> None:
    """A worker or host that keeps going away under a branch: after MAX_LOST losses it
    fails (WorkerCrashedError) instead of running again forever; its sibling is fine."""
    steps = [lost(1)] * MAX_LOST + [ok()]
    results, launcher = run({"a": steps, "b": [ok()]})
    assert not results[0].success and results[0].error_type == "WorkerCrashedError"
    assert results[0].error == f"lost {MAX_LOST} times: its worker was killed"
    assert results[1].success
    assert len([s for s in launcher.starts if s[1] == "a"]) == MAX_LOST


def test_a_lost_half_open_probe_is_handed_back() -> None:
    """The breaker's one probe is lost: the rerun may probe again (not turned away)."""
    clock = FakeClock(T0)
    breakers = BreakerRegistry(clock=clock)
    config = CircuitBreakerConfig(failure_threshold=1, reset_timeout=10)
    breakers.get("wf:work", config).record_failure()
    clock.advance(10)
    hooks = FanOutHooks(breakers=breakers)
    results, launcher = run({"a": [lost(), ok()]}, clock, hooks=hooks, circuit_breaker=config)
    assert results[0].success and len(launcher.starts) == 2
    assert breakers.get("wf:work", config).state is CircuitState.CLOSED


def test_a_launcher_failure_fails_the_branch_with_its_error() -> None:
    """The attempt's future raises (the state could not be sent): the branch fails."""
    error = PickleValidationError("a", "lock", TypeError("cannot pickle"))
    results, _ = run({"a": [launcher_fails(error)], "b": [ok()]})
    assert summary(results) == [("a", False, "PickleValidationError"), ("b", True, None)]


# --- circuit breakers -----------------------------------------------------------------------


def test_a_breaker_opens_turns_branches_away_then_probes_and_closes() -> None:
    """closed -> open after 2 failures; still open at 29 s; a probe at 30 s closes it."""
    clock = FakeClock(T0)
    changes: list[Transition] = []
    breakers = BreakerRegistry(clock=clock)
    hooks = FanOutHooks(breakers=breakers, on_transition=changes.append)
    config = CircuitBreakerConfig(failure_threshold=2, reset_timeout=30)
    failing = {name: [fails(ConnectionError("down"))] for name in ("a", "b", "c")}
    results, launcher = run(failing, clock, workers=1, hooks=hooks, circuit_breaker=config)
    assert [r.error_type for r in results] == [
        "ConnectionError",
        "ConnectionError",
        "CircuitOpenError",
    ]
    assert [r.circuit_state for r in results] == ["closed", "open", "open"]
    assert len(launcher.starts) == 2
    clock.advance(29)
    results, launcher = run({"a": [ok()]}, clock, hooks=hooks, circuit_breaker=config)
    assert summary(results) == [("a", False, "CircuitOpenError")]
    assert launcher.starts == []
    clock.advance(1)
    results, _ = run({"a": [ok()]}, clock, hooks=hooks, circuit_breaker=config)
    assert summary(results) == [("a", True, None)]
    assert results[0].circuit_state == "closed"
    assert [(c.old, c.new) for c in changes] == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]


def test_half_open_lets_one_probe_through_and_turns_the_others_away() -> None:
    clock = FakeClock(T0)
    breakers = BreakerRegistry(clock=clock)
    config = CircuitBreakerConfig(failure_threshold=1, reset_timeout=5, half_open_max_calls=1)
    breakers.get("wf:work", config).record_failure()
    clock.advance(5)
    hooks = FanOutHooks(breakers=breakers)
    results, _ = run(
        {"a": [ok(1)], "b": [ok(1)]}, clock, workers=2, hooks=hooks, circuit_breaker=config
    )
    assert summary(results) == [("a", True, None), ("b", False, "CircuitOpenError")]


def test_a_failed_probe_opens_the_breaker_again() -> None:
    clock = FakeClock(T0)
    breakers = BreakerRegistry(clock=clock)
    config = CircuitBreakerConfig(failure_threshold=1, reset_timeout=5)
    breakers.get("wf:work", config).record_failure()
    clock.advance(5)
    hooks = FanOutHooks(breakers=breakers)
    results, _ = run({"a": [fails(OSError("x"))]}, clock, hooks=hooks, circuit_breaker=config)
    assert results[0].circuit_state == "open"
    assert breakers.get("wf:work", config).snapshot().opened_at == T0 + 5


def test_a_cancelled_half_open_probe_frees_its_slot() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        "w:a", CircuitBreakerConfig(failure_threshold=1, reset_timeout=1), clock=clock
    )
    breaker.record_failure()
    clock.advance(1)
    assert breaker.allow()[0] is True  # the probe
    assert breaker.allow()[0] is False
    breaker.release_probe()  # the probe was cancelled
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.allow()[0] is True


# --- fail_fast, cancel, the worker cap ------------------------------------------------------


def test_fail_fast_stops_the_running_and_never_starts_the_rest() -> None:
    """a fails at 1 s: running b is stopped, queued c never starts."""
    clock = FakeClock(T0)
    script = {"a": [fails(ValueError("no"), after=1)], "b": [hangs()], "c": [ok()]}
    results, launcher = run(script, clock, workers=2, fail_fast=True)
    assert summary(results) == [
        ("a", False, "ValueError"),
        ("b", False, "FanOutCancelledError"),
        ("c", False, "FanOutCancelledError"),
    ]
    assert results[1].error == "cancelled: branch 'a' failed"
    assert launcher.stopped == ["b"]
    assert [b for _, b in launcher.starts] == ["a", "b"]
    assert clock.now == T0 + 1


def test_fail_fast_waits_for_the_last_retry() -> None:
    """A failure that will be retried does not stop the fan-out; the final one does."""
    policy = RetryPolicy(max_retries=1, base_delay=1, jitter=0)
    script = {"a": [fails(ValueError("no"))], "b": [ok(0.5), ok(5)]}
    results, launcher = run(script, workers=2, fail_fast=True, retry=policy)
    assert summary(results) == [("a", False, "ValueError"), ("b", True, None)]
    assert launcher.stopped == []


def test_cancelling_the_run_stops_every_branch_at_once() -> None:
    clock = FakeClock(T0)
    token = CancelToken()
    clock.call_at(T0 + 2, lambda: token.cancel("timed_out"))
    script = {"a": [hangs()], "b": [hangs()], "c": [ok()]}
    results, launcher = run(script, clock, workers=2, hooks=FanOutHooks(cancel=token))
    assert [r.error for r in results] == ["cancelled: the run was timed out"] * 3
    assert sorted(launcher.stopped) == ["a", "b"]
    assert clock.now == T0 + 2


def test_a_launcher_without_a_gate_gets_at_most_max_workers_attempts() -> None:
    """With a timeout, the supervisor itself starts no more than max_workers at once."""
    clock = FakeClock(T0)
    script = {f"b{i}": [ok(1)] for i in range(5)}
    results, launcher = run(script, clock, workers=2, runs_gate=False, timeout_seconds=10)
    assert all(r.success for r in results)
    assert launcher.peak == 2
    assert launcher.prepared == 5
    assert clock.now == T0 + 3


def test_a_gateless_launcher_gets_denials_from_the_supervisor() -> None:
    """Without a gate in the launcher, an open breaker turns the branch away before launch."""
    clock = FakeClock(T0)
    breakers = BreakerRegistry(clock=clock)
    config = CircuitBreakerConfig(failure_threshold=1)
    breakers.get("wf:work", config).record_failure()
    hooks = FanOutHooks(breakers=breakers)
    results, launcher = run(
        {"a": [ok()]}, clock, runs_gate=False, hooks=hooks, circuit_breaker=config
    )
    assert summary(results) == [("a", False, "CircuitOpenError")]
    assert launcher.starts == []


def test_supervise_closes_the_launcher_and_keeps_task_order() -> None:
    clock = FakeClock(T0)
    launcher = FakeLauncher(clock, {"a": [ok(3)], "b": [ok(1)], "c": [ok(2)]}, workers=3)
    tasks = [FakeTask(branch=name) for name in "abc"]
    results = supervise(tasks, ParallelConfig(max_workers=3), launcher, clock=clock)
    assert [r.branch for r in results] == ["a", "b", "c"]
    assert launcher.closed
