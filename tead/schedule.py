"""When `on.schedule` entries fire (CONTRACT §1): the maths only, no clock and no I/O.

The scheduler asks a trigger `next_after(now)` to know when to wake up, and
`fires_between(last_fire, now, limit=...)` to apply the catch-up policy after downtime.
All datetimes in and out are aware; results are in UTC.

Cron expressions follow crontab(5) as Vixie/ISC cron (cronie) reads them:

- 5 fields `minute hour day-of-month month day-of-week`, or 6 with `second` first;
- a field is a comma list of `*`, `N` or `N-M`, each with an optional `/step`; `N/step`
  means `N-max/step` (an extension that cronie and APScheduler share);
- month names `jan`..`dec` and weekday names `sun`..`sat`, in any case, also in ranges;
- day of week: 0 and 7 are Sunday, 1 is Monday ... 6 Saturday, so `*/2` is Sun, Tue, Thu,
  Sat; ranges never wrap (`5-1` and `fri-sun` are errors: write `5-7`);
- when both day fields are restricted (neither *starts* with `*`) a day matches if EITHER
  matches; when one starts with `*` (even `*/2`) a day must match both, as in cron;
- daylight saving time, as cron handles it, in the schedule's zone: a *fixed-time* job
  (neither minute nor hour starts with `*`) whose time falls in a spring-forward gap runs
  once when the clocks jump (02:30 in Europe/Berlin on the last Sunday of March runs at
  03:00 CEST), and runs once in a repeated autumn hour (its first pass); any other job
  skips the gap and runs in both passes of a repeated hour. The zone is assumed to change
  its offset at most once a day.

Interval schedules fire at `anchor + k * every` for k = 1, 2, ..., computed in whole
microseconds so that far fire times do not drift.

The calendar maths of cron is APScheduler 3.11's `CronTrigger` (and `OrTrigger` for the
either-day rule), fed with fields that this module has already parsed and expanded, so
that APScheduler never sees crontab syntax. Its traps, and how they are avoided here:

- `CronTrigger.from_crontab` counts weekday 0 as Monday: not used; weekdays are passed
  by name;
- a `CronTrigger` without `timezone=` uses the machine's zone: always passed;
- fields left out are filled with their minimum when a less significant field is given
  (`CronTrigger(hour=3)` fires at 03:00:00 only): every field is passed explicitly;
- long lists (`0,1,2,...,59`) make each step several times slower: sets are passed
  compressed (`*`, `0-55/5`, runs `1-5,7`);
- `get_next_fire_time` is inclusive of `now` and rounds it up to a whole second; it is
  called with `moment + 1 µs` for "strictly after";
- adding a `timedelta` to a zone-local datetime is wall-clock arithmetic that resets
  `fold` (in a repeated hour, `local + 1 µs` jumps back an hour): all arithmetic here is
  in UTC;
- its handling of a spring-forward gap depends on the path its search takes: a time in
  the gap is either returned with the offset before the jump (02:30 -> 03:30 CEST; in a
  30-minute gap, as at Lord Howe, that hides the real times 02:30-03:00) or silently
  skipped (`40 1-3 * * *` never reaches 02:40); and it runs a fixed time twice in a
  repeated hour. `_next` applies cron's rules on top (see above);
- a day-of-month that no selected month has (`30 2`) makes APScheduler scan up to the
  year 9999: such an expression is rejected, and under the either-day rule that half is
  left out.

APScheduler's `IntervalTrigger` is not used: it counts the anchor itself as a fire time,
is inclusive of `now`, and divides in floating point; the arithmetic below is exact and
also gives the cheap count that `fires_between` needs.
"""

from __future__ import annotations

import math
import zoneinfo
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Protocol

from apscheduler.triggers.combining import OrTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

from tead.cron import (
    DAY,
    HOUR,
    MINUTE,
    MONTH,
    SECOND,
    WEEKDAYS,
    CronFields,
    check_cron,
    compress,
    parse_cron,
)

if TYPE_CHECKING:
    from tead.spec import CronSchedule, IntervalSchedule

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
bound (a year of an every-second schedule is 31.5 million steps of APScheduler)."""

_MICROSECOND = timedelta(microseconds=1)
_ONE_DAY = timedelta(days=1)
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


# --- triggers -------------------------------------------------------------------------------


class _ApsTrigger(Protocol):
    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None: ...


def _aps_cron(fields: CronFields, zone: tzinfo, *, day: bool, weekday: bool) -> _ApsTrigger:
    """An APScheduler CronTrigger; `day`/`weekday` say which day fields restrict it."""
    weekdays = ",".join(WEEKDAYS[d] for d in sorted(fields.weekdays))
    trigger: _ApsTrigger = CronTrigger(
        year="*",
        month=compress(fields.months, MONTH),
        week="*",
        day=compress(fields.days, DAY) if day else "*",
        day_of_week=weekdays if weekday and len(fields.weekdays) < 7 else "*",
        hour=compress(fields.hours, HOUR),
        minute=compress(fields.minutes, MINUTE),
        second=compress(fields.seconds, SECOND),
        timezone=zone,
    )
    return trigger


def _aps_cron_any_day(fields: CronFields, zone: tzinfo) -> _ApsTrigger:
    """The whole expression as one APScheduler trigger, with cron's either-day rule."""
    if not fields.either_day:
        return _aps_cron(fields, zone, day=True, weekday=True)
    if not fields.day_in_some_month:  # `0 0 30 2 mon`: that half would scan up to 9999
        return _aps_cron(fields, zone, day=False, weekday=True)
    trigger: _ApsTrigger = OrTrigger(
        [
            _aps_cron(fields, zone, day=True, weekday=False),
            _aps_cron(fields, zone, day=False, weekday=True),
        ]
    )
    return trigger


