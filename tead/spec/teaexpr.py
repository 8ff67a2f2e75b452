"""TEA's expression-only fields (`when:`, `condition:`, `items:`) as callables over `state`.

tead's own `when:` and `for_each:` are Python expressions. The Edge Agent (TEA) writes the
same fields as Jinja expressions: `"{{ state.score > 0.8 }}"`, bare `state.score > 0.8`,
`"!escalate"`, `"has_results"`, a YAML `true`. `classify()` tells which is which, by rules
that never change the meaning of a valid tead (Python) expression:

- a YAML boolean, or the text `true`/`false`: a constant;
- `{{ expr }}` (the whole text): Jinja;
- `!name` / `name` (an identifier that is not a Python name): `not state.get(name)` /
  `state.get(name)`, as TEA reads them;
- text that is Python over `state` and builtins only: Python (tead's own form);
- else, if Jinja parses it (`state.key` dot access, filters, `true`/`none`): Jinja;
- else Python, whose syntax error is then reported.

Jinja expressions run in jinja2's immutable sandbox, with `state` as their only name; dot
access reads a mapping's key before its attributes (`state.items` is `state["items"]`).
They are expressions only: nothing is ever rendered as a template, and `run:` code is
never passed through Jinja.
"""

from __future__ import annotations

import ast
import builtins
import keyword
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

_SINGLE = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}).)*)\}\}\s*$", re.DOTALL)
_DICT_ATTRS = frozenset(dir(dict))
_PY_NAMES = frozenset(dir(builtins)) | {"state"}

Kind = Literal["const", "jinja", "flag", "not_flag", "python"]


class ExpressionProblem(ValueError):
    """An expression that is neither Python nor Jinja (its message is one line)."""


@dataclass(frozen=True, slots=True)
class Classified:
    kind: Kind
    text: str  # the expression to compile (without `{{ }}`), the flag's name, or the constant
    value: bool = False  # for "const"


def classify(value: str | bool, *, field: str, python_first: bool = True) -> Classified:
    """Which language `value` of `field` is written in (see the module's rules).

    `python_first=False` (TEA's `condition:`) reads everything that is not a constant or a
    flag as Jinja, as TEA does."""
    if isinstance(value, bool):
        return Classified("const", str(value).lower(), value)
    text = value.strip()
    conditional = field in ("when", "condition")
    if conditional and text.lower() in ("true", "false"):
        return Classified("const", text.lower(), text.lower() == "true")
    if match := _SINGLE.match(text):
        inner = match.group("expr").strip()
        _jinja_syntax(inner, field)
        return Classified("jinja", inner)
    if "{{" in text or "{%" in text:
        raise ExpressionProblem(
            f"{field}: mixes text and {{{{ }}}}; write one expression, e.g. "
            "{{ state.x > 1 }} or state['x'] > 1"
        )
    if conditional:
        if text.startswith("!") and _is_flag(text[1:].strip()):
            return Classified("not_flag", text[1:].strip())
        if _is_flag(text):
            return Classified("flag", text)
    if python_first and _plain_python(text):
        return Classified("python", text)
    if python_first and "\n" not in text and _jinja_ok(text):
        return Classified("jinja", text)
    if not python_first:
        _jinja_syntax(text, field)
        return Classified("jinja", text)
    return Classified("python", text)  # not Jinja either: Python's message says what is wrong


def _is_flag(text: str) -> bool:
    return text.isidentifier() and not keyword.iskeyword(text) and text not in _PY_NAMES


def _plain_python(text: str) -> bool:
    """Python over `state` and builtins, without TEA's `state.key` dot access."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        return False
    bound = _comprehension_names(tree) | _PY_NAMES
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in bound:
            return False
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "state"
            and node.attr not in _DICT_ATTRS
        ):
            return False
    return True


def _comprehension_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.comprehension):
            names |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.Lambda):
            names |= {a.arg for a in node.args.args}
    return names


def _environment() -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment  # deferred: only TEA files use it

    class _Env(ImmutableSandboxedEnvironment):
        """A mapping's keys come before its attributes, as in TEA (`state.items`)."""

        def getattr(self, obj: Any, attribute: str) -> Any:
            if isinstance(obj, Mapping) and attribute in obj:
                return obj[attribute]
            return super().getattr(obj, attribute)

    return _Env()


_ENV: list[Any] = []  # one environment per process, made on first use


def _env() -> Any:
    if not _ENV:
        _ENV.append(_environment())
    return _ENV[0]


def _jinja_ok(text: str) -> bool:
    try:
        _env().compile_expression(text)
    except Exception:
        return False
    return True


def _jinja_syntax(text: str, field: str) -> None:
    from jinja2 import TemplateSyntaxError  # deferred: only TEA files use it

    try:
        _env().compile_expression(text)
    except TemplateSyntaxError as exc:
        raise ExpressionProblem(f"invalid Jinja expression in {field}: {exc.message}") from None


def compile_jinja(text: str) -> Callable[[dict[str, Any]], Any]:
    """A sandboxed Jinja expression over `state` (already checked by `classify`)."""
    compiled = _env().compile_expression(text)

    def evaluate(state: dict[str, Any]) -> Any:
        return compiled(state=state)

    return evaluate


def compile_classified(
    found: Classified, compile_python: Callable[[str], Callable[[dict[str, Any]], Any]]
) -> Callable[[dict[str, Any]], Any]:
    """The callable for a classified expression; Python goes through `compile_python`."""
    if found.kind == "const":
        value = found.value
        return lambda state: value
    if found.kind == "flag":
        name = found.text
        return lambda state: bool(state.get(name, False))
    if found.kind == "not_flag":
        name = found.text
        return lambda state: not state.get(name, False)
    if found.kind == "jinja":
        return compile_jinja(found.text)
    return compile_python(found.text)
