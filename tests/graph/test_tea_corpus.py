"""The Edge Agent (TEA) files in tests/data/tea/ load and run unchanged, with the final
states TEA's meaning gives, on the thread and the process strategy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tead.errors import InputError, RunError, WorkflowError
from tead.graph.loader import explain_workflow, load_workflow
from tead.workflow import Workflow

CORPUS = Path(__file__).resolve().parents[1] / "data" / "tea"


def run_file(path: Path, state: dict[str, Any] | None = None) -> dict[str, Any]:
    return Workflow(load_workflow(path)).invoke(state)


def with_strategy(tmp_path: Path, name: str, strategy: str) -> Path:
    """A copy of a corpus file whose fan-outs use `strategy` (a settings.parallel block is
    added, or its strategy replaced)."""
    text = (CORPUS / name).read_text(encoding="utf-8")
    if "    strategy: thread" in text:
        text = text.replace("    strategy: thread", f"    strategy: {strategy}")
    else:
        text = text.replace(
            "\nnodes:\n", f"\nsettings:\n  parallel:\n    strategy: {strategy}\nnodes:\n"
        )
    target = tmp_path / name
    target.write_text(text, encoding="utf-8")
    return target


@pytest.mark.parametrize("strategy", ["thread", "process"])
def test_static_parallel_sums_branch_state_through_the_results(tmp_path, strategy):
    """`type: parallel` edges + `fan_in: true`: the fan-in sums `r.get("v", 0)` over the
    results, which reads each branch's state (TEA's idiom)."""
    final = run_file(with_strategy(tmp_path, "static_parallel.yaml", strategy))
    assert final["total"] == 10 * 2 + 10 * 3
    assert final["labels"] == ["double", "triple"]
    assert "parallel_results" not in final  # a static fan-in keeps them only if it returns them


@pytest.mark.parametrize("strategy", ["thread", "process"])
def test_dynamic_parallel_runs_steps_per_item_in_item_order(tmp_path, strategy):
    """`type: dynamic_parallel`: one branch per item of a Jinja `items:`, its steps in order
    with `item_var`/`index_var`; results in item order, also in the state (and `output:`)."""
    final = run_file(with_strategy(tmp_path, "dynamic_parallel.yaml", strategy))
    assert final["lengths"] == [4, 5, 4]
    assert final["summary"] == {"loud": ["EDGE", "AGENT!", "TEAD!!"], "kept": 3, "total": 13}
    assert [r.branch for r in final["parallel_results"]] == [
        f"measure.length[{i}]" for i in range(3)
    ]
    assert final["measured"] == final["parallel_results"]


def test_dynamic_parallel_max_concurrency_and_fail_fast_map_to_the_fan_out():
    """`max_concurrency` is the fan-out's max_workers and `fail_fast` its fail_fast."""
    graph = load_workflow(CORPUS / "dynamic_parallel.yaml")
    (fanout,) = graph.fanouts["measure"]
    assert fanout.config.max_workers == 2
    assert fanout.config.fail_fast is False
    assert fanout.fan_in == "gather"
    assert graph.edges["measure.length"][0].target == "measure.shout"


def test_conditions_follow_teas_jinja_python_and_shorthand_forms():
    """`{{ }}` Jinja, bare Jinja dot access and filters, `!flag`, `condition:` with
    `when: false`, Python `when:` and YAML booleans each route as TEA routes."""
    final = run_file(CORPUS / "conditions.yaml")
    assert final["visited"] == ["high", "check_tags", "urgent", "done"]
    low = run_file(CORPUS / "conditions.yaml", {"score": 0.1, "tags": []})
    assert low["visited"] == ["low", "check_tags", "calm", "done"]
    escalated = run_file(CORPUS / "conditions.yaml", {"escalate": True})
    assert escalated["visited"] == ["high", "check_tags", "urgent", "review", "done"]


def test_condition_loop_with_implicit_chaining():
    """Implicit chaining into `step`, a `condition:` mapping to leave, `when: false` to loop."""
    final = run_file(CORPUS / "loop_condition.yaml")
    assert final["count"] == 3
    assert final["history"] == ["prepare", "step", "step", "step", "finish"]


@pytest.mark.parametrize("strategy", ["thread", "process"])
def test_failed_dynamic_branch_keeps_item_and_index_and_fan_in_fans_out(tmp_path, strategy):
    """A failed dynamic_parallel branch is a result whose state holds its item and index
    (`r["index"]`); the fan-in fans out again through `type: parallel` edges."""
    final = run_file(with_strategy(tmp_path, "fan_in_chain.yaml", strategy))
    assert final["good"] == 3
    assert final["failed"] == [2]
    assert final["checks"] == {"sum_ok": True, "failed_ok": True}
    failed = final["parallel_results"][2]
    assert failed.success is False
    assert failed.error_type == "ZeroDivisionError"
    assert (failed["item"], failed["index"]) == (0, 2)


