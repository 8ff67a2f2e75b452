"""Schedule maths: crontab semantics (on cronsim), DST, catch-up windows, intervals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tead.spec.models import CronSchedule, IntervalSchedule
from tead.spec.schedule import (
    CRON_COUNT_CAP,
    CronScheduleTrigger,
    IntervalScheduleTrigger,
    check_cron,
    make_trigger,
)

BERLIN = ZoneInfo("Europe/Berlin")
ANCHOR = datetime(2024, 6, 1, tzinfo=UTC)
FRIDAY = datetime(2024, 6, 7, tzinfo=UTC)  # 8 June is a Saturday, 10 June a Monday


def utc(year: int, month: int, day: int, *time: int) -> datetime:
    """An aware UTC datetime; `time` is hour, minute, second."""
    hour, minute, second = (*time, 0, 0, 0)[:3]
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def every(duration: str | float) -> IntervalSchedule:
    return IntervalSchedule.model_validate({"every": duration})


def cron(expr: str, timezone: str = "UTC") -> CronScheduleTrigger:
    return CronScheduleTrigger(expression=expr, timezone=timezone)


def fires(expr: str, after: datetime, until: datetime, timezone: str = "UTC") -> list[datetime]:
    found, count = cron(expr, timezone).fires_between(after, until, limit=10_000)
    assert count == len(found)
    return found


def weekdays(moments: list[datetime]) -> set[str]:
    return {m.strftime("%a") for m in moments}


# --- crontab semantics ----------------------------------------------------------------------


@pytest.mark.parametrize("weekday", ["0", "7", "sun", "SUN", "Sun"])
def test_weekday_0_and_7_are_sunday(weekday: str) -> None:
    assert cron(f"0 12 * * {weekday}").next_after(FRIDAY) == utc(2024, 6, 9, 12)


def test_monday_to_friday_skips_the_weekend() -> None:
    assert cron("* * * * 1-5").next_after(utc(2024, 6, 7, 23, 59)) == utc(2024, 6, 10)
    two_weeks = fires("0 9 * * 1-5", FRIDAY, FRIDAY + timedelta(days=14))
    assert len(two_weeks) == 10
    assert weekdays(two_weeks) == {"Mon", "Tue", "Wed", "Thu", "Fri"}


def test_weekday_steps_count_from_sunday_as_in_crontab() -> None:
    week = (FRIDAY, FRIDAY + timedelta(days=7))
    assert weekdays(fires("0 0 * * */2", *week)) == {"Sun", "Tue", "Thu", "Sat"}
    assert weekdays(fires("0 0 * * 1-7/2", *week)) == {"Mon", "Wed", "Fri", "Sun"}
    assert weekdays(fires("0 0 * * mon-fri/2", *week)) == {"Mon", "Wed", "Fri"}


def test_six_fields_put_seconds_first() -> None:
    start = utc(2024, 6, 7, 12)
    assert fires("*/15 * * * * *", start, start + timedelta(minutes=1)) == [
        utc(2024, 6, 7, 12, 0, 15),
        utc(2024, 6, 7, 12, 0, 30),
        utc(2024, 6, 7, 12, 0, 45),
        utc(2024, 6, 7, 12, 1, 0),
    ]
    assert cron("30 0 12 * * *").next_after(start) == utc(2024, 6, 7, 12, 0, 30)


def test_five_fields_fire_on_whole_minutes() -> None:
    moment = utc(2024, 6, 7, 12) + timedelta(milliseconds=500)
    assert cron("* * * * *").next_after(moment) == utc(2024, 6, 7, 12, 1)


def test_both_day_fields_restricted_fire_when_either_matches() -> None:
    """`0 0 13 * 5`: every 13th and every Friday (crontab), not only Friday the 13th."""
    summer = fires("0 0 13 * 5", utc(2024, 6, 1), utc(2024, 10, 1))
    expected = [
        day
        for day in (utc(2024, 6, 1) + timedelta(days=n) for n in range(1, 123))
        if day.day == 13 or day.isoweekday() == 5
    ]
    assert summer == expected
    assert utc(2024, 9, 13) in summer  # a Friday the 13th fires once


def test_an_impossible_day_of_month_leaves_the_weekday_half() -> None:
    """`0 0 30 2 mon`: 30 February never comes, so it fires on Mondays in February."""
    found = fires("0 0 30 2 mon", utc(2024, 1, 1), utc(2024, 12, 31))
    assert found == [utc(2024, 2, d) for d in (5, 12, 19, 26)]


def test_a_day_field_starting_with_star_makes_both_day_fields_required() -> None:
    """Cron's quirk: `*/2` in day-of-month counts as unrestricted, so the days are ANDed."""
    found = fires("0 0 */2 * 5", utc(2024, 6, 1), utc(2024, 9, 1))
    assert found
    assert all(day.day % 2 == 1 and day.isoweekday() == 5 for day in found)


