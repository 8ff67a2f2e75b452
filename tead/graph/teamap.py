"""The Edge Agent's (TEA's) graph constructs mapped onto tead's graph.

- A `type: dynamic_parallel` node D becomes a `for_each` fan-out: D itself is a no-op
  node that fans out, one branch per item of `items:`; each branch runs D's `steps:` as
  nodes `D.<step>` (in order) up to D's `fan_in:` node. The first step gets `item_var` and
  `index_var` in its state. The fan-in node finds the results in `parallel_results`, and, as
  in TEA, also in `state["parallel_results"]` (and `state[output]` with `output:`).
- `when:` / `condition:` / `items:` / `for_each:` texts become callables (Python, or
  sandboxed Jinja for TEA's forms: see tead.spec.teaexpr).
- `fan_in: true` on a node is checked: some fan-out must name it as its fan-in.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from tead.errors import Location, Problem, WorkflowError
from tead.graph.builder import Graph
from tead.graph.nodes import Expr, NodeFn, compile_expr, compile_run
from tead.spec.models import EdgeSpec, NodeSpec, WorkflowSpec
from tead.spec.teaexpr import ExpressionProblem, classify, compile_classified
from tead.spec.yamlfile import Path, YamlDocument

_PAIR = "__tead_item__"  # a dynamic_parallel branch's (index, item) until its first step


def expression(
    value: str | bool | None,
    what: str,
    doc: YamlDocument,
    path: Path,
    problems: list[Problem],
    *,
    python_first: bool = True,
) -> Expr | None:
    """An expression field as a callable over `state` (problems collected, with the
    location of its own key)."""
    if value is None:
        return None
    where = doc.where(path)
    try:
        found = classify(value, field=what, python_first=python_first)
        return compile_classified(found, lambda text: compile_expr(text, what=what, where=where))
    except ExpressionProblem as exc:
        problems.append(Problem(str(exc), where))
    except WorkflowError as exc:
        problems.extend(exc.problems)
    return None


def edge_condition(
    edge: EdgeSpec, doc: YamlDocument, i: int, problems: list[Problem]
) -> Expr | None:
    """The condition of a plain edge: `when:` (Python, TEA's Jinja, a boolean), or TEA's
    `condition:` (Jinja), taken when it equals `when:` (default true)."""
    if edge.condition is None:
        return expression(edge.when, "when", doc, ("edges", i, "when"), problems)
    text = edge.condition if isinstance(edge.condition, str) else edge.condition.value
    test = expression(
        text, "condition", doc, ("edges", i, "condition"), problems, python_first=False
    )
    if test is None:
        return None
    wanted = edge.when if isinstance(edge.when, bool) else True
    return lambda state: bool(test(state)) == wanted


def dynamic_fan_ins(spec: WorkflowSpec) -> dict[str, NodeSpec]:
    """{fan-in node: the dynamic_parallel node that meets there} (a for_each fan-in is its
    fan-out's own: the builder refuses a shared one)."""
    return {
        node.fan_in: node
        for node in spec.nodes
        if node.type == "dynamic_parallel" and isinstance(node.fan_in, str)
    }


def keep_results(fn: NodeFn | None, dynamic: NodeSpec, i: int, doc: YamlDocument) -> NodeFn:
    """A dynamic_parallel fan-in, as TEA has it: its results also go into the state
    (`parallel_results`, and `output:`), and a failed branch's result has the branch's item
    and index as its state (TEA's `r["index"]` works on failures too)."""
    keys = ["parallel_results", *([dynamic.output] if dynamic.output else [])]
    item_var, index_var = dynamic.item_var or "item", dynamic.index_var or "index"
    items = expression(dynamic.items, "items", doc, ("nodes", i, "items"), [])

    def fan_in(
        state: dict[str, Any], parallel_results: Iterable[Any] = ()
    ) -> Mapping[str, Any] | None:
        results = list(parallel_results)
        if any(r.state is None for r in results) and items is not None:
            values = list(items(state) or [])
            for k, r in enumerate(results):
                if r.state is None and k < len(values):
                    results[k] = r.evolve(state={item_var: values[k], index_var: k})
        for key in keys:
            state[key] = results
        return fn(state, parallel_results=results) if fn is not None else None

    return fan_in


def step_name(node: NodeSpec, j: int) -> str:
    steps = node.steps or []
    return f"{node.name}.{steps[j].name or f'step{j + 1}'}"


def add_dynamic_parallel(
    graph: Graph,
    node: NodeSpec,
    i: int,
    doc: YamlDocument,
    problems: list[Problem],
    *,
    known: Collection[str],
) -> None:
    """Add a dynamic_parallel node: itself (a no-op that fans out), its steps, its fan-out."""
    where = doc.where(("nodes", i))
    graph.add_node(node.name, None, where=where)
    item_var, index_var = node.item_var or "item", node.index_var or "index"
    names = [step_name(node, j) for j in range(len(node.steps or []))]
    for j, step in enumerate(node.steps or []):
        code_at = ("nodes", i, "steps", j, "run")
        line, _ = doc.values.get(code_at, (where.line or 1, 0))
        first = line + 1 if code_at in doc.block_scalars else line
        fn: NodeFn | None = None
        try:
            fn = compile_run(step.run, node=names[j], where=where, first_line=first)
        except WorkflowError as exc:
            problems.extend(exc.problems)
        if j == 0:
            fn = _with_item(fn, item_var, index_var)
        graph.add_node(names[j], fn, where=doc.where(("nodes", i, "steps", j)))
        if j > 0:
            graph.add_edge(names[j - 1], names[j], where=where)
    assert isinstance(node.fan_in, str)  # checked by NodeSpec
    if node.fan_in in known:  # else the fan-out reports the unknown fan-in, once
        graph.add_edge(names[-1], node.fan_in, where=where)
    items = expression(node.items, "items", doc, ("nodes", i, "items"), problems)
    overrides: dict[str, Any] = {}
    if node.max_concurrency is not None:
        overrides["max_workers"] = node.max_concurrency
    if node.fail_fast is not None:
        overrides["fail_fast"] = node.fail_fast
    graph.add_parallel_edge(
        node.name,
        names[0],
        fan_in=node.fan_in,
        for_each=_pairs(items, node.name) if items is not None else "[]",
        item_var=_PAIR,
        config=overrides,
        where=where,
    )


def _pairs(items: Expr, name: str) -> Expr:
    def each(state: dict[str, Any]) -> list[tuple[int, Any]]:
        values = items(state)
        if values is None:
            return []
        if isinstance(values, str | bytes | Mapping) or not hasattr(values, "__iter__"):
            raise TypeError(
                f"dynamic_parallel {name!r}: items gave {type(values).__name__}, not a list"
            )
        return list(enumerate(values))

    return each


def _with_item(fn: NodeFn | None, item_var: str, index_var: str) -> NodeFn:
    def first_step(state: dict[str, Any], parallel_results: Any = ()) -> Any:
        index, item = state.pop(_PAIR)
        state[item_var], state[index_var] = item, index
        update = fn(state) if fn is not None else None
        return {item_var: item, index_var: index, **(update or {})}

    return first_step


def fan_in_problems(spec: WorkflowSpec, doc: YamlDocument) -> list[Problem]:
    """`fan_in: true` on a node that no fan-out names as its fan-in."""
    joins = {e.fan_in for e in spec.edges if e.is_parallel and e.fan_in}
    joins |= set(dynamic_fan_ins(spec))
    return [
        Problem(
            f"node {node.name!r} has fan_in: true, but no parallel edge or dynamic_parallel "
            "node names it as its fan_in",
            doc.where(("nodes", i, "fan_in"), key=True),
        )
        for i, node in enumerate(spec.nodes)
        if node.fan_in is True and node.name not in joins
    ]


def dynamic_edge_problem(
    edge: EdgeSpec, dynamic: Mapping[str, str], where: Location
) -> Problem | bool | None:
    """TEA's plain edge from a dynamic_parallel node to its fan-in is implied: True (skip
    it); another plain edge from such a node is a problem; None: not such an edge."""
    if edge.from_ not in dynamic or edge.is_parallel:
        return None
    if edge.targets == [dynamic[edge.from_]] and edge.when is None and edge.condition is None:
        return True
    return Problem(
        f"dynamic_parallel node {edge.from_!r} continues at its fan_in "
        f"{dynamic[edge.from_]!r}; remove this edge",
        where,
    )
