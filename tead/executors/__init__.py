"""Parallel executors: the protocol, the registry and the built-in strategies."""

from tead.executors.base import (
    Executors,
    FanOutHooks,
    ParallelExecutor,
    ResultCallback,
    available_strategies,
    get_executor,
    register_executor,
)

__all__ = [
    "Executors",
    "FanOutHooks",
    "ParallelExecutor",
    "ResultCallback",
    "available_strategies",
    "get_executor",
    "register_executor",
]
