"""What an executor gives the fan-out supervisor: a way to start branch attempts, to give
up on them, and each attempt's outcome (outcomes.py). Executors differ only here."""

from __future__ import annotations

from collections.abc import Callable, Collection
from concurrent.futures import Future
from typing import Protocol, TypeVar

from tead.parallel.outcomes import Denied, Outcome
from tead.parallel.task import SupervisedTask

#: one attempt of one branch: its future's result is how it ended; if the future raises,
#: the launcher failed (the branch fails with that error); if it is cancelled: Lost
Attempt = Future[Outcome]
#: called as the attempt really starts: a Denied says do not run it (finish with it)
Gate = Callable[[], Denied | None]
#: called with the outcome, on the thread that saw it, before the supervisor hears of it
Settle = Callable[[Outcome], None]

T_contra = TypeVar("T_contra", bound=SupervisedTask, contravariant=True)


class Launcher(Protocol[T_contra]):
    """How an executor starts branch attempts and gives up on them."""

    #: whether launching copies the task's state (pickling does); if not, the supervisor
    #: hands each attempt its own deep copy when a retry may need the original
    copies_state: bool
    #: whether the launcher queues attempts itself and calls `gate()` as each one really
    #: starts (threads, worker pools); if not, the supervisor gates each attempt as it
    #: launches it, and with a timeout starts at most max_workers at a time
    runs_gate: bool

    def launch(
        self, task: T_contra, *, gate: Gate | None = None, settle: Settle | None = None
    ) -> Attempt:
        """Start `task`. With a gate, call it at the real start and, if it returns a
        Denied, finish with that instead of running the task; call `settle` with the
        outcome on that thread as soon as the attempt ends, before the supervisor hears
        of it (so that the next attempt's gate sees what its breaker was told)."""
        ...

    def prepare(self) -> None:
        """Get ready to launch at once (start workers) before an attempt's clock starts
        (called before each launch when the launcher does not run the gate)."""
        ...

    def stop(self, attempts: Collection[Attempt]) -> None:
        """Give up `attempts` (they may be waiting or running). Others that die with them
        end with Lost."""
        ...

    def close(self) -> None:
        """Release what the launcher holds for this fan-out."""
        ...
