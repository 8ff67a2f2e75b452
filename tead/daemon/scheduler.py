"""Schedules → run requests: wake-ups on the event loop, last fire times in the store.

Cron and interval maths come from `tead.spec.schedule` (cronsim for cron, with crontab(5)
weekday numbering). This module keeps one heap of next fire times for every schedule of
every loaded workflow, sleeps until the earliest, and records each fire's time in the
store *before* asking for the run, so a restart never fires the same moment twice.

After downtime (or a reload), fires missed since the stored last fire follow the
workflow's `catchup` policy: `skip` runs none, `latest` runs the most recent one, `all`
runs each (at most `catchup_limit`); the rest are counted in tead_missed_schedules_total.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tead.daemon.metrics import Metrics
from tead.daemon.records import now_utc
from tead.daemon.registry import WorkflowEntry
from tead.daemon.store import Store
from tead.graph.compiled import WorkflowGraph
from tead.spec.schedule import CRON_COUNT_CAP, CronScheduleTrigger, ScheduleTrigger, make_trigger

log = logging.getLogger(__name__)

# fire(entry, trigger, mark): queue a run and store `mark` (schedule key, moment) as the
# schedule's last fire in the same transaction, so a crash can neither lose nor repeat it.
Mark = tuple[str, datetime]
Fire = Callable[[WorkflowEntry, dict[str, Any], Mark], None]


@dataclass(slots=True)
class _Job:
    workflow: str
    key: str
    trigger: ScheduleTrigger
    generation: int


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Scheduler:
    def __init__(
        self,
        *,
        store: Store,
        metrics: Metrics,
        fire: Fire,
        lookup: Callable[[str], WorkflowEntry | None],
        catchup_limit: int,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.fire = fire
        self.lookup = lookup
        self.catchup_limit = catchup_limit
        self._heap: list[tuple[datetime, int, _Job]] = []
        self._generation: dict[str, int] = {}  # bumped on reload: older jobs are dropped
        self._counter = 0
        self._wake = asyncio.Event()

    def load(self, entry: WorkflowEntry) -> None:
        """(Re)schedule a workflow: drop its old jobs, catch up, schedule the next fires."""
        workflow = entry.workflow
        if workflow is None:
            self.unload(entry.name)
            return
        generation = self._generation.get(workflow.name, 0) + 1
        self._generation[workflow.name] = generation
        spec = workflow.spec
        if spec is None or spec.on is None:
            return
        now = now_utc()
        for schedule in spec.on.schedule:
            probe = make_trigger(schedule, anchor=now)
            key = f"{workflow.name}:{probe.key}"
            last = self.store.last_fire(key)
            trigger = make_trigger(schedule, anchor=last) if last else probe
            if last is None:
                self.store.set_last_fire(key, now)
            else:
                self._catch_up(
                    entry, key=key, trigger=trigger, last=last, now=now, policy=spec.on.catchup
                )
            job = _Job(workflow.name, key, trigger, generation)
            self._push(trigger.next_after(now), job)
        self._wake.set()

    def next_fires(self, workflow: WorkflowGraph) -> list[str | None]:
        """When each `on.schedule` entry of a loaded workflow fires next, in ISO-8601 (in a
        cron schedule's zone, else UTC); None for one that is not scheduled."""
        if workflow.spec is None or workflow.spec.on is None:
            return []
        upcoming: dict[str, datetime] = {}
        for when, _, job in self._heap:
            if (
                job.workflow == workflow.name
                and self._generation.get(job.workflow) == job.generation
            ):
                upcoming[job.key] = min(when, upcoming.get(job.key, when))
        found: list[str | None] = []
        for schedule in workflow.spec.on.schedule:
            trigger = make_trigger(schedule, anchor=now_utc())
            next_fire = upcoming.get(f"{workflow.name}:{trigger.key}")
            if next_fire is None:
                found.append(None)
            elif isinstance(trigger, CronScheduleTrigger):
                found.append(next_fire.astimezone(trigger.zone).isoformat(timespec="seconds"))
            else:
                found.append(_iso(next_fire))
        return found

    def unload(self, name: str) -> None:
        self._generation[name] = self._generation.get(name, 0) + 1
        self._wake.set()

    def _catch_up(
        self,
        entry: WorkflowEntry,
        *,
        key: str,
        trigger: ScheduleTrigger,
        last: datetime,
        now: datetime,
        policy: str,
    ) -> None:
        fires, total = trigger.fires_between(last, now, limit=self.catchup_limit)
        if total == 0:
            return
        chosen = {"skip": [], "latest": fires[-1:], "all": fires}[policy]
        skipped = total - len(chosen)
        name = entry.name
        if skipped:
            self.metrics.missed_schedules.labels(name, policy).inc(skipped)
        at_least = "at least " if total >= CRON_COUNT_CAP else ""  # counting stopped there
        log.info(
            "schedule %s: %s%d fire(s) missed; catchup=%s runs %d, skips %s%d",
            key,
            at_least,
            total,
            policy,
            len(chosen),
            at_least,
            skipped,
        )
        if not chosen:
            self.store.set_last_fire(key, fires[-1] if fires else now)
        for moment in chosen:  # the last chosen moment is fires[-1]
            self.fire(entry, {"kind": "catchup", "scheduled_time": _iso(moment)}, (key, moment))

    def _push(self, when: datetime, job: _Job) -> None:
        self._counter += 1
        heapq.heappush(self._heap, (when, self._counter, job))

    async def run(self) -> None:
        """Fire schedules as they fall due, forever (cancel to stop)."""
        while True:
            self._wake.clear()
            self._drop_stale()
            if not self._heap:
                await self._wake.wait()
                continue
            when = self._heap[0][0]
            delay = (when - now_utc()).total_seconds()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                continue
            _, _, job = heapq.heappop(self._heap)
            if self._generation.get(job.workflow) != job.generation:
                continue
            entry = self.lookup(job.workflow)
            if entry is not None and entry.workflow is not None:
                self.fire(
                    entry, {"kind": "schedule", "scheduled_time": _iso(when)}, (job.key, when)
                )
            self._push(job.trigger.next_after(max(when, now_utc())), job)

    def _drop_stale(self) -> None:
        while (
            self._heap
            and self._generation.get(self._heap[0][2].workflow) != self._heap[0][2].generation
        ):
            heapq.heappop(self._heap)
