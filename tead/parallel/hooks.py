"""What the engine gives a fan-out besides its tasks: where breakers live, a fresh copy of
a branch's state, the run's cancel token, and whom to tell about progress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tead.parallel.breaker import BreakerRegistry, Transition
from tead.parallel.cancel import CancelToken
from tead.parallel.config import ParallelFlowResult

ResultCallback = Callable[[int, ParallelFlowResult], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class FanOutHooks:
    """What the engine gives an executor besides the tasks: where breakers live and whom
    to tell about progress (all called in the calling process)."""

    breakers: BreakerRegistry | None = None
    on_result: ResultCallback | None = None  # (task index, final result)
    on_retry: Callable[[int, int, float, str], None] | None = None  # (index, attempt, delay, error)
    on_transition: Callable[[Transition], None] | None = None  # a circuit breaker moved
    fresh_state: Callable[[int], dict[str, Any]] | None = None  # a new copy of task i's state
    on_start: Callable[[int], None] | None = None  # task i's attempt starts (any thread)
    cancel: CancelToken | None = None  # when set, stop every branch and return
