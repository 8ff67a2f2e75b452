"""One run in one worker process, served by the daemon on a thread of its own.

The session sends the worker its order, then reads what comes back until the run's end
or the worker's death: the worker's messages (JSON only; events go to the run's metrics
and trace, breaker changes of the run's own workflow to the daemon's breakers, log lines
to the run's logs) and its output (file descriptors 1 and 2 of the worker and its
children, for what the worker's own capture did not take), which becomes lines of the
run's logs too, attributed to the run alone.
Anything the worker sends that is not a message of its protocol fails the run (its code
may have written to the pipe) and kills the worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from tead.daemon.failure import RunTrace
from tead.daemon.metrics import RunEventMetrics
from tead.daemon.records import RunStatus
from tead.daemon.runlimits import describe_limits
from tead.daemon.runlogs import RunLogs
from tead.daemon.runpool import RunWorker, exit_text
from tead.daemon.runworker import (
    MalformedMessage,
    RunEnd,
    RunOrder,
    receive,
)
from tead.engine.events import NodeStarted, event_from_json
from tead.parallel.breaker import BreakerRegistry, BreakerSnapshot, CircuitState
from tead.parallel.strategies import known_strategies
from tead.printable import escape_controls

log = logging.getLogger(__name__)
output_log = logging.getLogger("tead.run")

MAX_LINE = 8192  # a longer line is kept in pieces of this many bytes
EARLY_ORDER_BYTES = 64 * 1024  # an order this small is sent at once (`send_order`)
STEPS_PER_WRITE, STEPS_WRITE_S = 500, 0.2  # a run's journal is written in batches

Outcome = tuple[RunStatus, str | None, RunEnd | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionHooks:
    """What a session tells the daemon (each is called on the session's thread)."""

    # the run's outcome is known (and, if True, nothing of it can run any more)
    settle: Callable[[Outcome, bool], object]
    ending: Callable[[], object]  # its nodes are done; its end is being encoded
    stopped: Callable[[], object]  # nothing of the run can run any more
    # a worker that ended its run cleanly: kept for the next run (True) or not
    keep: Callable[[RunWorker], bool] = lambda worker: False


class RunSession:
    """Serve one run in one worker (see the module's docstring)."""

    def __init__(
        self,
        worker: RunWorker,
        order: RunOrder,
        *,
        workflow: str,
        breakers: BreakerRegistry,
        observer: RunEventMetrics,
        message_limit: int,
        logs: RunLogs,
        trace: RunTrace,
        keep_steps: Callable[[list[tuple[str, str]]], object] | None = None,
    ) -> None:
        self.worker = worker
        self.order = order
        self.workflow = workflow
        self.breakers = breakers
        self.observer = observer
        self.message_limit = message_limit
        self.logs = logs  # masks secrets' values (tead.daemon.runlogs)
        self.trace = trace
        self.keep_steps = keep_steps  # stores the run's journal (completed steps)
        self._steps: list[tuple[str, str]] = []
        self._steps_kept_at = time.monotonic()
        self.last_node: str | None = None
        self.ending = False  # the worker said its nodes are done; the daemon not told yet
        self.partial: dict[str, bytes] = {}
        self._strategies = set(known_strategies())
        self._hooks: SessionHooks | None = None
        self._order_sent = False

    def send_order(self) -> None:
        """Send the order now, from the caller's thread (the daemon's loop: the worker
        starts without waiting for the session's thread), unless it is big (a write that
        may wait for the worker to read: the session's thread sends it) or the worker is
        gone (the session finds out)."""
        data = pickle.dumps(self.order)
        if len(data) <= EARLY_ORDER_BYTES:
            with contextlib.suppress(EOFError, OSError):
                self.worker.conn.send_bytes(data)
                self._order_sent = True

    def serve(self, hooks: SessionHooks) -> None:
        """Serve the run; `hooks.stopped()` once nothing of it can run any more: at its
        end, right after its processes are killed (the reaping goes on afterwards)."""
        worker = self.worker
        self._hooks = hooks
        told = kept = False
        try:
            end: RunEnd | None = None
            malformed: str | None = None
            try:
                if not self._order_sent:
                    worker.conn.send(self.order)
                end = self._read_until_end()
            except (EOFError, OSError):
                pass
            except MalformedMessage as exc:
                malformed = str(exc)
            self._keep_steps()
            if end is not None:
                if not end.clean:
                    worker.kill()  # whatever the run left running stops now
                self._drain(wait_s=0.0)  # what it wrote before its end
                # kept before the run settles: the next run of its workflow finds it
                kept = end.clean and hooks.keep(worker)
                status = RunStatus.SUCCEEDED if end.error is None else RunStatus.FAILED
                hooks.settle((status, end.error, end), True)
                told = True
                if not kept and end.clean:  # its last run: its kept executors close first
                    worker.retire()
                elif not kept:
                    worker.reap()
            else:
                code = worker.reap()
                self._drain(wait_s=1.0)
                error = (
                    f"the run's worker sent something that is not a message ({malformed}); "
                    "it was killed"
                    if malformed is not None
                    else self._death(code)
                )
                hooks.settle((RunStatus.FAILED, error, None), False)
        except Exception as exc:  # a bug here must not leave the run hanging
            log.exception("run %s: serving its worker failed", self.order.run_id)
            worker.kill()
            hooks.settle((RunStatus.FAILED, f"internal error: {exc}", None), False)
        finally:
            self.observer.close()
            if not kept:
                self._drain(wait_s=1.0)
                for _, pipe in worker.outputs:
                    pipe.close()
            if not told:
                hooks.stopped()

    def _read_until_end(self) -> RunEnd:
        conn = self.worker.conn
        outputs = {id(r): (name, r) for name, r in self.worker.outputs}
        sources: list[Connection] = [conn, *(r for _, r in self.worker.outputs)]
        while True:
            found = wait(sources, timeout=STEPS_WRITE_S if self._steps else None)
            if not found:  # quiet for a while: store the steps that wait
                self._keep_steps()
            for ready in found:
                if ready is conn:
                    kind, body = receive(conn, self.message_limit)  # EOFError: it is gone
                    if kind == "end":
                        try:
                            end = RunEnd.from_json(body)
                        except ValueError as exc:
                            raise MalformedMessage(str(exc)) from None
                        self._message("events", end.events)  # those not sent before
                        return end
                    self._message(kind, body)
                    if self.ending and not conn.poll(0):
                        assert self._hooks is not None
                        self._hooks.ending()
                        self.ending = False
                    continue
                name, pipe = outputs[id(ready)]
                data = os.read(pipe.fileno(), 65536)
                if data:
                    self._output(name, data)
                else:
                    sources.remove(pipe)

    def _message(self, kind: str, body: Any) -> None:
        try:
            if kind == "events":
                self._events(body)
            elif kind == "logs":
                self.logs.add_worker_batch(body)
            elif kind == "ending":
                self._events(body)
                self.ending = True  # told unless the end follows at once
            elif kind == "breakers":
                self.breakers.adopt([self._snapshot(item) for item in body])
            elif kind == "journal":
                for key, text in body:
                    if not isinstance(key, str) or len(key) > 4096 or not isinstance(text, str):
                        raise ValueError("a step is a key (at most 4096 characters) and a text")
                    self._steps.append((key, text))
                if len(self._steps) >= STEPS_PER_WRITE or (
                    time.monotonic() - self._steps_kept_at > STEPS_WRITE_S
                ):
                    self._keep_steps()
            else:
                raise ValueError(f"unknown kind {kind[:40]!r}")
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedMessage(f"a bad {kind[:40]!r} message: {exc}") from None

    def _keep_steps(self) -> None:
        """Store the completed steps received since the last time (in batches: one write
        per step would slow wide fan-outs down; a crash loses the last fraction of a
        second of them, which a resume then runs again)."""
        steps, self._steps = self._steps, []
        self._steps_kept_at = time.monotonic()
        if steps and self.keep_steps is not None:
            self.keep_steps(steps)

    def _events(self, body: Any) -> None:
        if not isinstance(body, list):
            raise TypeError("events come in a list")
        for item in body:
            event = event_from_json(item)
            if getattr(event, "strategy", None) not in (None, *self._strategies):
                raise ValueError("an event of an unknown strategy")  # label values
            if isinstance(event, NodeStarted):
                self.last_node = f"{event.path}/{event.node}" if event.path else event.node
            self.observer(event)
            self.trace(event)

    def _snapshot(self, item: Any) -> BreakerSnapshot:
        """A breaker state the worker sent: only its own workflow's breakers, and remote
        hosts' (`host:<user@host>`, shared by the workflows that use the host)."""
        name = item["name"]
        if not isinstance(name, str) or not name.startswith((f"{self.workflow}:", "host:")):
            raise ValueError("a breaker of another workflow")
        opened = item["opened_at"]
        return BreakerSnapshot(
            name=name,
            state=CircuitState(item["state"]),
            failure_count=int(item["failure_count"]),
            opened_at=None if opened is None else float(opened),
        )

    def _drain(self, *, wait_s: float) -> None:
        """Read what is left of the output: what is there now, then until EOF for at most
        `wait_s` (the processes are dead: EOF comes at once, unless one that escaped them
        still holds a pipe)."""
        deadline = time.monotonic() + wait_s
        sources = [(n, r) for n, r in self.worker.outputs if not r.closed]
        while sources and time.monotonic() < deadline + 0.05:  # a writer still going
            left = max(0.0, deadline - time.monotonic())
            ready_now = wait([r for _, r in sources], timeout=left)
            if not ready_now:
                break
            for ready in ready_now:
                name, pipe = next((n, r) for n, r in sources if r is ready)
                data = os.read(pipe.fileno(), 65536)
                if data:
                    self._output(name, data)
                else:
                    sources = [(n, r) for n, r in sources if r is not pipe]
        if wait_s:
            for name, rest in self.partial.items():
                if rest:
                    self._line(name, rest)
            self.partial.clear()

    def _output(self, stream: str, data: bytes) -> None:
        pending = self.partial.get(stream, b"") + data
        *lines, rest = pending.split(b"\n")
        while len(rest) > MAX_LINE:  # no newline for a long while: log it in pieces
            lines.append(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        self.partial[stream] = rest
        for line in lines:
            self._line(stream, line)

    def _line(self, stream: str, line: bytes) -> None:
        """A line the worker's descriptors passed on (its FdCapture attributes those
        written while a node runs): the run's."""
        text = line[:MAX_LINE].decode("utf-8", "replace")
        self.logs([(time.time(), None, "", stream, text)])

    def _death(self, code: int | None) -> str:
        where = f" while running node {self.last_node!r}" if self.last_node else ""
        return f"the run's worker process died{where}: {exit_text(code)}{self._limit_hint(code)}"

    def _limit_hint(self, code: int | None) -> str:
        limits = self.order.limits
        if code == -signal.SIGXCPU and limits.cpu_time is not None:
            return f" (the run hit its cpu_time limit, {limits.cpu_time:g} s)"
        if code is not None and code < 0 and (described := describe_limits(limits)):
            return f" (the run's limits: {described})"
        return ""


def answer(worker: RunWorker, timeout_s: float, label: str) -> tuple[str, Any] | None:
    """The worker's next message within `timeout_s` (its output logged meanwhile), or None
    if it died, sent no message of its protocol or took too long (then it is killed)."""
    deadline = time.monotonic() + timeout_s
    outputs = {id(r): (name, r) for name, r in worker.outputs}
    sources: list[Connection] = [worker.conn, *(r for _, r in worker.outputs)]
    while (left := deadline - time.monotonic()) > 0:
        for ready in wait(sources, timeout=left):
            if ready is worker.conn:
                try:
                    return receive(worker.conn, 1024 * 1024)
                except (EOFError, OSError, MalformedMessage):
                    return None
            name, pipe = outputs[id(ready)]
            data = os.read(pipe.fileno(), 65536)
            if not data:
                sources.remove(pipe)
            for line in data.decode("utf-8", "replace").splitlines()[:100]:
                output_log.info("%s %s: %s", label, name, escape_controls(line[:MAX_LINE]))
    worker.kill()
    return None