def test_month_and_weekday_names_are_case_insensitive() -> None:
    year = (utc(2024, 1, 1), utc(2025, 1, 1))
    assert fires("0 9 * jan-mar,DEC Mon-fri", *year) == fires("0 9 * 1-3,12 1-5", *year)
    assert fires("0 9 1 JUL *", *year) == [utc(2024, 7, 1, 9)]


CASES: list[tuple[str, Callable[[datetime], bool]]] = [
    ("*/15 9-17 * * 1-5", lambda t: t.minute % 15 == 0 and 9 <= t.hour <= 17 and t.weekday() < 5),
    ("0,5,10,15 * * * *", lambda t: t.minute in {0, 5, 10, 15}),
    ("5/20 1-5,7 * * *", lambda t: t.minute in {5, 25, 45} and t.hour in {1, 2, 3, 4, 5, 7}),
    ("30 6 1,15 * *", lambda t: (t.hour, t.minute) == (6, 30) and t.day in {1, 15}),
    (
        "0 12 10-12 * sat",
        lambda t: t.hour == 12 and t.minute == 0 and (t.day in {10, 11, 12} or t.weekday() == 5),
    ),
    ("59 23 * * 0", lambda t: (t.hour, t.minute) == (23, 59) and t.weekday() == 6),
]


@pytest.mark.parametrize(("expr", "matches"), CASES, ids=[c[0] for c in CASES])
def test_fire_times_match_a_minute_by_minute_scan(
    expr: str, matches: Callable[[datetime], bool]
) -> None:
    start = utc(2024, 6, 3)
    minutes = (start + timedelta(minutes=n) for n in range(1, 14 * 24 * 60 + 1))
    expected = [t for t in minutes if matches(t)]
    assert fires(expr, start, start + timedelta(days=14)) == expected


# --- time zones and daylight saving time -----------------------------------------------------


def test_a_daily_berlin_job_keeps_its_wall_time_across_dst() -> None:
    daily = cron("0 9 * * *", "Europe/Berlin")
    assert daily.next_after(utc(2024, 3, 29, 12)) == utc(2024, 3, 30, 8)  # CET, UTC+1
    assert daily.next_after(utc(2024, 3, 30, 12)) == utc(2024, 3, 31, 7)  # CEST, UTC+2
    assert daily.next_after(utc(2024, 10, 26, 12)) == utc(2024, 10, 27, 8)  # CET again


def test_a_fixed_time_in_the_spring_gap_runs_when_the_clocks_jump() -> None:
    """02:30 does not exist on 31 March 2024 in Berlin: it runs at 03:00 CEST, as cron does."""
    nightly = fires("30 2 * * *", utc(2024, 3, 29, 12), utc(2024, 4, 1, 12), "Europe/Berlin")
    assert nightly == [utc(2024, 3, 30, 1, 30), utc(2024, 3, 31, 1), utc(2024, 4, 1, 0, 30)]
    assert nightly[1].astimezone(BERLIN).strftime("%H:%M %Z") == "03:00 CEST"
    # the same from any moment of that night
    assert cron("30 2 * * *", "Europe/Berlin").next_after(utc(2024, 3, 31, 0, 50)) == nightly[1]


def test_a_fixed_time_runs_once_in_the_repeated_autumn_hour() -> None:
    """02:30 happens twice on 27 October 2024 in Berlin: cron runs it at the first pass."""
    nightly = fires("30 2 * * *", utc(2024, 10, 26, 12), utc(2024, 10, 28, 12), "Europe/Berlin")
    assert nightly == [utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30)]


def test_wildcard_jobs_skip_the_gap_and_run_in_both_passes() -> None:
    spring = fires("*/30 * * * *", utc(2024, 3, 31), utc(2024, 3, 31, 2), "Europe/Berlin")
    autumn = fires("*/30 * * * *", utc(2024, 10, 27), utc(2024, 10, 27, 2), "Europe/Berlin")
    every_half_hour = [timedelta(minutes=30 * n) for n in range(1, 5)]
    assert spring == [utc(2024, 3, 31) + d for d in every_half_hour]
    assert autumn == [utc(2024, 10, 27) + d for d in every_half_hour]
    in_hour_two = "*/20 2 * * *"
    assert fires(in_hour_two, utc(2024, 3, 30, 12), utc(2024, 3, 31, 12), "Europe/Berlin") == []
    assert (
        len(fires(in_hour_two, utc(2024, 10, 26, 12), utc(2024, 10, 27, 12), "Europe/Berlin")) == 6
    )


