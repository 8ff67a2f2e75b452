"""The run queue: concurrency groups, a global limit, whole-run timeouts, cancellation.

Runs are queued in arrival order. A run starts when its concurrency group has nothing
running and fewer than `max_concurrent_runs` runs are running; `cancel_in_progress`
cancels the group's running and queued runs instead of waiting for them. An `Execution`
(`tead.daemon.execution`) runs each one: in a worker process of its own by default,
which a cancel, a timeout or shutdown kills. An ended run is recorded at once (secrets
masked), but its group stays busy until all of its work has stopped (its worker reaped,
or in-process, every thread of the run), or for at most `stop_grace_s`. All bookkeeping
happens on the event loop; the store records every state change.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import datetime
from typing import Any

from tead.daemon.execution import Execution, Run
from tead.daemon.failure import with_details
from tead.daemon.metrics import Metrics
from tead.daemon.records import RunRecord, RunStatus, new_run_id, now_utc
from tead.daemon.registry import WorkflowEntry
from tead.daemon.runlogs import RunLogs
from tead.daemon.secrets import Secrets
from tead.daemon.storable import MIB, StorableEnd, encode_end
from tead.daemon.store import Store
from tead.errors import Conflict, NotFound, StorageFullError

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, None]], object]
PRUNE_EVERY = 100  # finished runs between retention passes
MAX_ERROR_CHARS = 65_536  # a run's recorded error is cut there
RECORD_RETRY_S = 1.0  # how often writes that waited for space are tried again


class RunManager:
    def __init__(
        self,
        *,
        store: Store,
        metrics: Metrics,
        execution: Execution,
        max_concurrent: int,
        retention: int,
        spawn: Spawn,
        max_state_bytes: int = 16 * MIB,
        stop_grace_s: float = 30.0,
        secrets: Secrets | None = None,
        on_end: Callable[[RunRecord], object] | None = None,
        max_log_bytes: int = 16 * MIB,
    ) -> None:
        self.store = store
        self.secrets = secrets if secrets is not None else Secrets(None, {})
        self.on_end = on_end  # told of each run that ends (workflow_run triggers)
        self.metrics = metrics
        self.max_concurrent = max_concurrent
        self.retention = retention
        self.spawn = spawn
        self.max_state_bytes = max_state_bytes
        self.stop_grace_s = stop_grace_s  # how long an ended run's threads may hold its group
        self.max_log_bytes = max_log_bytes  # of each run's logs
        metrics.queued = lambda: collections.Counter(r.record.workflow for r in self._queue)
        self._execution = execution
        self._closing = asyncio.Event()  # shutdown: nothing waits for groups any more
        self.accepting = True
        self._queue: list[Run] = []
        self._running: dict[str, Run] = {}
        self._busy_groups: set[str] = set()
        self._finished = 0
        self._start_deferred = False  # a start could not be recorded (disk full)
        self._idle = asyncio.Event()
        self._idle.set()

    # --- submitting ------------------------------------------------------------------------

    def submit(
        self,
        entry: WorkflowEntry,
        trigger: dict[str, Any],
        inputs: dict[str, Any] | None = None,
        *,
        seen_at: float | None = None,
        record: RunRecord | None = None,
        mark: tuple[str, datetime] | None = None,
    ) -> RunRecord:
        """Queue a run of a valid workflow (or re-queue `record` after a restart); `mark`
        (a schedule's key and moment) is stored with the new run, in one transaction."""
        workflow = entry.workflow
        assert workflow is not None, "only valid workflows run"
        if record is None:
            record = RunRecord(
                id=new_run_id(),
                workflow=workflow.name,
                workflow_hash=entry.content_hash,
                trigger=trigger,
                status=RunStatus.QUEUED,
                created_at=now_utc(),
                inputs=dict(inputs or {}),
            )
            self.store.insert_run(record, mark=mark)
        spec = workflow.spec
        group = (spec.concurrency.group if spec and spec.concurrency else None) or workflow.name
        if spec and spec.concurrency and spec.concurrency.cancel_in_progress:
            self._cancel_group(group)
        run = Run(record=record, workflow=workflow, group=group, seen_at=seen_at)
        self._queue.append(run)
        self._idle.clear()
        log.info(
            "run %s queued workflow=%s trigger=%s", record.id, record.workflow, trigger.get("kind")
        )
        self._pump()
        return record

    def _cancel_group(self, group: str) -> None:
        for run in [r for r in self._queue if r.group == group]:
            self._drop_queued(
                run, RunStatus.CANCELLED, "cancelled by a newer run (cancel_in_progress)"
            )
        for run in [r for r in self._running.values() if r.group == group]:
            self._stop(run, RunStatus.CANCELLED)

    # --- cancelling ------------------------------------------------------------------------

    async def cancel(self, run_id: str) -> None:
        """Cancel a queued or running run; NotFound / Conflict otherwise (a run that ended
        before the cancel took hold, even one whose end is still being written)."""
        for run in self._queue:
            if run.record.id == run_id:
                # Written before it leaves the queue: on a full disk the cancel is refused
                # (StorageFullError, 503), since a cancel kept only in memory would be lost
                # by a restart, which queues the run again and runs it.
                self._drop_queued(run, RunStatus.CANCELLED, "cancelled", must_record=True)
                return
        running = self._running.get(run_id)
        if running is not None and running.ending:
            raise Conflict(f"run {run_id} already finished (its end is being recorded)")
        if running is not None:
            self._stop(running, RunStatus.CANCELLED)
            await running.finished.wait()
        status = self.store.run_status(run_id)  # the status only: the state may be big
        if status is None:
            raise NotFound(f"no run {run_id!r}")
        if running is None or status is not RunStatus.CANCELLED:
            raise Conflict(f"run {run_id} already {status}")

    def _drop_queued(
        self, run: Run, status: RunStatus, error: str, *, must_record: bool = False
    ) -> RunRecord:
        finished = now_utc()
        if must_record:
            self.store.finish_run(
                run.record.id, status, finished_at=finished, error=error, keep=False
            )
        else:
            self._record_end(run.record.id, status, finished_at=finished, error=error)
        self._queue.remove(run)
        self.metrics.runs.labels(
            run.record.workflow, run.record.trigger.get("kind", ""), str(status)
        ).inc()
        log.info("run %s %s (was queued) workflow=%s", run.record.id, status, run.record.workflow)
        self._check_idle()
        ended = replace(run.record, status=status, finished_at=finished, error=error)
        self._ended(ended)
        return ended

    def _ended(self, record: RunRecord) -> None:
        try:  # a trigger's problem must not touch the run that ended
            self.on_end(record) if self.on_end is not None else None
        except Exception:
            log.exception("run %s: its workflow_run triggers failed", record.id)

    def _stop(self, run: Run, reason: RunStatus) -> None:
        if run.stop_reason is None:
            run.stop_reason = reason
            run.token.cancel(str(reason))
            run.stop.set()

    async def shutdown(self, grace_s: float) -> None:
        """Stop taking runs; let running ones finish for `grace_s`; interrupt the rest."""
        self.accepting = False
        self._closing.set()
        for run in list(self._queue):
            self._drop_queued(run, RunStatus.INTERRUPTED, "the daemon stopped before it started")
        try:
            await asyncio.wait_for(self._idle.wait(), grace_s)
        except TimeoutError:
            for run in list(self._running.values()):
                self._stop(run, RunStatus.INTERRUPTED)
            await self._idle.wait()
        if await asyncio.to_thread(self.store.record_unrecorded):
            # What a restart will do with each, by the rows it will find (see `recover`).
            queued = {r.id for r in self.store.runs_with_status(RunStatus.QUEUED)}
            for run_id, status in self.store.unrecorded_ends().items():
                log.error(
                    "run %s %s, but the disk is still full: not recorded (%s)",
                    run_id,
                    status,
                    "it is still queued on disk: a restart queues it again and runs it"
                    if run_id in queued
                    else "it will read as interrupted after a restart",
                )

    async def record_unrecorded(self, interval_s: float = RECORD_RETRY_S) -> None:
        """Forever: write what waited for space (runs' ends, ...), then start the runs
        whose start could not be recorded."""
        while True:
            await asyncio.sleep(interval_s)
            if self.store.unrecorded or self._start_deferred:
                await asyncio.to_thread(self.store.record_unrecorded)
                self._pump()

    def _record_end(
        self, run_id: str, status: RunStatus, *, finished_at: datetime, error: str | None
    ) -> None:
        """A run's end without state; kept for later when the disk is full."""
        try:
            self.store.finish_run(run_id, status, finished_at=finished_at, error=error)
        except StorageFullError as exc:
            log.warning("run %s %s: %s; kept in memory until then", run_id, status, exc)

    def recover(self, lookup: Callable[[str], WorkflowEntry | None]) -> None:
        """After a restart: running runs were interrupted; queued ones are queued again."""
        for record in self.store.runs_with_status(RunStatus.RUNNING):
            self._record_end(
                record.id,
                RunStatus.INTERRUPTED,
                finished_at=now_utc(),
                error="the daemon stopped before the run's end was recorded",
            )
            self.metrics.run_ended(record, RunStatus.INTERRUPTED, None)
            log.warning("run %s interrupted (found running at start-up)", record.id)
        for record in self.store.runs_with_status(RunStatus.QUEUED):
            entry = lookup(record.workflow)
            if entry is None or entry.workflow is None:
                self._record_end(
                    record.id,
                    RunStatus.INTERRUPTED,
                    finished_at=now_utc(),
                    error="its workflow is gone or does not load",
                )
                continue
            self.submit(entry, record.trigger, record.inputs, record=record)

    # --- running -----------------------------------------------------------------------------

    def _pump(self) -> None:
        already_deferred, self._start_deferred = self._start_deferred, False
        for run in list(self._queue):
            if len(self._running) >= self.max_concurrent:
                return
            if run.group in self._busy_groups:
                continue
            started = now_utc()
            try:  # a run starts only once its start is recorded
                self.store.mark_started(run.record.id, started)
            except StorageFullError as exc:
                if not already_deferred:
                    log.warning("run %s stays queued: %s", run.record.id, exc)
                self._start_deferred = True
                return
            self._queue.remove(run)
            self._start(run, started)

    def _start(self, run: Run, started: datetime) -> None:
        record = run.record
        self._running[record.id] = run
        self._busy_groups.add(run.group)
        run.record = replace(record, status=RunStatus.RUNNING, started_at=started)
        run.logs = RunLogs(
            record.id, self.store, max_bytes=self.max_log_bytes, secrets=self.secrets
        )
        m = self.metrics
        m.queue_wait.labels(record.workflow).observe(time.monotonic() - run.queued_at)
        m.runs_in_progress.labels(record.workflow).inc()
        if (scheduled := record.trigger.get("scheduled_time")) is not None:
            lateness = started.timestamp() - datetime.fromisoformat(str(scheduled)).timestamp()
            m.schedule_delay.labels(record.workflow).observe(max(lateness, 0.0))
        if run.seen_at is not None:
            kind = record.trigger.get("kind", "watch")
            m.trigger_latency.labels(kind).observe(time.monotonic() - run.seen_at)
        log.info("run %s running workflow=%s", record.id, record.workflow)
        self.spawn(self._execute(run))

    async def _execute(self, run: Run) -> None:
        """Run one run to its end; whatever goes wrong ends this run only."""
        try:
            await self._execute_run(run)
        except Exception as exc:
            log.exception("run %s: internal error", run.record.id)
            if run.record.id in self._running:
                try:
                    run.branches = []
                    await self._finish(run, RunStatus.FAILED, f"internal error: {exc}", None)
                except Exception:
                    log.exception("run %s: cannot record its end", run.record.id)

    async def _execute_run(self, run: Run) -> None:
        outcome = await self._execution.execute(run)
        await self._finish(
            run, outcome.status, outcome.error, outcome.final, end=outcome.end, release=False
        )
        await self._release_when_stopped(run, outcome.stopped_work)

    async def _release_when_stopped(self, run: Run, stopped_work: asyncio.Event) -> None:
        """Free the run's concurrency group once its work has stopped (a cancelled run's
        process work is killed; its threads stop at their next node boundary), or after
        `stop_grace_s` if a node does not return."""
        waiters = {
            asyncio.ensure_future(stopped_work.wait()),
            asyncio.ensure_future(self._closing.wait()),
        }
        try:
            await asyncio.wait(
                waiters, timeout=self.stop_grace_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
        if not stopped_work.is_set() and not self._closing.is_set():
            log.warning(
                "run %s: a node is still running %g s after the run ended; releasing its "
                "concurrency group %s (the node's result will be ignored)",
                run.record.id,
                self.stop_grace_s,
                run.group,
            )
        self._busy_groups.discard(run.group)
        if self.accepting:
            self._pump()
        self._check_idle()

    async def _finish(
        self,
        run: Run,
        status: RunStatus,
        error: str | None,
        final: dict[str, Any] | None,
        *,
        end: StorableEnd | None = None,
        release: bool = True,
    ) -> None:
        record = run.record
        finished = now_utc()
        run.ending = True
        if error is not None and len(error) > MAX_ERROR_CHARS:  # a node's 50 MB message
            error = f"{error[:MAX_ERROR_CHARS]} ... (cut: {len(error)} characters in all)"
        # Encoding and writing states take a worker thread: the event loop keeps serving.
        if end is None:
            end = await asyncio.to_thread(encode_end, final, run.branches, self.max_state_bytes)
        if end.problem is not None:  # a state too big or with no JSON form: a recorded error
            status, error = RunStatus.FAILED, end.problem
        error = self.secrets.mask(error) if error is not None else None
        end = await asyncio.to_thread(with_details, end, run.logs, run.failure, run.trace)
        end = await asyncio.to_thread(self.secrets.mask_end, end)
        try:
            await asyncio.to_thread(
                self.store.record_end, record.id, status, finished_at=finished, error=error, end=end
            )
        except StorageFullError as exc:
            log.warning("run %s %s: %s; kept in memory until then", record.id, status, exc)
        del self._running[record.id]
        if release:
            self._busy_groups.discard(run.group)
        run.finished.set()
        self._ended(replace(record, status=status, finished_at=finished, error=error))
        self.metrics.run_ended(record, status, finished)
        log.log(
            logging.WARNING if status is RunStatus.FAILED else logging.INFO,
            "run %s %s workflow=%s%s",
            record.id,
            status,
            record.workflow,
            f" error={error}" if error else "",
        )
        self._finished += 1
        if self._finished % PRUNE_EVERY == 0:
            with contextlib.suppress(StorageFullError):  # the next pass prunes
                self.store.prune(self.retention)
        if self.accepting:
            self._pump()
        self._check_idle()

    def _check_idle(self) -> None:
        if not self._running and not self._queue:
            self._idle.set()

    @property
    def running(self) -> int:
        return len(self._running)

    def live(self, run_id: str) -> Run | None:  # a running run, or None
        return self._running.get(run_id)
