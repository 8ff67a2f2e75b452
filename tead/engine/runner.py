"""Runs a workflow: the entry points of the engine. Give it the run's executors and
breakers (the composition root owns them); it walks the graph and emits events.

The unit of parallel work is a `BranchTask`: "run this workflow from node A up to (not
including) node B on this state". Every executor runs the same unit, so a branch behaves
the same in a thread, a process or on another host.
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from tead.engine.context import ResultsSink, RunContext
from tead.engine.events import Event, EventSink, RunFinished, RunStarted
from tead.engine.journal import Journal
from tead.engine.logs import LogSink
from tead.engine.seam import ExecutorSource
from tead.engine.state import IMMUTABLE, BranchState
from tead.engine.walk import ms_since, run_scope
from tead.graph.compiled import END, START, WorkflowGraph
from tead.parallel.breaker import BreakerRegistry
from tead.parallel.cancel import CancelToken


def run_workflow(
    workflow: WorkflowGraph,
    state: Mapping[str, Any] | None = None,
    *,
    executors: ExecutorSource,
    breakers: BreakerRegistry,
    entry_point: str = START,
    exit_point: str = END,
    on_event: EventSink | None = None,
    cancel: CancelToken | None = None,
    on_results: ResultsSink | None = None,
    journal: Journal | None = None,
    logs: LogSink | None = None,
) -> dict[str, Any]:
    """Run `workflow` on its initial state updated with `state`; return the final state.

    Setting `cancel` stops the run (RunCancelled) at the next node, or at once inside a
    fan-out; `on_results` receives every fan-out's results; `journal` replays the steps
    an earlier run completed and records this run's (tead.engine.journal); `logs` receives
    what the nodes write (tead.engine.logs). A failed run's `RunFinished` event carries the
    state as it was when the run failed.
    """
    workflow.check_scope(entry_point, exit_point)
    # The input over the initial state, neither copied up front: a value is copied when
    # the run first takes it out (tead.engine.state), so neither ever changes.
    current = BranchState.over(workflow.initial_state, state)
    if entry_point == START:
        workflow.check_state(current, "initial")
    ctx = RunContext(
        executors=executors,
        breakers=breakers,
        emit=on_event,
        cancel=cancel,
        on_results=on_results,
        journal=journal,
        logs=logs,
    )
    started = time.perf_counter()
    if on_event is not None:
        on_event(RunStarted(workflow=workflow.name, entry=entry_point, exit=exit_point))
    try:
        run_scope(workflow, current, entry_point, exit_point, ctx=ctx)
        final = _detached(current, workflow.initial_state)
        if exit_point == END:
            workflow.check_state(final, "final")
    except Exception as exc:
        if ctx.emit is not None:
            at_failure = _detached(current, workflow.initial_state)
            failed = RunFinished(
                status="failed", error=str(exc), duration_ms=ms_since(started), state=at_failure
            )
            ctx.publish(failed)
        raise
    ctx.publish(RunFinished(status="succeeded", duration_ms=ms_since(started), state=final))
    return final


def _detached(state: BranchState, initial: Mapping[str, Any]) -> dict[str, Any]:
    """The final state as a plain dict. Values the run never took out are the input's
    own objects; those of the workflow's initial state are copied (the next run starts
    from them)."""
    final = state.raw()
    for key, value in final.items():
        if key in initial and value is initial[key] and type(value) not in IMMUTABLE:
            final[key] = copy.deepcopy(value)
    return final


def stream_workflow(
    workflow: WorkflowGraph,
    state: Mapping[str, Any] | None = None,
    *,
    executors: ExecutorSource,
    breakers: BreakerRegistry,
    entry_point: str = START,
    exit_point: str = END,
) -> Iterator[dict[str, Any]]:
    """Run in a background thread and yield events as they come, each as its JSON encoding
    (`Event.to_json()`); errors are re-raised.

    Closing the generator early cancels the run and waits until it has stopped (the node
    running at that moment finishes), so that no node runs, and no executor is used, after.
    """
    cancel = CancelToken()
    events: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
    failure: list[BaseException] = []

    def put(event: Event) -> None:
        events.put(event.to_json())

    def work() -> None:
        try:
            run_workflow(
                workflow,
                state,
                executors=executors,
                breakers=breakers,
                entry_point=entry_point,
                exit_point=exit_point,
                on_event=put,
                cancel=cancel,
            )
        except BaseException as exc:
            failure.append(exc)
        finally:
            events.put(None)

    worker = threading.Thread(target=work, name="tead-stream", daemon=True)
    worker.start()
    try:
        while (event := events.get()) is not None:
            yield event
    finally:
        cancel.cancel("cancelled")  # a no-op once the run has ended
        worker.join()
    if failure:
        raise failure[0]
