"""The seam between the engine and the strategies: what a fan-out hands an executor.

An executor receives a `FanOutJob` (the branch tasks, their failure policy, the hooks the
supervisor reports through, and two ways back into the calling run) and returns one result
per task, in task order. A branch's own failure is a result, never an exception.

`run_here` runs a branch in this process with the run's own context (its events, breakers,
cancel token and executors): the thread strategy and any in-process plug-in use it. Given
a `stop` token, cancelling it gives that attempt up: the branch stops at its next node and
emits nothing more (a thread cannot be killed; this is the nearest thing).
A strategy that runs branches elsewhere (a worker process, a host) runs them with
`tead.engine.walk.run_branch_elsewhere` there, which hands back a `BranchReport`: the
branch's result, its events and the results of the fan-outs nested in it; it passes the
report to `replay` before it reports the result, so every strategy's branches show the
same events (and the same nested results) in the same place.

An executor that a process serving run after run (a daemon's run worker) may keep for the
next runs, instead of closing it at each run's end, is `KeptAcrossRuns`: at a run's end it
releases what only that run needed and says what it keeps (`Kept`), so that the process
does not count its threads as left running by the run, nor unload the modules it needs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from tead.engine.events import Event
from tead.engine.logs import LogLine
from tead.engine.state import StateDelta
from tead.engine.task import BranchTask
from tead.parallel.breaker import BreakerSnapshot
from tead.parallel.cancel import CancelToken
from tead.parallel.config import ParallelConfig, ParallelFlowResult
from tead.parallel.hooks import FanOutHooks


class RunHere(Protocol):
    """Runs a branch in this process, in its run's context; cancelling `stop` gives this
    attempt up (it stops at its next node and its events are dropped)."""

    def __call__(self, task: BranchTask, stop: CancelToken | None = None) -> ParallelFlowResult: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class FanOutJob:
    """One fan-out, as an executor receives it."""

    tasks: Sequence[BranchTask]
    config: ParallelConfig
    hooks: FanOutHooks
    #: run a branch in this process, in the run's context (events, breakers, cancel)
    run_here: RunHere
    #: emit, in the calling run, what a branch reported from where it ran (its events,
    #: then its nested fan-outs' results)
    replay: Callable[[BranchReport], None]
    #: whether the run listens for events: if not, a branch run elsewhere need not send
    #: its events back (collecting and shipping them is most of a no-op branch's cost)
    listening: bool = True
    #: emit an event of the executor's own in the calling run (None: nobody listens)
    emit: Callable[[Event], None] | None = None


@runtime_checkable
class ParallelExecutor(Protocol):
    """A strategy: runs the branches of one fan-out; one result per task, in task order."""

    def execute(self, job: FanOutJob) -> list[ParallelFlowResult]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Kept:
    """What executors kept across runs keep: threads running, and the top-level packages
    of the modules they need loaded (besides the standard library's)."""

    threads: tuple[threading.Thread, ...] = ()
    packages: frozenset[str] = field(default_factory=frozenset)

    def __or__(self, other: Kept) -> Kept:
        return Kept(self.threads + other.threads, self.packages | other.packages)


@runtime_checkable
class KeptAcrossRuns(Protocol):
    """An executor kept for the next runs of a process that serves run after run."""

    def run_ended(self) -> Kept:
        """A run ended: release what only it needed; what is kept for the next runs."""
        ...


class ExecutorSource(Protocol):
    """Where a run finds the executor of a strategy (a `tead.executors.Executors`)."""

    def get(self, strategy: str) -> ParallelExecutor: ...

    def close(self) -> None: ...


#: one fan-out's results as a run keeps them: (path of the fan-out, its source node, its
#: fan-in node, the results in branch order)
FanOutResults = tuple[str, str, str, list[ParallelFlowResult]]


@dataclass(frozen=True, slots=True)
class BranchReport:
    """What a branch run elsewhere sends back: its result, the events it emitted, the
    results of the fan-outs nested in it, and the states of the circuit breakers those
    fan-outs changed, and what its nodes wrote (`logs`). With `delta`, the result's state
    is left out: `delta` is what the branch changed over the state it was sent (the
    receiver merges it back)."""

    result: ParallelFlowResult
    events: tuple[Event, ...] = ()
    breakers: tuple[BreakerSnapshot, ...] = ()
    fanouts: tuple[FanOutResults, ...] = ()
    delta: StateDelta | None = None
    logs: tuple[LogLine, ...] = ()  # what its nodes wrote (tead.engine.logs)

    def __reduce__(self) -> tuple[object, ...]:
        """Pickle as a plain tuple (a worker sends one per branch: the dataclass default,
        through `fields()`, costs several times more)."""
        values = (self.result, self.events, self.breakers, self.fanouts)
        if self.delta is None:
            return (BranchReport, (*values, None, self.logs))
        delta = self.delta
        return (_report_with_delta, (*values, delta.changed, delta.deleted, self.logs))


def _report_with_delta(*values: Any) -> BranchReport:
    """A report with a delta, from its pickled values (one global, not two classes)."""
    result, events, breakers, fanouts, changed, deleted, logs = values
    return BranchReport(result, events, breakers, fanouts, StateDelta(changed, deleted), logs)
