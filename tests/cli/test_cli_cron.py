"""`tead cron EXPR [--timezone TZ] [--after ISO] [--count N]`, through the real CLI."""

from __future__ import annotations

import itertools
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import RunTead


def lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.splitlines()


def test_next_midnights_after_the_berlin_spring_change(tead_cli: RunTead) -> None:
    """The issue's case: after 2025-03-30T00:00+01:00 comes 2025-03-31T00:00+02:00."""
    found = tead_cli(
        "cron", "0 0 * * *", "--timezone", "Europe/Berlin",
        "--after", "2025-03-30T00:00+01:00", "--count", "3",
    )  # fmt: skip
    assert lines(found) == [
        "2025-03-31T00:00:00+02:00",
        "2025-04-01T00:00:00+02:00",
        "2025-04-02T00:00:00+02:00",
    ]


def test_first_of_the_month_in_new_york_keeps_april(tead_cli: RunTead) -> None:
    """A naive --after is read in --timezone; the default count is 5."""
    found = tead_cli("cron", "0 0 1 * *", "--timezone", "America/New_York", "--after", "2025-02-15")
    assert lines(found) == [
        "2025-03-01T00:00:00-05:00",
        "2025-04-01T00:00:00-04:00",
        "2025-05-01T00:00:00-04:00",
        "2025-06-01T00:00:00-04:00",
        "2025-07-01T00:00:00-04:00",
    ]


def test_gap_and_repeated_hour_in_lord_howe(tead_cli: RunTead) -> None:
    """A fixed-time job in the 30-minute spring gap runs when the clocks jump; a wildcard
    job runs in both passes of the repeated half hour."""
    spring = tead_cli(
        "cron", "15 2 * * *", "--timezone", "Australia/Lord_Howe",
        "--after", "2024-10-06T00:00", "--count", "2",
    )  # fmt: skip
    assert lines(spring) == ["2024-10-06T02:30:00+11:00", "2024-10-07T02:15:00+11:00"]
    autumn = tead_cli(
        "cron", "*/20 1 * * *", "--timezone", "Australia/Lord_Howe",
        "--after", "2024-04-07T00:59+11:00", "--count", "5",
    )  # fmt: skip
    assert lines(autumn) == [
        "2024-04-07T01:00:00+11:00",
        "2024-04-07T01:20:00+11:00",
        "2024-04-07T01:40:00+11:00",
        "2024-04-07T01:40:00+10:30",  # 02:00+11:00 became 01:30+10:30: 01:40 again
        "2024-04-08T01:00:00+10:30",
    ]


def test_six_fields_and_the_default_start_now(tead_cli: RunTead) -> None:
    """Without --after it starts now, in UTC by default; 6 fields put seconds first."""
    before = datetime.now(UTC)
    found = [datetime.fromisoformat(line) for line in lines(tead_cli("cron", "*/20 * * * * *"))]
    assert len(found) == 5
    assert all(m.utcoffset() == timedelta(0) and m.second in (0, 20, 40) for m in found)
    assert before < found[0] <= before + timedelta(seconds=25)
    assert all(b - a == timedelta(seconds=20) for a, b in itertools.pairwise(found))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["61 * * * *"], "tead: cron '61 * * * *': bad minute field '61': 61 is out of range"),
        (["* * *"], "tead: cron '* * *' has 3 fields; expected 5"),
        (["0 0 L * *"], "tead: cron '0 0 L * *': bad day-of-month field 'L'"),
        (["0 0 30 2 *"], "tead: cron '0 0 30 2 *' never fires"),
        (["* * * * *", "--timezone", "Mars/Olympus"], "tead: --timezone: unknown time zone"),
        (["* * * * *", "--after", "yesterday"], "tead: --after: 'yesterday' is not an ISO-8601"),
        (["* * * * *", "--count", "0"], "tead: --count: '0' is not a whole number from 1"),
        (["* * * * *", "--count", "x"], "tead: --count: 'x' is not a whole number from 1"),
        (["0 0 * * *", "--after", "9999-12-31T00:00Z"], "tead: no fire time after 9999-12-31"),
        (["0 0 * * *", "--after", "0001-01-01T00:00+05:00"], "tead: no fire time after 0001"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tead_cli: RunTead, args: list[str], message: str) -> None:
    found = tead_cli("cron", *args)
    assert found.returncode == 2
    assert found.stdout == ""
    assert found.stderr.startswith(message), found.stderr
    assert found.stderr.count("\n") == 1
