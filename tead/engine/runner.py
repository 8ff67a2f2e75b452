"""Runs a workflow: steps along the edges, fans out to executors, fans in, emits events.

The unit of parallel work is a `BranchTask`: "run this workflow from node A up to (not
including) node B on this state". Every executor runs the same `run_branch(task)`, so a
branch behaves the same in a thread, a process or on another host.
"""

from __future__ import annotations

import contextvars
import copy
import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from tead.engine.events import (
    BranchFinished,
    BranchRetry,
    BranchStarted,
    CircuitChanged,
    Event,
    EventSink,
    FanIn,
    FanOutStarted,
    NodeFinished,
    NodeStarted,
    RunFinished,
    RunStarted,
)
from tead.engine.task import BranchTask, failure_result
from tead.errors import FanOutError, NodeError, PickleValidationError, RunCancelled, RunError
from tead.executors import Executors, FanOutHooks, ParallelExecutor
from tead.graph.compiled import END, START, FanOut, Workflow
from tead.parallel.breaker import BreakerRegistry, Transition
from tead.parallel.cancel import CancelToken
from tead.parallel.config import ParallelFlowResult

# (path of the fan-out, its source node, its fan-in node, the results in branch order)
ResultsSink = Callable[[str, str, str, list[ParallelFlowResult]], None]


@dataclass(slots=True)
class _RunContext:
    """What the branches of one run share in this process: events, breakers, executors."""

    emit: EventSink | None
    breakers: BreakerRegistry = field(default_factory=BreakerRegistry)
    cancel: CancelToken | None = None
    on_results: ResultsSink | None = None
    executors: Executors = field(default_factory=Executors)
    owns_executors: bool = True  # close them when the run ends

    def executor(self, strategy: str) -> ParallelExecutor:
        return self.executors.get(strategy)

    def close(self) -> None:
        if self.owns_executors:
            self.executors.close()


_context: contextvars.ContextVar[_RunContext | None] = contextvars.ContextVar(
    "tead_run_context", default=None
)


def _emit(ctx: _RunContext, event: Event) -> None:
    if ctx.emit is not None:
        ctx.emit(event)


def run_workflow(
    workflow: Workflow,
    state: Mapping[str, Any] | None = None,
    *,
    entry_point: str = START,
    exit_point: str = END,
    on_event: EventSink | None = None,
    breakers: BreakerRegistry | None = None,
    executors: Executors | None = None,
    cancel: CancelToken | None = None,
    on_results: ResultsSink | None = None,
) -> dict[str, Any]:
    """Run `workflow` on its initial state updated with `state`; return the final state.

    `executors` lets runs share executors (and so warm process pools); the caller closes
    them. Without it, the run starts its own and closes them when it ends. Setting
    `cancel` stops the run (RunCancelled) at the next node, or at once inside a fan-out;
    `on_results` receives every fan-out's results.
    """
    workflow.check_scope(entry_point, exit_point)
    current = copy.deepcopy(workflow.initial_state)
    current.update(copy.deepcopy(dict(state or {})))
    ctx = _RunContext(
        emit=on_event, breakers=breakers or workflow.breakers, cancel=cancel, on_results=on_results
    )
    if executors is not None:
        ctx.executors, ctx.owns_executors = executors, False
    token = _context.set(ctx)
    started = time.perf_counter()
    _emit(ctx, RunStarted(workflow=workflow.name, entry=entry_point, exit=exit_point))
    try:
        final = run_scope(workflow, current, entry_point, exit_point, ctx=ctx)
    except Exception as exc:
        _emit(ctx, RunFinished(status="failed", error=str(exc), duration_ms=_ms_since(started)))
        raise
    finally:
        _context.reset(token)
        ctx.close()
    _emit(ctx, RunFinished(status="succeeded", duration_ms=_ms_since(started), state=final))
    return final


def stream_workflow(
    workflow: Workflow,
    state: Mapping[str, Any] | None = None,
    *,
    entry_point: str = START,
    exit_point: str = END,
) -> Iterator[dict[str, Any]]:
    """Run in a background thread and yield events as they come, each as its JSON encoding
    (`Event.to_json()`); errors are re-raised."""
    events: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
    failure: list[BaseException] = []

    def put(event: Event) -> None:
        events.put(event.to_json())

    def work() -> None:
        try:
            run_workflow(
                workflow, state, entry_point=entry_point, exit_point=exit_point, on_event=put
            )
        except BaseException as exc:
            failure.append(exc)
        finally:
            events.put(None)

    worker = threading.Thread(target=work, name="tead-stream", daemon=True)
    worker.start()
    while (event := events.get()) is not None:
        yield event
    worker.join()
    if failure:
        raise failure[0]


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def run_scope(
    workflow: Workflow,
    state: dict[str, Any],
    entry: str,
    exit: str,
    *,
    ctx: _RunContext,
    path: str = "",
) -> dict[str, Any]:
    """Walk from `entry` until `exit` (not run) or `__end__`, fanning out on the way."""
    pending: dict[str, list[ParallelFlowResult]] = {}
    current = entry
    while current not in (exit, END):
        if ctx.cancel is not None and ctx.cancel.reason is not None:
            raise RunCancelled(ctx.cancel.reason)
        if current != START:
            _run_node(workflow, current, state, pending.pop(current, None), ctx=ctx, path=path)
        groups = workflow.fanouts.get(current)
        if groups:
            pending.update(_fan_out(workflow, groups, state, ctx=ctx, path=path))
            current = groups[0].fan_in
        else:
            current = workflow.next_node(current, state)
    return state


