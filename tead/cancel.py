"""Cancelling a run from outside: a token the engine and the fan-out coordinators watch."""

from __future__ import annotations

import threading
from collections.abc import Callable


class CancelToken:
    """Set once, with a reason (`cancelled`, `timed_out`, `interrupted`); listeners are told."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reason: str | None = None
        self._listeners: list[Callable[[], None]] = []

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
