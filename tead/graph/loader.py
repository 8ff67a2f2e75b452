"""Workflow files → `WorkflowGraph`: read, parse with positions, validate, build, check.

`tead validate` and `tead run` both call `load_workflow`, so "validates" means "loads".
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from tead.errors import Location, Problem, WorkflowError
from tead.graph.builder import Graph
from tead.graph.compiled import WorkflowGraph, WorkflowSource
from tead.graph.nodes import (
    NodeFn,
    compile_run,
    ensure_importable,
    resolve_uses,
    unimported_uses,
)
from tead.graph.teamap import (
    add_dynamic_parallel,
    dynamic_edge_problem,
    dynamic_fan_ins,
    edge_condition,
    expression,
    fan_in_problems,
    keep_results,
)
from tead.parallel.config import ParallelConfig
from tead.parallel.strategies import known_strategies, unknown_strategy
from tead.spec.files import read_regular
from tead.spec.models import WorkflowSpec
from tead.spec.redact import key_label, path_label, redact, redact_names, strings_in
from tead.spec.tea import check_tea
from tead.spec.teamodels import state_types
from tead.spec.yamlfile import YamlDocument, parse_yaml

MAX_FILE_BYTES = 5 * 1024 * 1024


def read_workflow_text(path: str | os.PathLike[str], *, strict: bool = False) -> str:
    """A workflow file's text; WorkflowError if it is missing, not a regular file, too big
    or not UTF-8 (and, if `strict`, if others could change it: see `tead.spec.files`).

    Symlinks are followed: `tead run`/`tead validate` read the file the user named; the
    daemon's registry refuses links that leave its folder before calling this.
    """
    return decode_workflow(read_regular(path, MAX_FILE_BYTES, strict=strict), str(path))


def decode_workflow(data: bytes, path: str) -> str:
    """A workflow file's bytes as text; WorkflowError if not UTF-8 text."""
    where = Location(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WorkflowError([Problem(f"not a UTF-8 text file (byte {exc.start})", where)]) from None
    if "\x00" in text:
        raise WorkflowError([Problem("not a text file (contains NUL bytes)", where)])
    return text


def load_workflow(path: str | os.PathLike[str]) -> WorkflowGraph:
    """Load and check one workflow file."""
    return load_workflow_text(read_workflow_text(path), str(path))


def load_workflow_text(text: str, path: str, *, import_uses: bool = True) -> WorkflowGraph:
    """Load and check workflow source; `path` names it in errors and locates `uses:` modules.
    `import_uses=False` leaves `uses:` modules unimported (their nodes fail if called): for
    a process that never runs the nodes and has them checked elsewhere (the daemon)."""
    try:
        return _load(text, path, import_uses)
    except (RecursionError, MemoryError):  # hostile nesting in YAML or in an expression
        raise WorkflowError([Problem("too deeply nested or too large", Location(path))]) from None


def _load(text: str, path: str, import_uses: bool) -> WorkflowGraph:
    return build_parsed(parse_workflow_text(text, path), import_uses=import_uses)


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedWorkflow:
    """A workflow file parsed and validated, not built yet (`build_parsed` builds it)."""

    spec: WorkflowSpec
    doc: YamlDocument
    path: str
    text: str
    warnings: tuple[Problem, ...]


def build_parsed(parsed: ParsedWorkflow, *, import_uses: bool = True) -> WorkflowGraph:
    """Build a parsed workflow (anew each time: its `run:` code gets fresh globals)."""
    workflow = build_workflow(
        parsed.spec, parsed.doc, parsed.path, parsed.text, import_uses=import_uses
    )
    if parsed.warnings:
        workflow = dataclasses.replace(workflow, warnings=parsed.warnings)
    return workflow


def parse_workflow_text(text: str, path: str) -> ParsedWorkflow:
    """Parse and validate workflow source (WorkflowError: what is wrong)."""
    doc = parse_yaml(text, path)
    if doc.data is None:
        raise WorkflowError([Problem("empty workflow file", Location(path))])
    if not isinstance(doc.data, dict):
        raise WorkflowError(
            [Problem("a workflow file is a mapping (name:, nodes:, edges:)", doc.where(()))]
        )
    tea = check_tea(doc)  # TEA features tead does not provide: one line each
    try:
        spec = WorkflowSpec.model_validate(tea.data)
    except ValidationError as exc:
        raise WorkflowError(_sorted([*tea.refused, *validation_problems(exc, doc)])) from None
    if tea.refused:
        raise WorkflowError(_sorted(tea.refused))
    return ParsedWorkflow(spec, doc, path, text, tuple(_sorted(tea.warnings)))


def explain_workflow(path: str | os.PathLike[str]) -> list[Problem]:
    """Every way the file's meaning differs from The Edge Agent's (`validate --explain`)."""
    doc = parse_yaml(read_workflow_text(path), str(path))
    return check_tea(doc).differences


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.where.line or 0) if p.where else 0)


