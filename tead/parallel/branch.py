"""A branch's record in its fan-out, kept by the supervisor: its task, its breaker, its
attempts and errors so far, and its final result."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from tead.parallel.breaker import CircuitBreaker
from tead.parallel.config import ParallelConfig, ParallelFlowResult
from tead.parallel.hooks import FanOutHooks
from tead.parallel.launcher import Attempt
from tead.parallel.task import SupervisedTask

T = TypeVar("T", bound=SupervisedTask)


@dataclass(slots=True)
class Branch(Generic[T]):
    """One task of a fan-out and how far it got (changed by the supervisor only, but for
    `started`, `first_started` and `settled`, which the gates set as attempts start)."""

    index: int
    task: T
    breaker: CircuitBreaker | None
    attempts: int = 0  # attempts started
    errors: list[str] = field(default_factory=list)
    first_started: float | None = None
    started: float | None = None  # the running attempt's start; None until it starts
    attempt: Attempt | None = None  # the latest attempt
    pristine: dict[str, Any] | None = None  # the state before the first attempt, if kept
    settled: int = 0  # the last attempt whose outcome the breaker was told
    lost: int = 0  # attempts lost (through no fault of their own), not counted as attempts
    result: ParallelFlowResult | None = None

    @property
    def circuit_state(self) -> str | None:
        """Its breaker's state now, as a string (None without a breaker)."""
        return str(self.breaker.state) if self.breaker is not None else None


def branches_for(tasks: Sequence[T], config: ParallelConfig, hooks: FanOutHooks) -> list[Branch[T]]:
    """One record per task, with the breaker guarding it (one per breaker name)."""
    registry = hooks.breakers
    if config.circuit_breaker is None or registry is None:
        return [Branch(index=i, task=task, breaker=None) for i, task in enumerate(tasks)]
    breakers: dict[str, CircuitBreaker] = {}
    branches = []
    for i, task in enumerate(tasks):
        name = task.breaker_name
        breaker = breakers.get(name)
        if breaker is None:
            breaker = breakers[name] = registry.get(name, config.circuit_breaker)
        branches.append(Branch(index=i, task=task, breaker=breaker))
    return branches
