"""One run's execution: how it runs, its whole-run timeout, its outcome.

Two ways (`isolation` in the daemon's config): `process`, the default, runs each run in a
warm worker process of its own (`tead.daemon.runworkers`); `thread` runs it here, on a
daemon thread of its own, under a CancelToken that a cancel, a timeout or shutdown sets:
faster to start, but a node's crash, `os._exit`, `chdir` or environment change reaches
the daemon, and a stuck node cannot be stopped. Either way the outcome is known when the
run ends or is stopped; its work may go on a little longer (a killed worker being reaped,
threads reaching their next node), which `Outcome.stopped_work` tells.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from tead.daemon.failure import RunTrace, failure_of
from tead.daemon.metrics import Metrics
from tead.daemon.records import RunRecord, RunStatus
from tead.daemon.runlogs import RunLogs
from tead.daemon.storable import StorableEnd, branch_rows
from tead.engine.events import Event, RunFinished
from tead.engine.runner import run_workflow
from tead.errors import RunCancelled, TeadError
from tead.executors.registry import Executors
from tead.graph.compiled import WorkflowGraph
from tead.parallel.breaker import BreakerRegistry
from tead.parallel.cancel import CancelToken
from tead.spec.models import Limits

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
    logs: RunLogs | None = None  # where its nodes' output goes
    trace: RunTrace = field(default_factory=RunTrace)  # its nodes' status and timings
    failure: dict[str, Any] | None = None  # where and why it failed (tead.daemon.failure)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How a run ended; `stopped_work` is set once all of the run's work has stopped.
    `end` is the final state and branch results already encoded (a run worker encodes
    them); else `final` and the run's `branches` are encoded when the end is stored."""

    status: RunStatus
    error: str | None
    final: dict[str, Any] | None
    stopped_work: asyncio.Event
    end: StorableEnd | None = None


class Execution(Protocol):
    async def execute(self, run: Run) -> Outcome:
        """Run `run` until it ends, is stopped (`run.stop`) or times out."""
        ...

    def configure(self, *, size: int, pass_env: tuple[str, ...], limits: Limits) -> None:
        """Take a reloaded config: ready workers kept, variables passed, default limits."""
        ...

    async def close(self) -> None:
        """Stop what is kept for later runs (idle workers)."""
        ...


class ThreadExecution:
    """Executes runs in this process, each on a thread of its own, with the daemon's
    breakers, executors and metrics."""

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
        failed_state: dict[str, Any] = {}  # the state when it failed, from its last event

        def work() -> None:
            outcome: tuple[dict[str, Any] | None, BaseException | None]
            try:
                outcome = (self._run_sync(run, failed_state), None)
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
            if status is RunStatus.FAILED and error is not None:
                run.failure, final = failure_of(error), failed_state.get("state")
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

    def configure(self, *, size: int, pass_env: tuple[str, ...], limits: Limits) -> None:
        pass  # runs in this process: no workers, environment or limits of their own

    async def close(self) -> None:
        self.executors.close()

    def _run_sync(self, run: Run, failed_state: dict[str, Any]) -> dict[str, Any]:
        record = run.record
        metrics = self.metrics.run_observer(record.workflow)

        def observer(event: Event) -> None:
            metrics(event)
            run.trace(event)
            if isinstance(event, RunFinished) and event.status == "failed":
                failed_state["state"] = event.state

        def keep(path: str, source: str, fan_in: str, results: list[Any]) -> None:
            run.branches.extend(branch_rows(path, source, fan_in, results))

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
                logs=run.logs,
            )
        finally:
            metrics.close()


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
