"""Cron expressions as crontab(5) reads them: parsing and checking (see tead.schedule for
what they mean in time)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab numbering: sun = 0
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February: leap years
_NUMBER = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldKind:
    name: str
    low: int
    high: int
    names: Mapping[str, int] = field(default_factory=dict)


SECOND = FieldKind(name="second", low=0, high=59)
MINUTE = FieldKind(name="minute", low=0, high=59)
HOUR = FieldKind(name="hour", low=0, high=23)
DAY = FieldKind(name="day-of-month", low=1, high=31)
MONTH = FieldKind(name="month", low=1, high=12, names={n: i for i, n in enumerate(MONTHS, start=1)})
WEEKDAY = FieldKind(name="day-of-week", low=0, high=7, names={n: i for i, n in enumerate(WEEKDAYS)})


@dataclass(frozen=True, slots=True, kw_only=True)
class CronFields:
    """A parsed expression: the selected values of each field (weekdays 0-6, Sunday 0)."""

    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    day_star: bool  # the day-of-month field starts with `*`
    weekday_star: bool
    fixed_time: bool  # neither minute nor hour starts with `*` (cron's DST rule)

    @property
    def either_day(self) -> bool:
        """Both day fields restricted: a day matches if either matches."""
        return not self.day_star and not self.weekday_star

    @property
    def day_in_some_month(self) -> bool:
        """Whether some selected day of month exists in some selected month."""
        return any(day <= _DAYS_IN_MONTH[month - 1] for day in self.days for month in self.months)


class _CronError(ValueError):
    pass


def parse_cron(expr: str) -> CronFields:
    parts = expr.split()
    if len(parts) not in (5, 6):
        raise ValueError(
            f"cron {expr!r} has {len(parts)} fields; expected 5 "
            "(minute hour day-of-month month day-of-week) or 6 (with second first)"
        )
    if len(parts) == 5:
        parts.insert(0, "0")
    second, minute, hour, day, month, weekday = parts
    try:
        fields = CronFields(
            seconds=_parse_field(second, SECOND),
            minutes=_parse_field(minute, MINUTE),
            hours=_parse_field(hour, HOUR),
            days=_parse_field(day, DAY),
            months=_parse_field(month, MONTH),
            weekdays=frozenset(v % 7 for v in _parse_field(weekday, WEEKDAY)),
            day_star=day.startswith("*"),
            weekday_star=weekday.startswith("*"),
            fixed_time=not minute.startswith("*") and not hour.startswith("*"),
        )
    except _CronError as exc:
        raise ValueError(f"cron {expr!r}: {exc}") from None
    if not fields.either_day and not fields.day_in_some_month:
        raise ValueError(
            f"cron {expr!r} never fires: no selected month has day "
            f"{compress(fields.days, DAY)} (the day-of-month field)"
        )
    return fields


def _parse_field(text: str, kind: FieldKind) -> frozenset[int]:
    def fail(reason: str) -> _CronError:
        return _CronError(f"bad {kind.name} field {text!r}: {reason}")

    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise fail("empty list item")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not _NUMBER.fullmatch(step_text):
                raise fail(f"step {step_text!r} is not a number")
            step = int(step_text)
            if step == 0:
                raise fail("a step must be at least 1")
        if base == "*":
            first, last = kind.low, kind.high
        else:
            first_text, dash, last_text = base.partition("-")
            first = _parse_value(first_text, kind, fail)
            if dash:
                last = _parse_value(last_text, kind, fail)
                if first > last:
                    hint = " (Sunday is also 7: write 5-7 for fri-sun)" if kind is WEEKDAY else ""
                    raise fail(f"range {base!r} runs backwards; ranges do not wrap{hint}")
            else:
                last = kind.high if slash else first
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _parse_value(token: str, kind: FieldKind, fail: Callable[[str], _CronError]) -> int:
    if _NUMBER.fullmatch(token):
        value = int(token)
        if not kind.low <= value <= kind.high:
            raise fail(f"{value} is out of range {kind.low}-{kind.high}")
        return value
    if token.lower() in kind.names:
        return kind.names[token.lower()]
    if not token:
        raise fail("a number is missing")
    if kind.names:
        names = list(kind.names)
        raise fail(
            f"{token!r} is neither a number {kind.low}-{kind.high} "
            f"nor a name {names[0]}..{names[-1]}"
        )
    raise fail(f"{token!r} is not a number {kind.low}-{kind.high}")


def compress(values: Iterable[int], kind: FieldKind) -> str:
    """A short APScheduler (and crontab) expression for a set of numbers."""
    ordered = sorted(values)
    if ordered == list(range(kind.low, kind.high + 1)):
        return "*"
    gaps = {b - a for a, b in pairwise(ordered)}
    if len(ordered) > 2 and len(gaps) == 1 and (step := gaps.pop()) > 1:
        return f"{ordered[0]}-{ordered[-1]}/{step}"
    runs: list[str] = []
    start = prev = ordered[0]
    for value in [*ordered[1:], None]:
        if value is not None and value == prev + 1:
            prev = value
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}")
        if value is not None:
            start = prev = value
    return ",".join(runs)


def check_cron(expr: str) -> None:
    """Raise ValueError, naming the bad field, if `expr` is not a valid cron expression."""
    parse_cron(expr)
