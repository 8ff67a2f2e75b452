"""`tead cron EXPR`: the next fire times of a cron expression, by the daemon's own maths."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from tead.daemon.records import now_utc
from tead.errors import UsageError
from tead.spec.schedule import CronScheduleTrigger

DEFAULT_COUNT = 5
MAX_COUNT = 10_000


def add_cron_command(commands: Any, common: argparse.ArgumentParser) -> None:
    cron = commands.add_parser(
        "cron", parents=[common], help="print the next fire times of a cron expression"
    )
    cron.add_argument("expression", help='5 fields, or 6 with seconds first: "0 9 * * 1-5"')
    cron.add_argument("--timezone", default="UTC", help="IANA zone (default UTC)")
    cron.add_argument(
        "--after",
        help="start after this ISO-8601 time (default now); without an offset it is read "
        "in --timezone",
    )
    cron.add_argument(
        "--count", default=str(DEFAULT_COUNT), help=f"how many (default {DEFAULT_COUNT})"
    )
    cron.set_defaults(handler=_cmd_cron)


def _cmd_cron(args: argparse.Namespace) -> int:
    count = _count(args.count)
    try:
        trigger = CronScheduleTrigger(expression=args.expression, timezone=args.timezone)
    except ValueError as exc:
        where = "--timezone: " if str(exc).startswith("unknown time zone") else ""
        raise UsageError(f"{where}{exc}") from None
    moment = _after(args.after, trigger) if args.after is not None else now_utc()
    lines: list[str] = []
    for _ in range(count):
        try:
            moment = trigger.next_after(moment)
        except (ValueError, OverflowError) as exc:  # none in 50 years, or past year 9999
            if lines:
                print("\n".join(lines))
            if isinstance(exc, OverflowError):
                raise UsageError(
                    f"no fire time after {moment.isoformat()} in years 1-9999"
                ) from None
            raise UsageError(str(exc)) from None
        lines.append(moment.astimezone(trigger.zone).isoformat())
    print("\n".join(lines))
    return 0


def _count(text: str) -> int:
    if not text.isdecimal() or not 1 <= int(text) <= MAX_COUNT:
        raise UsageError(f"--count: {text!r} is not a whole number from 1 to {MAX_COUNT}")
    return int(text)


def _after(text: str, trigger: CronScheduleTrigger) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--after: {text!r} is not an ISO-8601 date-time (e.g. 2025-03-30T00:00+01:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=trigger.zone)
    return moment
