"""When `on.schedule` entries fire (CONTRACT §1): the maths only, no clock and no I/O.

The scheduler asks a trigger `next_after(now)` to know when to wake up, and
`fires_between(last_fire, now, limit=...)` to apply the catch-up policy after downtime.
All datetimes in and out are aware; results are in UTC.

Cron expressions and their fire times come from `tead.spec.cron` (the cronsim library, with
crontab(5) semantics and its daylight-saving rules; see there).

Interval schedules fire at `anchor + k * every` for k = 1, 2, ..., computed exactly in
whole microseconds (far fire times do not drift), which also gives the cheap count that
`fires_between` needs.
"""

from __future__ import annotations

import math
import zoneinfo
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol

from tead.spec.cron import CronExpression, check_cron, fires_after, parse_cron
from tead.spec.models import CronSchedule, IntervalSchedule

__all__ = [
    "CRON_COUNT_CAP",
    "CronScheduleTrigger",
    "IntervalScheduleTrigger",
    "ScheduleTrigger",
    "check_cron",
    "make_trigger",
]

CRON_COUNT_CAP = 10_000
"""`fires_between` stops counting cron fire times here: a count equal to it is a lower
bound (a year of an every-second schedule is 31.5 million fire times)."""

_MICROSECOND = timedelta(microseconds=1)
_LONGEST_WINDOW = timedelta(days=366 * 100)  # keeps the backward search clear of datetime.min


class ScheduleTrigger(Protocol):
    """The fire times of one schedule entry."""

    @property
    def key(self) -> str:
        """A stable identity of the schedule (not of the anchor), to store its last fire."""
        ...

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after `moment` (aware), in UTC."""
        ...

    def fires_between(
        self, after: datetime, until: datetime, *, limit: int
    ) -> tuple[list[datetime], int]:
        """The last `limit` fire times in (after, until], oldest first, and their total."""
        ...


def _utc(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime, got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


def _check_limit(limit: int) -> None:
    if limit < 0:
        raise ValueError(f"limit must be 0 or more, got {limit}")


@dataclass(frozen=True, slots=True, kw_only=True)
class CronScheduleTrigger:
    """A cron expression in an IANA time zone; raises ValueError if either is invalid."""

    expression: str  # stored whitespace-normalised
    timezone: str = "UTC"
    _cron: CronExpression = field(init=False, repr=False, compare=False)
    _zone: tzinfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cron = parse_cron(self.expression)
        try:
            zone = zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {self.timezone!r} (use an IANA name such as Europe/Berlin)"
            ) from None
        object.__setattr__(self, "expression", cron.text)
        object.__setattr__(self, "_cron", cron)
        object.__setattr__(self, "_zone", zone)

    @property
    def key(self) -> str:
        return f"cron:{self.expression}@{self.timezone}"

    @property
    def zone(self) -> tzinfo:
        return self._zone

    def next_after(self, moment: datetime) -> datetime:
        moment = _utc(moment, "moment")
        for fire in self._fires_after(moment):
            return fire
        raise ValueError(f"cron {self.expression!r} has no fire time within 50 years of {moment}")

    def fires_between(
        self, after: datetime, until: datetime, *, limit: int
    ) -> tuple[list[datetime], int]:
        """The last `limit` fire times in (after, until], oldest first, and their count.

        Counting stops at `CRON_COUNT_CAP`: a count equal to it means "at least that many".
        The fire times are the true last ones even then (searched backwards from `until`).
        """
        _check_limit(limit)
        after, until = _utc(after, "after"), _utc(until, "until")
        last: deque[datetime] = deque(maxlen=limit)
        count = 0
        for moment in self._fires_after(after):
            if moment > until:
                return list(last), count
            if count == CRON_COUNT_CAP:
                return self._last_before(after, until, limit), count
            last.append(moment)
            count += 1
        return list(last), count

    def _fires_after(self, moment: datetime) -> Iterator[datetime]:
        return fires_after(self._cron, self._zone, moment)

    def _fires_in(self, start: datetime, end: datetime, most: int) -> list[datetime] | None:
        """All fire times in (start, end], or None if there are more than `most`."""
        found: list[datetime] = []
        for moment in self._fires_after(start):
            if moment > end:
                break
            if len(found) == most:
                return None
            found.append(moment)
        return found

    def _last_before(self, after: datetime, until: datetime, limit: int) -> list[datetime]:
        """The last `limit` fire times in (after, until], by windows searched backwards.

        A window that holds too many fire times is shrunk (to one second at least, which
        holds one), one that holds too few is extended further back, growing: a sparse
        schedule (29 Feb) costs a few dozen steps, a dense one about 4 x `limit`.
        """
        found: list[datetime] = []
        end = until
        span = timedelta(minutes=1)
        while len(found) < limit and end > after:
            need = limit - len(found)
            start = after if span >= end - after else end - span
            window = self._fires_in(start, end, 4 * need + 64)
            if window is None:
                span = max(span / 4, timedelta(seconds=1))
                continue
            found = window[-need:] + found
            end = start
            span = min(span * 4, _LONGEST_WINDOW)
        return found


@dataclass(frozen=True, slots=True, kw_only=True)
class IntervalScheduleTrigger:
    """Fires at `anchor + k * every` for k >= 1 (exact, in whole microseconds)."""

    every_s: float
    anchor: datetime  # aware; stored in UTC

    def __post_init__(self) -> None:
        object.__setattr__(self, "anchor", _utc(self.anchor, "anchor"))
        if not math.isfinite(self.every_s) or round(self.every_s * 1_000_000) < 1:
            raise ValueError(f"an interval must be finite and at least 1 µs, got {self.every_s!r}")

    @property
    def _step_us(self) -> int:
        return round(self.every_s * 1_000_000)

    @property
    def key(self) -> str:
        return f"every:{float(self.every_s)!r}"

    def next_after(self, moment: datetime) -> datetime:
        return self._fire(self._first_index_after(_utc(moment, "moment")))

    def fires_between(
        self, after: datetime, until: datetime, *, limit: int
    ) -> tuple[list[datetime], int]:
        _check_limit(limit)
        first = self._first_index_after(_utc(after, "after"))
        last = self._elapsed_us(_utc(until, "until")) // self._step_us
        count = max(0, last - first + 1)
        start = max(first, last - limit + 1)
        return [self._fire(k) for k in range(start, last + 1)], count

    def _elapsed_us(self, moment: datetime) -> int:
        return (moment - self.anchor) // _MICROSECOND

    def _first_index_after(self, moment: datetime) -> int:
        return max(1, self._elapsed_us(moment) // self._step_us + 1)

    def _fire(self, index: int) -> datetime:
        return (self.anchor + index * self._step_us * _MICROSECOND).astimezone(UTC)


def make_trigger(spec: CronSchedule | IntervalSchedule, *, anchor: datetime) -> ScheduleTrigger:
    """The trigger of one `on.schedule` entry.

    `anchor` (aware) is where an interval counts from; a cron schedule ignores it.
    """
    _utc(anchor, "anchor")
    if isinstance(spec, CronSchedule):
        return CronScheduleTrigger(expression=spec.cron, timezone=spec.timezone)
    if isinstance(spec, IntervalSchedule):
        return IntervalScheduleTrigger(every_s=spec.every, anchor=anchor)
    raise TypeError(f"not a schedule: {spec!r}")
