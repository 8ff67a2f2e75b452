"""Circuit breakers with a fake clock: transitions, half-open probes, registry, store."""

from __future__ import annotations

import threading

import pytest

from tead.parallel.breaker import (
    BreakerRegistry,
    BreakerSnapshot,
    CircuitBreaker,
    CircuitState,
    MemoryBreakerStore,
    Transition,
)
from tead.parallel.config import CircuitBreakerConfig
from tests.fakes import FakeClock

CONFIG = CircuitBreakerConfig(failure_threshold=3, reset_timeout=10.0, half_open_max_calls=1)


def test_starts_closed_and_opens_after_threshold_failures_in_a_row() -> None:
    breaker = CircuitBreaker("wf:a", CONFIG, clock=FakeClock())
    assert breaker.state is CircuitState.CLOSED
    assert breaker.record_failure() is None
    breaker.record_success()  # a success resets the count
    assert breaker.record_failure() is None
    assert breaker.record_failure() is None
    assert breaker.record_failure() == Transition("wf:a", CircuitState.CLOSED, CircuitState.OPEN)
    assert breaker.allow() == (False, None)


def test_open_becomes_half_open_after_reset_timeout_and_limits_probes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("wf:a", CONFIG, clock=clock)
    for _ in range(3):
        breaker.record_failure()
    clock.advance(9.9)
    assert breaker.allow() == (False, None)
    clock.advance(0.1)
    assert breaker.state is CircuitState.HALF_OPEN  # as read; the move happens on allow()
    allowed, change = breaker.allow()
    assert allowed
    assert change == Transition("wf:a", CircuitState.OPEN, CircuitState.HALF_OPEN)
    assert breaker.allow() == (False, None)  # half_open_max_calls = 1


def test_half_open_success_closes_and_failure_reopens() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("wf:a", CONFIG, clock=clock)
    for _ in range(3):
        breaker.record_failure()
    clock.advance(10)
    breaker.allow()
    assert breaker.record_success() == Transition(
        "wf:a", CircuitState.HALF_OPEN, CircuitState.CLOSED
    )
    assert breaker.snapshot().failure_count == 0
    for _ in range(3):
        breaker.record_failure()
    clock.advance(10)
    breaker.allow()
    assert breaker.record_failure() == Transition("wf:a", CircuitState.HALF_OPEN, CircuitState.OPEN)
    assert breaker.snapshot().opened_at == clock.now
    assert breaker.allow() == (False, None)


def test_reset_closes_an_open_breaker() -> None:
    breaker = CircuitBreaker("wf:a", CONFIG, clock=FakeClock())
    for _ in range(3):
        breaker.record_failure()
    assert breaker.reset() == Transition("wf:a", CircuitState.OPEN, CircuitState.CLOSED)
    assert breaker.allow() == (True, None)
    assert breaker.reset() is None  # already closed


def test_resetting_a_stored_breaker_keeps_no_copy_with_a_guessed_config() -> None:
    """The daemon resets breakers its runs (in worker processes) use with configs it does
    not hold: the reset is stored, and a state adopted later reads as it was stored (no
    half-open computed from a default reset_timeout, the workflow's is 1 h)."""
    clock = FakeClock()
    store = MemoryBreakerStore()
    store.save(BreakerSnapshot(name="wf:a", state=CircuitState.OPEN, failure_count=1, opened_at=0))
    registry = BreakerRegistry(store, clock=clock)
    assert registry.reset("wf:a") == Transition("wf:a", CircuitState.OPEN, CircuitState.CLOSED)
    assert registry.states()["wf:a"].state is CircuitState.CLOSED
    assert store.load_all()[0].state is CircuitState.CLOSED
    opened = BreakerSnapshot(
        name="wf:a", state=CircuitState.OPEN, failure_count=1, opened_at=clock()
    )
    registry.adopt([opened])
    clock.advance(CircuitBreakerConfig().reset_timeout + 1)
    assert registry.states()["wf:a"].state is CircuitState.OPEN


def test_concurrent_failures_are_all_counted() -> None:
    breaker = CircuitBreaker(
        "wf:a", CircuitBreakerConfig(failure_threshold=10_000), clock=FakeClock()
    )

    def fail() -> None:
        for _ in range(1000):
            breaker.record_failure()

    threads = [threading.Thread(target=fail) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert breaker.snapshot().failure_count == 8000


def test_registry_saves_states_and_a_new_registry_reloads_them() -> None:
    """The storage seam: what one registry saved, the next one (a restart) starts from."""
    clock = FakeClock()
    store = MemoryBreakerStore()
    first = BreakerRegistry(store, clock=clock)
    breaker = first.get("wf:a", CONFIG)
    for _ in range(3):
        breaker.record_failure()
    first.save(breaker)
    second = BreakerRegistry(store, clock=clock)
    assert second.states()["wf:a"].state is CircuitState.OPEN
    assert second.get("wf:a", CONFIG).allow() == (False, None)
    clock.advance(10)
    assert second.get("wf:a", CONFIG).allow()[0] is True


def test_registry_reset_of_a_stored_breaker_and_of_an_unknown_one() -> None:
    store = MemoryBreakerStore()
    store.save(
        BreakerSnapshot(name="wf:b", state=CircuitState.OPEN, failure_count=5, opened_at=1.0)
    )
    registry = BreakerRegistry(store, clock=FakeClock())
    change = registry.reset("wf:b")
    assert change == Transition("wf:b", CircuitState.OPEN, CircuitState.CLOSED)
    assert store.load_all()[0].state is CircuitState.CLOSED
    with pytest.raises(KeyError):
        registry.reset("wf:nope")


def test_registry_keeps_state_when_the_config_changes() -> None:
    registry = BreakerRegistry(clock=FakeClock())
    for _ in range(3):
        registry.get("wf:a", CONFIG).record_failure()
    bigger = CircuitBreakerConfig(failure_threshold=50, reset_timeout=10.0)
    assert registry.get("wf:a", bigger).state is CircuitState.OPEN