def _run_node(
    workflow: Workflow,
    name: str,
    state: dict[str, Any],
    results: list[ParallelFlowResult] | None,
    *,
    ctx: _RunContext,
    path: str,
) -> None:
    node = workflow.nodes[name]
    if ctx.emit is not None:
        if results is not None:
            failed = sum(not r.success for r in results)
            _emit(ctx, FanIn(node=name, path=path, branches=len(results), failed=failed))
        _emit(ctx, NodeStarted(node=name, path=path))
    if node.fn is None:
        if ctx.emit is not None:
            _emit(ctx, NodeFinished(node=name, path=path, status="succeeded", duration_ms=0.0))
        return
    started = time.perf_counter()
    try:
        if name in workflow.fan_in_nodes:
            update = node.fn(state, parallel_results=results or [])
        else:
            update = node.fn(state)
        if update is not None and not isinstance(update, Mapping):
            raise TypeError(f"returned {type(update).__name__}, expected a dict or None")
    except (Exception, SystemExit) as exc:
        _emit(
            ctx,
            NodeFinished(
                node=name,
                path=path,
                status="failed",
                error=f"{type(exc).__name__}: {exc}",
                duration_ms=_ms_since(started),
            ),
        )
        raise NodeError(name, exc) from exc
    if update:
        state.update(update)
    if ctx.emit is not None:
        _emit(
            ctx,
            NodeFinished(node=name, path=path, status="succeeded", duration_ms=_ms_since(started)),
        )


def _fan_out(
    workflow: Workflow,
    groups: tuple[FanOut, ...],
    state: dict[str, Any],
    *,
    ctx: _RunContext,
    path: str,
) -> dict[str, list[ParallelFlowResult]]:
    """Run every fan-out leaving one node (all at once); results keyed by fan-in node."""
    if len(groups) == 1:
        return {groups[0].fan_in: _run_group(workflow, groups[0], state, ctx=ctx, path=path)}
    # The groups share a token of their own: when one fails (fail_fast), the others stop.
    parent = ctx.cancel
    token = parent.child() if parent is not None else CancelToken()

    def relay() -> None:
        token.cancel(parent.reason if parent is not None and parent.reason else "cancelled")

    unsubscribe = parent.subscribe(relay) if parent is not None else None
    group_ctx = dataclasses.replace(ctx, cancel=token)
    pool = ThreadPoolExecutor(len(groups), thread_name_prefix="tead-fanout")
    try:
        futures = [
            pool.submit(
                contextvars.copy_context().run,
                _run_group,
                workflow,
                group,
                state,
                ctx=group_ctx,
                path=path,
            )
            for group in groups
        ]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in futures if f in done and f.exception() is not None), None)
        if failed is not None:
            token.cancel("cancelled")
            wait(futures)  # the others stop at once now
            raise failed.exception()  # type: ignore[misc]
        return {group.fan_in: f.result() for group, f in zip(groups, futures, strict=True)}
    finally:
        pool.shutdown(wait=False)
        if unsubscribe is not None:
            unsubscribe()


def _run_group(
    workflow: Workflow, fanout: FanOut, state: dict[str, Any], *, ctx: _RunContext, path: str
) -> list[ParallelFlowResult]:
    config = fanout.config
    specs = _branch_specs(fanout, state)
    tasks = [
        BranchTask(
            workflow=workflow,
            entry=target,
            exit=fanout.fan_in,
            state=_branch_state(fanout, state, item, branch),
            branch=branch,
            path=f"{path}/{branch}" if path else branch,
            include_traceback=config.include_traceback,
        )
        for branch, target, item in specs
    ]

    def fresh_state(index: int) -> dict[str, Any]:  # for retries: the branch's input again
        return _branch_state(fanout, state, specs[index][2], specs[index][0])

    hooks = FanOutHooks(breakers=ctx.breakers, fresh_state=fresh_state, cancel=ctx.cancel)
    if ctx.emit is not None:
        hooks = _event_hooks(ctx, fanout, tasks, hooks, path)
    results = ctx.executor(config.strategy).execute(tasks, config, hooks)
    if ctx.cancel is not None and ctx.cancel.reason is not None:
        raise RunCancelled(ctx.cancel.reason)
    if ctx.on_results is not None:
        ctx.on_results(path, fanout.source, fanout.fan_in, results)
    if config.fail_fast:
        failed = [r for r in results if not r.success]
        cause = next((r for r in failed if r.error_type != "FanOutCancelledError"), None)
        if cause is not None:
            raise FanOutError(fanout.source, cause)
    return results


