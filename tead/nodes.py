"""Turning `run:` code, `uses:` references and `when:`/`for_each:` expressions into callables.

`run:` is plain Python, compiled as the body of `def node(state, parallel_results)`; its
line numbers are those of the workflow file, so a traceback points into the YAML. Nothing
is passed through a template engine.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

from tead.errors import Location, Problem, WorkflowError

NodeFn = Callable[..., Mapping[str, Any] | None]
Expr = Callable[[dict[str, Any]], Any]


def _fail(message: str, where: Location | None) -> WorkflowError:
    return WorkflowError([Problem(message, where)])


def _shift(error: SyntaxError, first_line: int, header_lines: int) -> int | None:
    return None if error.lineno is None else first_line + error.lineno - 1 - header_lines


def compile_run(code: str, *, node: str, where: Location, first_line: int) -> NodeFn:
    """Compile a `run:` body; `first_line` is the file line of its first line of code."""
    header = "def __tead_node__(state, parallel_results=()):\n"
    body = "".join(f"    {line}\n" for line in code.splitlines()) or "    pass\n"
    try:
        tree = ast.parse(header + body, filename=where.file)
    except SyntaxError as exc:
        line = _shift(exc, first_line, 1)
        raise _fail(
            f"node {node!r}: invalid Python in run: {exc.msg}", Location(where.file, line)
        ) from None
    ast.increment_lineno(tree, max(first_line - 2, 0))
    namespace: dict[str, Any] = {"__builtins__": builtins, "__name__": f"tead.node.{node}"}
    exec(compile(tree, where.file, "exec"), namespace)
    fn: NodeFn = namespace["__tead_node__"]
    fn.__qualname__ = fn.__name__ = node
    return fn


def compile_expr(source: str, *, what: str, where: Location) -> Expr:
    """Compile a Python expression over `state` (for `when:` and `for_each:`)."""
    try:
        code = compile(source.strip(), where.file, "eval")
    except SyntaxError as exc:
        raise _fail(f"invalid Python expression in {what}: {exc.msg}", where) from None
    namespace = {"__builtins__": builtins}

    def evaluate(state: dict[str, Any]) -> Any:
        return eval(code, namespace, {"state": state})

    return evaluate


def ensure_importable(folder: str) -> None:
    """Make modules beside a workflow file importable (like a local action)."""
    if folder not in sys.path:
        sys.path.insert(0, folder)


def resolve_uses(ref: str, params: Mapping[str, Any] | None, *, where: Location) -> NodeFn:
    """`module:function` → the function, bound to its `with:` keyword arguments."""
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise _fail(
            f"uses: cannot import {module_name!r}: {type(exc).__name__}: {exc}", where
        ) from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise _fail(f"uses: {module_name!r} has no callable {attr!r}", where)
    return functools.partial(fn, **params) if params else fn
