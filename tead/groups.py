"""`tead.parallel(...)`: the composition root of parallel groups (tead.parallel.group). It
gives a group its journal and the executors its plain callables run on.

A plain callable member runs as a one-node branch task ("call fn(*args, **kwargs)") handed
to the strategy's executor as a fan-out of one, the way a YAML fan-out hands over its
branches: the same executors (thread, process, plug-ins) and the same supervisor run it,
and stopping it (a group timeout, `fail_fast`, leaving the block) gives the attempt up as
they do (a thread is abandoned, a worker process killed). The group applies the policy
(retries, breaker, callbacks) around each attempt, the same for every kind of member.
Process members need a picklable callable and arguments (a module-level function).
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from tead.engine.context import RunContext
from tead.engine.seam import BranchReport, FanOutJob
from tead.engine.task import BranchTask
from tead.engine.walk import run_branch
from tead.errors import UnknownStrategyError
from tead.executors.registry import BUILTIN_FACTORIES, Executors
from tead.graph.compiled import END, START, Edge, Node, WorkflowGraph
from tead.parallel.breaker import BreakerRegistry
from tead.parallel.cancel import CancelToken
from tead.parallel.config import (
    CircuitBreakerConfig,
    ParallelConfig,
    ParallelFlowResult,
    RetryPolicy,
)
from tead.parallel.group import ParallelGroup
from tead.parallel.hooks import FanOutHooks
from tead.parallel.journal import Journal, SqliteJournal
from tead.parallel.members import GroupListener, value_result
from tead.parallel.scope import AsyncClock

_NODE = "call"


def parallel(
    *,
    max_workers: int = 5,
    fail_fast: bool = False,
    timeout: float | None = None,
    strategy: str = "thread",
    retry: RetryPolicy | None = None,
    circuit_breaker: CircuitBreakerConfig | None = None,
    journal: str | os.PathLike[str] | Journal | None = None,
    name: str = "group",
    callbacks: Sequence[object] = (),
    include_traceback: bool = False,
    progress: GroupListener | None = None,
    breakers: BreakerRegistry | None = None,
    executors: Executors | None = None,
    clock: AsyncClock | None = None,
) -> ParallelGroup:
    """A parallel group, to use as `async with tead.parallel(...) as group:` (CONTRACT §5).

    `journal` is a file path (SQLite) or a `Journal`; nested groups inherit it, the
    breakers and `progress` (a listener such as `tead.GroupProgress`). `executors` shares
    executors (warm process pools) with your runs; by default the group has its own,
    closed when the block ends. UnknownStrategyError for a strategy nobody provides.
    """
    registry = executors or Executors()
    if strategy not in BUILTIN_FACTORIES:  # else no scan of installed plug-ins (ms)
        names = registry.names()
        if strategy not in names:
            raise UnknownStrategyError(strategy, names)
    own_journal = SqliteJournal(journal) if isinstance(journal, str | os.PathLike) else None

    def on_exit() -> None:
        if own_journal is not None:
            own_journal.close()
        if executors is None:
            registry.close()

    return ParallelGroup(
        name=name,
        max_workers=max_workers,
        fail_fast=fail_fast,
        timeout=timeout,
        strategy=strategy,
        retry=retry,
        circuit_breaker=circuit_breaker,
        journal=own_journal or (journal if not isinstance(journal, str | os.PathLike) else None),
        callbacks=callbacks,
        include_traceback=include_traceback,
        listener=progress,
        breakers=breakers,
        run_call=ExecutorCalls(registry, strategy, include_traceback=include_traceback),
        clock=clock,
        on_exit=on_exit,
    )


class ParallelEntry:
    """What `tead.parallel` is: calling it makes a group (`parallel()` above); its other
    attributes are the package tead.parallel's, so that `import tead.parallel.config as c`
    and `mock.patch("tead.parallel.supervisor...")` still reach the package it shadows."""

    __call__ = staticmethod(parallel)

    def __getattr__(self, name: str) -> Any:
        return getattr(sys.modules["tead.parallel"], name)

    def __repr__(self) -> str:
        return "<tead.parallel: call it for a parallel group; also the package tead.parallel>"


class ExecutorCalls:
    """Runs one attempt of a plain callable on a strategy's executor (a `CallRunner`)."""

    def __init__(self, executors: Executors, strategy: str, *, include_traceback: bool) -> None:
        self.executors = executors
        self.config = ParallelConfig(
            strategy=strategy, max_workers=1, include_traceback=include_traceback
        )

    async def __call__(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], key: str
    ) -> ParallelFlowResult:
        task = BranchTask(
            workflow=_call_graph(fn, args, kwargs),
            entry=_NODE,
            exit=END,
            state={},
            branch=key,
            path=key,
            include_traceback=self.config.include_traceback,
        )
        stop = CancelToken()
        ctx = RunContext(executors=self.executors, breakers=BreakerRegistry(), cancel=stop)
        job = FanOutJob(
            tasks=[task],
            config=self.config,
            hooks=FanOutHooks(cancel=stop),
            run_here=functools.partial(_run_here, ctx),
            replay=_ignore,
            listening=False,
        )
        done: Future[list[ParallelFlowResult]] = Future()
        thread = threading.Thread(target=_execute, args=(self.executors, job, done), daemon=True)
        thread.start()
        try:
            results = await asyncio.shield(asyncio.wrap_future(done))
        except asyncio.CancelledError:
            stop.cancel("cancelled")  # the supervisor gives the attempt up (kills a process)
            await asyncio.wrap_future(done)
            raise
        result = results[0]
        if not result.success:
            return result
        state = result.state or {}
        return value_result(key, state.get("value"), result.timing_ms)


def _execute(executors: Executors, job: FanOutJob, done: Future[list[ParallelFlowResult]]) -> None:
    try:
        done.set_result(executors.get(job.config.strategy).execute(job))
    except BaseException as exc:  # handed to the awaiting member, which records it
        done.set_exception(exc)


def _call_graph(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> WorkflowGraph:
    """A workflow of one node that calls `fn(*args, **kwargs)` into the state's `value`."""
    node = Node(name=_NODE, fn=functools.partial(_call, fn, args, kwargs))
    return WorkflowGraph(
        name="tead.parallel",
        nodes={_NODE: node},
        order=(_NODE,),
        edges={
            START: (Edge(source=START, target=_NODE),),
            _NODE: (Edge(source=_NODE, target=END),),
        },
        fanouts={},
    )


def _call(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], state: dict[str, Any]
) -> dict[str, Any]:
    return {"value": fn(*args, **kwargs)}


def _run_here(
    ctx: RunContext, task: BranchTask, stop: CancelToken | None = None
) -> ParallelFlowResult:
    return run_branch(task, ctx)


def _ignore(report: BranchReport) -> None:
    """A member's events are not listened to."""
