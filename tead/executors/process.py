"""The process strategy: branches run in worker processes, past the GIL.

What is sent is plain data: the `BranchTask` pickled up front, whose workflow pickles as
its source text and path (the worker loads it once and keeps it: `tead.engine.task`;
`uses:` modules beside the file import there too). Pickling every task before the first
one starts doubles as the check that the state can be sent: a value that cannot is named
by key and branch.

Workers come from a `WorkerPool` (workerpool.py) kept for the executor's life: across the
fan-outs of a run, and across runs when the daemon keeps the executor. A task is given to
a worker only when one is idle, and the supervisor's gate (breaker, callbacks, the start
of the branch's clock) runs at that moment, so neither queueing nor a worker's start-up
counts against a timeout. Stopping an attempt (a timeout, `fail_fast`, a cancelled run)
kills that attempt's worker alone; a worker that dies fails only the branch it was
running. Other fan-outs and runs sharing the pool never notice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import pickle
import threading
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from tead.engine.seam import BranchReport, ExecutorSource, FanOutJob
from tead.engine.state import (
    IMMUTABLE,
    BranchState,
    EntryRef,
    StateDelta,
    entry_index,
    resolve_entries,
)
from tead.engine.task import BranchTask, failure_result
from tead.engine.walk import run_branch_elsewhere
from tead.errors import PickleValidationError
from tead.executors.worker import BaseCache
from tead.executors.workerpool import SharedBase, WorkerPool
from tead.parallel.breaker import BreakerRegistry, BreakerSnapshot
from tead.parallel.config import ParallelFlowResult
from tead.parallel.launcher import Attempt, Gate, Settle
from tead.parallel.outcomes import Finished, Outcome
from tead.parallel.supervisor import supervise

Replay = Callable[[BranchReport], None]
#: makes the executors of fan-outs nested in a worker's branch (a registry, e.g. `Executors`)
NestedExecutors = Callable[[], ExecutorSource]


def run_pickled(make_executors: NestedExecutors, payload: bytes, bases: BaseCache) -> bytes:
    """The worker side: unpickle the breaker states to start from and a BranchTask (its
    workflow loaded once per worker), and run it; fan-outs nested in it get executors of
    their own, closed with the branch. Its events and breaker changes come back with its
    result, as a pickled `BranchReport`. A task of a fan-out whose base state this worker
    keeps (`base_key`) carries only its own part of the state, and its report only what
    the branch changed."""
    seed, task_bytes, listening, base_key = pickle.loads(payload)
    task = BranchTask.from_pickle(task_bytes)
    base = bases.get(base_key) if base_key is not None else None
    if base is not None:
        resolve_entries(task.state, base)
    executors = make_executors()
    try:
        report = run_branch_elsewhere(task, executors, seed, listening=listening, base=base)
    finally:
        executors.close()
    if report.delta is not None and base_key is not None:
        report = _without_unchanged(report, report.delta, task.state, bases, base_key)
    return pickle_report(task, report)


def _without_unchanged(
    report: BranchReport,
    delta: StateDelta,
    own: Mapping[str, Any],
    bases: BaseCache,
    base_key: str,
) -> BranchReport:
    """Leave out of the delta the base values the branch took out (a copy) but left as they
    were (they pickle to the same bytes): a branch that only reads a large value does not
    send it back."""
    base = bases.get(base_key)
    same = []
    for name, value in delta.changed.items():
        if name in own or name not in base or type(value) in IMMUTABLE:
            continue
        try:
            if pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL) == bases.pickled(
                base_key, name
            ):
                same.append(name)
        except Exception:  # pickle_report names what cannot be sent
            continue
    if not same:
        return report
    changed = {k: v for k, v in delta.changed.items() if k not in same}
    return dataclasses.replace(report, delta=StateDelta(changed=changed, deleted=delta.deleted))


def pickle_report(task: BranchTask, report: BranchReport) -> bytes:
    """`report` pickled; if its final state cannot be, the branch fails instead (naming the
    state key) and its events still go back; nested results that cannot are left out."""
    try:
        return pickle.dumps(report, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        state = report.delta.changed if report.delta is not None else report.result.state
        error = _unsendable(task.branch, state or {}, exc)
    if error.key is None:  # the branch's state can go: a nested result's state cannot
        with contextlib.suppress(Exception):
            return pickle.dumps(dataclasses.replace(report, fanouts=()), pickle.HIGHEST_PROTOCOL)
    failed = failure_result(task, error, timing_ms=report.result.timing_ms)
    failed_report = BranchReport(failed, report.events, report.breakers, logs=report.logs)
    return pickle.dumps(failed_report, protocol=pickle.HIGHEST_PROTOCOL)


def _unsendable(branch: str, state: Mapping[str, Any], error: Exception) -> PickleValidationError:
    for key, value in state.items():
        try:
            pickle.dumps(value)
        except Exception as key_exc:
            return PickleValidationError(branch, key, key_exc, returning=True)
    return PickleValidationError(branch, None, error, returning=True)


def _seeds_breakers(job: FanOutJob) -> bool:
    """Whether fan-outs nested in these branches may use the run's breakers (the workflow
    has a fan-out with a circuit breaker)."""
    if job.hooks.breakers is None or not job.tasks:
        return False
    graph = job.tasks[0].workflow
    return any(f.config.circuit_breaker for group in graph.fanouts.values() for f in group)


def _payload(
    seed: tuple[BreakerSnapshot, ...], task: bytes, listening: bool, base_key: str | None
) -> bytes:
    """What a worker is sent: the breaker states to start from, the pickled task, whether
    its run wants the branch's events, and the key of the fan-out's base it keeps."""
    return pickle.dumps((seed, task, listening, base_key), protocol=pickle.HIGHEST_PROTOCOL)


def pickle_tasks(tasks: Sequence[BranchTask]) -> list[bytes]:
    """Pickle every task, or raise PickleValidationError naming the offending key."""
    return [task.to_pickle() for task in tasks]


def shared_base(tasks: Sequence[BranchTask]) -> Mapping[str, Any] | None:
    """The base state every task's state was made over (a fan-out's), if they share one."""
    first = tasks[0].state
    base = first.base if isinstance(first, BranchState) else None
    if base is None:
        return None
    for task in tasks:
        if not isinstance(task.state, BranchState) or task.state.base is not base:
            return None
    return base


def pickle_base(base: Mapping[str, Any], branch: str) -> bytes:
    """A fan-out's base state pickled once; PickleValidationError naming the key (and the
    fan-out's first branch) if a value cannot be."""
    try:
        return pickle.dumps(dict(base), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        for key, value in base.items():
            try:
                pickle.dumps(value)
            except Exception as key_exc:
                raise PickleValidationError(branch, key, key_exc) from None
        raise PickleValidationError(branch, None, exc) from None


class ProcessExecutor:
    """Runs fan-outs on reused worker pools (one per worker count).

    `make_executors` makes, in a worker, the executors of fan-outs nested in its branch; it
    is sent to the workers by reference, so it must be importable (a class or a function at
    module level, or a functools.partial of one).
    """

    def __init__(self, make_executors: NestedExecutors) -> None:
        self._job = functools.partial(run_pickled, make_executors)
        self._lock = threading.Lock()
        self._pools: dict[int, WorkerPool] = {}

    def pool(self, workers: int) -> WorkerPool:
        """The shared pool of `workers` processes, started on first use."""
        with self._lock:
            pool = self._pools.get(workers)
            if pool is None:
                pool = self._pools[workers] = WorkerPool(workers, self._job)
            return pool

    def execute(self, job: FanOutJob) -> list[ParallelFlowResult]:
        tasks = job.tasks
        if not tasks:
            return []
        base = shared_base(tasks)
        shared = None
        if base is not None:  # sent once to each worker that takes one of these branches
            shared = SharedBase(uuid.uuid4().hex, pickle_base(base, tasks[0].branch))
        launcher = ProcessLauncher(
            self.pool(min(job.config.workers, len(tasks))),
            tasks,
            job.replay,
            job.hooks.breakers,
            seeded=_seeds_breakers(job),
            listening=job.listening,
            shared=(base, shared) if base is not None and shared is not None else None,
        )
        try:
            return supervise(tasks, job.config, launcher, job.hooks)
        finally:
            if shared is not None:
                launcher.pool.release(shared.key)

    def close(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()


class ProcessLauncher:
    """Submits pre-pickled tasks to a shared pool; stops attempts one by one."""

    copies_state = True
    runs_gate = True  # the pool calls the gate as a worker takes the task

    def __init__(
        self,
        pool: WorkerPool,
        tasks: Sequence[BranchTask],
        replay: Replay,
        breakers: BreakerRegistry | None,
        *,
        seeded: bool = False,
        listening: bool = True,
        shared: tuple[Mapping[str, Any], SharedBase] | None = None,
    ) -> None:
        self.pool = pool
        self._shared = shared
        self._entries: dict[int, EntryRef] | None = None  # made when an item needs it
        self._owns: dict[int, dict[str, Any]] = {}  # each task's own part, by id(task)
        # every task pickled before the first one starts: the check that all can be sent
        self._payloads = {id(task): self._pickle(task) for task in tasks}
        self._replay = replay
        self._listening = listening
        self._breakers = breakers
        # the breaker states a branch starts from are taken as its worker takes it, so that
        # it sees what the branches before it did to them (as a thread branch does)
        self._seed_prefix = f"{tasks[0].workflow.name}:" if seeded and tasks else None
        self._in_pool: dict[Attempt, Future[Outcome]] = {}

    def _pickle(self, task: BranchTask) -> bytes:
        """The task pickled: over a shared base, with only its own part of the state (an
        entry of a base list, a for_each item, as a reference to it)."""
        if self._shared is None or not isinstance(task.state, BranchState):
            return task.to_pickle()
        own = self._owns[id(task)] = task.state.own_part()
        for value in own.values():
            if type(value) not in IMMUTABLE:
                if self._entries is None:
                    self._entries = entry_index(self._shared[0])
                own = {key: self._entries.get(id(value), value) for key, value in own.items()}
                break
        return task.to_pickle(own)

    def prepare(self) -> None:
        """Nothing to prepare: the gate runs when a ready worker takes the task."""

    def launch(
        self, task: BranchTask, *, gate: Gate | None = None, settle: Settle | None = None
    ) -> Attempt:
        payload = self._payloads.get(id(task)) or self._pickle(task)
        attempt: Attempt = Future()
        base = self._shared[1] if self._shared is not None else None
        dispatch = functools.partial(self._dispatch, gate)
        in_pool = self.pool.submit(payload, dispatch, base)
        self._in_pool[attempt] = in_pool
        in_pool.add_done_callback(functools.partial(self._returned, attempt, task, settle))
        return attempt

    def _returned(
        self, attempt: Attempt, task: BranchTask, settle: Settle | None, in_pool: Future[Outcome]
    ) -> None:
        """The pool's outcome: replay the branch's events in this run, then tell the
        breaker (`settle`), then the supervisor (through `attempt`)."""
        self._in_pool.pop(attempt, None)
        if in_pool.cancelled():
            attempt.cancel()
            return
        error = in_pool.exception()
        if error is not None:
            attempt.set_exception(error)
            return
        outcome = in_pool.result()
        try:
            if isinstance(outcome, Finished) and isinstance(outcome.result, bytes):
                report: BranchReport = pickle.loads(outcome.result)
                if self._breakers is not None and report.breakers:
                    self._breakers.adopt(report.breakers)
                self._replay(report)
                outcome = Finished(result=self._full(task, report))
            if settle is not None:
                settle(outcome)
        except BaseException as exc:  # an event sink raised: the branch fails, as in a thread
            attempt.set_exception(exc)
            return
        attempt.set_result(outcome)

    def _full(self, task: BranchTask, report: BranchReport) -> ParallelFlowResult:
        """The branch's result with its full final state: what it changed, merged over the
        state it was sent (shared with its siblings, copied on access)."""
        if report.delta is None or self._shared is None:
            return report.result
        base = self._shared[0]
        own = self._owns.get(id(task))
        if own is None:
            own = task.state.own_part() if isinstance(task.state, BranchState) else {}
        result = report.result  # a success (a failure has no delta): branch, timing_ms
        state = BranchState.merged(base, report.delta, own=own)
        return ParallelFlowResult(
            branch=result.branch, success=True, state=state, timing_ms=result.timing_ms
        )

    def _dispatch(self, gate: Gate | None, in_pool: Future[Outcome], task: bytes) -> bytes | None:
        """As a worker takes the task: run the gate; if it turns the branch away, the task
        is not sent and the gate's outcome is the attempt's. Else send it with the breaker
        states of this moment."""
        denied = gate() if gate is not None else None
        if denied is not None:
            in_pool.set_result(denied)
            return None
        registry, prefix = self._breakers, self._seed_prefix
        seed = registry.seed_for(prefix) if registry is not None and prefix is not None else ()
        base_key = self._shared[1].key if self._shared is not None else None
        return _payload(seed, task, self._listening, base_key)

    def stop(self, attempts: Collection[Attempt]) -> None:
        """Stop each attempt alone (waiting ones never start, running ones are killed)."""
        for attempt in attempts:
            in_pool = self._in_pool.get(attempt)
            if in_pool is not None:
                self.pool.stop(in_pool)

    def close(self) -> None:
        """Nothing to release: the pool belongs to the executor."""
