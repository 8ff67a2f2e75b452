"""Runs in worker processes (the daemon side): a warm pool, one run per worker.

Workers are kept ready ahead of time (`tead.daemon.runpool`). A run takes a ready worker,
sends it a `RunOrder` (the workflow's text, the run's state, its breakers' states, its
environment, path and limits) and reads, on a thread of its own, the worker's messages
(events for metrics, breaker changes to store, the encoded end) and its output. When the
run ends, is cancelled or times out, or the worker dies, the worker's whole process group
(its branch processes and whatever its nodes started) is killed with SIGKILL and reaped,
and only then is the run's work reported stopped, so its concurrency group is released
at once with nothing left running. A worker whose run ended cleanly (nothing left
running, no limit lowered) may serve the next run of the same workflow version, at most
`MAX_RUNS_PER_WORKER` runs.

The daemon alone writes the store and the metrics. What the run's nodes write comes back
as lines of the run's logs (`tead.daemon.runsession`, `tead.daemon.runlogs`).
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import logging
import os
import queue
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tead.daemon.execution import Outcome, Run
from tead.daemon.failure import crash_failure
from tead.daemon.metrics import Metrics
from tead.daemon.opsstore import OpsTables
from tead.daemon.records import RunStatus
from tead.daemon.runlogs import RunLogs
from tead.daemon.runpool import RunWorker, RunWorkerPool, WorkerStartError, exit_text
from tead.daemon.runsession import RunSession, SessionHooks
from tead.daemon.runsession import answer as session_answer
from tead.daemon.runworker import CheckOrder, RunEnd, RunOrder
from tead.daemon.secrets import SecretError, Secrets
from tead.daemon.storable import MIB
from tead.errors import StorageFullError
from tead.parallel.breaker import BreakerRegistry
from tead.spec.models import Limits

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 30.0  # importing a workflow's uses: modules in a worker, at most
MAX_RUNS_PER_WORKER = 100  # then a worker is replaced, whatever it kept
ENCODE_LIMIT_S = 60.0  # encoding a run's end in its worker (JSON of its states), at most
RunOutcome = tuple[RunStatus, str | None, RunEnd | None]


class WorkerExecution:
    """Executes each run in a worker process of its own (see the module's docstring)."""

    def __init__(
        self,
        *,
        size: int,
        metrics: Metrics,
        breakers: BreakerRegistry,
        max_state_bytes: int,
        pass_env: Sequence[str],
        limits: Limits,
        environ: Mapping[str, str] | None = None,
        secrets: Secrets | None = None,
        journals: OpsTables | None = None,
    ) -> None:
        self.metrics = metrics
        self.breakers = breakers
        self.max_state_bytes = max_state_bytes
        self.limits = limits
        self._environ = dict(os.environ if environ is None else environ)
        self.secrets = secrets if secrets is not None else Secrets(None, {})
        self.journals = journals  # where runs' completed steps are kept (to resume them)
        self._passed = self._pass(pass_env)
        self._sys_path = tuple(sys.path)  # before any workflow folder is added to it
        self._pool = RunWorkerPool(size)
        self._sessions = SessionThreads(keep=size)

    def configure(self, *, size: int, pass_env: tuple[str, ...], limits: Limits) -> None:
        self._passed = self._pass(pass_env)
        self.limits = limits
        self._pool.resize(size)
        self._sessions.keep = size

    def _pass(self, pass_env: Sequence[str]) -> dict[str, str]:
        """The daemon's variables that runs see: those matching `pass_env`'s globs."""
        passed = _patterns(pass_env)
        return {k: v for k, v in self._environ.items() if passed.match(k)}

    def check_uses(self, text: str, path: str) -> str | None:
        """Load a workflow file in a worker (its `uses:` modules imported there, never in
        the daemon): its load errors, one line each, or None. Blocks (a loading thread)."""
        try:
            worker = self._pool.take()
        except WorkerStartError as exc:
            return f"{path}: cannot check its uses: modules: {exc}"
        order = CheckOrder(text=text, path=path, sys_path=self._sys_path)
        answer: tuple[str, Any] | None = None
        try:
            worker.conn.send(order)
            answer = session_answer(worker, CHECK_TIMEOUT_S, f"check {Path(path).name}")
        except (EOFError, OSError):
            pass
        finally:
            code = worker.reap()
            for _, pipe in worker.outputs:
                pipe.close()
        if answer is None:
            reason = (
                f"took longer than {CHECK_TIMEOUT_S:g} s"
                if code == -signal.SIGKILL
                else f"ended the process ({exit_text(code)})"
            )
            return f"{path}: importing its uses: modules {reason}"
        kind, body = answer
        if kind != "checked" or not (body is None or isinstance(body, str)):
            return f"{path}: importing its uses: modules gave no answer"
        return body

    def warm_up(self) -> None:
        """Start the ready workers (in the background)."""
        self._pool.refill()

    async def close(self) -> None:
        await asyncio.to_thread(self._pool.close)

    async def execute(self, run: Run) -> Outcome:
        loop = asyncio.get_running_loop()
        stopped_work = asyncio.Event()
        try:
            order = self._order(run)
        except SecretError as exc:  # an unknown secret: the run fails, naming it
            stopped_work.set()
            return Outcome(
                status=RunStatus.FAILED, error=str(exc), final=None, stopped_work=stopped_work
            )
        worker = await self._take(run)
        if isinstance(worker, str):
            stopped_work.set()
            status = run.stop_reason or RunStatus.FAILED
            return Outcome(status=status, error=worker, final=None, stopped_work=stopped_work)
        done: asyncio.Future[RunOutcome] = loop.create_future()
        ending = asyncio.Event()

        def nodes_done() -> None:  # too late to cancel: the end is being encoded
            run.ending = True
            ending.set()

        session = RunSession(
            worker,
            order,
            workflow=run.workflow.name,
            breakers=self.breakers,
            observer=self.metrics.run_observer(run.record.workflow),
            message_limit=4 * self.max_state_bytes + MIB,
            keep_steps=functools.partial(self._keep_steps, run.record.id),
            logs=run.logs or RunLogs(run.record.id, _NoStore(), max_bytes=0),
            trace=run.trace,
        )

        def keep(worker: RunWorker) -> bool:  # on the session's thread
            worker.runs += 1
            if worker.runs >= MAX_RUNS_PER_WORKER or run.stop.is_set():
                return False
            self._pool.keep(worker, _version(run))
            return True

        def settle(outcome: RunOutcome, stopped: bool) -> None:  # on the session's thread
            loop.call_soon_threadsafe(_settle, done, outcome, stopped_work if stopped else None)

        hooks = SessionHooks(
            keep=keep,
            settle=settle,
            ending=functools.partial(loop.call_soon_threadsafe, nodes_done),
            stopped=functools.partial(loop.call_soon_threadsafe, stopped_work.set),
        )
        session.send_order()  # the worker starts while a session thread wakes up
        self._sessions.submit(session.serve, hooks)
        spec = run.workflow.spec
        timeout = spec.timeout if spec else None
        await _first(done, run.stop, ending, timeout=timeout)
        # The nodes finished in time: the run ends as they did, unless encoding its end
        # (user code: __repr__, to_dict) does not finish; only shutdown cuts it short.
        if ending.is_set() and not done.done() and not await _encoded(done, run):
            await asyncio.to_thread(worker.kill)
            cut = run.stop_reason is RunStatus.INTERRUPTED
            return Outcome(
                status=RunStatus.INTERRUPTED if cut else RunStatus.FAILED,
                error="the daemon stopped while the run's end was being encoded"
                if cut
                else f"encoding the run's final state took longer than {ENCODE_LIMIT_S:g} s",
                final=None,
                stopped_work=stopped_work,
            )
        if done.done():
            status, error, end = done.result()
            run.failure = end.failure if end else crash_failure(run.trace, error)
            return Outcome(
                status=status,
                error=error,
                final=None,
                stopped_work=stopped_work,
                end=end.end if end else None,
            )
        status = run.stop_reason or RunStatus.TIMED_OUT
        await asyncio.to_thread(worker.kill)  # the session reaps it, then sets stopped_work
        message = (
            f"run timed out after {timeout:g} s"
            if status is RunStatus.TIMED_OUT
            else f"run {status}"
        )
        return Outcome(status=status, error=message, final=None, stopped_work=stopped_work)

    async def _take(self, run: Run) -> RunWorker | str:
        """A worker for `run`: one kept after the last run of its workflow version, else a
        ready one (waiting while one starts, unless the run is stopped meanwhile), or why
        there is none."""
        worker = self._pool.take_ready(_version(run))
        if worker is not None:
            return worker
        taking = asyncio.ensure_future(asyncio.to_thread(self._pool.take))
        await _first(taking, run.stop)
        if not taking.done():  # stopped while waiting: the worker it gets is not needed
            taking.add_done_callback(_reap_taken)
            return f"run {run.stop_reason}"
        try:
            return taking.result()
        except WorkerStartError as exc:
            return f"the run's worker process did not start: {exc}"

    def _order(self, run: Run) -> RunOrder:
        workflow = run.workflow
        spec = workflow.spec
        source = workflow.source
        assert source is not None, "the daemon's workflows are loaded from files"
        environ = dict(self._passed)
        if spec is not None:
            environ.update(self.secrets.resolve(spec.env))
        limits = self.limits
        if spec is not None and spec.limits is not None:  # the workflow's own win
            limits = Limits.model_validate(
                {
                    **limits.model_dump(exclude_none=True),
                    **spec.limits.model_dump(exclude_none=True),
                }
            )
        return RunOrder(
            run_id=run.record.id,
            text=source.text,
            path=str(Path(source.path).resolve()),
            state={**run.record.inputs, "trigger": run.record.trigger},
            breakers=self.breakers.seed_for(f"{workflow.name}:") + self.breakers.seed_for("host:"),
            environ=environ,
            sys_path=self._sys_path,
            limits=limits,
            max_state_bytes=self.max_state_bytes,
            journal=self._journal(run),
            record_steps=self.journals is not None,
        )

    def _journal(self, run: Run) -> dict[str, Any]:
        """The completed steps a run starts with: only a resumed run has any (a new run's
        are copied from the run it resumes before it starts: `operations.start_rerun`)."""
        if self.journals is None or "resumed_from" not in run.record.trigger:
            return {}
        return self.journals.journal(run.record.id)

    def _keep_steps(self, run_id: str, steps: list[tuple[str, str]]) -> None:
        """Store a run's completed steps (secrets masked; on the run's session thread)."""
        if self.journals is None:
            return
        mask = self.secrets.mask_json
        try:
            self.journals.add_journal(run_id, [(key, mask(text)) for key, text in steps])
        except (StorageFullError, ValueError) as exc:  # ValueError: a text not JSON
            log.warning("run %s: %d completed step(s) not recorded: %s", run_id, len(steps), exc)


class _NoStore:
    """Where the lines of a run without logs go: nowhere."""

    def append_logs(self, run_id: str, lines: list[Any]) -> None:
        pass


class SessionThreads:
    """Threads that serve run sessions, kept idle for the next run: starting a thread waits
    until it runs, which would hold up the daemon's loop at each run (measured: the largest
    cost of starting a run in a worker). At most `keep` are kept idle (the concurrent runs'
    limit), the others end: a session goes on for a moment after its run has released its
    slot (reaping a retired worker, at least returning), so a run starting meanwhile may
    need a thread more than the runs in flight, and each such peak would otherwise stay.
    Daemon threads: a session is never waited for at exit (the workers are killed then,
    which ends their sessions)."""

    def __init__(self, *, keep: int) -> None:
        self.keep = keep
        self._jobs: queue.SimpleQueue[tuple[Callable[..., object], tuple[Any, ...]]]
        self._jobs = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, serve: Callable[..., object], *args: Any) -> None:
        """Run `serve(*args)` on an idle thread, or on a new one if none is idle."""
        with self._lock:
            spare = self._idle > 0
            if spare:
                self._idle -= 1
        self._jobs.put((serve, args))
        if not spare:
            threading.Thread(target=self._work, name="tead-run-session", daemon=True).start()

    def _work(self) -> None:
        while True:
            serve, args = self._jobs.get()
            try:
                serve(*args)
            except Exception:  # a session reports its own errors; this is a last resort
                log.exception("a run session failed")
            with self._lock:
                if self._idle >= self.keep:
                    return
                self._idle += 1


