"""The Edge Agent (TEA) files through the real CLI: `tead run`, `tead validate --explain`,
`tead schema --state`, and the warnings printed for TEA keys tead ignores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.helpers import final_state

CORPUS = Path(__file__).resolve().parents[1] / "data" / "tea"


def copy(tmp_path: Path, name: str) -> str:
    shutil.copy(CORPUS / name, tmp_path / name)
    return name


def test_run_dynamic_parallel_file_unchanged(tead_cli, tmp_path):
    """`tead run` runs a TEA dynamic_parallel file as written; results print as JSON."""
    proc = tead_cli("run", "-q", copy(tmp_path, "dynamic_parallel.yaml"))
    state = final_state(proc)
    assert state["lengths"] == [4, 5, 4]
    assert state["summary"]["total"] == 13
    assert [r["state"]["word"] for r in state["parallel_results"]] == ["edge", "agent", "tead"]
    assert proc.stderr == ""


def test_run_prints_each_ignored_config_key_once(tead_cli, tmp_path):
    """Ignored `config:` keys are one `file:line:col: warning:` line each on stderr."""
    (tmp_path / "wf.yaml").write_text(
        "nodes:\n  - name: a\n    run: \"return {'x': 1}\"\n"
        "config:\n  raise_exceptions: true\n  checkpoint_dir: /tmp/cp\n",
        encoding="utf-8",
    )
    proc = tead_cli("run", "-q", "wf.yaml")
    assert final_state(proc)["x"] == 1
    assert proc.stderr.splitlines() == [
        "wf.yaml:6:3: warning: config.checkpoint_dir is ignored: tead keeps no checkpoints; "
        "the daemon keeps run history"
    ]


def test_run_refuses_initial_state_that_does_not_fit_state_schema(tead_cli, tmp_path):
    """A wrong input type is exit code 2 with one line, before anything runs."""
    name = copy(tmp_path, "static_parallel.yaml")
    proc = tead_cli("run", "-q", name, "--input", '{"base": "ten"}')
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "tead: initial state does not fit state_schema: key 'base' is a string, "
        "state_schema says integer"
    ]


def test_validate_explain_lists_differences_then_the_result(tead_cli, tmp_path):
    """`--explain` prints one `tea:` line per difference (stdout), then the usual check."""
    name = copy(tmp_path, "static_parallel.yaml")
    proc = tead_cli("validate", "--explain", name)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{name}:5:1: tea: state_schema: checked against the initial")
    assert any("node 'merge': fan_in: true is accepted and checked" in line for line in lines)
    assert any("config.raise_exceptions: tead always stops the run" in line for line in lines)
    assert lines[-1] == f"{name}: ok (static-parallel, 4 nodes)"


def test_validate_explain_on_unsupported_features_lists_them_and_fails(tead_cli, tmp_path):
    """Refused features appear in the explanation and as problems; exit code 2."""
    name = copy(tmp_path, "unsupported.yaml")
    proc = tead_cli("validate", "--explain", name)
    assert proc.returncode == 2
    explained = [line for line in proc.stdout.splitlines() if ": tea: " in line]
    problems = proc.stderr.splitlines()
    assert len(problems) == 8
    assert f"{name}:12:5: node 'ask': uses: 'llm.call' is a TEA built-in action" in problems[2]
    for problem in problems:  # every problem is also explained
        assert any(problem.split(": ", 1)[1] in line for line in explained)
    assert "Traceback" not in proc.stderr


def test_validate_explain_says_so_when_nothing_differs(tead_cli, tmp_path):
    (tmp_path / "plain.yaml").write_text(
        "nodes:\n  - name: a\n    run: \"return {'x': 1}\"\n", encoding="utf-8"
    )
    proc = tead_cli("validate", "--explain", "plain.yaml")
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == [
        "plain.yaml: tea: no differences from The Edge Agent's format",
        "plain.yaml: ok (plain, 1 node)",
    ]


def test_schema_state_prints_the_states_json_schema(tead_cli, tmp_path):
    """`tead schema --state WF` turns state_schema into a JSON Schema (None allowed)."""
    name = copy(tmp_path, "dynamic_parallel.yaml")
    proc = tead_cli("schema", "--state", name)
    assert proc.returncode == 0, proc.stderr
    schema = json.loads(proc.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["type"] == "object"
    assert schema["properties"] == {
        "words": {"type": ["array", "null"]},
        "lengths": {"type": ["array", "null"]},
        "summary": {"type": ["object", "null"]},
    }


def test_schema_state_without_state_schema_is_a_usage_error(tead_cli, tmp_path):
    (tmp_path / "plain.yaml").write_text("nodes:\n  - name: a\n", encoding="utf-8")
    proc = tead_cli("schema", "--state", "plain.yaml")
    assert proc.returncode == 2
    assert proc.stderr == "tead: plain.yaml: the workflow has no state_schema\n"


def test_schema_describes_teas_keys_for_editors(tead_cli):
    """The format's JSON Schema has TEA's accepted keys: state_schema, config, node type."""
    schema = json.loads(tead_cli("schema").stdout)
    assert {"state_schema", "config", "version"} <= set(schema["properties"])
    node = schema["$defs"]["NodeSpec"]["properties"]
    assert {"fan_in", "language", "type", "items", "item_var", "steps"} <= set(node)
