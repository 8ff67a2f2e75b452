"""What an executor gives the fan-out supervisor: a way to start branch attempts and to
give up on them. Thread and process executors differ only here."""

from __future__ import annotations

from collections.abc import Callable, Collection
from concurrent.futures import Future
from typing import TYPE_CHECKING, Protocol

from tead.parallel.config import ParallelFlowResult

if TYPE_CHECKING:
    from tead.engine.task import BranchTask

Attempt = Future[ParallelFlowResult]
Gate = Callable[[], ParallelFlowResult | None]
Settle = Callable[[ParallelFlowResult], None]


class Launcher(Protocol):
    """How an executor starts branch attempts and gives up on them."""

    #: whether launching copies the task's state (pickling does); if not, the supervisor
    #: hands each attempt its own deep copy when a retry may need the original
    copies_state: bool
    #: whether the launcher queues attempts itself and calls `gate()` as each one really
    #: starts (threads); if not, the supervisor starts at most max_workers at a time
    runs_gate: bool

    def launch(
        self,
        task: BranchTask,
        *,
        isolated: bool = False,
        gate: Gate | None = None,
        settle: Settle | None = None,
    ) -> Attempt:
        """Start `task`. With a gate, call it at the real start and, if it returns a
        result, finish with that result instead of running the task; call `settle` with
        the result on the same thread as soon as the attempt returns."""
        ...

    def prepare(self, *, isolated: bool = False) -> None:
        """Get ready to launch at once (start worker processes) before a clock starts."""
        ...

    def stop(self, attempts: Collection[Attempt], running: Collection[Attempt]) -> set[Attempt]:
        """Give up `attempts`; return the other `running` attempts that die with them."""
        ...

    def close(self) -> None:
        """Release what the launcher holds for this fan-out."""
        ...
