"""Runs in worker processes (the daemon side): a warm pool, one run per worker.

Workers are kept ready ahead of time (`tead.daemon.runpool`). A run takes a ready worker,
sends it a `RunOrder` (the workflow's text, the run's state, its breakers' states, its
environment, path and limits) and reads, on a thread of its own, the worker's messages
(events for metrics, breaker changes to store, the encoded end) and its output. When the
run ends, is cancelled or times out, or the worker dies, the worker's whole process group
(its branch processes and whatever its nodes started) is killed with SIGKILL and reaped,
and only then is the run's work reported stopped, so its concurrency group is released
at once with nothing left running. A worker never runs a second run.

The daemon alone writes the store and the metrics. A node's output (file descriptors 1
and 2 of the worker and its children) is logged by the daemon, line by line, with the
run's id, up to `MAX_LOGGED_LINES` lines per run.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from tead.daemon.execution import Outcome, Run
from tead.daemon.metrics import Metrics
from tead.daemon.records import RunStatus
from tead.daemon.runpool import RunWorker, RunWorkerPool, WorkerStartError, exit_text
from tead.daemon.runworker import CheckOrder, RunEnd, RunOrder, describe_limits
from tead.engine.events import Event, NodeStarted
from tead.parallel.breaker import BreakerRegistry, BreakerSnapshot
from tead.spec.models import Limits

log = logging.getLogger(__name__)
output_log = logging.getLogger("tead.run")

MAX_LOGGED_LINES = 10_000  # lines of a run's output logged; the rest is counted
MAX_LINE = 8192  # a longer line is cut
CHECK_TIMEOUT_S = 30.0  # importing a workflow's uses: modules in a worker, at most


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
    ) -> None:
        self.metrics = metrics
        self.breakers = breakers
        self.max_state_bytes = max_state_bytes
        self.limits = limits
        self._environ = dict(os.environ if environ is None else environ)
        self._passed = _patterns(pass_env)
        self._sys_path = tuple(sys.path)  # before any workflow folder is added to it
        self._pool = RunWorkerPool(size)

    def configure(self, *, size: int, pass_env: tuple[str, ...], limits: Limits) -> None:
        self._passed = _patterns(pass_env)
        self.limits = limits
        self._pool.resize(size)

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
            answer = _answer(worker, CHECK_TIMEOUT_S, f"check {Path(path).name}")
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
        result: str | None = answer[1]
        return result

    def warm_up(self) -> None:
        """Start the ready workers (in the background)."""
        self._pool.refill()

    async def close(self) -> None:
        await asyncio.to_thread(self._pool.close)

    async def execute(self, run: Run) -> Outcome:
        loop = asyncio.get_running_loop()
        stopped_work = asyncio.Event()
        try:  # a ready worker at once; else wait (in a thread) for one to start
            ready = self._pool.take_ready()
            worker = ready if ready is not None else await asyncio.to_thread(self._pool.take)
        except WorkerStartError as exc:
            stopped_work.set()
            return Outcome(
                status=RunStatus.FAILED,
                error=f"the run's worker process did not start: {exc}",
                final=None,
                stopped_work=stopped_work,
            )
        done: asyncio.Future[tuple[RunStatus, str | None, RunEnd | None]] = loop.create_future()

        def settle(outcome: tuple[RunStatus, str | None, RunEnd | None]) -> None:
            loop.call_soon_threadsafe(_settle, done, outcome)

        ending = asyncio.Event()

        def nodes_done() -> None:  # too late to cancel: the end is being encoded
            run.ending = True
            ending.set()

        session = _Session(
            worker,
            self._order(run),
            run,
            self,
            settle=settle,
            ending=functools.partial(loop.call_soon_threadsafe, nodes_done),
        )
        threading.Thread(
            target=session.serve,
            args=(lambda: loop.call_soon_threadsafe(stopped_work.set),),
            name=f"tead-run-{run.record.id}",
            daemon=True,
        ).start()
        spec = run.workflow.spec
        timeout = spec.timeout if spec else None
        stopped = asyncio.ensure_future(run.stop.wait())
        encoding = asyncio.ensure_future(ending.wait())
        waiters: set[asyncio.Future[Any]] = {done, stopped, encoding}
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            encoding.cancel()
        if ending.is_set():
            await done  # the nodes finished in time: the run ends as they did
        if done.done():
            status, error, end = done.result()
            return Outcome(
                status=status,
                error=error,
                final=None,
                stopped_work=stopped_work,
                end=end.end if end else None,
            )
        status = run.stop_reason or RunStatus.TIMED_OUT
        session.stopping = True
        await asyncio.to_thread(worker.kill)  # the thread reaps it, then sets stopped_work
        message = (
            f"run timed out after {timeout:g} s"
            if status is RunStatus.TIMED_OUT
            else f"run {status}"
        )
        return Outcome(status=status, error=message, final=None, stopped_work=stopped_work)

    def _order(self, run: Run) -> RunOrder:
        workflow = run.workflow
        spec = workflow.spec
        source = workflow.source
        assert source is not None, "the daemon's workflows are loaded from files"
        passed = self._passed
        environ = {k: v for k, v in self._environ.items() if passed.match(k)}
        if spec is not None:
            environ.update(spec.env)
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
            breakers=self.breakers.seed_for(f"{workflow.name}:"),
            environ=environ,
            sys_path=self._sys_path,
            limits=limits,
            max_state_bytes=self.max_state_bytes,
        )


def _answer(worker: RunWorker, timeout_s: float, label: str) -> tuple[str, Any] | None:
    """The worker's next message within `timeout_s` (its output logged meanwhile), or None
    if it died or took too long (then it is killed)."""
    deadline = time.monotonic() + timeout_s
    outputs = {id(r): (name, r) for name, r in worker.outputs}
    sources: list[Connection] = [worker.conn, *(r for _, r in worker.outputs)]
    while (left := deadline - time.monotonic()) > 0:
        for ready in wait(sources, timeout=left):
            if ready is worker.conn:
                message: tuple[str, Any] = worker.conn.recv()
                return message
            name, pipe = outputs[id(ready)]
            data = os.read(pipe.fileno(), 65536)
            if not data:
                sources.remove(pipe)
            for line in data.decode("utf-8", "replace").splitlines()[:100]:
                output_log.info("%s %s: %s", label, name, line[:MAX_LINE])
    worker.kill()
    return None


def _patterns(globs: Sequence[str]) -> re.Pattern[str]:
    """One regular expression matching any of these glob patterns (case-sensitive)."""
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs) or "(?!)")


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if not future.done():
        future.set_result(outcome)


class _Session:
    """One run in one worker, served on a thread: send the order, read messages and
    output until the end (or the worker's death), kill and reap the worker."""

    def __init__(
        self,
        worker: RunWorker,
        order: RunOrder,
        run: Run,
        execution: WorkerExecution,
        *,
        settle: Callable[[tuple[RunStatus, str | None, RunEnd | None]], None],
        ending: Callable[[], object],
    ) -> None:
        self.worker = worker
        self.order = order
        self.run = run
        self.breakers = execution.breakers
        self.observer = execution.metrics.run_observer(run.record.workflow)
        self.settle = settle
        self.ending = ending
        self.stopping = False  # the daemon killed it (cancel, timeout, shutdown)
        self.last_node: str | None = None
        self.lines = 0
        self.partial: dict[str, bytes] = {}

    def serve(self, stopped: Callable[[], None]) -> None:
        """Serve the run; `stopped()` once nothing of it can run any more: at its end,
        right after its process group is killed (the reaping goes on afterwards)."""
        worker = self.worker
        told = False
        try:
            try:
                worker.conn.send(self.order)
                end = self._read_until_end()
            except (EOFError, OSError):
                end = None
            if end is not None:
                worker.kill()  # whatever the run left running stops now
                self._drain(wait_s=0.0)  # what it wrote before its end
                status = RunStatus.SUCCEEDED if end.error is None else RunStatus.FAILED
                self.settle((status, end.error, end))
                stopped()
                told = True
                worker.reap()
            else:
                code = worker.reap()
                self._drain(wait_s=1.0)
                self.settle((RunStatus.FAILED, self._death(code), None))
        except Exception as exc:  # a bug here must not leave the run hanging
            log.exception("run %s: serving its worker failed", self.order.run_id)
            worker.kill()
            self.settle((RunStatus.FAILED, f"internal error: {exc}", None))
        finally:
            self._drain(wait_s=1.0)
            self.observer.close()
            for _, end_r in worker.outputs:
                end_r.close()
            if not told:
                stopped()

    def _read_until_end(self) -> RunEnd | None:
        conn = self.worker.conn
        outputs = {id(r): (name, r) for name, r in self.worker.outputs}
        sources: list[Connection] = [conn, *(r for _, r in self.worker.outputs)]
        while True:
            for ready in wait(sources):
                if ready is conn:
                    kind, body = conn.recv()  # EOFError: the worker is gone
                    if kind == "end":
                        return body  # type: ignore[no-any-return]
                    self._message(kind, body)
                    continue
                name, pipe = outputs[id(ready)]
                data = os.read(pipe.fileno(), 65536)
                if data:
                    self._output(name, data)
                else:
                    sources.remove(pipe)

    def _message(self, kind: str, body: Any) -> None:
        if kind == "event":
            event: Event = body
            if isinstance(event, NodeStarted):
                self.last_node = event.node if not event.path else f"{event.path}/{event.node}"
            self.observer(event)
        elif kind == "ending":
            self.ending()
        elif kind == "breakers":
            snapshots: tuple[BreakerSnapshot, ...] = body
            self.breakers.adopt(snapshots)

    def _drain(self, *, wait_s: float) -> None:
        """Read what is left of the output: what is there now, then until EOF for at most
        `wait_s` (the group is dead: EOF comes at once, unless a process that left the
        group still holds a pipe)."""
        deadline = time.monotonic() + wait_s
        sources = [(n, r) for n, r in self.worker.outputs if not r.closed]
        while sources and time.monotonic() < deadline + 0.05:  # a writer outside the group
            left = max(0.0, deadline - time.monotonic())
            ready_now = wait([r for _, r in sources], timeout=left)
            if not ready_now:
                break
            for ready in ready_now:
                name, conn = next((n, r) for n, r in sources if r is ready)
                data = os.read(conn.fileno(), 65536)
                if data:
                    self._output(name, data)
                else:
                    sources = [(n, r) for n, r in sources if r is not conn]
        if wait_s:
            for name, rest in self.partial.items():
                if rest:
                    self._line(name, rest)
            self.partial.clear()

    def _output(self, stream: str, data: bytes) -> None:
        pending = self.partial.get(stream, b"") + data
        *lines, rest = pending.split(b"\n")
        if len(rest) > MAX_LINE:
            lines.append(rest)
            rest = b""
        self.partial[stream] = rest
        for line in lines:
            self._line(stream, line)

    def _line(self, stream: str, line: bytes) -> None:
        self.lines += 1
        if self.lines > MAX_LOGGED_LINES:
            if self.lines == MAX_LOGGED_LINES + 1:
                output_log.warning(
                    "run %s: more than %d lines of output; the rest is not logged",
                    self.order.run_id,
                    MAX_LOGGED_LINES,
                )
            return
        text = line[:MAX_LINE].decode("utf-8", "replace").rstrip("\r")
        output_log.info("run %s %s: %s", self.order.run_id, stream, text)

    def _death(self, code: int | None) -> str:
        where = f" while running node {self.last_node!r}" if self.last_node else ""
        return f"the run's worker process died{where}: {exit_text(code)}{self._limit_hint(code)}"

    def _limit_hint(self, code: int | None) -> str:
        limits = self.order.limits
        if code == -signal.SIGXCPU and limits.cpu_time is not None:
            return f" (the run hit its cpu_time limit, {limits.cpu_time:g} s)"
        if code == -signal.SIGKILL and limits.cpu_time is not None:
            return f" (SIGKILL follows SIGXCPU: the run's cpu_time limit is {limits.cpu_time:g} s)"
        if limits.memory is not None and code is not None and code < 0:
            return f" (the run's memory limit is {describe_limits(limits).partition(',')[0]})"
        return ""
