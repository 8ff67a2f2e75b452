"""Each schedule's next fire time, from a real daemon: the API's `next_fire`, the CLI column."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from tests.conftest import RunTead
from tests.daemon.test_daemon_api import ok, table
from tests.daemon_fixture import DaemonProcess
from tests.helpers import workflow_list

SCHEDULED = """
name: scheduled
on:
  schedule:
    - cron: "0 0 1 1 *"
      timezone: Europe/Berlin
    - cron: "0 12 * * *"
    - every: 1h
nodes:
  - name: a
"""


def wait_scheduled(daemon: DaemonProcess) -> dict[str, dict]:
    return daemon.wait_for(
        lambda: (found := workflow_list(daemon)).get("scheduled", {}).get("valid") and found,
        what="workflow scheduled to load",
    )


def noon_after(moment: datetime) -> datetime:
    noon = moment.replace(hour=12, minute=0, second=0, microsecond=0)
    return noon if noon > moment else noon + timedelta(days=1)


def test_api_lists_each_schedules_next_fire_time(daemon: DaemonProcess) -> None:
    """`GET /api/v1/workflows` gives every schedule entry a `next_fire` (ISO-8601, with the
    cron's zone offset, or UTC); a workflow without schedules has none."""
    before = datetime.now(UTC)
    daemon.write("scheduled.yaml", SCHEDULED)
    daemon.write("plain.yaml", "name: plain\nnodes:\n  - name: a\n")
    found = wait_scheduled(daemon)
    after = datetime.now(UTC)
    yearly, noon, hourly = found["scheduled"]["triggers"]["schedule"]
    berlin = ZoneInfo("Europe/Berlin")
    assert yearly["next_fire"] == f"{after.astimezone(berlin).year + 1}-01-01T00:00:00+01:00"
    assert noon["next_fire"] in {
        noon_after(before).isoformat(),
        noon_after(after).isoformat(),
    }
    hour = datetime.fromisoformat(hourly["next_fire"])
    assert hourly["next_fire"].endswith("Z")
    assert before + timedelta(hours=1) <= hour <= after + timedelta(hours=1)
    assert found["plain"]["triggers"] == {}


def test_cli_workflows_shows_the_earliest_next_fire(
    daemon: DaemonProcess, tead_cli: RunTead
) -> None:
    """`tead workflows` has a next_fire column: the earliest of the workflow's schedules."""
    daemon.write("scheduled.yaml", SCHEDULED.replace("every: 1h", "every: 720h"))
    daemon.write("plain.yaml", "name: plain\nnodes:\n  - name: a\n")
    found = wait_scheduled(daemon)
    header, rows = table(ok(tead_cli("workflows", "--url", daemon.url)))
    assert header == ["name", "file", "triggers", "next_fire", "status", "enabled"]
    by_name = {row[0]: row for row in rows}
    noon = found["scheduled"]["triggers"]["schedule"][1]["next_fire"]
    assert by_name["scheduled"][3] == noon
    assert by_name["plain"][3] == "-"
