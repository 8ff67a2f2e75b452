"""The checked, immutable workflow graph: nodes, edges, fan-outs, how to walk it and its
checks. Plain data: it holds no breakers and does not run itself (tead.engine runs it).
Built by `tead.graph.builder.Graph.build()`."""

from __future__ import annotations

import dataclasses
import difflib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tead.errors import InputError, Location, Problem, RunError, ScopeError
from tead.graph.nodes import Expr, NodeFn
from tead.parallel.config import ParallelConfig
from tead.spec.models import WorkflowSpec
from tead.spec.teamodels import state_problems

START = "__start__"
END = "__end__"


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    name: str
    fn: NodeFn | None = None  # None: a no-op node
    where: Location | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Edge:
    source: str
    target: str
    when: Expr | None = None
    when_text: str | None = None
    where: Location | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FanOut:
    """One fan-out: branches from `source` that meet again at `fan_in`."""

    source: str
    targets: tuple[str, ...]
    fan_in: str
    config: ParallelConfig
    for_each: Expr | None = None
    item_var: str = "item"
    where: Location | None = None


@dataclass(frozen=True, slots=True)
class WorkflowSource:
    """Where a workflow came from: its text and file, enough to load it again elsewhere
    (see tead.engine.bundle, which keeps the bundle made of it in `shipped`)."""

    text: str
    path: str
    #: a cache for tead.engine.bundle: the bundle made of this source, once made
    shipped: object = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowGraph:
    """A checked graph, ready to run. Built by `Graph.build()` or the loader."""

    name: str
    nodes: dict[str, Node]
    order: tuple[str, ...]
    edges: dict[str, tuple[Edge, ...]]
    fanouts: dict[str, tuple[FanOut, ...]]
    initial_state: dict[str, Any] = field(default_factory=dict)
    parallel_config: ParallelConfig = field(default_factory=ParallelConfig)
    source: WorkflowSource | None = None
    spec: WorkflowSpec | None = None
    fan_in_nodes: frozenset[str] = frozenset()
    #: `state_schema` as {key: JSON type, or None for any}; empty: the state is not checked
    state_types: dict[str, str | None] = field(default_factory=dict)
    #: what the file's TEA keys mean that tead ignores (each once), for the CLI to show
    warnings: tuple[Problem, ...] = ()

    def __post_init__(self) -> None:
        joins = frozenset(f.fan_in for group in self.fanouts.values() for f in group)
        object.__setattr__(self, "fan_in_nodes", joins)

    def __reduce__(self) -> tuple[Any, ...]:
        """A graph built in code pickles its parts, callbacks left out. One loaded from a
        file travels as its source instead (a `BranchTask` does this, see tead.engine.task
        and tead.engine.bundle): its `run:` code is not picklable."""
        if self.source is not None:
            raise TypeError(
                f"workflow {self.name!r} was loaded from {self.source.path}: send its source "
                "(a BranchTask or tead.engine.bundle does), not the loaded workflow"
            )
        fields = {f: getattr(self, f) for f in self.__dataclass_fields__}
        # Callbacks are called in the coordinating process only: never ship them.
        fields["parallel_config"] = dataclasses.replace(self.parallel_config, callbacks=())
        fields["fanouts"] = {
            source: tuple(
                dataclasses.replace(f, config=dataclasses.replace(f.config, callbacks=()))
                for f in group
            )
            for source, group in self.fanouts.items()
        }
        return (_rebuild, (fields,))

    def check_state(self, state: dict[str, Any], which: str) -> None:
        """Check the `initial` or `final` state against `state_schema` (InputError for the
        initial state, RunError for the final one)."""
        if not self.state_types:
            return
        problems = state_problems(self.state_types, state)
        if problems:
            error = InputError if which == "initial" else RunError
            raise error(f"{which} state does not fit state_schema: {'; '.join(problems)}")

    # --- walking --------------------------------------------------------------------------

    def next_node(self, current: str, state: dict[str, Any]) -> str:
        """The node after `current` (which has no fan-out): first true edge in file order."""
        edges = self.edges.get(current)
        if not edges:
            return self._implicit_next(current)
        for edge in edges:
            if edge.when is None:
                return edge.target
            try:
                taken = edge.when(state)
            except Exception as exc:
                raise RunError(
                    f"edge {current!r} -> {edge.target!r}: `when` raised "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if taken:
                return edge.target
        raise RunError(f"no edge from {current!r} matched the state (all `when` were false)")

    def _implicit_next(self, current: str) -> str:
        if current == START:
            return self.order[0]
        index = self.order.index(current) + 1
        return self.order[index] if index < len(self.order) else END

    def successors(self, name: str, *, main_path: bool = False) -> Iterator[str]:
        """Every node that may follow `name`: a fan-out leads to its branches and fan-ins,
        or, on the `main_path` (the walk that waits for fan-outs), only to its fan-ins."""
        if name == END:
            return
        if name in self.fanouts:
            for fanout in self.fanouts[name]:
                if not main_path:
                    yield from fanout.targets
                yield fanout.fan_in
        elif name in self.edges:
            yield from (edge.target for edge in self.edges[name])
        else:
            yield self._implicit_next(name)

    def reachable(
        self, start: str, *, stop: str | None = None, main_path: bool = False
    ) -> set[str]:
        """Nodes reachable from `start`, not walking past `stop`."""
        seen: set[str] = set()
        todo = [start]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            if name != stop:
                todo.extend(self.successors(name, main_path=main_path))
        return seen

    # --- checks ---------------------------------------------------------------------------

    def structure_problems(self) -> list[Problem]:
        """Branches that never reach their fan-in, run into a sibling, or cycles with no exit."""
        problems: list[Problem] = []
        for group in self.fanouts.values():
            for first, later in itertools.pairwise(group):
                if later.fan_in not in self.reachable(first.fan_in, main_path=True):
                    problems.append(
                        Problem(
                            f"the fan-outs at {first.source!r} meet at {first.fan_in!r} "
                            f"and {later.fan_in!r}: the run continues at {first.fan_in!r}, "
                            f"so {later.fan_in!r} must be reachable from it",
                            later.where,
                        )
                    )
            for fanout in group:
                for target in fanout.targets:
                    seen = self.reachable(target, stop=fanout.fan_in)
                    for inner in (
                        f for n in seen - {fanout.fan_in} for f in self.fanouts.get(n, ())
                    ):
                        if inner.fan_in == fanout.fan_in:
                            problems.append(
                                Problem(
                                    f"the fan-out at {inner.source!r} inside a branch of the "
                                    f"fan-out at {fanout.source!r} cannot share its fan-in "
                                    f"{fanout.fan_in!r}; give it a fan-in of its own",
                                    inner.where,
                                )
                            )
                    if fanout.fan_in not in seen:
                        problems.append(
                            Problem(
                                f"branch {target!r} of the fan-out at {fanout.source!r} "
                                f"never reaches its fan-in {fanout.fan_in!r}",
                                fanout.where,
                            )
                        )
                    for sibling in set(fanout.targets) - {target}:
                        if sibling in seen:
                            problems.append(
                                Problem(
                                    f"branch {target!r} runs into branch {sibling!r} of the "
                                    f"same fan-out; add an edge from the end of {target!r} "
                                    f"to {fanout.fan_in!r}",
                                    fanout.where,
                                )
                            )
        can_end = {END}
        changed = True
        names = [START, *self.order]
        while changed:
            changed = False
            for name in names:
                if name not in can_end and any(s in can_end for s in self.successors(name)):
                    can_end.add(name)
                    changed = True
        covered: set[str] = set()
        for name in [START, *self.order]:
            if name in can_end or name in covered or name not in self.reachable(START):
                continue
            cycle = self.reachable(name)
            if all(name in self.reachable(other) for other in cycle):  # nothing leaves it
                covered |= cycle
                members = ", ".join(repr(n) for n in self.order if n in cycle)
                where = self.nodes[name].where if name in self.nodes else None
                problems.append(
                    Problem(f"nodes {members} form a cycle with no way out to {END}", where)
                )
        return problems

    def check_scope(self, entry: str, exit: str) -> None:
        """Raise ScopeError unless a run from `entry` can reach `exit`."""
        if entry != START and entry not in self.nodes:
            raise ScopeError(f"--entry-point: unknown node {entry!r}{self._hint(entry)}")
        if exit != END and exit not in self.nodes:
            raise ScopeError(f"--exit-point: unknown node {exit!r}{self._hint(exit)}")
        if entry == exit:
            raise ScopeError(f"--entry-point and --exit-point are the same node {entry!r}")
        if exit not in self.reachable(entry, main_path=True):
            inside = exit in self.reachable(entry)
            detail = " (it is inside a fan-out branch; stop at its fan-in)" if inside else ""
            raise ScopeError(f"no path from {entry!r} to {exit!r}{detail}")

    def _hint(self, name: str) -> str:
        hint = difflib.get_close_matches(name, list(self.nodes), n=1)
        return f" (did you mean {hint[0]!r}?)" if hint else ""


def _rebuild(fields: dict[str, Any]) -> WorkflowGraph:
    return WorkflowGraph(**fields)
