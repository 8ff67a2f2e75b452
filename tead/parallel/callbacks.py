"""Calling user callbacks without letting them change a branch's outcome.

A callback object may define any of these methods (missing ones are skipped):

    on_flow_start(branch, state)                      a branch attempt starts
    on_flow_complete(branch, result)                  a branch's final ParallelFlowResult
    on_flow_error(branch, error, error_type, attempt) an attempt raised
    on_flow_timeout(branch, timeout_seconds, attempt) an attempt ran out of time
    on_flow_retry(branch, attempt, delay_s, error)    attempt number `attempt` is scheduled
    on_circuit_state_change(name, old, new)           a breaker moved (states as strings)

Each call runs on a helper thread and is waited for at most `timeout_s` (5 s by default):
one that raises is logged, one that hangs is left behind, and the branch goes on.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

HOOKS = (
    "on_flow_start",
    "on_flow_complete",
    "on_flow_error",
    "on_flow_timeout",
    "on_flow_retry",
    "on_circuit_state_change",
)

_Call = tuple[Callable[..., Any], tuple[Any, ...], threading.Event]


class CallbackDispatcher:
    """Fires hooks on every callback object, in order, each with a bounded wait."""

    def __init__(self, callbacks: Sequence[object], *, timeout_s: float = 5.0) -> None:
        self.callbacks = tuple(callbacks)
        self.timeout_s = timeout_s
        self._lock = threading.Lock()  # fire() is called from several branch threads
        # One helper thread per callback object, so that one that hangs delays no other.
        self._queues: dict[int, queue.SimpleQueue[_Call | None]] = {}

    def __bool__(self) -> bool:
        return bool(self.callbacks)

    def has(self, hook: str) -> bool:
        """Whether any callback defines `hook` (so that its arguments are worth making)."""
        return any(hasattr(callback, hook) for callback in self.callbacks)

    def fire(self, hook: str, *args: Any) -> None:
        for index, callback in enumerate(self.callbacks):
            method = getattr(callback, hook, None)
            if method is None:
                continue
            done = threading.Event()
            with self._lock:
                calls = self._worker(index)
                calls.put((method, args, done))
            if not done.wait(self.timeout_s):
                log.warning(
                    "callback %s.%s still running after %.1f s; not waiting for it",
                    type(callback).__name__,
                    hook,
                    self.timeout_s,
                )
                with self._lock:
                    if self._queues.get(index) is calls:  # later calls get a fresh thread
                        del self._queues[index]
                        calls.put(None)  # the stuck thread ends once its call returns

    def _worker(self, index: int) -> queue.SimpleQueue[_Call | None]:
        """The helper thread's queue of callback `index` (call with the lock held)."""
        calls = self._queues.get(index)
        if calls is None:
            calls = self._queues[index] = queue.SimpleQueue()
            threading.Thread(
                target=_serve, args=(calls,), name="tead-callbacks", daemon=True
            ).start()
        return calls

    def close(self) -> None:
        with self._lock:
            queues, self._queues = list(self._queues.values()), {}
        for calls in queues:
            calls.put(None)


def _serve(calls: queue.SimpleQueue[_Call | None]) -> None:
    while (item := calls.get()) is not None:
        method, args, done = item
        try:
            method(*args)
        except Exception:
            log.exception("callback %s raised; the branch is not affected", method.__qualname__)
        finally:
            done.set()
