"""Fanning out: one fan-out's branch tasks handed to its strategy's executor, the fan-out's
events, and several fan-outs leaving one node run at once."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import nullcontext
from typing import Any

from tead.engine.context import RunContext
from tead.engine.events import (
    BranchFinished,
    BranchRetry,
    BranchStarted,
    CircuitChanged,
    Event,
    EventSink,
    FanOutStarted,
)
from tead.engine.journal import Journal, branch_key, input_digest
from tead.engine.logs import concurrent, echo
from tead.engine.seam import BranchReport, FanOutJob
from tead.engine.state import BranchState
from tead.engine.task import BranchTask
from tead.errors import FanOutError, RunCancelled, RunError
from tead.graph.compiled import FanOut, WorkflowGraph
from tead.parallel.breaker import Transition
from tead.parallel.cancel import CancelToken
from tead.parallel.config import ParallelFlowResult
from tead.parallel.hooks import FanOutHooks

#: runs one branch in this process, in a run's context (tead.engine.walk.run_branch)
BranchRunner = Callable[[BranchTask, RunContext], ParallelFlowResult]


def fan_out(
    workflow: WorkflowGraph,
    groups: tuple[FanOut, ...],
    state: dict[str, Any],
    *,
    ctx: RunContext,
    path: str,
    run_branch: BranchRunner,
) -> dict[str, list[ParallelFlowResult]]:
    """Run every fan-out leaving one node (all at once); results keyed by fan-in node.

    The branches share the state's values (copied by whoever first takes one out: see
    `tead.engine.state`); `state` itself shares them from now on too, so that nothing the
    run does after the fan-out can change what its branches and results hold."""
    specs = [_branch_specs(group, state) for group in groups]  # for_each on the live state
    base = state.share() if isinstance(state, BranchState) else dict(state)
    run = functools.partial(_run_group, workflow, base=base, path=path, run_branch=run_branch)
    if len(groups) == 1:
        return {groups[0].fan_in: run(groups[0], specs[0], ctx=ctx)}
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
            pool.submit(run, group, spec, ctx=group_ctx)
            for group, spec in zip(groups, specs, strict=True)
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
    workflow: WorkflowGraph,
    fanout: FanOut,
    specs: list[tuple[str, str, Any]],
    *,
    base: dict[str, Any],
    ctx: RunContext,
    path: str,
    run_branch: BranchRunner,
) -> list[ParallelFlowResult]:
    config = fanout.config
    tasks = [
        BranchTask(
            workflow=workflow,
            entry=target,
            exit=fanout.fan_in,
            state=_branch_state(fanout, base, item),
            branch=branch,
            path=f"{path}/{branch}" if path else branch,
            include_traceback=config.include_traceback,
        )
        for branch, target, item in specs
    ]

    journal = ctx.journal
    replayed: dict[int, ParallelFlowResult] = {}
    keys: list[str | None] = []
    if journal is not None:  # branches the resumed run completed are not run again
        digest = input_digest(base)
        keys = [
            branch_key(t.path, digest, item) for t, (_, _, item) in zip(tasks, specs, strict=True)
        ]
        for index, task in enumerate(tasks):
            if (found := journal.branch(keys[index], task.branch, base)) is not None:
                replayed[index] = found
                journal.branch_done(keys[index], found, base)
    todo = [i for i in range(len(tasks)) if i not in replayed]
    running = [tasks[i] for i in todo]

    def fresh_state(index: int) -> dict[str, Any]:  # for retries: the branch's input again
        return _branch_state(fanout, base, specs[todo[index]][2])

    hooks = FanOutHooks(breakers=ctx.breakers, fresh_state=fresh_state, cancel=ctx.cancel)
    if ctx.emit is not None:
        hooks = _event_hooks(ctx, fanout, running, hooks, path)
    if journal is not None:
        hooks = _journal_hooks(journal, [keys[i] for i in todo], hooks, base)
    job = FanOutJob(
        tasks=running,
        config=config,
        hooks=hooks,
        run_here=functools.partial(_run_here, run_branch, ctx),
        replay=functools.partial(_replay, ctx),
        listening=ctx.emit is not None,
        emit=ctx.emit,
    )
    ran = ctx.executors.get(config.strategy).execute(job) if running else []
    _check_results(fanout, running, ran)
    by_index = dict(zip(todo, ran, strict=True))
    results = [replayed[i] if i in replayed else by_index[i] for i in range(len(tasks))]
    if journal is not None:  # a plug-in strategy may not report each result as it comes
        for index, result in zip(todo, ran, strict=True):
            journal.branch_done(keys[index], result, base)
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


def _journal_hooks(
    journal: Journal, keys: list[str | None], hooks: FanOutHooks, base: dict[str, Any]
) -> FanOutHooks:
    """`hooks` plus recording each branch that succeeds, as it does."""
    inner = hooks.on_result

    def on_result(index: int, result: ParallelFlowResult) -> None:
        journal.branch_done(keys[index], result, base)
        if inner is not None:
            inner(index, result)

    return dataclasses.replace(hooks, on_result=on_result)


def _check_results(
    fanout: FanOut, tasks: Sequence[BranchTask], results: Sequence[ParallelFlowResult]
) -> None:
    """RunError unless there is one result per task, in task order: a plug-in's bug must
    not hand the fan-in a branch's result in another's place, or none."""
    strategy = fanout.config.strategy
    if len(results) != len(tasks):
        raise RunError(
            f"fan-out at {fanout.source!r}: strategy {strategy!r} returned "
            f"{len(results)} results for {len(tasks)} branches"
        )
    got = [getattr(r, "branch", None) for r in results]
    if got != [t.branch for t in tasks]:
        raise RunError(
            f"fan-out at {fanout.source!r}: strategy {strategy!r} returned results for "
            f"branches {got}, not {[t.branch for t in tasks]} in that order"
        )


def _event_hooks(
    ctx: RunContext, fanout: FanOut, tasks: list[BranchTask], hooks: FanOutHooks, path: str
) -> FanOutHooks:
    """`hooks` plus the fan-out's events: started, branch started / retried / finished,
    circuit changed."""
    strategy = fanout.config.strategy
    node, fan_in = fanout.source, fanout.fan_in
    ctx.publish(
        FanOutStarted(
            node=node,
            fan_in=fan_in,
            path=path,
            strategy=strategy,
            branches=tuple(t.branch for t in tasks),
        )
    )

    def on_start(index: int) -> None:
        task = tasks[index]
        ctx.publish(
            BranchStarted(
                node=node, fan_in=fan_in, path=task.path, branch=task.branch, strategy=strategy
            )
        )

    def on_result(index: int, result: ParallelFlowResult) -> None:
        ctx.publish(
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
            )
        )

    def on_retry(index: int, attempt: int, delay_s: float, error: str) -> None:
        ctx.publish(
            BranchRetry(
                path=tasks[index].path,
                branch=tasks[index].branch,
                attempt=attempt,
                delay_s=round(delay_s, 3),
                error=error,
            )
        )

    def on_transition(change: Transition) -> None:
        ctx.publish(CircuitChanged(name=change.name, old=change.old, new=change.new))

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


def _branch_state(fanout: FanOut, base: dict[str, Any], item: Any) -> BranchState:
    """A branch's state: the fan-out state's values shared (each copied when the branch
    first takes it out), with its item for for_each (copied likewise)."""
    if item is _NO_ITEM:
        return BranchState.over(base)
    return BranchState.over(base, {fanout.item_var: item})


def _run_here(
    run_branch: BranchRunner, ctx: RunContext, task: BranchTask, stop: CancelToken | None = None
) -> ParallelFlowResult:
    """Run `task` in `ctx`; once `stop` is cancelled (the attempt was given up), the branch
    stops at its next node and its events are dropped. Meanwhile its output is caught per
    thread (tead.engine.logs.concurrent), if the run keeps logs."""
    with nullcontext() if ctx.logs is None else concurrent():
        return _run_here_now(run_branch, ctx, task, stop)


def _run_here_now(
    run_branch: BranchRunner, ctx: RunContext, task: BranchTask, stop: CancelToken | None
) -> ParallelFlowResult:
    if stop is None:
        return run_branch(task, ctx)
    parent = ctx.cancel
    token = parent.child() if parent is not None else CancelToken()

    def relay() -> None:
        token.cancel(parent.reason if parent is not None and parent.reason else "cancelled")

    unsubscribe = [stop.subscribe(relay)]
    if parent is not None:
        unsubscribe.append(parent.subscribe(relay))
    emit = ctx.emit
    live_emit = None if emit is None else functools.partial(_unless_stopped, stop, emit)
    try:
        return run_branch(task, dataclasses.replace(ctx, cancel=token, emit=live_emit))
    finally:
        for undo in unsubscribe:
            undo()


def _unless_stopped(stop: CancelToken, emit: EventSink, event: Event) -> None:
    # Under the token's lock: once the attempt is given up (and the run may have finished),
    # no event of it can slip out after a check made just before.
    stop.unless_cancelled(emit, event)


def _replay(ctx: RunContext, report: BranchReport) -> None:
    if ctx.emit is not None:
        for event in report.events:
            ctx.emit(event)
    if ctx.on_results is not None:
        for fanout in report.fanouts:
            ctx.on_results(*fanout)
    if report.logs:  # to the run's logs; a run that keeps none shows them as they came
        (ctx.logs or echo)(list(report.logs))
