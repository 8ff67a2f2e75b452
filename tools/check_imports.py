"""Import rules of the tead package, checked from its source with `ast` (nothing is imported).

    python tools/check_imports.py [PACKAGE_DIR]     (default: tead, next to this folder)

Prints one line per problem and exits 1 if there is any:

- an import cycle among the package's modules, printed as `a -> b -> a`. Only imports that
  run when a module is imported count: those under `if TYPE_CHECKING:` are annotations;
- an import statement inside a function or method body (it hides a cycle or a cost), unless
  its line says why with `# deferred: <reason>` (a measured start-up cost); such an import
  still counts for the cycle and layer rules, so no cycle can hide behind it.
  `importlib.import_module("tead.x")` and `__import__("tead.x")` with a literal name of
  one of the package's modules count as imports where they stand (a dynamic import of a
  name known only at run time, e.g. a user's module, is not checked);
- an import of a higher layer (see LAYERS), `if TYPE_CHECKING:` ones included: an
  annotation must not point up either;
- a module that belongs to no layer (add it to LAYERS);
- a module over MAX_LINES lines.

`from a.b import c` counts as importing the module a.b.c if there is one, else a.b (the
names of a package's __init__); `import a.b` counts as importing a.b. Importing a module
runs its parent packages' __init__ first, but that adds no cycle of its own: a parent
that is still being imported is in sys.modules, and its submodules import all the same.
"""

from __future__ import annotations