def test_a_half_hour_gap_keeps_the_real_times_after_it() -> None:
    """Lord Howe jumps 02:00 -> 02:30: 02:12 runs at the jump, and 02:39 still runs."""
    found = fires(
        "12,39 2 * * *", utc(2024, 10, 5, 12), utc(2024, 10, 6, 12), "Australia/Lord_Howe"
    )
    assert found == [utc(2024, 10, 5, 15, 30), utc(2024, 10, 5, 15, 39)]


def test_berlin_midnight_fires_every_day_of_2025() -> None:
    """Issue 7: `0 0 * * *` in Berlin fired 364 times in 2025, losing the day after the
    spring-forward change."""
    found = fires("0 0 * * *", utc(2024, 12, 31, 12), utc(2025, 12, 31, 12), "Europe/Berlin")
    assert len(found) == 365
    assert [m.astimezone(BERLIN).strftime("%H:%M") for m in found] == ["00:00"] * 365


def test_next_midnight_after_the_spring_forward_day_is_the_next_day() -> None:
    """Next after 2025-03-30T00:00+01:00 is 2025-03-31T00:00+02:00 (not 1 April)."""
    moment = datetime.fromisoformat("2025-03-30T00:00+01:00")
    found = cron("0 0 * * *", "Europe/Berlin").next_after(moment)
    assert found == datetime.fromisoformat("2025-03-31T00:00+02:00")


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
def test_monthly_job_keeps_the_first_of_april(zone: str) -> None:
    """`0 0 1 * *` skipped 1 April 2025 in Berlin and New York (after a DST change)."""
    tz = ZoneInfo(zone)
    start = datetime(2025, 1, 1, tzinfo=tz) - timedelta(minutes=1)
    found = fires("0 0 1 * *", start, datetime(2025, 12, 31, tzinfo=tz), zone)
    assert [m.astimezone(tz).replace(tzinfo=None) for m in found] == [
        datetime(2025, month, 1) for month in range(1, 13)
    ]


def test_a_range_of_one_with_a_step_is_that_one_value() -> None:
    """crontab(5): `12-12/5` is hour 12 only (cronsim alone reads it as 12, 17, 22)."""
    day = (utc(2024, 6, 7), utc(2024, 6, 8))
    assert fires("0 12-12/5 * * *", *day) == [utc(2024, 6, 7, 12)]
    assert fires("0 0 * jun-jun/3 *", *day) == [utc(2024, 6, 8)]


def test_six_fields_keep_the_five_field_dst_rules() -> None:
    """A seconds field does not change the DST rules: `15 30 2 * * *` runs at 03:00:15 on
    the spring-forward day and once on the autumn one (cronsim alone skips and repeats)."""
    spring = fires("15 30 2 * * *", utc(2024, 3, 30, 12), utc(2024, 3, 31, 12), "Europe/Berlin")
    assert spring == [utc(2024, 3, 31, 1, 0, 15)]
    autumn = fires("15 30 2 * * *", utc(2024, 10, 26, 12), utc(2024, 10, 27, 12), "Europe/Berlin")
    assert autumn == [utc(2024, 10, 27, 0, 30, 15)]


def test_a_fixed_time_job_asked_in_the_second_pass_does_not_go_back() -> None:
    """From 02:45 of the second pass of a repeated hour, the next `30 2` is the next day's."""
    second_pass = utc(2024, 10, 27, 1, 45)  # 02:45 CET, after 02:45 CEST
    assert cron("30 2 * * *", "Europe/Berlin").next_after(second_pass) == utc(2024, 10, 28, 1, 30)


# --- next_after and fires_between -----------------------------------------------------------


def test_next_after_is_strictly_after() -> None:
    hourly = cron("0 * * * *")
    on_a_fire = utc(2024, 6, 7, 12)
    assert hourly.next_after(on_a_fire) == utc(2024, 6, 7, 13)
    assert hourly.next_after(on_a_fire - timedelta(microseconds=1)) == on_a_fire
    interval = IntervalScheduleTrigger(every_s=60.0, anchor=on_a_fire)
    assert interval.next_after(on_a_fire + timedelta(minutes=1)) == on_a_fire + timedelta(minutes=2)