def test_config_keys_that_do_not_map_warn_once(tmp_path):
    """`config.raise_exceptions` is tead's behaviour; other config keys warn, once each."""
    path = tmp_path / "wf.yaml"
    path.write_text(
        "nodes:\n  - name: a\n    run: \"return {'x': 1}\"\n"
        "config:\n  raise_exceptions: true\n  checkpoint_dir: /tmp/cp\n  max_execution_time: 5\n",
        encoding="utf-8",
    )
    graph = load_workflow(path)
    assert [w.message for w in graph.warnings] == [
        "config.checkpoint_dir is ignored: tead keeps no checkpoints; the daemon keeps run history",
        "config.max_execution_time is ignored: use the top-level timeout: (enforced by the daemon)",
    ]
    assert Workflow(graph).invoke()["x"] == 1


def test_raise_exceptions_false_still_fails_the_run_on_a_node_error(tmp_path):
    """tead stops the run when a node raises, whatever raise_exceptions says."""
    path = tmp_path / "wf.yaml"
    path.write_text(
        "nodes:\n  - name: a\n    run: raise ValueError('no')\n"
        "config:\n  raise_exceptions: false\n",
        encoding="utf-8",
    )
    with pytest.raises(Exception, match="no") as caught:
        Workflow(load_workflow(path)).invoke()
    assert type(caught.value).__name__ == "NodeError"


def test_state_schema_checks_the_initial_and_final_state(tmp_path):
    """A declared key of the wrong type is refused in the input (InputError) and in the
    final state (RunError); unset (None) and undeclared keys are fine."""
    path = tmp_path / "wf.yaml"
    path.write_text(
        "state_schema:\n  n: int\n  out: str\n  any_value: any\n  ratio: {type: float}\n"
        "nodes:\n  - name: a\n"
        "    run: \"return {'out': state['n'] * 2 if state.get('bad') else 'ok'}\"\n",
        encoding="utf-8",
    )
    workflow = Workflow(load_workflow(path))
    assert workflow.invoke({"n": 2, "ratio": 1, "any_value": object, "extra": [1]})["out"] == "ok"
    assert workflow.invoke({"n": None})["out"] == "ok"
    with pytest.raises(
        InputError, match=r"initial state .*'n' is a string, state_schema says integer"
    ):
        workflow.invoke({"n": "2"})
    with pytest.raises(InputError, match=r"'n' is a boolean"):
        workflow.invoke({"n": True})
    with pytest.raises(
        RunError, match=r"final state .*'out' is an integer, state_schema says string"
    ):
        workflow.invoke({"n": 2, "bad": True})


def test_fan_in_true_is_checked_against_the_edges(tmp_path):
    """`fan_in: true` on a node that no fan-out joins at is a load error naming it."""
    path = tmp_path / "wf.yaml"
    path.write_text("nodes:\n  - name: a\n  - name: join\n    fan_in: true\n", encoding="utf-8")
    with pytest.raises(WorkflowError) as caught:
        load_workflow(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:4:5: node 'join' has fan_in: true, but no parallel edge or dynamic_parallel "
        "node names it as its fan_in"
    ]


def test_dynamic_parallel_edge_to_another_node_is_refused(tmp_path):
    """The plain edge from a dynamic_parallel node to its fan-in is implied; an edge to any
    other node is one clear problem."""
    path = tmp_path / "wf.yaml"
    path.write_text(
        "nodes:\n"
        "  - name: d\n    type: dynamic_parallel\n    items: '{{ state.xs }}'\n"
        "    fan_in: j\n    steps:\n      - run: return None\n"
        "  - name: j\n  - name: other\n"
        "edges:\n  - from: d\n    to: other\n",
        encoding="utf-8",
    )
    with pytest.raises(WorkflowError) as caught:
        load_workflow(path)
    assert [p.message for p in caught.value.problems] == [
        "dynamic_parallel node 'd' continues at its fan_in 'j'; remove this edge"
    ]