import ast
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAX_LINES = 400
TOP = ("", "__main__")  # the package itself (__init__) and __main__: above every layer
LAYERS: tuple[tuple[str, ...], ...] = (  # low -> high, names relative to the package
    ("errors", "jsonable", "printable", "version"),
    ("spec",),
    ("parallel",),
    ("graph",),
    ("engine",),
    ("executors",),
    ("workflow", "groups", "daemon"),
    ("cli",),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Import:
    """One imported module of the package, as a module-level statement imports it."""

    target: str  # a dotted module name inside the package
    line: int
    annotation_only: bool  # under `if TYPE_CHECKING:`


@dataclass(frozen=True, slots=True, kw_only=True)
class Module:
    name: str  # dotted, starting with the package's name
    path: Path
    lines: int
    imports: tuple[Import, ...]
    inner_imports: tuple[int, ...]  # lines of import statements inside functions


def find_modules(package: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module of the package at `package`."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _statements(
    body: list[ast.stmt], *, in_function: bool, annotation_only: bool
) -> Iterator[tuple[ast.stmt, bool, bool]]:
    """Every statement under `body`, with whether it is inside a function and whether it
    is under `if TYPE_CHECKING:`."""
    for node in body:
        yield node, in_function, annotation_only
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _statements(node.body, in_function=True, annotation_only=annotation_only)
        elif isinstance(node, ast.If):
            typed = annotation_only or _is_type_checking(node.test)
            yield from _statements(node.body, in_function=in_function, annotation_only=typed)
            yield from _statements(
                node.orelse, in_function=in_function, annotation_only=annotation_only
            )
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                for child in getattr(node, field, ()):
                    inner = child.body if not isinstance(child, ast.stmt) else [child]
                    yield from _statements(
                        inner, in_function=in_function, annotation_only=annotation_only
                    )


def _dynamic_imports(node: ast.stmt) -> Iterator[tuple[str, bool]]:
    """(module name, whether in a lambda) for each literal name `node` imports by calling
    `import_module` or `__import__`, in its own expressions (not its nested statements)."""
    nested = ("body", "orelse", "finalbody", "handlers", "cases")
    parts = [value for field, value in ast.iter_fields(node) if field not in nested]
    stack = [
        (child, False)
        for part in parts
        for child in (part if isinstance(part, list) else [part])
        if isinstance(child, ast.AST)
    ]
    while stack:
        expr, in_lambda = stack.pop()
        if isinstance(expr, ast.Call) and expr.args and isinstance(expr.args[0], ast.Constant):
            func, first = expr.func, expr.args[0].value
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and isinstance(first, str):
                yield first, in_lambda
        inner = in_lambda or isinstance(expr, ast.Lambda)
        stack.extend((child, inner) for child in ast.iter_child_nodes(expr))


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The dotted names a statement imports (modules, or names that may be modules)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = module.split(".")
        keep = len(parts) - node.level + (1 if is_package else 0)
        base = ".".join([*parts[:keep], *([base] if base else [])])
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def _deferred(lines: list[str], node: ast.stmt) -> bool:
    """Whether an import inside a function says why: `# deferred: <reason>` on its line.
    It still counts as an import of its module for the cycle and layer rules."""
    comment = lines[node.lineno - 1].partition("#")[2].strip()
    return comment.startswith("deferred:") and bool(comment.removeprefix("deferred:").strip())


def read_module(name: str, path: Path, modules: dict[str, Path]) -> Module:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    tree = ast.parse(text, filename=str(path))
    is_package = path.name == "__init__.py"
    imports, inner = [], []
    for node, in_function, annotation_only in _statements(
        tree.body, in_function=False, annotation_only=False
    ):
        for target, in_lambda in _dynamic_imports(node):
            if target not in modules:
                continue
            if in_function or in_lambda:
                inner.append(node.lineno)
            else:
                imports.append(
                    Import(target=target, line=node.lineno, annotation_only=annotation_only)
                )
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if in_function and not _deferred(lines, node):
            inner.append(node.lineno)
            continue
        names = _targets(node, name, is_package)
        if isinstance(node, ast.ImportFrom):
            # `from a import b`: the module a.b if there is one, else the module a.
            base, *members = names
            names = [m for m in members if m in modules] or [base]
        for target in names:
            if target in modules:
                imports.append(
                    Import(target=target, line=node.lineno, annotation_only=annotation_only)
                )
    return Module(
        name=name,
        path=path,
        lines=len(text.splitlines()),
        imports=tuple(imports),
        inner_imports=tuple(inner),
    )


def layer_of(name: str, package: str) -> int | None:
    """The layer index of a module (len(LAYERS) for the top), or None if it has none."""
    relative = name[len(package) + 1 :] if name != package else ""
    if relative in TOP:
        return len(LAYERS)
    head = relative.split(".")[0]
    for index, names in enumerate(LAYERS):
        if head in names:
            return index
    return None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle through each module that lies on a cycle, without repeats
    (each starts at its smallest name)."""
    found: set[tuple[str, ...]] = set()
    for start in sorted(graph):
        came_from: dict[str, str] = {}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            if start in graph[node]:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                cycle = path[::-1]
                turn = cycle.index(min(cycle))
                found.add(tuple(cycle[turn:] + cycle[:turn]))
                break
            for target in sorted(graph[node]):
                if target not in came_from and target != start:
                    came_from[target] = node
                    queue.append(target)
    return [list(cycle) for cycle in sorted(found)]


def check(package: Path) -> list[str]:
    """Every problem of the package at `package`, one line each."""
    package = package.resolve()
    root = package.parent
    modules = find_modules(package)
    read = {name: read_module(name, path, modules) for name, path in modules.items()}
    problems = []

    def where(module: Module, line: int | None = None) -> str:
        place = module.path.relative_to(root).as_posix()
        return f"{place}:{line}" if line is not None else place

    for module in read.values():
        if module.lines > MAX_LINES:
            problems.append(f"{where(module)}: {module.lines} lines (over {MAX_LINES})")
        for line in module.inner_imports:
            problems.append(f"{where(module, line)}: import inside a function")
        layer = layer_of(module.name, package.name)
        if layer is None:
            problems.append(f"{where(module)}: {module.name} is in no layer (see LAYERS)")
            continue
        for imported in module.imports:
            target_layer = layer_of(imported.target, package.name)
            if layer < len(LAYERS) and target_layer is not None and target_layer > layer:
                kind = "an annotation import of" if imported.annotation_only else "imports"
                problems.append(
                    f"{where(module, imported.line)}: {module.name} {kind} higher layer "
                    f"{imported.target}"
                )
    graph = {
        name: {i.target for i in module.imports if not i.annotation_only and i.target != name}
        for name, module in read.items()
    }
    problems += [f"import cycle: {' -> '.join([*cycle, cycle[0]])}" for cycle in cycles(graph)]
    return problems


def main(argv: list[str]) -> int:
    package = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / "tead"
    problems = check(package)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
