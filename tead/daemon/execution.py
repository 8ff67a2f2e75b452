"""One run's execution: its own daemon thread, its whole-run timeout, its outcome.

A run executes on a daemon thread of its own (a stuck node cannot hold a shared pool),
under a CancelToken that a cancel, a timeout or shutdown sets. Its outcome is known when
the run ends or is stopped; its threads may go on a little longer (the token's
Activity), which `Outcome.stopped_work` tells.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tead.daemon.metrics import Metrics
from tead.daemon.records import RunRecord, RunStatus
from tead.engine.runner import run_workflow
from tead.errors import RunCancelled, TeadError
from tead.executors.registry import Executors
from tead.graph.compiled import WorkflowGraph
from tead.parallel.breaker import BreakerRegistry
from tead.parallel.cancel import CancelToken

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Run:
    """A run the daemon queued, with what it needs to execute and to be stopped."""

    record: RunRecord
    workflow: WorkflowGraph
    group: str
    token: CancelToken = field(default_factory=CancelToken)
    queued_at: float = field(default_factory=time.monotonic)
    seen_at: float | None = None  # when the trigger's file event was seen (monotonic)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    stop_reason: RunStatus | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    branches: list[dict[str, Any]] = field(default_factory=list)
    ending: bool = False  # its end is being encoded and written: too late to cancel


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How a run ended; `stopped_work` is set once every thread of the run has stopped."""

    status: RunStatus
    error: str | None
    final: dict[str, Any] | None
    stopped_work: asyncio.Event


class RunExecution:
    """Executes runs, each on a thread of its own, with the daemon's breakers, executors
    and metrics."""

    def __init__(
        self, *, metrics: Metrics, breakers: BreakerRegistry, executors: Executors
    ) -> None:
        self.metrics = metrics
        self.breakers = breakers
        self.executors = executors

    async def execute(self, run: Run) -> Outcome:
        """Run `run` on a thread of its own until it ends, is stopped or times out."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[dict[str, Any] | None, BaseException | None]]
        done = loop.create_future()

        def work() -> None:
            outcome: tuple[dict[str, Any] | None, BaseException | None]
            try:
                outcome = (self._run_sync(run), None)
            except BaseException as exc:
                outcome = (None, exc)
            finally:
                run.token.cancel("finished")  # threads it left behind stop at their next node
                run.token.activity.exit()
            loop.call_soon_threadsafe(_settle, done, outcome)

        # The group is held until this thread and every branch thread of the run are done.
        stopped_work = asyncio.Event()
        run.token.activity.enter()
        run.token.activity.when_idle(functools.partial(loop.call_soon_threadsafe, stopped_work.set))
        threading.Thread(target=work, name=f"tead-run-{run.record.id}", daemon=True).start()
        spec = run.workflow.spec
        timeout = spec.timeout if spec else None
        stopped = asyncio.ensure_future(run.stop.wait())
        waiters: set[asyncio.Future[Any]] = {done, stopped}
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if done.done():
            final, error = done.result()
            status, message = _status_of(error, run)
        else:
            status = run.stop_reason or RunStatus.TIMED_OUT
            message = (
                f"run timed out after {timeout:g} s"
                if status is RunStatus.TIMED_OUT
                else f"run {status}"
            )
            run.token.cancel(str(status))
            final = None
        return Outcome(status=status, error=message, final=final, stopped_work=stopped_work)

    def _run_sync(self, run: Run) -> dict[str, Any]:
        record = run.record
        observer = self.metrics.run_observer(record.workflow)

        def keep(path: str, source: str, fan_in: str, results: list[Any]) -> None:
            run.branches.extend(
                {"fan_out": source, "fan_in": fan_in, "path": path, **r.to_dict()} for r in results
            )

        state = {**record.inputs, "trigger": record.trigger}
        try:
            return run_workflow(
                run.workflow,
                state,
                on_event=observer,
                breakers=self.breakers,
                executors=self.executors,
                cancel=run.token,
                on_results=keep,
            )
        finally:
            observer.close()


def _settle(
    future: asyncio.Future[tuple[dict[str, Any] | None, BaseException | None]],
    outcome: tuple[dict[str, Any] | None, BaseException | None],
) -> None:
    if not future.done():
        future.set_result(outcome)


def _status_of(error: BaseException | None, run: Run) -> tuple[RunStatus, str | None]:
    if error is None:
        return RunStatus.SUCCEEDED, None
    if isinstance(error, RunCancelled):
        status = run.stop_reason or RunStatus(error.reason)
        return status, str(error)
    if isinstance(error, TeadError):
        return RunStatus.FAILED, str(error)
    log.error("run %s: unexpected %s", run.record.id, type(error).__name__, exc_info=error)
    return RunStatus.FAILED, f"{type(error).__name__}: {error}"