def test_unsupported_features_get_one_clear_line_each():
    """Each TEA feature tead lacks is one line naming it and the alternative: no pydantic
    or regex wording."""
    with pytest.raises(WorkflowError) as caught:
        load_workflow(CORPUS / "unsupported.yaml")
    lines = [f"{p.where.line}: {p.message}" for p in caught.value.problems]
    assert lines == [
        "3: variables: is not provided by tead (TEA's template variables; put the values in "
        "initial_state)",
        "6: settings.llm is a TEA setting (for its built-in actions and services); tead has "
        "only settings.parallel",
        "12: node 'ask': uses: 'llm.call' is a TEA built-in action, which tead does not "
        "provide; call your own function with uses: module:function, or write the node in "
        "Python (run:)",
        "17: node 'in_lua': language: 'lua' is not provided (tead runs Python only; rewrite "
        "the node in Python)",
        "23: node 'jump': goto: is not provided by tead (TEA's goto: navigation; write edges "
        "(from, to, when))",
        "25: node 'loop': type: while_loop is not provided by tead (use a conditional edge "
        "back to an earlier node)",
        "36: node 'fetch_all': action: is not provided by tead (TEA's dynamic_parallel action "
        "mode; write steps: with Python run: code)",
        "43: config.interrupt_before is not provided by tead (TEA's human-in-the-loop "
        "interrupts; split the workflow in two)",
    ]
    for problem in caught.value.problems:
        assert "should" not in problem.message  # pydantic's "Input should be ..."
        assert "pattern" not in problem.message


def test_explain_lists_every_difference_in_file_order():
    """`explain_workflow` lists what differs from TEA, accepted keys included."""
    lines = [
        f"{p.where.line}: {p.message}" for p in explain_workflow(CORPUS / "dynamic_parallel.yaml")
    ]
    assert lines[0].startswith("4: state_schema: checked against the initial and the final")
    assert any(
        line.startswith("13: node 'measure': dynamic_parallel runs as a for_each") for line in lines
    )
    assert "14: items: is TEA's Jinja; tead evaluates it in a sandbox" in lines
    assert any("node 'gather': fan_in: true is accepted and checked" in line for line in lines)
    numbers = [int(line.split(":")[0]) for line in lines]
    assert numbers == sorted(numbers)


def test_run_without_return_warns_only_in_a_tea_file(tmp_path):
    """TEA merges a `run:` body's local variables; tead does not. A file that uses TEA's
    keys gets a warning; a plain tead file only an `--explain` note."""
    body = "nodes:\n  - name: a\n    run: |\n      x = 1\n"
    plain = tmp_path / "plain.yaml"
    plain.write_text(body, encoding="utf-8")
    assert load_workflow(plain).warnings == ()
    assert [p.message.split(":")[0] for p in explain_workflow(plain)] == ["node 'a'"]
    tea = tmp_path / "tea.yaml"
    tea.write_text(body + "    language: python\n  - name: b\n    condition: x\n", encoding="utf-8")
    graph = load_workflow(tea)
    assert [(w.where.line, w.message[:30]) for w in graph.warnings] == [
        (3, "node 'a': run: has no return: "),
        (7, "node 'b': condition: is ignore"),
    ]
    assert Workflow(graph).invoke() == {}


def test_dynamic_parallel_mistakes_are_one_line_each(tmp_path):
    """A misspelt fan_in is reported once (not once per edge); a missing `items:` names it."""
    typo = tmp_path / "typo.yaml"
    typo.write_text(
        "nodes:\n  - name: d\n    type: dynamic_parallel\n    items: '{{ state.xs }}'\n"
        "    fan_in: joinn\n    steps:\n      - run: return None\n  - name: join\n",
        encoding="utf-8",
    )
    with pytest.raises(WorkflowError) as caught:
        load_workflow(typo)
    assert [p.message for p in caught.value.problems] == [
        "fan_in: unknown node 'joinn' (did you mean 'join'?)"
    ]
    no_items = tmp_path / "no_items.yaml"
    no_items.write_text(
        "nodes:\n  - name: d\n    type: dynamic_parallel\n    fan_in: join\n"
        "    steps:\n      - run: return None\n  - name: join\n",
        encoding="utf-8",
    )
    with pytest.raises(WorkflowError) as caught:
        load_workflow(no_items)
    assert [p.message for p in caught.value.problems] == [
        "nodes.0: a dynamic_parallel node needs `items:`"
    ]


def test_run_code_with_braces_is_python_not_a_template(tmp_path):
    """`{{` in `run:` code is Python (here a string literal), never rendered by Jinja;
    `--explain` notes that TEA would render it."""
    path = tmp_path / "wf.yaml"
    path.write_text(
        "initial_state: {x: 5}\nnodes:\n  - name: a\n    language: python\n    run: |\n"
        "      return {'text': '{{ state.x }}', 'set': {{'a': 1}['a']}}\n",
        encoding="utf-8",
    )
    assert Workflow(load_workflow(path)).invoke() == {"x": 5, "text": "{{ state.x }}", "set": {1}}
    notes = [p.message for p in explain_workflow(path)]
    assert "node 'a': run: contains {{ or {%: TEA renders run: code as a Jinja template" in (
        " ".join(notes)
    )
