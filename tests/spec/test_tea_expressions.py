"""TEA's expression-only fields: which language a text is read in, and the sandbox."""

from __future__ import annotations

import pytest

from tead.errors import Location
from tead.graph.nodes import compile_expr
from tead.spec.teaexpr import ExpressionProblem, classify, compile_classified


def evaluate(text: str | bool, state: dict, field: str = "when", python_first: bool = True):
    found = classify(text, field=field, python_first=python_first)
    fn = compile_classified(found, lambda t: compile_expr(t, what=field, where=Location("f")))
    return found.kind, fn(state)


@pytest.mark.parametrize(
    ("text", "state", "kind", "value"),
    [
        (True, {}, "const", True),
        ("false", {}, "const", False),
        ("{{ state.x > 5 }}", {"x": 6}, "jinja", True),
        ("state.x > 5", {"x": 1}, "jinja", False),
        ("state.get('x', 0) > 5", {"x": 9}, "python", True),
        ("state['x'] > 5", {"x": 9}, "python", True),
        ("len(state['xs']) == 2", {"xs": [1, 2]}, "python", True),
        ("any(x > 1 for x in state['xs'])", {"xs": [1, 2]}, "python", True),
        ("!escalate", {"escalate": True}, "not_flag", False),
        ("has_results", {}, "flag", False),
        ("state.score | default(0) > 0.5", {}, "jinja", False),
        ("{{ state.items }}", {"items": [1]}, "jinja", [1]),  # a key before dict.items
    ],
)
def test_when_is_read_as_tead_python_or_teas_forms(text, state, kind, value):
    assert evaluate(text, state) == (kind, value)


def test_python_is_never_reinterpreted():
    """A valid tead (Python) expression over state and builtins stays Python."""
    for text in ("state.get('a') is None", "not state['done']", "sorted(state) == []"):
        assert classify(text, field="when").kind == "python"


def test_condition_reads_everything_as_jinja():
    assert evaluate("not state.get('over', False)", {}, "condition", False) == ("jinja", True)


def test_items_returns_native_objects():
    assert evaluate("{{ state.urls }}", {"urls": ["a", "b"]}, "items") == ("jinja", ["a", "b"])


def test_mixed_text_and_braces_is_one_clear_problem():
    with pytest.raises(ExpressionProblem, match=r"when: mixes text and \{\{ \}\}"):
        classify("{{ state.a }} and {{ state.b }}", field="when")


def test_jinja_syntax_error_is_named():
    with pytest.raises(ExpressionProblem, match="invalid Jinja expression in items"):
        classify("{{ state.a ++ }}", field="items")


def test_sandbox_refuses_unsafe_attributes_and_mutation():
    """The sandbox blocks dunder access and methods that change the state."""
    from jinja2.exceptions import SecurityError

    found = classify("{{ state.__class__.__mro__ }}", field="items")
    fn = compile_classified(found, lambda t: compile_expr(t, what="x", where=Location("f")))
    with pytest.raises(SecurityError, match="unsafe"):
        fn({})
    found = classify("{{ state.update({'x': 1}) }}", field="items")
    fn = compile_classified(found, lambda t: compile_expr(t, what="x", where=Location("f")))
    state: dict = {}
    with pytest.raises(SecurityError):
        fn(state)
    assert state == {}
