"""Turning `run:` code, `uses:` references and `when:`/`for_each:` expressions into callables.

`run:` is plain Python, compiled as the body of `def node(state, parallel_results)`; its
line numbers are those of the workflow file, so a traceback points into the YAML. Nothing
is passed through a template engine.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import inspect
import sys
from collections.abc import Callable, Mapping
from typing import Any

from tead.errors import Location, Problem, TeadError, WorkflowError

NodeFn = Callable[..., Mapping[str, Any] | None]
Expr = Callable[[dict[str, Any]], Any]


def _fail(message: str, where: Location | None) -> WorkflowError:
    return WorkflowError([Problem(message, where)])


def compile_run(code: str, *, node: str, where: Location, first_line: int) -> NodeFn:
    """Compile a `run:` body; `first_line` is the file line of its first line of code.

    Blank lines in front put every line of code at its line in the file, so tracebacks
    and syntax errors (including the lines they quote) point into the YAML.
    """
    header = "\n" * max(first_line - 2, 0) + "def __tead_node__(state, parallel_results=()):\n"
    body = "".join(f"    {line}\n" for line in code.splitlines()) or "    pass\n"
    try:
        compiled = compile(header + body, where.file, "exec")
    except SyntaxError as exc:
        raise _fail(
            f"node {node!r}: invalid Python in run: {exc.msg}", Location(where.file, exc.lineno)
        ) from None
    namespace: dict[str, Any] = {"__builtins__": builtins, "__name__": f"tead.node.{node}"}
    exec(compiled, namespace)
    fn: NodeFn = namespace["__tead_node__"]
    if fn.__code__.co_flags & inspect.CO_GENERATOR:
        raise _fail(f"node {node!r}: run: code cannot use `yield`; return a dict", where)
    fn.__qualname__ = fn.__name__ = node
    fn.__code__ = fn.__code__.replace(co_name=node, co_qualname=node)  # tracebacks name it
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
        sys.path.append(folder)  # after the standard library: a local random.py shadows nothing


def unimported_uses(ref: str) -> NodeFn:
    """A `uses:` node of a workflow loaded without importing its modules: never called."""

    def unimported(state: dict[str, Any], **_: Any) -> dict[str, Any] | None:
        raise TeadError(f"uses: {ref} was not imported in this process")

    return unimported


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