def test_any_aware_datetime_is_accepted_and_utc_comes_back() -> None:
    moment = datetime(2024, 6, 7, 14, 0, tzinfo=BERLIN)  # 12:00 UTC
    for trigger in (cron("0 * * * *"), IntervalScheduleTrigger(every_s=3600, anchor=moment)):
        result = trigger.next_after(moment)
        assert result == utc(2024, 6, 7, 13)
        assert result.tzinfo is UTC


def test_naive_datetimes_are_rejected() -> None:
    naive = datetime(2024, 6, 7, 12)
    with pytest.raises(ValueError, match="moment must be an aware datetime"):
        cron("* * * * *").next_after(naive)
    with pytest.raises(ValueError, match="after must be an aware datetime"):
        cron("* * * * *").fires_between(naive, FRIDAY, limit=1)
    with pytest.raises(ValueError, match="anchor must be an aware datetime"):
        make_trigger(every(30), anchor=naive)


def test_fires_between_is_open_after_closed_until_and_keeps_the_last() -> None:
    day = (utc(2024, 6, 7), utc(2024, 6, 8))
    hourly = cron("0 * * * *")
    assert hourly.fires_between(*day, limit=3) == (
        [utc(2024, 6, 7, 22), utc(2024, 6, 7, 23), utc(2024, 6, 8)],
        24,
    )
    assert hourly.fires_between(*day, limit=0) == ([], 24)
    assert hourly.fires_between(day[1], day[0], limit=5) == ([], 0)
    with pytest.raises(ValueError, match="limit must be 0 or more"):
        hourly.fires_between(*day, limit=-1)


def test_interval_count_over_a_big_window_is_arithmetic() -> None:
    every_second = IntervalScheduleTrigger(every_s=1.0, anchor=ANCHOR)
    until = ANCHOR + timedelta(days=30)
    last, count = every_second.fires_between(ANCHOR, until, limit=2)
    assert count == 30 * 86_400
    assert last == [until - timedelta(seconds=1), until]
    _, year = every_second.fires_between(ANCHOR, ANCHOR + timedelta(days=366), limit=1)
    assert year == 366 * 86_400


def test_cron_count_stops_at_the_cap_but_returns_the_true_last_fires() -> None:
    """Counting a month of every-second fires stops at the cap (a lower bound); the fire
    times returned are still the last ones before `until`, not the cap-th."""
    until = ANCHOR + timedelta(days=30)
    last, count = cron("* * * * * *").fires_between(ANCHOR, until, limit=3)
    assert count == CRON_COUNT_CAP
    assert last == [until - timedelta(seconds=2), until - timedelta(seconds=1), until]
    # dense in January only: the last fires lie eleven months before `until`
    january, count = cron("* * * * 1 *").fires_between(utc(2024, 1, 1), utc(2024, 12, 31), limit=2)
    assert count == CRON_COUNT_CAP
    assert january == [utc(2024, 1, 31, 23, 59, 58), utc(2024, 1, 31, 23, 59, 59)]


def test_sparse_cron_schedules_are_cheap() -> None:
    leap_days, count = cron("0 0 29 2 *").fires_between(utc(2024, 1, 1), utc(2054, 1, 1), limit=2)
    assert count == 8
    assert leap_days == [utc(2048, 2, 29), utc(2052, 2, 29)]


def test_interval_fires_count_from_the_anchor() -> None:
    anchor = utc(2024, 6, 7, 10) + timedelta(milliseconds=250)
    every = IntervalScheduleTrigger(every_s=30.0, anchor=anchor)
    assert every.next_after(anchor) == anchor + timedelta(seconds=30)  # k >= 1
    assert every.next_after(anchor - timedelta(days=1)) == anchor + timedelta(seconds=30)
    assert every.next_after(anchor + timedelta(seconds=45)) == anchor + timedelta(seconds=60)
    found, count = every.fires_between(
        anchor - timedelta(hours=1), anchor + timedelta(seconds=95), limit=10
    )
    assert found == [anchor + timedelta(seconds=s) for s in (30, 60, 90)]
    assert count == 3


def test_interval_fires_do_not_drift() -> None:
    tenth = IntervalScheduleTrigger(every_s=0.1, anchor=ANCHOR)
    far = ANCHOR + timedelta(seconds=1_000_000)
    assert tenth.next_after(far - timedelta(microseconds=1)) == far
    assert tenth.fires_between(ANCHOR, far, limit=1) == ([far], 10_000_000)


def test_an_interval_must_be_positive_and_finite() -> None:
    for seconds in (0.0, 1e-9, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="an interval must be finite and at least 1 µs"):
            IntervalScheduleTrigger(every_s=seconds, anchor=ANCHOR)


# --- make_trigger and keys ------------------------------------------------------------------


