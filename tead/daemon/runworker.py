"""A run worker: one daemon run in a process of its own (the worker side).

The daemon (`tead.daemon.runworkers`) forks each worker warm from its fork server, with
a connection for messages and the write ends of two pipes for the run's output. A worker
makes itself a session leader (so its process group holds everything the run starts:
branch processes, a node's subprocesses), points its file descriptors 1 and 2 at the
pipes, then at pipes of its own that a thread reads (`tead.engine.logs.FdCapture`:
output of C code and child processes becomes log lines of the node running then),
follows the daemon (if the daemon dies, the worker kills its whole group at once), says
it is ready and waits for one `RunOrder`. It runs it in the workflow's folder, with the
environment, `sys.path` and limits the order gives, sends events, breaker changes and
the encoded end back, and waits for the daemon to kill its group, or, if the run left
nothing running and lowered no limit, for the next run of the same workflow version:
meanwhile it puts back what a run may change in the process (`runprocess.Baseline`) and
builds the workflow again if that runs no user code (`runprocess.prepare`). A worker never serves
two workflows, or two versions of one.

Messages to the daemon are JSON, never pickles (the run's code could write to the pipe,
and the daemon must not run what it reads): `[kind, body]` with kind "ready" (the pid),
"events" (a list of events' JSON), "journal" (completed steps: a list of [key, JSON text
of its result], `tead.engine.journal`), "logs" (log lines), "breakers" (snapshots),
"ending" once the nodes are done if encoding the end may run the run's code (a final
state that is not plain JSON: the daemon then refuses a cancel; its body: the events not
sent yet), "end" (`RunEnd.to_json`, with the events not sent yet) or "checked" (a load
error or null).
Orders from the daemon are pickles (the worker trusts the daemon).

The worker is a child subreaper: a process the run starts that leaves its group (a new
session, a double fork) stays below the worker, so that killing the worker's descendants
reaches it too (`kill_tree`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from tead.daemon.failure import checked_failure, failure_of
from tead.daemon.runlimits import apply_limits, describe_failure
from tead.daemon.runprocess import Baseline, become_subreaper, kill_tree, plain, prepare
from tead.daemon.storable import StorableEnd, branch_rows, encode_end
from tead.daemon.workerlogs import EventBatch, LogForwarder
from tead.engine.events import Event, RunFinished
from tead.engine.journal import Journal
from tead.engine.logs import FdCapture
from tead.engine.runner import run_workflow
from tead.engine.seam import Kept
from tead.errors import TeadError
from tead.executors.registry import Executors
from tead.executors.worker import watch_parent
from tead.graph.compiled import WorkflowGraph
from tead.graph.loader import load_workflow_text
from tead.graph.nodes import ensure_importable
from tead.jsonable import json_default
from tead.parallel.breaker import BreakerRegistry, BreakerSnapshot
from tead.parallel.strategies import plugin_strategies
from tead.spec.models import Limits

#: what the fork server imports once, so that no run pays for it
PRELOAD = (
    "tead.daemon.runworker",
    "tead.engine.runner",
    "tead.graph.loader",
    "tead.executors.registry",
    "tead.executors.process",
    "tead.executors.thread",
)

Send = Callable[[tuple[str, Any]], None]
CLOSE_S = 2.0  # closing the executors kept across runs, at most, as a worker ends

plugin_strategies()  # looked up once, in the fork server, for every worker forked from it


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOrder:
    """What a worker needs to run one run."""

    run_id: str
    text: str  # the workflow file's text, as the daemon loaded it
    path: str  # the file's path: its folder is the working directory and importable
    state: dict[str, Any]
    breakers: tuple[BreakerSnapshot, ...]
    environ: dict[str, str]
    sys_path: tuple[str, ...]
    limits: Limits
    max_state_bytes: int
    journal: dict[str, Any] = field(default_factory=dict)  # completed steps (a resume)
    record_steps: bool = True  # send each completed step (the daemon keeps a journal)


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckOrder:
    """Load a workflow file here, importing its `uses:` modules, and say what is wrong:
    the daemon never imports them itself (their module-level code is user code)."""

    text: str
    path: str
    sys_path: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunEnd:
    """How a run ended in its worker: `error` is None on success; `end` is encoded (for a
    failed run, its final state is the state when it failed); `failure` is
    `tead.daemon.failure.failure_of` the error."""

    error: str | None
    end: StorableEnd
    clean: bool = False  # nothing of the run is left in the worker: it may run another
    failure: dict[str, Any] | None = None
    events: list[Any] = field(default_factory=list)  # the last events, not sent before

    def to_json(self) -> dict[str, Any]:
        end = self.end
        return {
            "error": self.error,
            "final_state": end.final_state,
            "branches": list(end.branches),
            "problem": end.problem,
            "clean": self.clean,
            "failure": self.failure,
            "events": self.events,
        }

    @classmethod
    def from_json(cls, data: Any) -> RunEnd:
        """The end a worker sent; ValueError if it is not one."""
        if not isinstance(data, dict):
            raise ValueError("an end is an object")
        error, state, problem = data.get("error"), data.get("final_state"), data.get("problem")
        branches = data.get("branches")
        if not all(v is None or isinstance(v, str) for v in (error, state, problem)):
            raise ValueError("an end's error, final_state and problem are strings or null")
        if not isinstance(branches, list) or not all(isinstance(b, str) for b in branches):
            raise ValueError("an end's branches are strings")
        events = data.get("events", [])
        if not isinstance(events, list):
            raise ValueError("an end's events come in a list")
        return cls(
            error=error,
            end=StorableEnd(final_state=state, branches=tuple(branches), problem=problem),
            clean=data.get("clean") is True,
            failure=checked_failure(data.get("failure")),
            events=events,
        )


class MalformedMessage(Exception):
    """What a worker sent is not a message of its protocol."""


def receive(conn: Connection, limit: int) -> tuple[str, Any]:
    """The next message from a worker: EOFError if it is gone, MalformedMessage if what
    came is not JSON `[kind, body]` or is longer than `limit` bytes."""
    try:
        data = conn.recv_bytes(limit)
    except OSError as exc:
        if conn.closed:
            raise
        raise MalformedMessage(f"unreadable ({exc})") from None
    try:
        message = json.loads(data)
    except ValueError:
        raise MalformedMessage("not JSON") from None
    if not (isinstance(message, list) and len(message) == 2 and isinstance(message[0], str)):
        raise MalformedMessage("not a [kind, body] pair")
    return message[0], message[1]


def run_worker_main(
    conn: Connection, stdout: Connection, stderr: Connection, daemon_pid: int
) -> None:
    """A run worker's life: set up, say ready, run one order, wait to be killed."""
    gc.freeze()  # what came from the fork server is never collected here: no copy-on-write
    os.setsid()  # a process group (and session) of its own: one kill stops the whole run
    become_subreaper()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon decides when runs stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.dup2(stdout.fileno(), 1)
    os.dup2(stderr.fileno(), 2)
    stdout.close()
    stderr.close()
    capture = FdCapture.install()  # what nodes write below Python: attributed here
    watch_parent(daemon_pid, gone=_kill_everything)
    lock = threading.Lock()

    def send(message: tuple[str, Any]) -> None:
        data = json.dumps(message, default=json_default).encode()
        with lock:
            conn.send_bytes(data)

    events = EventBatch(send)  # started before a run, so its thread is not the run's
    logs = LogForwarder(send)  # the same: one thread that serves every run of this worker
    try:
        send(("ready", os.getpid()))
        order: RunOrder | CheckOrder = conn.recv()
    except (EOFError, OSError):
        os._exit(0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # user code may rely on the default
    if isinstance(order, CheckOrder):
        _answer(send, ("checked", check_order(order)))
        _next_order(conn)  # the daemon kills this process when it has read the answer
        os._exit(0)
    baseline = Baseline()
    executors = Executors()  # executors kept across runs stay from one run to the next
    prepared: WorkflowGraph | None = None
    while isinstance(order, RunOrder):
        end, kept = run_order(order, send, events, capture, executors, logs=logs, prepared=prepared)
        clean = baseline.left_nothing(order.limits != Limits(), kept)
        _answer(send, ("end", dataclasses.replace(end, clean=clean).to_json()))
        if clean:  # while the daemon records the end: ready for the next run
            baseline.restore(kept)  # the next run of this workflow version starts as the first did
            prepared = prepare(order.text, order.path)
        next_order = _next_order(conn)
        if not clean or not isinstance(next_order, RunOrder):
            break
        order = next_order
    _close_within(executors, CLOSE_S)
    os._exit(0)


def _close_within(executors: Executors, seconds: float) -> None:
    """Close the executors kept across runs (a client says goodbye to its scheduler), if
    that takes at most `seconds`; else the process's end closes their connections."""
    closing = threading.Thread(target=executors.close, name="tead-close", daemon=True)
    closing.start()
    closing.join(seconds)


def _answer(send: Send, answer: tuple[str, Any]) -> None:
    """Send the answer, after what the run wrote (if the daemon is gone, reading says so)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(EOFError, OSError):
        send(answer)


def _next_order(conn: Connection) -> object:
    """The daemon's next order of the same workflow (None: it kills this process group)."""
    try:
        next_order: object = conn.recv()
    except (EOFError, OSError):
        return None
    return next_order


def check_order(order: CheckOrder) -> str | None:
    """The load errors of the order's file (one line each), or None if it loads."""
    os.chdir(Path(order.path).parent)
    sys.path[:] = order.sys_path
    try:
        load_workflow_text(order.text, order.path)
    except TeadError as exc:
        return str(exc)
    except BaseException as exc:  # what a module does at import is user code
        return f"{order.path}: cannot load: {type(exc).__name__}: {exc}"
    return None


def _kill_everything() -> None:
    """The daemon is gone: kill what this run started, then this process group."""
    kill_tree(os.getpid())
    os.killpg(0, signal.SIGKILL)


def run_order(
    order: RunOrder,
    send: Send,
    events: EventBatch,
    capture: FdCapture | None = None,
    executors: Executors | None = None,
    *,
    logs: LogForwarder,
    prepared: WorkflowGraph | None = None,
) -> tuple[RunEnd, Kept]:
    """Run one order in this process: its folder, environment, path and limits first;
    what its nodes write goes to the daemon as `logs` messages (through `capture` too).
    Its fan-outs use `executors`, in which the run is ended with its nodes (those kept
    across runs stay: what they keep is returned), else executors of its own, closed.
    `prepared`: the order's workflow, built by `runprocess.prepare` after the last run."""
    branches: list[dict[str, Any]] = []
    kept: list[Kept] = []
    final: dict[str, Any] | None = None
    failure: dict[str, Any] | None = None
    if capture is not None:
        capture.default = logs  # a line written outside any node is the run's
    logging.getLogger().setLevel(logging.INFO)  # nodes' INFO records are caught
    try:
        os.chdir(Path(order.path).parent)
        os.environ.clear()
        os.environ.update(order.environ)
        sys.path[:] = order.sys_path
        apply_limits(order.limits)
        if prepared is not None:
            ensure_importable(str(Path(order.path).parent))  # as loading it would
            workflow = prepared
        else:
            workflow = load_workflow_text(order.text, order.path)
        breakers = BreakerRegistry(_ForwardingStore(order.breakers, send))

        def keep(path: str, source: str, fan_in: str, results: list[Any]) -> None:
            branches.extend(branch_rows(path, source, fan_in, results))

        def on_event(event: Event) -> None:
            nonlocal final
            if not isinstance(event, RunFinished):  # its state comes with the end
                events.add(event)
            elif event.status == "failed":
                final = event.state  # the state as it was when the run failed

        journal = Journal(
            done=order.journal,
            record=functools.partial(events.add_step, limit=order.max_state_bytes)
            if order.record_steps
            else None,
        )
        with _executors_of_run(executors, kept) as registry:
            final = run_workflow(
                workflow,
                order.state,
                on_event=on_event,
                breakers=breakers,
                executors=registry,
                on_results=keep,
                journal=journal,
                logs=logs,
            )
        error = None
    except BaseException as exc:  # whatever a node raised ends this run only
        error = describe_failure(exc, order.limits)
        failure = failure_of(exc)
    if capture is not None:
        capture.default = None
    logs.flush()
    if steps := events.take_steps():  # stored before the run's end
        send(("journal", steps))
    pending = events.take()
    if not (plain(final) and plain(branches)):  # encoding it may run the run's code
        send(("ending", pending))  # the nodes are done: from now on it is not cancelled
        pending = []
    try:
        end = encode_end(final, branches, order.max_state_bytes)
    except BaseException as exc:
        end = StorableEnd(final_state=None, branches=(), problem=describe_failure(exc, Limits()))
    if not kept:  # the run failed before its nodes: what earlier runs kept is still kept
        kept.append(executors.end_run() if executors is not None else Kept())
    return RunEnd(error=error, end=end, failure=failure, events=pending), kept[0]


@contextlib.contextmanager
def _executors_of_run(executors: Executors | None, kept: list[Kept]) -> Iterator[Executors]:
    """`executors`, in which the run is ended as it ends (what they keep goes in `kept`),
    else a registry of the run's own, closed as it ends."""
    if executors is None:
        with Executors() as own:
            yield own
        return
    try:
        yield executors
    finally:
        kept.append(executors.end_run())


class _ForwardingStore:
    """The worker's breaker store: starts from the daemon's states and sends each change
    back (the daemon stores it and shows it to the runs that start after)."""

    def __init__(self, seed: Iterable[BreakerSnapshot], send: Send) -> None:
        self._seed = list(seed)
        self._send = send

    def load_all(self) -> list[BreakerSnapshot]:
        return list(self._seed)

    def save(self, snapshot: BreakerSnapshot) -> None:
        self._send(("breakers", [dataclasses.asdict(snapshot)]))
