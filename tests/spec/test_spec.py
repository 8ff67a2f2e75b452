"""The workflow format: durations, YAML positions, the JSON Schema, graph checks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tead import Graph, ParallelConfig, WorkflowError, load_workflow_text
from tead.spec.models import WorkflowSpec, json_schema
from tead.spec.units import parse_duration
from tead.spec.yamlfile import parse_yaml


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        (1.5, 1.5),
        (3, 3.0),
        ("2", 2.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5x", "", "-1s", 0, True, None, "inf", float("nan")])
def test_bad_durations_are_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_on_key_stays_a_string_and_yes_no_stay_strings() -> None:
    """YAML 1.1 reads `on`/`yes`/`no` as booleans; a workflow's `on:` must stay a key."""
    doc = parse_yaml("on: {dispatch: {}}\nanswer: yes\nflag: true\n", "x.yaml")
    assert doc.data == {"on": {"dispatch": {}}, "answer": "yes", "flag": True}


def test_positions_of_values_and_keys_are_kept() -> None:
    doc = parse_yaml("a:\n  b: [1, 2]\n  c: x\n", "x.yaml")
    assert str(doc.where(("a", "b", 1))) == "x.yaml:2:10"
    assert str(doc.where(("a", "c"), key=True)) == "x.yaml:3:3"
    assert str(doc.where(("a", "zzz"))) == "x.yaml:2:3"  # nearest known ancestor


def test_duplicate_keys_are_reported_not_overwritten() -> None:
    with pytest.raises(WorkflowError, match=r"x.yaml:2:1: duplicate key 'a'"):
        parse_yaml("a: 1\na: 2\n", "x.yaml")


def test_alias_bombs_do_not_explode() -> None:
    """Aliases share one value instead of being expanded (a billion-laughs file loads fast)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    doc = parse_yaml("\n".join(lines) + "\n", "bomb.yaml")
    assert doc.data["a8"][0] is doc.data["a7"]


def test_schema_is_json_and_describes_the_format() -> None:
    schema = json_schema()
    json.dumps(schema)
    assert {"nodes", "edges", "on", "settings", "initial_state"} <= set(schema["properties"])
    edge = schema["$defs"]["EdgeSpec"]["properties"]
    assert {"from", "to", "when", "parallel", "fan_in", "for_each", "parallel_strategy"} <= set(
        edge
    )


def test_spec_accepts_the_contract_example() -> None:
    """CONTRACT §1's example parses (its `uses:` module aside) with every key in place."""
    text = (Path(__file__).resolve().parents[1] / "data" / "contract_example.yaml").read_text()
    spec = WorkflowSpec.model_validate(parse_yaml(text, "c.yaml").data)
    assert spec.on is not None and spec.on.catchup == "latest"
    assert spec.on.schedule[0].timezone == "Europe/Berlin"  # type: ignore[union-attr]
    assert spec.on.schedule[1].every == 30.0  # type: ignore[union-attr]
    assert spec.settings.parallel.retry is not None
    assert spec.settings.parallel.retry.retry_on == ["TimeoutError", "ConnectionError"]
    assert spec.timeout == 600.0
    assert spec.edges[1].overrides() == {"strategy": "process"}
    config = ParallelConfig.from_spec(spec.settings.parallel)
    assert config.max_workers == 4 and config.timeout_seconds == 30.0
    assert config.circuit_breaker is not None and config.circuit_breaker.failure_threshold == 5
    assert config.remote is not None and config.remote.hosts[1] == "worker@10.0.0.12:2222"


def test_dispatch_input_default_must_match_its_type() -> None:
    text = (
        "on:\n  dispatch:\n    inputs:\n      size: {type: integer, default: big}\n"
        "nodes: [{name: a}]\n"
    )
    with pytest.raises(WorkflowError, match=r"w.yaml:4:13: .*default 'big' is not of type integer"):
        load_workflow_text(text, "w.yaml")