def build_workflow(
    spec: WorkflowSpec, doc: YamlDocument, path: str, text: str, *, import_uses: bool = True
) -> WorkflowGraph:
    """Turn a validated spec into a checked WorkflowGraph (every problem reported at once)."""
    folder = str(Path(path).resolve().parent)
    ensure_importable(folder)  # modules beside the file, for `uses:` and `run:` imports
    problems: list[Problem] = fan_in_problems(spec, doc)
    name = spec.name or Path(path).stem
    graph = Graph(name, initial_state=spec.initial_state)
    joins = dynamic_fan_ins(spec)
    for i, node in enumerate(spec.nodes):
        where = doc.where(("nodes", i))
        if node.type == "dynamic_parallel":
            known = {n.name for n in spec.nodes}
            add_dynamic_parallel(graph, node, i, doc, problems, known=known)
            continue
        fn: NodeFn | None = None
        try:
            if node.run is not None:
                code_at = ("nodes", i, "run")
                line, _ = doc.values[code_at]
                first = line + 1 if code_at in doc.block_scalars else line
                fn = compile_run(node.run, node=node.name, where=where, first_line=first)
            elif node.uses is not None and import_uses:
                fn = resolve_uses(node.uses, node.with_, where=doc.where(("nodes", i, "uses")))
            elif node.uses is not None:
                fn = unimported_uses(node.uses)
        except WorkflowError as exc:
            problems.extend(exc.problems)
        if node.name in joins:
            dynamic = joins[node.name]
            fn = keep_results(fn, dynamic, spec.nodes.index(dynamic), doc)
        graph.add_node(node.name, fn, where=where)
    _add_edges(graph, spec, doc, problems)
    try:
        workflow = graph.build(
            parallel_config=ParallelConfig.from_spec(spec.settings.parallel),
            source=WorkflowSource(text=text, path=path),
            spec=spec,
            config_where=doc.where(("settings", "parallel", "strategy")),
        )
    except WorkflowError as exc:
        problems.extend(exc.problems)
    if problems:
        file = Location(path)
        located = [Problem(redact_names(p.message), p.where or file) for p in problems]
        located.sort(key=lambda p: (p.where.line or 0) if p.where else 0)
        raise WorkflowError(located)
    if spec.state_schema:
        workflow = dataclasses.replace(workflow, state_types=state_types(spec.state_schema))
    return workflow


def _add_edges(
    graph: Graph, spec: WorkflowSpec, doc: YamlDocument, problems: list[Problem]
) -> None:
    """Add the file's edges to `graph`, collecting what is wrong with them."""
    strategies = known_strategies()
    dynamic = {n.name: n.fan_in for n in spec.nodes if isinstance(n.fan_in, str)}
    for i, edge in enumerate(spec.edges):
        where = doc.where(("edges", i))
        implied = dynamic_edge_problem(edge, dynamic, where)
        if implied is True:
            continue
        if isinstance(implied, Problem):
            problems.append(implied)
            continue
        if edge.is_parallel:
            if edge.fan_in is None:
                problems.append(Problem("a parallel edge needs `fan_in:`", where))
                continue
            if edge.when is not None or edge.condition is not None:
                problems.append(Problem("`when:` is not allowed on a parallel edge", where))
                continue
            unknown = (
                unknown_strategy(edge.parallel_strategy, strategies)
                if edge.parallel_strategy is not None
                else None
            )
            if unknown is not None:
                problems.append(Problem(unknown, doc.where(("edges", i, "parallel_strategy"))))
                continue
            graph.add_parallel_edge(
                edge.from_,
                edge.targets,
                fan_in=edge.fan_in,
                for_each=expression(
                    edge.for_each, "for_each", doc, ("edges", i, "for_each"), problems
                ),
                item_var=edge.item_var or "item",
                config=edge.overrides(),
                where=where,
            )
            continue
        stray = [k for k in ("fan_in", "for_each", "item_var") if getattr(edge, k) is not None]
        stray += sorted(edge.overrides())
        if stray:
            problems.append(
                Problem(
                    f"{', '.join(stray)} only apply to parallel edges (add `parallel: true`)", where
                )
            )
            continue
        if len(edge.targets) != 1:
            problems.append(
                Problem("an edge to several nodes needs `parallel: true` and `fan_in:`", where)
            )
            continue
        when = edge_condition(edge, doc, i, problems)
        text = edge.when if isinstance(edge.when, str) and edge.condition is None else None
        graph.add_edge(edge.from_, edge.targets[0], when=when, where=where, text=text)


