"""Parallel executors: the protocol, the registry and the built-in strategies."""

from tead.executors.base import (
    FanOutHooks,
    ParallelExecutor,
    ResultCallback,
    available_strategies,
    get_executor,
    register_executor,
)

__all__ = [
    "FanOutHooks",
    "ParallelExecutor",
    "ResultCallback",
    "available_strategies",
    "get_executor",
    "register_executor",
]
