"""Cron expressions (CONTRACT §1) on the `cronsim` library: checking, with errors that name
the bad field, and fire times in an IANA zone.

tead reads crontab(5) as cronie does, and so does cronsim, with these adaptations here:

- 6 fields put the second first; the fire times of `S M H DOM MON DOW` are those of the
  5-field `M H DOM MON DOW` (DST rules included) plus each second of `S`. cronsim alone
  treats 6-field expressions differently in daylight-saving changes.
- `N-N/step` is the single value N, as in cronie (cronsim 2.8 reads it as `N/step`,
  that is `N-max/step`).
- cronsim's extensions `L`, `LW`, `W`, `#` are refused: they are not crontab(5).
- a job that is not fixed-time is asked of cronsim only within a stretch of constant UTC
  offset, in that offset: cronsim 2.8 steps hours and minutes in UTC, which loses fire
  times across a 30-minute change (Lord Howe).

tests/test_cron_differential.py checks all of this against a brute-force crontab(5) model.

Daylight saving time follows cronsim (which follows Debian's cron): a *fixed-time* job
(neither minute nor hour starts with `*`) whose wall time falls in a spring-forward gap runs
once, at the first real minute after it (when the clocks jump), and runs only in the first
pass of a repeated autumn hour; any other job is matched against the real wall clock, so
it skips the gap and runs in both passes of a repeated hour.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo

from cronsim import CronSim, CronSimError

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab numbering: sun = 0


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] is the value `low_name + i`
    first_name: int = 0
    not_crontab: str = ""  # characters of cronsim extensions refused here

    def value(self, token: str) -> int | None:
        if token.isdecimal():
            return int(token)
        if token.lower() in self.names:
            return self.names.index(token.lower()) + self.first_name
        return None

    def describe(self) -> str:
        names = f" or {self.names[0]}..{self.names[-1]}" if self.names else ""
        sunday = ", 0 and 7 = Sunday" if self.name == "day-of-week" else ""
        wrap = " (no wrap: 5-7 for fri-sun)" if self.name == "day-of-week" else ""
        return f"({self.low}-{self.high}{names}{sunday}; `*`, N-M{wrap}, /step, comma lists)"

    def reason(self, item: str) -> str:
        """Why `item`, which cronsim refused, is not valid (a best guess)."""
        base, slash, step = item.partition("/")
        first_text, dash, last_text = base.partition("-")
        first, last = self.value(first_text), self.value(last_text)
        if not item:
            return "empty list item"
        if slash and not step.isdecimal():
            return f"step {step!r} is not a number"
        if slash and int(step) == 0:
            return "a step must be at least 1"
        for value in (first, last):
            if value is not None and not self.low <= value <= self.high:
                return f"{value} is out of range {self.low}-{self.high}"
        if dash and first is not None and last is not None and first > last:
            return f"range {base!r} runs backwards; ranges do not wrap"
        return f"{item!r} is not valid"


_FIELDS = (
    _Field("second", 0, 59),
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31, not_crontab="LW"),
    _Field("month", 1, 12, MONTHS, first_name=1),
    _Field("day-of-week", 0, 7, WEEKDAYS, not_crontab="L#"),
)
_RANGE_WITH_STEP = re.compile(r"([0-9A-Za-z]+)-([0-9A-Za-z]+)/([0-9]+)")
_PROBE = datetime(2000, 1, 1, tzinfo=UTC)
_DAY = timedelta(days=1)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class CronExpression:
    """A checked expression: the 5 crontab fields for cronsim, and the seconds it fires at."""

    text: str  # as written, whitespace-normalised
    crontab: str  # `minute hour day-of-month month day-of-week`, as cronsim reads it
    seconds: tuple[int, ...]  # (0,) for 5 fields
    fixed_time: bool  # neither minute nor hour starts with `*` (cron's DST rules)


def parse_cron(expr: str) -> CronExpression:
    """Check `expr`; raise ValueError naming the bad field (message starts with `cron `)."""
    parts = expr.split()
    if len(parts) not in (5, 6):
        raise ValueError(
            f"cron {expr!r} has {len(parts)} fields; expected 5 "
            "(minute hour day-of-month month day-of-week) or 6 (with second first)"
        )
    text = " ".join(parts)
    six = parts if len(parts) == 6 else ["0", *parts]
    six = [_crontab_field(part, kind) for part, kind in zip(six, _FIELDS, strict=True)]
    for index, kind in enumerate(_FIELDS):
        _check_field(expr, six, index, kind)
    try:
        CronSim(" ".join(six), _PROBE)
    except CronSimError:  # each field is fine alone: cronsim checks one combination
        raise ValueError(
            f"cron {expr!r} never fires: no selected month has day {parts[-3]!r} "
            "(the day-of-month field)"
        ) from None
    return CronExpression(
        text=text,
        crontab=" ".join(six[1:]),
        seconds=_seconds(six[0]),
        fixed_time=not six[1].startswith("*") and not six[2].startswith("*"),
    )


def check_cron(expr: str) -> None:
    """Raise ValueError, naming the bad field, if `expr` is not a valid cron expression."""
    parse_cron(expr)


def _crontab_field(part: str, kind: _Field) -> str:
    """`part` with each `N-N/step` item (the value N in crontab) written `N-N`."""
    return ",".join(_crontab_item(item, kind) for item in part.split(","))


def _crontab_item(item: str, kind: _Field) -> str:
    match = _RANGE_WITH_STEP.fullmatch(item)
    if match is None:
        return item
    first, last = kind.value(match[1]), kind.value(match[2])
    return f"{match[1]}-{match[2]}" if first is not None and first == last else item


def _check_field(expr: str, six: list[str], index: int, kind: _Field) -> None:
    """Raise ValueError if field `index` of `six` is invalid even with every other one `*`."""
    text = six[index]
    if refused := sorted({c for c in text.upper() if c in kind.not_crontab}):
        raise ValueError(
            f"cron {expr!r}: bad {kind.name} field {text!r}: "
            f"{' and '.join(refused)} (cronsim extensions) are not crontab(5) " + kind.describe()
        )
    if _valid_alone(text, index):
        return
    bad = next((item for item in text.split(",") if not _valid_alone(item, index)), text)
    raise ValueError(
        f"cron {expr!r}: bad {kind.name} field {text!r}: {kind.reason(bad)} {kind.describe()}"
    )


def _valid_alone(text: str, index: int) -> bool:
    probe = ["0", "*", "*", "*", "*", "*"]
    probe[index] = text
    try:
        CronSim(" ".join(probe), _PROBE)
    except CronSimError:
        return False
    return bool(text)


def _seconds(field: str) -> tuple[int, ...]:
    """The seconds of a (checked) seconds field, in order, as cronsim reads them."""
    found: list[int] = []
    for fire in CronSim(f"{field} * * * * *", _PROBE - timedelta(seconds=1)):
        if fire >= _PROBE + timedelta(minutes=1):
            break
        found.append(fire.second)
    return tuple(found)


def fires_after(cron: CronExpression, zone: tzinfo, moment: datetime) -> Iterator[datetime]:
    """The fire times strictly after `moment` (aware), in UTC, increasing; ends after 50
    years without one (cronsim's horizon)."""
    moment = moment.astimezone(UTC)
    # A minute that starts up to 59 s before `moment` may still have seconds after it.
    minutes = _minutes_after(cron, zone, moment - timedelta(minutes=1))
    last = moment
    for minute in minutes:
        for second in cron.seconds:
            fire = minute + timedelta(seconds=second)
            if fire > last:
                last = fire
                yield fire


def _minutes_after(cron: CronExpression, zone: tzinfo, moment: datetime) -> Iterator[datetime]:
    """The fire minutes of `cron.crontab` after `moment` (UTC), in UTC (not always
    strictly after for a fixed-time job: see `fires_after`)."""
    if cron.fixed_time:
        # cronsim does a fixed-time job's arithmetic on wall times, then applies the DST
        # rules: exact. In a repeated hour it may answer the first pass, before `moment`.
        for local in CronSim(cron.crontab, moment.astimezone(zone)):
            yield local.astimezone(UTC)
        return
    # Other jobs: cronsim 2.8 steps hours and minutes in UTC, which goes wrong across a
    # change of offset by 30 minutes (Lord Howe: `0 21 * * *` answers 21:30). So it is
    # only asked within a stretch of constant offset, in that fixed offset.
    at = moment  # the instant whose offset applies
    while True:
        offset = _offset(at, zone)
        for local in CronSim(cron.crontab, moment.astimezone(timezone(offset))):
            fire = local.astimezone(UTC)
            change = _first_change(zone, at, fire, offset)
            if change is not None:  # search again from the change, in the new offset
                moment, at = change - _MICROSECOND, change
                break
            yield fire
            at = fire
        else:
            return


def _offset(moment: datetime, zone: tzinfo) -> timedelta:
    offset = moment.astimezone(zone).utcoffset()
    if offset is None:  # pragma: no cover - a ZoneInfo always answers
        raise ValueError(f"{zone} gives no UTC offset for {moment}")
    return offset


def _first_change(
    zone: tzinfo, start: datetime, end: datetime, offset: timedelta
) -> datetime | None:
    """The first instant in (start, end] whose offset in `zone` is not `offset`, to the
    second; probes once a day (a zone changes its offset at most once a day)."""
    low = start
    while low < end:
        high = min(low + _DAY, end)
        if _offset(high, zone) != offset:
            low_s, high_s = math.floor(low.timestamp()), math.ceil(high.timestamp())
            while high_s - low_s > 1:
                middle = (low_s + high_s) // 2
                if _offset(datetime.fromtimestamp(middle, UTC), zone) == offset:
                    low_s = middle
                else:
                    high_s = middle
            return max(datetime.fromtimestamp(high_s, UTC), start + _MICROSECOND)
        low = high
    return None