def _event_hooks(
    ctx: _RunContext, fanout: FanOut, tasks: list[BranchTask], hooks: FanOutHooks, path: str
) -> FanOutHooks:
    """`hooks` plus the fan-out's events: started, branch started / retried / finished,
    circuit changed."""
    strategy = fanout.config.strategy
    node, fan_in = fanout.source, fanout.fan_in
    _emit(
        ctx,
        FanOutStarted(
            node=node,
            fan_in=fan_in,
            path=path,
            strategy=strategy,
            branches=tuple(t.branch for t in tasks),
        ),
    )

    def on_start(index: int) -> None:
        task = tasks[index]
        _emit(
            ctx,
            BranchStarted(
                node=node, fan_in=fan_in, path=task.path, branch=task.branch, strategy=strategy
            ),
        )

    def on_result(index: int, result: ParallelFlowResult) -> None:
        _emit(
            ctx,
            BranchFinished(
                node=node,
                fan_in=fan_in,
                path=tasks[index].path,
                branch=result.branch,
                strategy=strategy,
                success=result.success,
                error=result.error,
                error_type=result.error_type,
                timeout=result.timeout,
                retry_count=result.retry_count,
                timing_ms=result.timing_ms,
            ),
        )

    def on_retry(index: int, attempt: int, delay_s: float, error: str) -> None:
        _emit(
            ctx,
            BranchRetry(
                path=tasks[index].path,
                branch=tasks[index].branch,
                attempt=attempt,
                delay_s=round(delay_s, 3),
                error=error,
            ),
        )

    def on_transition(change: Transition) -> None:
        _emit(ctx, CircuitChanged(name=change.name, old=change.old, new=change.new))

    return dataclasses.replace(
        hooks,
        on_start=on_start,
        on_result=on_result,
        on_retry=on_retry,
        on_transition=on_transition,
    )


_NO_ITEM = object()


def _branch_specs(fanout: FanOut, state: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(branch name, start node, for_each item or _NO_ITEM) for each branch, in order."""
    if fanout.for_each is None:
        return [(target, target, _NO_ITEM) for target in fanout.targets]
    try:
        items = list(fanout.for_each(state))
    except Exception as exc:
        raise RunError(
            f"fan-out at {fanout.source!r}: for_each raised {type(exc).__name__}: {exc}"
        ) from exc
    target = fanout.targets[0]
    return [(f"{target}[{index}]", target, item) for index, item in enumerate(items)]


def _branch_state(fanout: FanOut, state: dict[str, Any], item: Any, branch: str) -> dict[str, Any]:
    """A branch's own deep copy of the fan-out state (with its item, for for_each)."""
    values = dict(state)
    if item is not _NO_ITEM:
        values[fanout.item_var] = item
    try:
        return copy.deepcopy(values)
    except Exception as exc:
        for key, value in values.items():
            try:
                copy.deepcopy(value)
            except Exception as key_exc:
                raise PickleValidationError(branch, key, key_exc, copying=True) from None
        raise PickleValidationError(branch, None, exc, copying=True) from None


def run_branch(task: BranchTask) -> ParallelFlowResult:
    """Run one branch and record its outcome; never raises for the branch's own errors."""
    ctx = _context.get()
    own = ctx is None  # in a worker process: no events, breakers and executors of its own
    if ctx is None:
        ctx = _RunContext(emit=None)
    started = time.perf_counter()
    # A branch thread of a cancellable run counts as its work until it returns.
    working = ctx.cancel.activity.working() if ctx.cancel is not None else nullcontext()
    try:
        with working:
            state = run_scope(
                task.workflow, task.state, task.entry, task.exit, ctx=ctx, path=task.path
            )
    except (Exception, SystemExit) as exc:
        original = exc.error if isinstance(exc, NodeError) else exc
        return failure_result(task, original, timing_ms=_ms_since(started))
    finally:
        if own:
            ctx.close()
    return ParallelFlowResult(
        branch=task.branch, success=True, state=state, timing_ms=_ms_since(started)
    )
