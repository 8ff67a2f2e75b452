"""Walking a graph: from one node to the next along the edges, fanning out on the way, and a
branch (a walk from its first node up to its fan-in) recorded as a result."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from tead.engine.context import RunContext
from tead.engine.events import Event, FanIn, NodeFinished, NodeStarted
from tead.engine.fanout import fan_out
from tead.engine.journal import node_key
from tead.engine.linelist import LineList
from tead.engine.logs import scope as log_scope
from tead.engine.seam import BranchReport, ExecutorSource, FanOutResults
from tead.engine.state import BranchState
from tead.engine.task import BranchTask, failure_result
from tead.errors import NodeError, RunCancelled
from tead.graph.compiled import END, START, WorkflowGraph
from tead.parallel.breaker import BreakerRegistry, BreakerSnapshot, RecordingBreakerStore
from tead.parallel.config import ParallelFlowResult


def run_scope(
    workflow: WorkflowGraph,
    state: dict[str, Any],
    entry: str,
    exit: str,
    *,
    ctx: RunContext,
    path: str = "",
) -> dict[str, Any]:
    """Walk from `entry` until `exit` (not run) or `__end__`, fanning out on the way."""
    pending: dict[str, list[ParallelFlowResult]] = {}
    visits: dict[str, int] = {}  # for the journal's keys (a loop runs a node again)
    current = entry
    while current not in (exit, END):
        if ctx.cancel is not None and ctx.cancel.reason is not None:
            raise RunCancelled(ctx.cancel.reason)
        if current != START:
            visits[current] = visits.get(current, 0) + 1
            key = node_key(path, current, visits[current])
            fanned_in = pending.pop(current, None)
            _run_node(workflow, current, state, fanned_in, ctx=ctx, path=path, key=key)
        groups = workflow.fanouts.get(current)
        if groups:
            results = fan_out(workflow, groups, state, ctx=ctx, path=path, run_branch=run_branch)
            pending.update(results)
            current = groups[0].fan_in
        else:
            current = workflow.next_node(current, state)
    return state


def _run_node(
    workflow: WorkflowGraph,
    name: str,
    state: dict[str, Any],
    results: list[ParallelFlowResult] | None,
    *,
    ctx: RunContext,
    path: str,
    key: str = "",
) -> None:
    node = workflow.nodes[name]
    if ctx.emit is not None:
        if results is not None:
            failed = sum(not r.success for r in results)
            ctx.publish(FanIn(node=name, path=path, branches=len(results), failed=failed))
        ctx.publish(NodeStarted(node=name, path=path))
    journal = ctx.journal if not path else None  # a branch's nodes: with their branch
    replayed = journal.node(key) if journal is not None else None
    if replayed is not None:  # completed by the run this one resumes: not run again
        state.update(replayed)
        assert journal is not None
        journal.node_done(key, replayed)
        if ctx.emit is not None:
            ctx.publish(NodeFinished(node=name, path=path, status="succeeded", duration_ms=0.0))
        return
    if node.fn is None:
        if ctx.emit is not None:
            ctx.publish(NodeFinished(node=name, path=path, status="succeeded", duration_ms=0.0))
        return
    started = time.perf_counter()
    capture: AbstractContextManager[None] = (
        nullcontext() if ctx.logs is None else log_scope(ctx.logs, name, path)
    )
    try:
        with capture:
            if name in workflow.fan_in_nodes:
                update = node.fn(state, parallel_results=results or [])
            else:
                update = node.fn(state)
        if update is not None and not isinstance(update, Mapping):
            raise TypeError(f"returned {type(update).__name__}, expected a dict or None")
    except (Exception, SystemExit) as exc:
        if ctx.emit is not None:
            ctx.publish(
                NodeFinished(
                    node=name,
                    path=path,
                    status="failed",
                    error=f"{type(exc).__name__}: {exc}",
                    duration_ms=ms_since(started),
                )
            )
        raise NodeError(name, exc, path=path) from exc
    if update:
        state.update(update)
    if journal is not None:
        journal.node_done(key, update)
    if ctx.emit is not None:
        ctx.publish(
            NodeFinished(node=name, path=path, status="succeeded", duration_ms=ms_since(started))
        )


def run_branch(
    task: BranchTask, ctx: RunContext, state: BranchState | None = None
) -> ParallelFlowResult:
    """Run one branch in `ctx` (on `state` instead of the task's, if given) and record its
    outcome; never raises for the branch's own errors."""
    started = time.perf_counter()
    # A branch thread of a cancellable run counts as its work until it returns.
    working = ctx.cancel.activity.working() if ctx.cancel is not None else nullcontext()
    # A fan-out's branch states share its values (tead.engine.state); one that arrives as
    # plain data (from a host) is all its own.
    if state is None:
        state = task.state if isinstance(task.state, BranchState) else BranchState(task.state)
    try:
        with working:
            run_scope(task.workflow, state, task.entry, task.exit, ctx=ctx, path=task.path)
    except (Exception, SystemExit) as exc:
        original = exc.error if isinstance(exc, NodeError) else exc
        return failure_result(task, original, timing_ms=ms_since(started))
    state.settle()
    return ParallelFlowResult(
        branch=task.branch, success=True, state=state, timing_ms=ms_since(started)
    )


def run_branch_elsewhere(
    task: BranchTask,
    executors: ExecutorSource,
    breakers: Sequence[BreakerSnapshot] = (),
    *,
    listening: bool = True,
    base: Mapping[str, Any] | None = None,
    max_log_chars: int | None = None,
) -> BranchReport:
    """Run one branch away from its run (a worker process, a host). Its nested fan-outs
    use `executors` and start from the run's `breakers` states; its events, its nested
    fan-outs' results and the states of the breakers it changed are sent back with its
    result (its events only if its run is `listening`).

    With `base` (the fan-out's state, which the receiver keeps once per fan-out), the
    task's state is only the branch's own part (its item) and the report carries what the
    branch changed (`delta`) instead of its whole final state. What its nodes write comes
    back too, at most `max_log_chars` of it (tead.engine.linelist)."""
    events: list[Event] = []
    fanouts: list[FanOutResults] = []

    def keep(path: str, source: str, fan_in: str, results: list[ParallelFlowResult]) -> None:
        fanouts.append((path, source, fan_in, results))

    own = task.state
    state = BranchState.over(base, own) if base is not None else None
    store = RecordingBreakerStore(breakers)
    logs = LineList(max_log_chars)
    ctx = RunContext(
        executors=executors,
        breakers=BreakerRegistry(store),
        emit=events.append if listening else None,
        on_results=keep,
        logs=logs,
    )
    result = run_branch(task, ctx, state)
    delta = None
    if base is not None and isinstance(result.state, BranchState):  # succeeded
        delta = result.state.delta(base, own)
        result = ParallelFlowResult(branch=result.branch, success=True, timing_ms=result.timing_ms)
    saved = tuple(store.saved.values())
    return BranchReport(result, tuple(events), saved, tuple(fanouts), delta, tuple(logs.take()))


def ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
