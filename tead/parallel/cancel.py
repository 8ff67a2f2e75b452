"""Cancelling a run from outside: a token the engine and the fan-out coordinators watch, and
the count of threads still working for the run (so that its owner knows when a cancelled
run has really stopped)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

_T = TypeVar("_T")


class Activity:
    """How many threads are working for a run; listeners are told when none is left."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._idle: list[Callable[[], object]] = []

    def enter(self) -> None:
        with self._lock:
            self._active += 1

    def exit(self) -> None:
        with self._lock:
            self._active -= 1
            listeners, self._idle = (self._idle, []) if self._active == 0 else ([], self._idle)
        for listener in listeners:
            listener()

    @contextmanager
    def working(self) -> Iterator[None]:
        """Count the calling thread as working for the run while the block runs."""
        self.enter()
        try:
            yield
        finally:
            self.exit()

    def when_idle(self, listener: Callable[[], object]) -> None:
        """Call `listener` once no thread works for the run (at once if none does now)."""
        with self._lock:
            if self._active:
                self._idle.append(listener)
                return
        listener()


class CancelToken:
    """Set once, with a reason (`cancelled`, `timed_out`, `interrupted`); listeners are told.

    `activity` counts the threads working under the token (shared with `child()` tokens).
    """

    def __init__(self, activity: Activity | None = None) -> None:
        self._lock = threading.Lock()
        self._reason: str | None = None
        self._listeners: list[Callable[[], None]] = []
        self.activity = activity or Activity()

    def child(self) -> CancelToken:
        """A token of its own (cancelling it leaves this one alone) sharing the activity."""
        return CancelToken(self.activity)

    @property
    def cancelled(self) -> bool:
        return self._reason is not None

    @property
    def reason(self) -> str | None:
        return self._reason

    def cancel(self, reason: str = "cancelled") -> bool:
        """Cancel; False if it already was (the first reason stays)."""
        with self._lock:
            if self._reason is not None:
                return False
            self._reason = reason
            listeners = list(self._listeners)
        for listener in listeners:
            listener()
        return True

    def unless_cancelled(self, action: Callable[[_T], object], value: _T) -> None:
        """`action(value)` if not cancelled yet, holding the token: `cancel()` waits for it,
        so nothing done this way happens after `cancel()` returns."""
        with self._lock:
            if self._reason is None:
                action(value)

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` on cancellation (at once if already cancelled); returns unsubscribe."""
        with self._lock:
            if self._reason is None:
                self._listeners.append(listener)
                return lambda: self._unsubscribe(listener)
        listener()
        return lambda: None

    def _unsubscribe(self, listener: Callable[[], None]) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)