def test_make_trigger_builds_from_the_spec_models() -> None:
    trigger = make_trigger(
        CronSchedule(cron="*/5 * * * *", timezone="Europe/Berlin"), anchor=ANCHOR
    )
    assert isinstance(trigger, CronScheduleTrigger)
    assert trigger.next_after(ANCHOR) == ANCHOR + timedelta(minutes=5)
    interval = make_trigger(every("30s"), anchor=ANCHOR)
    assert interval.next_after(ANCHOR) == ANCHOR + timedelta(seconds=30)


def test_keys_name_the_schedule_not_the_anchor() -> None:
    later = ANCHOR + timedelta(days=3, seconds=7)
    berlin = CronSchedule(cron=" */5  * * * * ", timezone="Europe/Berlin")
    assert make_trigger(berlin, anchor=ANCHOR).key == "cron:*/5 * * * *@Europe/Berlin"
    assert make_trigger(berlin, anchor=later).key == "cron:*/5 * * * *@Europe/Berlin"
    assert make_trigger(CronSchedule(cron="0 0 * * *"), anchor=ANCHOR).key == "cron:0 0 * * *@UTC"
    assert make_trigger(every("30s"), anchor=ANCHOR).key == "every:30.0"
    assert make_trigger(every(30), anchor=later).key == "every:30.0"
    assert make_trigger(every("500ms"), anchor=ANCHOR).key == "every:0.5"
    assert cron("0 0 * * *") == cron("0  0 * * *")


# --- invalid expressions --------------------------------------------------------------------

INVALID = [
    ("* * * *", "has 4 fields; expected 5 (minute hour day-of-month month day-of-week)"),
    ("* * * * * * *", "has 7 fields"),
    ("", "has 0 fields"),
    ("60 * * * *", "bad minute field '60': 60 is out of range 0-59"),
    ("* 24 * * *", "bad hour field '24': 24 is out of range 0-23"),
    ("* * 0 * *", "bad day-of-month field '0': 0 is out of range 1-31"),
    ("* * * 13 *", "bad month field '13': 13 is out of range 1-12"),
    ("* * * * 8", "bad day-of-week field '8': 8 is out of range 0-7"),
    ("60 * * * * *", "bad second field '60'"),
    ("* * * * 5-1", "bad day-of-week field '5-1': range '5-1' runs backwards; ranges do not wrap"),
    (
        "* * * * fri-sun",
        "range 'fri-sun' runs backwards; ranges do not wrap (0-7 or sun..sat, 0 "
        "and 7 = Sunday; `*`, N-M (no wrap: 5-7 for fri-sun)",
    ),
    ("30-10 * * * *", "bad minute field '30-10': range '30-10' runs backwards"),
    ("* * * * funday", "'funday' is not valid (0-7 or sun..sat, 0 and 7 = Sunday"),
    ("* * * foo *", "bad month field 'foo': 'foo' is not valid (1-12 or jan..dec"),
    ("mon * * * *", "bad minute field 'mon': 'mon' is not valid (0-59"),
    ("*/0 * * * *", "a step must be at least 1"),
    ("*/x * * * *", "step 'x' is not a number"),
    ("1,,2 * * * *", "empty list item"),
    ("-5 * * * *", "bad minute field '-5': '-5' is not valid"),
    ("? * * * *", "'?' is not valid (0-59"),
    ("1,2,99 * * * *", "bad minute field '1,2,99': 99 is out of range 0-59"),
    ("0 0 30 2 *", "never fires"),
    ("0 0 L * *", "bad day-of-month field 'L': L (cronsim extensions) are not crontab(5)"),
    ("0 0 LW * *", "L and W (cronsim extensions) are not crontab(5)"),
    ("0 0 * * 5L", "bad day-of-week field '5L': L (cronsim extensions)"),
    ("0 0 * * mon#2", "bad day-of-week field 'mon#2': # (cronsim extensions)"),
]


@pytest.mark.parametrize(("expr", "message"), INVALID, ids=[e or "empty" for e, _ in INVALID])
def test_invalid_expressions_name_the_bad_field(expr: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^cron ") as raised:
        check_cron(expr)
    assert message in str(raised.value)
    with pytest.raises(ValueError, match=r"^cron "):
        cron(expr)


@pytest.mark.parametrize(
    "expr", ["0 0 30 2 mon", "0 0 29 2 *", "*/5 * * * *", "0 0 1 jan-dec/3 7", "5/10 * * * * *"]
)
def test_valid_expressions_pass_the_check(expr: str) -> None:
    check_cron(expr)


def test_an_unknown_time_zone_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        cron("* * * * *", "Mars/Olympus")
