"""What the nodes and fan-outs of one run share: where events go, the breakers, the
executors, the cancel token, who keeps fan-out results and where nodes' output goes.
Given to the run, never found through a global, so a branch behaves the same wherever it
runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tead.engine.events import Event, EventSink
from tead.engine.journal import Journal
from tead.engine.logs import LogSink
from tead.engine.seam import ExecutorSource
from tead.parallel.breaker import BreakerRegistry
from tead.parallel.cancel import CancelToken
from tead.parallel.config import ParallelFlowResult

# (path of the fan-out, its source node, its fan-in node, the results in branch order)
ResultsSink = Callable[[str, str, str, list[ParallelFlowResult]], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunContext:
    """One run's surroundings, shared by its main path and its in-process branches."""

    executors: ExecutorSource
    breakers: BreakerRegistry
    emit: EventSink | None = None
    cancel: CancelToken | None = None
    on_results: ResultsSink | None = None
    journal: Journal | None = None  # completed steps: replayed and recorded (resume)
    logs: LogSink | None = None  # where what its nodes write goes (tead.engine.logs)

    def publish(self, event: Event) -> None:
        """Emit `event` (if anyone listens; hot paths check `emit` before building one)."""
        if self.emit is not None:
            self.emit(event)