def test_graph_problems_are_all_reported_at_once() -> None:
    graph = Graph()
    graph.add_node("a")
    graph.add_node("a")
    graph.add_edge("a", "zzz")
    graph.add_parallel_edge("a", ["a"], fan_in="nope", config={"strategy": "gpu"})
    with pytest.raises(WorkflowError) as info:
        graph.compile()
    messages = [p.message for p in info.value.problems]
    assert "duplicate node name 'a'" in messages
    assert "edge to unknown node 'zzz'" in messages
    assert "fan_in: unknown node 'nope'" in messages
    assert any(m.startswith("unknown parallel strategy 'gpu'") for m in messages)


def test_a_branch_running_into_its_sibling_is_an_error() -> None:
    """Implicit chaining from branch `a` would run `b` too: say so instead of doing it."""
    graph = Graph()
    for name in ("s", "a", "b", "m"):
        graph.add_node(name)
    graph.add_parallel_edge("s", ["a", "b"], fan_in="m")
    with pytest.raises(WorkflowError, match="branch 'a' runs into branch 'b'"):
        graph.compile()


def test_parallel_and_plain_edges_from_one_node_are_an_error() -> None:
    graph = Graph()
    for name in ("s", "a", "m"):
        graph.add_node(name)
    graph.add_parallel_edge("s", "a", fan_in="m")
    graph.add_edge("s", "m")
    with pytest.raises(WorkflowError, match="both parallel and plain edges"):
        graph.compile()


def test_a_second_fan_in_that_the_first_cannot_reach_is_an_error() -> None:
    """Otherwise the second set of branches would run and its results be dropped."""
    graph = Graph()
    for name in ("s", "a", "b", "j1", "j2"):
        graph.add_node(name)
    graph.add_parallel_edge("s", "a", fan_in="j1")
    graph.add_parallel_edge("s", "b", fan_in="j2")
    graph.add_edge("a", "j1")
    graph.add_edge("b", "j2")
    graph.add_edge("j1", "__end__")
    with pytest.raises(WorkflowError, match="so 'j2' must be reachable from it"):
        graph.compile()


def test_a_nested_fan_out_cannot_share_the_enclosing_fan_in() -> None:
    graph = Graph()
    for name in ("s", "x", "x1", "y", "j"):
        graph.add_node(name)
    graph.add_parallel_edge("s", ["x", "y"], fan_in="j")
    graph.add_parallel_edge("x", "x1", fan_in="j")
    graph.add_edge("x1", "j")
    graph.add_edge("y", "j")
    with pytest.raises(WorkflowError, match="cannot share its fan-in 'j'"):
        graph.compile()


def test_an_exit_point_inside_a_branch_is_rejected() -> None:
    from tead import ScopeError

    graph = Graph()
    for name in ("s", "a", "j", "after"):
        graph.add_node(name)
    graph.add_parallel_edge("s", "a", fan_in="j")
    graph.add_edge("a", "j")
    workflow = graph.compile()
    with pytest.raises(ScopeError, match="inside a fan-out branch"):
        workflow.invoke(exit_point="a")
    assert workflow.invoke(entry_point="a", exit_point="j") == {}


@pytest.mark.parametrize("depth", [150, 900, 5000])
@pytest.mark.parametrize("style", ["flow", "block"])
def test_deeply_nested_yaml_is_a_located_one_line_error(depth: int, style: str) -> None:
    """However deep (past tead's limit, Python's recursion limit or the parser's own), nesting
    is one `file:line:col` line, whatever wording the YAML library uses."""
    if style == "flow":
        text = "nodes: [{name: a}]\ninitial_state: {x: " + "[" * depth + "]" * depth + "}\n"
    else:
        levels = "".join("  " * i + "k:\n" for i in range(1, depth))
        text = "nodes: [{name: a}]\ninitial_state:\n" + levels + "  " * depth + "v: 1\n"
    with pytest.raises(WorkflowError) as caught:
        load_workflow_text(text, "deep.yaml")
    message = str(caught.value)
    assert re.fullmatch(r"deep\.yaml:\d+:\d+: [^\n]+", message), message


def test_an_invalid_watch_glob_is_a_validation_error() -> None:
    text = "on: {watch: {paths: ['inbox/[z-a].txt']}}\nnodes: [{name: a}]\n"
    with pytest.raises(
        WorkflowError, match=r"g.yaml:1:22: .*invalid glob '…': bad character range z-a"
    ):
        load_workflow_text(text, "g.yaml")
