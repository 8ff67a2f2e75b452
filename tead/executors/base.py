"""The executor protocol and the registry of strategies."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from tead.errors import UnknownStrategyError
from tead.reliability import ParallelConfig, ParallelFlowResult

if TYPE_CHECKING:
    from tead.breaker import BreakerRegistry, Transition
    from tead.engine import BranchTask

ResultCallback = Callable[[int, ParallelFlowResult], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class FanOutHooks:
    """What the engine gives an executor besides the tasks: where breakers live and whom
    to tell about progress (all called in the calling process)."""

    breakers: BreakerRegistry | None = None
    on_result: ResultCallback | None = None  # (task index, final result)
    on_retry: Callable[[int, int, float, str], None] | None = None  # (index, attempt, delay, error)
    on_transition: Callable[[Transition], None] | None = None  # a circuit breaker moved


@runtime_checkable
class ParallelExecutor(Protocol):
    """Runs the branches of one fan-out; returns one result per task, in task order.

    A branch's own failure is a result, never an exception. `hooks.on_result(index,
    result)` is called in the calling process as each branch finishes.
    """

    def execute(
        self,
        tasks: Sequence[BranchTask],
        config: ParallelConfig,
        hooks: FanOutHooks | None = None,
    ) -> list[ParallelFlowResult]: ...

    def close(self) -> None: ...


ExecutorFactory = Callable[[], ParallelExecutor]

_BUILTIN: dict[str, str] = {
    "thread": "tead.executors.thread:ThreadExecutor",
    "process": "tead.executors.process:ProcessExecutor",
}
_registry: dict[str, ExecutorFactory] = {}
_lock = threading.Lock()


def register_executor(name: str, factory: ExecutorFactory) -> None:
    """Make `factory()` the executor for `parallel_strategy: name`."""
    with _lock:
        _registry[name] = factory


def available_strategies() -> list[str]:
    """Names of every registered strategy, built-in ones first."""
    with _lock:
        return list(dict.fromkeys([*_BUILTIN, *_registry]))


def get_executor(name: str) -> ParallelExecutor:
    """A new executor for the strategy `name`; UnknownStrategyError if there is none."""
    with _lock:
        factory = _registry.get(name)
    if factory is None:
        if name not in _BUILTIN:
            raise UnknownStrategyError(name, available_strategies())
        module, _, attr = _BUILTIN[name].partition(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory()