def _offset(moment: datetime, zone: tzinfo) -> timedelta:
    offset = moment.astimezone(zone).utcoffset()
    if offset is None:  # pragma: no cover - a ZoneInfo always answers
        raise ValueError(f"{zone} gives no UTC offset for {moment}")
    return offset


def _jumps_forward(
    start: datetime, end: datetime, zone: tzinfo
) -> Iterator[tuple[datetime, timedelta, timedelta]]:
    """The instants in (start, end] when the clocks of `zone` jump forward, each with the
    offsets before and after; assumes at most one change of offset a day."""
    left, before = start, _offset(start, zone)
    while left < end:
        right = min(left + _ONE_DAY, end)
        after = _offset(right, zone)
        if after > before:  # bisect on whole seconds: changes of offset fall on them
            low, high = math.floor(left.timestamp()), math.ceil(right.timestamp())
            while high - low > 1:
                middle = (low + high) // 2
                if _offset(datetime.fromtimestamp(middle, UTC), zone) == after:
                    high = middle
                else:
                    low = middle
            yield datetime.fromtimestamp(high, UTC), before, after
        left, before = right, after


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
    _zone: tzinfo = field(init=False, repr=False, compare=False)
    _aps: _ApsTrigger = field(init=False, repr=False, compare=False)
    _wall: _ApsTrigger = field(init=False, repr=False, compare=False)  # on wall times
    _fixed_time: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = parse_cron(self.expression)
        try:
            zone = zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {self.timezone!r} (use an IANA name such as Europe/Berlin)"
            ) from None
        object.__setattr__(self, "expression", " ".join(self.expression.split()))
        object.__setattr__(self, "_zone", zone)
        object.__setattr__(self, "_aps", _aps_cron_any_day(fields, zone))
        object.__setattr__(self, "_wall", _aps_cron_any_day(fields, UTC))
        object.__setattr__(self, "_fixed_time", fields.fixed_time)

    @property
    def key(self) -> str:
        return f"cron:{self.expression}@{self.timezone}"

    def next_after(self, moment: datetime) -> datetime:
        return self._next(_utc(moment, "moment"))

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
        moment = after
        while count < CRON_COUNT_CAP:
            moment = self._next(moment)
            if moment > until:
                return list(last), count
            last.append(moment)
            count += 1
        return self._last_before(after, until, limit), count

    def _next(self, moment: datetime) -> datetime:
        """The first fire time strictly after `moment` (UTC)."""
        probe = moment
        while True:
            found = self._aps.get_next_fire_time(None, probe + _MICROSECOND)
            if found is None:
                raise ValueError(f"cron {self.expression!r} has no fire time after {moment}")
            fire = found.astimezone(UTC)
            if self._fixed_time:  # a time in a gap runs when the clocks jump
                for jump, before, after in _jumps_forward(probe, fire, self._zone):
                    if self._matches_between(jump + before, jump + after):
                        return jump
            if fire.astimezone(self._zone).replace(tzinfo=None) != found.replace(tzinfo=None):
                # A wall time in a gap, read by APScheduler with the offset before the jump
                # (02:30 -> 03:30 CEST): a wildcard job skips the gap instead.
                gap = next(_jumps_forward(probe, fire, self._zone), None)
                if gap is None or gap[0] <= probe + _MICROSECOND:  # pragma: no cover
                    raise RuntimeError(f"no clock change before {found} in {self.timezone}")
                probe = gap[0] - _MICROSECOND
                continue
            if fire <= probe:  # pragma: no cover - a loop guard against an APScheduler bug
                raise RuntimeError(f"APScheduler went backwards: {fire} after {probe}")
            if not (self._fixed_time and self._second_pass(fire)):
                return fire
            probe = fire

    def _matches_between(self, wall_start: datetime, wall_end: datetime) -> bool:
        """Whether a wall time in [wall_start, wall_end) matches (wall times written as UTC)."""
        found = self._wall.get_next_fire_time(None, wall_start)
        return found is not None and found < wall_end

    def _second_pass(self, fire: datetime) -> bool:
        """Whether `fire` is in the second pass of a repeated local hour (autumn)."""
        local = fire.astimezone(self._zone)
        return local.fold == 1 and local.replace(fold=0).astimezone(UTC) != fire

    def _fires_in(self, start: datetime, end: datetime, most: int) -> list[datetime] | None:
        """All fire times in (start, end], or None if there are more than `most`."""
        found: list[datetime] = []
        moment = self._next(start)
        while moment <= end:
            if len(found) == most:
                return None
            found.append(moment)
            moment = self._next(moment)
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
    from tead.spec import CronSchedule, IntervalSchedule  # tead.spec will import check_cron

    _utc(anchor, "anchor")
    if isinstance(spec, CronSchedule):
        return CronScheduleTrigger(expression=spec.cron, timezone=spec.timezone)
    if isinstance(spec, IntervalSchedule):
        return IntervalScheduleTrigger(every_s=spec.every, anchor=anchor)
    raise TypeError(f"not a schedule: {spec!r}")
