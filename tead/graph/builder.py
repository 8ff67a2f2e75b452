"""Building a workflow graph: `Graph`, whose `build()` checks it into a `WorkflowGraph`.

YAML files and Python code build graphs the same way: `add_node`, `add_edge`,
`add_parallel_edge`, then `compile()`, which checks everything at once and raises one
`WorkflowError` listing every problem with its location.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tead.errors import Location, Problem, WorkflowError
from tead.graph.compiled import END, START, Edge, FanOut, Node, WorkflowGraph, WorkflowSource
from tead.graph.nodes import Expr, NodeFn, compile_expr
from tead.parallel.config import ParallelConfig
from tead.parallel.strategies import known_strategies, plugin_strategies, strategy_problem
from tead.spec.models import WorkflowSpec


@dataclass(slots=True)
class _PendingFanOut:
    source: str
    targets: list[str]
    fan_in: str
    for_each: Expr | None
    item_var: str
    overrides: dict[str, Any]
    config: ParallelConfig | None
    where: Location | None


def _as_expr(value: str | Expr | None, what: str, where: Location | None) -> Expr | None:
    if value is None or callable(value):
        return value
    return compile_expr(value, what=what, where=where or Location("<graph>"))


class Graph:
    """Builds a workflow graph in code: nodes, edges, conditional edges and fan-outs."""

    def __init__(
        self, name: str = "workflow", *, initial_state: Mapping[str, Any] | None = None
    ) -> None:
        self.name = name
        self.initial_state = dict(initial_state or {})
        self._nodes: dict[str, Node] = {}
        self._edges: list[Edge] = []
        self._fanouts: list[_PendingFanOut] = []
        self._problems: list[Problem] = []

    def add_node(
        self, name: str, fn: NodeFn | None = None, *, where: Location | None = None
    ) -> Graph:
        """Add a node; `fn(state)` returns a dict to merge into the state, or None."""
        if name in (START, END):
            self._problems.append(Problem(f"{name!r} is reserved and cannot be a node name", where))
        elif name in self._nodes:
            self._problems.append(Problem(f"duplicate node name {name!r}", where))
        else:
            self._nodes[name] = Node(name=name, fn=fn, where=where)
        return self

    def add_edge(
        self,
        source: str,
        target: str,
        *,
        when: str | Expr | None = None,
        where: Location | None = None,
        text: str | None = None,
    ) -> Graph:
        """Add an edge; `when` (an expression over `state`, or a callable) makes it conditional.
        `text` is the source of a callable `when`, for messages."""
        expr = self._guard(lambda: _as_expr(when, "when", where))
        text = when if isinstance(when, str) else text
        self._edges.append(
            Edge(source=source, target=target, when=expr, when_text=text, where=where)
        )
        return self

    def add_parallel_edge(
        self,
        source: str,
        targets: str | Sequence[str],
        *,
        fan_in: str,
        for_each: str | Expr | None = None,
        item_var: str = "item",
        config: ParallelConfig | Mapping[str, Any] | None = None,
        where: Location | None = None,
    ) -> Graph:
        """Fan out from `source` to `targets` (one branch each, or one per `for_each` item).

        Edges from the same source to the same fan-in form one fan-out (TEA's
        `type: parallel` edges). `config` is a full ParallelConfig or a mapping of keys
        that override the graph's default for this fan-out.
        """
        names = [targets] if isinstance(targets, str) else list(targets)
        expr = self._guard(lambda: _as_expr(for_each, "for_each", where))
        full = config if isinstance(config, ParallelConfig) else None
        overrides = dict(config) if isinstance(config, Mapping) else {}
        if for_each is not None and len(names) != 1:
            self._problems.append(Problem("a for_each fan-out has exactly one target node", where))
        for pending in self._fanouts:
            if pending.source == source and pending.fan_in == fan_in:
                if expr is not None or pending.for_each is not None:
                    self._problems.append(
                        Problem(
                            f"a for_each fan-out from {source!r} to fan-in {fan_in!r} "
                            "cannot share its fan-in with other parallel edges",
                            where,
                        )
                    )
                    return self
                for key, value in overrides.items():
                    if pending.overrides.get(key, value) != value:
                        self._problems.append(
                            Problem(
                                f"fan-out from {source!r}: conflicting {key!r} on its edges", where
                            )
                        )
                pending.overrides.update(overrides)
                pending.targets.extend(names)
                return self
        self._fanouts.append(
            _PendingFanOut(source, names, fan_in, expr, item_var, overrides, full, where)
        )
        return self

    def _guard(self, make: Callable[[], Expr | None]) -> Expr | None:
        try:
            return make()
        except WorkflowError as exc:
            self._problems.extend(exc.problems)
            return None

    def build(
        self,
        *,
        parallel_config: ParallelConfig | None = None,
        source: WorkflowSource | None = None,
        spec: WorkflowSpec | None = None,
        config_where: Location | None = None,
        strategies: Collection[str] | None = None,
    ) -> WorkflowGraph:
        """Check the graph and return it as a `WorkflowGraph`; raise WorkflowError if broken.

        `config_where` locates `parallel_config` in a file, for error messages;
        `strategies` are the strategy names allowed (default: `known_strategies()`).
        """
        default = parallel_config or ParallelConfig()
        problems = list(self._problems)
        nodes = self._nodes

        def check_name(name: str, role: str, where: Location | None, *, allow: str = "") -> bool:
            if name in nodes or name == allow:
                return True
            hint = difflib.get_close_matches(name, list(nodes), n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            problems.append(Problem(f"{role} unknown node {name!r}{extra}", where))
            return False

        edges: dict[str, list[Edge]] = {}
        for edge in self._edges:
            ok = check_name(edge.source, "edge from", edge.where, allow=START)
            ok &= check_name(edge.target, "edge to", edge.where, allow=END)
            if ok:
                edges.setdefault(edge.source, []).append(edge)

        fanouts: dict[str, list[FanOut]] = {}
        allowed = list(strategies) if strategies is not None else known_strategies()
        # a registry's names are all real executors; by default, plug-ins are
        provided = allowed if strategies is not None else plugin_strategies()
        for pending in self._fanouts:
            ok = check_name(pending.source, "fan-out from", pending.where, allow=START)
            ok &= check_name(pending.fan_in, "fan_in:", pending.where)
            for target in pending.targets:
                ok &= check_name(target, "fan-out to", pending.where)
            if len(set(pending.targets)) != len(pending.targets):
                problems.append(
                    Problem(f"fan-out from {pending.source!r} names a branch twice", pending.where)
                )
                ok = False
            if pending.fan_in in pending.targets:
                problems.append(
                    Problem(f"fan-in {pending.fan_in!r} cannot also be a branch", pending.where)
                )
                ok = False
            config = pending.config or default.merged(pending.overrides)
            # a fan-out that keeps the default's strategy is reported once, with the default
            inherited = (config.strategy, config.remote, config.dask) == (
                default.strategy,
                default.remote,
                default.dask,
            )
            if (
                not inherited
                and (problem := strategy_problem(config, allowed, provided)) is not None
            ):
                problems.append(Problem(problem, pending.where))
                ok = False
            if ok:
                fanouts.setdefault(pending.source, []).append(
                    FanOut(
                        source=pending.source,
                        targets=tuple(pending.targets),
                        fan_in=pending.fan_in,
                        config=config,
                        for_each=pending.for_each,
                        item_var=pending.item_var,
                        where=pending.where,
                    )
                )
        for name in fanouts.keys() & edges.keys():
            where = edges[name][0].where
            problems.append(
                Problem(
                    f"node {name!r} has both parallel and plain edges; "
                    "continue from its fan-in node instead",
                    where,
                )
            )
        if (problem := strategy_problem(default, allowed, provided)) is not None:
            problems.append(Problem(problem, config_where))
        workflow = WorkflowGraph(
            name=self.name,
            nodes=dict(nodes),
            order=tuple(nodes),
            edges={k: tuple(v) for k, v in edges.items()},
            fanouts={k: tuple(v) for k, v in fanouts.items()},
            initial_state=dict(self.initial_state),
            parallel_config=default,
            source=source,
            spec=spec,
        )
        if not problems:
            problems.extend(workflow.structure_problems())
        if problems:
            raise WorkflowError(problems)
        return workflow
