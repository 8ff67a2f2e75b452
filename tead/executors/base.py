"""The executor protocol and the registry of strategies."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from tead.errors import UnknownStrategyError
from tead.parallel.config import ParallelConfig, ParallelFlowResult

# FanOutHooks and ResultCallback live in tead.parallel.hooks now; re-exported from here
from tead.parallel.hooks import FanOutHooks as FanOutHooks  # noqa: PLC0414
from tead.parallel.hooks import ResultCallback as ResultCallback  # noqa: PLC0414

if TYPE_CHECKING:
    from tead.engine.task import BranchTask


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


class Executors:
    """Executors by strategy, created on first use and closed together.

    A run makes its own; a caller that runs many workflows (the daemon, a benchmark) keeps
    one and passes it to every run, so process pools stay warm across runs.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executors: dict[str, ParallelExecutor] = {}

    def get(self, strategy: str) -> ParallelExecutor:
        with self._lock:
            executor = self._executors.get(strategy)
            if executor is None:
                executor = self._executors[strategy] = get_executor(strategy)
            return executor

    def close(self) -> None:
        with self._lock:
            executors, self._executors = list(self._executors.values()), {}
        for executor in executors:
            executor.close()

    def __enter__(self) -> Executors:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
