"""The supervisor's clock: what time it is, and how to wait for an attempt's news until a
deadline. Injected, so that tests make time jump instead of sleeping (tests/fakes.py)."""

from __future__ import annotations

import queue
import time
from typing import Protocol, TypeVar

_T = TypeVar("_T")


class Clock(Protocol):
    """Monotonic seconds, and waiting on an inbox that can end at a deadline."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (only differences mean anything)."""
        ...

    def wait(self, inbox: queue.SimpleQueue[_T], until: float | None) -> _T | None:
        """The next item of `inbox`, or None once `monotonic()` reaches `until` first
        (None: wait as long as it takes)."""
        ...


class MonotonicClock:
    """The real clock: `time.monotonic`, and a blocking `get` with a timeout."""

    monotonic = staticmethod(time.monotonic)

    def wait(self, inbox: queue.SimpleQueue[_T], until: float | None) -> _T | None:
        if until is None:
            return inbox.get()
        try:
            return inbox.get(timeout=max(0.0, until - time.monotonic()))
        except queue.Empty:
            return None
