"""The Python API's composition root: a loaded workflow and the circuit breakers kept
across its runs. `invoke()` and `stream()` give the engine what a run needs: the breakers,
and executors (shared ones if passed, else the run's own, closed when it ends)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from tead.engine.context import ResultsSink
from tead.engine.events import EventSink
from tead.engine.runner import run_workflow, stream_workflow
from tead.executors.registry import Executors
from tead.graph import builder, loader
from tead.graph.compiled import END, START, WorkflowGraph
from tead.parallel.breaker import BreakerRegistry
from tead.parallel.cancel import CancelToken
from tead.parallel.config import ParallelConfig
from tead.spec.models import WorkflowSpec


class Workflow:
    """A checked workflow graph, ready to run, with its own circuit breakers (in memory)."""

    def __init__(self, graph: WorkflowGraph, *, breakers: BreakerRegistry | None = None) -> None:
        self.graph = graph
        self.breakers = breakers or BreakerRegistry()

    @property
    def name(self) -> str:
        return self.graph.name

    @property
    def spec(self) -> WorkflowSpec | None:
        return self.graph.spec

    def __repr__(self) -> str:
        return f"Workflow({self.graph.name!r})"

    def invoke(
        self,
        state: Mapping[str, Any] | None = None,
        *,
        entry_point: str = START,
        exit_point: str = END,
        on_event: EventSink | None = None,
        executors: Executors | None = None,
        cancel: CancelToken | None = None,
        on_results: ResultsSink | None = None,
    ) -> dict[str, Any]:
        """Run the workflow on `initial_state` updated with `state`; return the final state.

        A node that raises outside a fan-out raises `NodeError`; failed branches become
        results with `success: False` and the run goes on. `executors` shares executors
        (warm process pools) across runs; the caller closes them.
        """
        with _run_executors(executors) as registry:
            return run_workflow(
                self.graph,
                state,
                executors=registry,
                breakers=self.breakers,
                entry_point=entry_point,
                exit_point=exit_point,
                on_event=on_event,
                cancel=cancel,
                on_results=on_results,
            )

    def stream(
        self,
        state: Mapping[str, Any] | None = None,
        *,
        entry_point: str = START,
        exit_point: str = END,
        executors: Executors | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Run the workflow and yield its events as they happen, as JSON (`Event.to_json()`);
        the last is `run_finished`."""
        with _run_executors(executors) as registry:
            yield from stream_workflow(
                self.graph,
                state,
                executors=registry,
                breakers=self.breakers,
                entry_point=entry_point,
                exit_point=exit_point,
            )

    def get_circuit_states(self) -> dict[str, str]:
        """Every circuit breaker this workflow has used: name -> closed / half_open / open."""
        return {name: str(snap.state) for name, snap in self.breakers.states().items()}

    def reset_circuit(self, name: str) -> None:
        """Close the breaker `name` (`<workflow>:<branch>`); KeyError if unknown."""
        self.breakers.reset(name)


@contextmanager
def _run_executors(shared: Executors | None) -> Iterator[Executors]:
    """The shared executors if given (their owner closes them), else the run's own."""
    if shared is not None:
        yield shared
        return
    with Executors() as own:
        yield own


class Graph(builder.Graph):
    """Build a workflow in code; `compile()` checks it and returns a runnable `Workflow`."""

    def compile(
        self,
        *,
        parallel_config: ParallelConfig | None = None,
        executors: Executors | None = None,
    ) -> Workflow:
        """Check the graph (WorkflowError lists every problem) and return it, ready to run.

        `parallel_config` is the default for every fan-out. Strategy names are checked
        against `executors` (a registry with strategies of your own) if given, else against
        the built-in and installed ones.
        """
        strategies = executors.names() if executors is not None else None
        return Workflow(self.build(parallel_config=parallel_config, strategies=strategies))


def load_workflow(path: str | os.PathLike[str]) -> Workflow:
    """Load and check a workflow file; WorkflowError lists every problem with its place."""
    return Workflow(loader.load_workflow(path))


def load_workflow_text(text: str, path: str) -> Workflow:
    """Load and check a workflow from its text (`path` names it in error messages)."""
    return Workflow(loader.load_workflow_text(text, path))