def _patterns(globs: Sequence[str]) -> re.Pattern[str]:
    """One regular expression matching any of these glob patterns (case-sensitive)."""
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs) or "(?!)")


def _version(run: Run) -> tuple[str, str]:
    """Which runs may share a worker one after the other: those of one workflow version."""
    return (run.record.workflow, run.record.workflow_hash)


def _settle(future: asyncio.Future[Any], outcome: Any, stopped: asyncio.Event | None) -> None:
    if not future.done():
        future.set_result(outcome)
    if stopped is not None:
        stopped.set()


async def _first(
    future: asyncio.Future[Any], *events: asyncio.Event, timeout: float | None = None
) -> None:
    """Wait until `future` is done, one of `events` is set, or `timeout` passes."""
    waiters = {asyncio.ensure_future(e.wait()) for e in events}
    try:
        await asyncio.wait({future, *waiters}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _encoded(done: asyncio.Future[Any], run: Run) -> bool:
    """Wait for a run's end while its worker encodes it: at most `ENCODE_LIMIT_S`, and
    not once the daemon is stopping (a cancel is refused meanwhile). Whether it came."""
    deadline = time.monotonic() + ENCODE_LIMIT_S
    while not done.done() and run.stop_reason is not RunStatus.INTERRUPTED:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        await asyncio.wait({done}, timeout=min(left, 0.1))
    return done.done()


def _reap_taken(taking: asyncio.Future[RunWorker]) -> None:
    if not taking.cancelled() and taking.exception() is None:
        threading.Thread(target=taking.result().reap, daemon=True).start()
