"""When a fan-out's supervisor must wake up: the deadlines of running attempts and the due
times of scheduled retries, read from the supervisor's clock."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

B = TypeVar("B")
#: whether attempt number n of a branch is still running
Live = Callable[[B, int], bool]


class Timetable(Generic[B]):
    """Started attempts (one timeout for all, so start order is deadline order) and
    retries (by branch index). Attempts are added on any thread, as they start."""

    def __init__(self, timeout: float | None, now: Callable[[], float]) -> None:
        self.timeout = timeout
        self._now = now
        self._started: deque[tuple[float, B, int]] = deque()  # (start, branch, attempt no)
        self._retries: list[tuple[float, int]] = []  # a heap of (due time, branch index)

    def started(self, at: float, branch: B, attempt_no: int) -> None:
        """Attempt `attempt_no` of `branch` started at `at` (its deadline counts from it)."""
        if self.timeout is not None:
            self._started.append((at, branch, attempt_no))

    def retry_at(self, due: float, index: int) -> None:
        """Branch `index` runs again once the clock reaches `due`."""
        heapq.heappush(self._retries, (due, index))

    def next_wake(self, running: bool, live: Live[B]) -> float | None:
        """When to look again: the next deadline or retry. With a timeout and attempts
        running, never later than one timeout from now: an attempt that starts after this
        look has a deadline at least that far away, so seeing it next time is never late."""
        if not self._retries and (self.timeout is None or not running):
            return None  # the common case: wait for an outcome, however long it takes
        times = [self._retries[0][0]] if self._retries else []
        if self.timeout is not None and running:
            times.append(self._now() + self.timeout)
            if (deadline := self._live_deadline(live)) is not None:
                times.append(deadline)
        return min(times)

    def expired(self, live: Live[B]) -> list[B]:
        """The branches whose running attempt is past its deadline (forgotten here)."""
        if self.timeout is None or not self._started:
            return []
        now = self._now()
        expired = []
        while (deadline := self._live_deadline(live)) is not None and deadline <= now:
            expired.append(self._started.popleft()[1])
        return expired

    def due_retries(self) -> list[int]:
        """The branch indexes whose retry is due (forgotten here)."""
        if not self._retries:
            return []
        now = self._now()
        due = []
        while self._retries and self._retries[0][0] <= now:
            due.append(heapq.heappop(self._retries)[1])
        return due

    def clear_retries(self) -> list[int]:
        """Forget every scheduled retry; returns their branch indexes."""
        indexes, self._retries = [index for _, index in self._retries], []
        return indexes

    def _live_deadline(self, live: Live[B]) -> float | None:
        """The first deadline of an attempt still running (forgetting finished ones)."""
        timeout = self.timeout or 0.0
        while self._started:
            started, branch, attempt_no = self._started[0]
            if live(branch, attempt_no):
                return started + timeout
            self._started.popleft()
        return None