def validation_problems(
    exc: ValidationError, doc: YamlDocument, *, model: type[BaseModel] = WorkflowSpec
) -> list[Problem]:
    """Pydantic errors → problems at the YAML positions they refer to (one per place).

    Messages never quote the file's content (see `tead.spec.redact`): a key is named only if it
    is short and identifier-like, values from the file are hidden.
    """
    found: dict[tuple[Any, ...], Problem] = {}
    for error in exc.errors(include_url=False, include_input=True):
        path = _data_path(doc.data, error["loc"])
        kind = error["type"]
        message = error["msg"].removeprefix("Value error, ")
        if kind == "extra_forbidden":
            key = path[-1] if path else None
            where = doc.where(path, key=True)
            label = key_label(key)
            message = (
                f"unknown key {label}{_key_hint(key, error['loc'], model)}"
                if label
                else "unknown key"
            )
        elif kind == "missing":
            key = error["loc"][-1]
            path = path[:-1] if path and path[-1] == key else path
            where = doc.where(path)
            message = f"missing required key {key_label(key) or ''}".rstrip()
        else:
            where = doc.where(path)
            label = path_label(path)
            message = redact(message, strings_in(error.get("input")))
            message = f"{label}: {message}" if label else message
        found.setdefault(tuple(path), Problem(message, where))
    return list(found.values())


def _key_hint(key: object, loc: tuple[int | str, ...], model: type[BaseModel]) -> str:
    """` (did you mean 'nodes'?)` for a likely typo of a key allowed at `loc`."""
    hint = difflib.get_close_matches(str(key), keys_at(model, loc[:-1]), n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def keys_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys (by alias) allowed in the mapping at pydantic location `loc` of `model`."""
    types: list[Any] = _unwrap(model)
    for step in loc:
        inner: list[Any] = []
        for kind in types:
            origin, args = typing.get_origin(kind), typing.get_args(kind)
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                fields = kind.model_fields.items()
                inner += [f.annotation for n, f in fields if step in (n, f.alias)]
            elif origin is list and isinstance(step, int):
                inner.append(args[0])
            elif origin is dict and isinstance(step, str):
                inner.append(args[1])
        types = [t for kind in inner for t in _unwrap(kind)] or types  # else a union's tag
    models = [t for t in types if isinstance(t, type) and issubclass(t, BaseModel)]
    return sorted({f.alias or n for m in models for n, f in m.model_fields.items()})


def _unwrap(kind: Any) -> list[Any]:
    """The types a type annotation may stand for (Annotated and unions opened)."""
    origin = typing.get_origin(kind)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(kind)[0])
    if origin is typing.Union or origin is types.UnionType:
        return [t for arg in typing.get_args(kind) for t in _unwrap(arg)]
    return [kind]


def _data_path(data: Any, loc: tuple[int | str, ...]) -> tuple[str | int, ...]:
    """Pydantic's `loc` without its union tags: only steps that exist in the data."""
    path: list[str | int] = []
    current = data
    for step in loc:
        in_dict = isinstance(current, dict) and step in current
        in_list = isinstance(current, list) and isinstance(step, int) and 0 <= step < len(current)
        if in_dict or in_list:
            current = current[step]
            path.append(step)
        elif isinstance(current, dict) and isinstance(step, str) and step == loc[-1]:
            path.append(step)  # a missing or unknown key: name it
            current = None
    return tuple(path)
