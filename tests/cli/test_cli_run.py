"""End-to-end tests of `tead run` (and `--version`, `schema`) through the real CLI subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from datetime import datetime
from typing import Any

import pytest
import yaml

from tead import __version__
from tests.helpers import final_state

SIMPLE = """
    initial_state: {x: 1, keep: kept}
    nodes:
      - name: a
        run: |
          return {"y": state["x"] + 1}
"""

FAILING = """
    nodes:
      - name: ok
        run: |
          return {"before": True}
      - name: boom
        run: |
          raise ValueError("bad")
"""

# left and right run in parallel and meet at join; pre and post are outside the fan-out.
FANOUT = """
    nodes:
      - name: pre
        run: |
          return {"trail": ["pre"]}
      - name: src
        run: |
          return {"trail": state.get("trail", []) + ["src"]}
      - name: left
        run: |
          return {"trail": state["trail"] + ["left"]}
      - name: left2
        run: |
          return {"trail": state["trail"] + ["left2"]}
      - name: right
        run: |
          return {"trail": state["trail"] + ["right"]}
      - name: join
        run: |
          return {"trail": state["trail"] + ["join"],
                  "seen": [[r.branch, r.state["trail"]] for r in parallel_results]}
      - name: post
        run: |
          return {"trail": state["trail"] + ["post"]}
    edges:
      - {from: pre, to: src}
      - {from: src, to: [left, right], parallel: true, fan_in: join}
      - {from: left, to: left2}
      - {from: left2, to: join}
      - {from: right, to: join}
      - {from: join, to: post}
"""


# tead parses with libyaml when PyYAML has it; its messages differ a little, not its marks.
LIBYAML = hasattr(yaml, "CSafeLoader")


def check_error(proc: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    """The process failed with `code` and exactly one stderr line `message`, no traceback."""
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [message]
    assert proc.stdout == ""


def events(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    lines = proc.stdout.splitlines()
    assert lines, proc.stderr
    return [json.loads(line) for line in lines]


def nodes_started(evs: list[dict[str, Any]]) -> list[str]:
    return [e["node"] for e in evs if e["event"] == "node_started"]


# --- basics --------------------------------------------------------------------------------


def test_version(tead_cli):
    proc = tead_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"tead {__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", __version__)


def test_schema_is_json_schema_of_the_workflow_format(tead_cli):
    """`tead schema` prints a JSON Schema document describing nodes, edges and triggers."""
    proc = tead_cli("schema")
    assert proc.returncode == 0, proc.stderr
    schema = json.loads(proc.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["type"] == "object"
    props = schema["properties"]
    for key in ("name", "description", "on", "concurrency", "timeout", "initial_state"):
        assert key in props
    assert {"settings", "nodes", "edges"} <= props.keys()
    assert "nodes" in schema["required"]
    assert schema["additionalProperties"] is False
    text = json.dumps(schema)
    for key in ('"fan_in"', '"for_each"', '"item_var"', '"parallel_strategy"', '"when"'):
        assert key in text
    # every $ref resolves inside the document
    for ref in re.findall(r'"\$ref": "#/\$defs/([^"]+)"', text):
        assert ref in schema["$defs"]


def test_default_prints_state_on_stdout_and_plain_progress_on_stderr(tead_cli, write_workflow):
    """Without flags: final state JSON on stdout; piped stderr gets plain lines, no escapes."""
    write_workflow(
        """
        description: the default run
        nodes:
          - name: first
            description: a node
            run: |
              template = "{{ not a template }} {% neither %}"
              return {"text": template, "braces": {"k": {"v": 1}}["k"]["v"]}
        """,
        name="my-flow.yaml",
    )
    proc = tead_cli("run", "my-flow.yaml")
    assert final_state(proc) == {"text": "{{ not a template }} {% neither %}", "braces": 1}
    assert "\x1b" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == "run my-flow started"  # `name` defaults to the file stem
    assert re.fullmatch(r"node first done in \d+(\.\d+)? ms", lines[1])
    assert re.fullmatch(r"run succeeded in \d+(\.\d+)? ms", lines[2])
    assert len(lines) == 3


def test_quiet_prints_only_the_state(tead_cli, write_workflow):
    write_workflow(SIMPLE)
    for flag in ("--quiet", "-q"):
        proc = tead_cli("run", "wf.yaml", flag)
        assert final_state(proc) == {"x": 1, "keep": "kept", "y": 2}
        assert proc.stderr == ""


# --- input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "files", "arg"),
    [
        ("--input", {}, '{"x": 10, "extra": [1, 2]}'),
        ("-i", {"in.json": '{"x": 10, "extra": [1, 2]}'}, "@in.json"),
        ("--input", {"in.yaml": "x: 10\nextra:\n  - 1\n  - 2\n"}, "@in.yaml"),
        ("-i", {"in.yml": "x: 10\nextra: [1, 2]\non: 1\n"}, "@in.yml"),
    ],
    ids=["inline", "json-file", "yaml-file", "yml-file-with-on-key"],
)
def test_input_is_merged_over_initial_state(tead_cli, write_workflow, flag, files, arg):
    """--input (inline, @json, @yaml) overrides initial_state keys and keeps the others."""
    write_workflow(SIMPLE)
    for name, text in files.items():
        write_workflow(text, name=name)
    state = final_state(tead_cli("run", "wf.yaml", "-q", flag, arg))
    expected = {"x": 10, "keep": "kept", "extra": [1, 2], "y": 11}
    if "in.yml" in files:
        expected["on"] = 1  # a YAML `on` key stays the string "on", not True
    assert state == expected


@pytest.mark.parametrize(
    ("files", "arg", "message"),
    [
        (
            {},
            "{bad",
            "tead: --input: invalid JSON: Expecting property name enclosed in double quotes",
        ),
        ({}, "[1, 2]", "tead: --input must be a JSON object, got list"),
        ({}, "@missing.json", "tead: --input: missing.json: no such file"),
        (
            {"bad.json": '{"x":\n'},
            "@bad.json",
            "tead: --input: bad.json:2:1: invalid JSON: Expecting value",
        ),
        (
            {"bad.yaml": "x: [1\n"},
            "@bad.yaml",
            "tead: --input: bad.yaml:2:1: invalid YAML: "
            + (
                "did not find expected ',' or ']'"
                if LIBYAML
                else "expected ',' or ']', but got '<stream end>'"
            ),
        ),
    ],
    ids=["invalid-json", "json-list", "missing-file", "malformed-json-file", "malformed-yaml"],
)
def test_bad_input_is_one_line_and_exit_2(tead_cli, write_workflow, files, arg, message):
    write_workflow(SIMPLE)
    for name, text in files.items():
        write_workflow(text, name=name)
    check_error(tead_cli("run", "wf.yaml", "--input", arg), 2, message)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "flow.yaml: no such file"),
        (
            "nodes:\n  - name: a\n    run: [\n",
            "flow.yaml:4:1: invalid YAML: "
            + (
                "did not find expected node content"
                if LIBYAML
                else "expected the node content, but found '<stream end>'"
            ),
        ),
    ],
    ids=["missing", "malformed"],
)
def test_bad_workflow_file_is_one_line_and_exit_2(tead_cli, write_workflow, text, message):
    if text is not None:
        write_workflow(text, name="flow.yaml")
    check_error(tead_cli("run", "flow.yaml"), 2, message)


# --- output --------------------------------------------------------------------------------


def test_output_writes_json_and_nothing_on_stdout(tead_cli, write_workflow, tmp_path):
    write_workflow(SIMPLE)
    proc = tead_cli("run", "wf.yaml", "-q", "--output", "out.json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr == ""
    assert json.loads((tmp_path / "out.json").read_text()) == {"x": 1, "keep": "kept", "y": 2}


def test_output_replaces_an_existing_file_atomically(tead_cli, write_workflow, tmp_path):
    """The old file is replaced by a rename (new inode), keeps its mode, leaves no temp files."""
    write_workflow(SIMPLE)
    umask = os.umask(0)
    os.umask(umask)
    mode = 0o666 & ~umask
    out = tmp_path / "out.json"
    out.write_text("old contents that are longer than the new JSON document " * 10)
    out.chmod(mode)
    old_inode = out.stat().st_ino
    before = set(os.listdir(tmp_path))
    proc = tead_cli("run", "wf.yaml", "--output", "out.json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert json.loads(out.read_text()) == {"x": 1, "keep": "kept", "y": 2}
    assert out.stat().st_ino != old_inode
    assert set(os.listdir(tmp_path)) == before
    assert oct(out.stat().st_mode & 0o777) == oct(mode)


def test_output_into_missing_folder_fails_before_running(tead_cli, write_workflow, tmp_path):
    """--output into a missing folder: exit 2 before any node runs, nothing created."""
    write_workflow(
        """
        nodes:
          - name: touch
            run: |
              open("marker", "w").close()
        """
    )
    old = tmp_path / "result.json"
    old.write_text('{"old": true}')
    proc = tead_cli("run", "wf.yaml", "--output", "nodir/result.json")
    folder = (tmp_path / "nodir").resolve()
    check_error(proc, 2, f"tead: --output: folder {folder} does not exist")
    assert not (tmp_path / "marker").exists()
    assert not (tmp_path / "nodir").exists()
    assert old.read_text() == '{"old": true}'


def test_failed_run_leaves_existing_output_untouched(tead_cli, write_workflow, tmp_path):
    write_workflow(FAILING)
    out = tmp_path / "out.json"
    out.write_text('{"old": true}')
    proc = tead_cli("run", "wf.yaml", "-q", "--output", "out.json")
    check_error(proc, 1, "tead: node 'boom' failed: ValueError: bad")
    assert out.read_text() == '{"old": true}'
    assert sorted(os.listdir(tmp_path)) == ["out.json", "wf.yaml"]


# --- entry and exit points -----------------------------------------------------------------


def test_scoped_run_runs_only_its_nodes_and_fans_out(tead_cli, write_workflow):
    """--entry-point src --exit-point post: pre and post never run; the fan-out does fan out."""
    write_workflow(FANOUT)
    proc = tead_cli("run", "wf.yaml", "--stream", "--entry-point", "src", "--exit-point", "post")
    assert proc.returncode == 0, proc.stderr
    evs = events(proc)
    assert sorted(nodes_started(evs)) == ["join", "left", "left2", "right", "src"]
    assert [e["event"] for e in evs].count("fanout_started") == 1
    final = evs[-1]["state"]
    assert final == {
        "trail": ["src", "join"],
        "seen": [["left", ["src", "left", "left2"]], ["right", ["src", "right"]]],
    }
    # the same scope without --stream prints the same final state
    assert (
        final_state(
            tead_cli("run", "wf.yaml", "-q", "--entry-point", "src", "--exit-point", "post")
        )
        == final
    )


def test_scope_defaults_and_exit_before_a_node(tead_cli, write_workflow):
    """--exit-point stops before the node; --entry-point alone runs to __end__."""
    write_workflow(FANOUT)
    assert final_state(tead_cli("run", "wf.yaml", "-q", "--exit-point", "src")) == {
        "trail": ["pre"]
    }
    state = final_state(
        tead_cli("run", "wf.yaml", "-q", "--entry-point", "join", "-i", '{"trail": []}')
    )
    assert state == {"trail": ["join", "post"], "seen": []}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--entry-point", "scr"], "tead: --entry-point: unknown node 'scr' (did you mean 'src'?)"),
        (["--exit-point", "nowhere"], "tead: --exit-point: unknown node 'nowhere'"),
        (
            ["--entry-point", "src", "--exit-point", "src"],
            "tead: --entry-point and --exit-point are the same node 'src'",
        ),
        (["--entry-point", "post", "--exit-point", "pre"], "tead: no path from 'post' to 'pre'"),
    ],
    ids=["unknown-entry", "unknown-exit", "same-node", "no-path"],
)
def test_bad_scope_is_one_line_and_exit_2(tead_cli, write_workflow, tmp_path, args, message):
    write_workflow(FANOUT)
    check_error(tead_cli("run", "wf.yaml", *args), 2, message)


def test_exit_point_inside_a_branch_never_runs_past_it(tead_cli, write_workflow):
    """--exit-point at a node inside a fan-out branch: refused, or nothing from it on runs."""
    write_workflow(FANOUT)
    proc = tead_cli("run", "wf.yaml", "-q", "--entry-point", "src", "--exit-point", "left2")
    if proc.returncode == 2:
        assert len(proc.stderr.splitlines()) == 1
        assert "left2" in proc.stderr
        assert "Traceback" not in proc.stderr
    else:
        state = final_state(proc)
        assert "post" not in state["trail"]
        assert "left2" not in json.dumps(state)


# --- stream --------------------------------------------------------------------------------


def test_stream_prints_ndjson_events(tead_cli, write_workflow):
    """--stream: one JSON event per line with `event` and `ts`; the last is run_finished."""
    write_workflow(FANOUT)
    proc = tead_cli("run", "wf.yaml", "--stream")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    evs = events(proc)
    for event in evs:
        assert isinstance(event["event"], str)
        assert datetime.fromisoformat(event["ts"].replace("Z", "+00:00")).tzinfo is not None
    kinds = [e["event"] for e in evs]
    assert kinds[0] == "run_started"
    assert evs[0]["workflow"] == "wf"
    assert {
        "run_started",
        "node_started",
        "node_finished",
        "fanout_started",
        "branch_finished",
        "fan_in",
        "run_finished",
    } <= set(kinds)
    assert kinds.count("run_finished") == 1
    fanout = next(e for e in evs if e["event"] == "fanout_started")
    assert (fanout["node"], fanout["fan_in"], fanout["branches"]) == (
        "src",
        "join",
        ["left", "right"],
    )
    finished = [e for e in evs if e["event"] == "branch_finished"]
    assert sorted((e["branch"], e["success"]) for e in finished) == [
        ("left", True),
        ("right", True),
    ]
    fan_in = next(e for e in evs if e["event"] == "fan_in")
    assert (fan_in["node"], fan_in["branches"], fan_in["failed"]) == ("join", 2, 0)
    assert kinds.index("fan_in") > max(i for i, k in enumerate(kinds) if k == "branch_finished")
    last = evs[-1]
    assert last["event"] == "run_finished"
    assert last["status"] == "succeeded"
    assert last["state"] == {
        "trail": ["pre", "src", "join", "post"],
        "seen": [["left", ["pre", "src", "left", "left2"]], ["right", ["pre", "src", "right"]]],
    }


def test_stream_of_a_failed_run_ends_with_failed_run_finished(tead_cli, write_workflow):
    write_workflow(FAILING)
    proc = tead_cli("run", "wf.yaml", "--stream")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == ["tead: node 'boom' failed: ValueError: bad"]
    evs = events(proc)
    failed = [e for e in evs if e["event"] == "node_finished" and e["status"] == "failed"]
    assert [(e["node"], e["error"]) for e in failed] == [("boom", "ValueError: bad")]
    assert evs[-1]["event"] == "run_finished"
    assert evs[-1]["status"] == "failed"
    assert evs[-1]["error"] == "node 'boom' failed: ValueError: bad"


# --- failures, exit codes, --debug ---------------------------------------------------------


def test_failing_node_exit_1_and_names_node_and_error(tead_cli, write_workflow):
    write_workflow(FAILING)
    proc = tead_cli("run", "wf.yaml")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == "tead: node 'boom' failed: ValueError: bad"


def test_debug_shows_the_traceback_into_the_yaml(tead_cli, write_workflow):
    """--debug prints the node's traceback, with the line of the workflow file that raised."""
    write_workflow(FAILING)
    proc = tead_cli("--debug", "run", "wf.yaml", "-q")
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert re.search(r'File ".*wf\.yaml", line 7, in ', proc.stderr)
    assert "ValueError: bad" in proc.stderr
    assert proc.stderr.splitlines()[-1] == "tead: node 'boom' failed: ValueError: bad"


def test_run_error_that_is_not_a_node_exception_exits_1(tead_cli, write_workflow):
    """No `when:` true and no other edge: the run fails with exit 1 and one clear line."""
    write_workflow(
        """
        nodes:
          - name: a
          - name: b
        edges:
          - {from: a, to: b, when: "state['go']"}
        """
    )
    check_error(
        tead_cli("run", "wf.yaml", "-q", "-i", '{"go": false}'),
        1,
        "tead: no edge from 'a' matched the state (all `when` were false)",
    )


def test_unserialisable_final_state_gives_no_traceback(tead_cli, write_workflow):
    """A final state JSON cannot encode (a cycle) is a clear error or valid JSON, never a crash."""
    write_workflow(
        """
        nodes:
          - name: a
            run: |
              d = {}
              d["self"] = d
              return {"d": d}
        """
    )
    for extra in ((), ("--stream",)):
        proc = tead_cli("run", "wf.yaml", "-q", *extra)
        assert "Traceback" not in proc.stderr, extra
        assert proc.returncode in (0, 1), extra
        if proc.returncode == 1:
            assert len(proc.stderr.splitlines()) == 1, extra
        else:
            for line in proc.stdout.splitlines() if extra else [proc.stdout]:
                json.loads(line)


# --- fan-outs ------------------------------------------------------------------------------


def test_failed_branch_does_not_fail_the_run(tead_cli, write_workflow):
    """A branch raising inside a fan-out becomes a failed result; the fan-in still runs."""
    write_workflow(
        """
        nodes:
          - name: start
            run: |
              return {"files": ["a", "b", "c"]}
          - name: work
            run: |
              if state["file"] == "b":
                  raise ValueError("bad")
              return {"out": state["file"].upper()}
          - name: merge
            run: |
              return {"results": [[r.success, r.error_type, r["error"],
                                   r.state["out"] if r.success else None]
                                  for r in parallel_results]}
        edges:
          - from: start
            to: work
            parallel: true
            for_each: "state['files']"
            item_var: file
            fan_in: merge
          - {from: work, to: merge}
          - {from: merge, to: __end__}
        """
    )
    proc = tead_cli("run", "wf.yaml")
    state = final_state(proc)
    assert state == {
        "files": ["a", "b", "c"],
        "results": [
            [True, None, None, "A"],
            [False, "ValueError", "bad", None],
            [True, None, None, "C"],
        ],
    }
    assert "Traceback" not in proc.stderr
    assert "fan-in merge: 3 results, 1 failed" in proc.stderr.splitlines()


def test_for_each_item_var_nested_and_chained_fan_outs(tead_cli, write_workflow):
    """for_each + item_var in item order; a branch fans out again; a fan-in fans out again."""
    write_workflow(
        """
        nodes:
          - name: top
            run: |
              return {"groups": [[1, 2], [3], [4, 5, 6]]}
          - name: group
          - name: item
            run: |
              return {"sq": state["n"] * state["n"], "g_seen": state["g"]}
          - name: group_join
            run: |
              return {"sum": sum(r.state["sq"] for r in parallel_results)}
          - name: merge
            run: |
              return {"sums": [r.state["sum"] for r in parallel_results]}
          - name: x
            run: |
              return {"who": "x", "sums_seen": state["sums"]}
          - name: y
            run: |
              return {"who": "y"}
          - name: again
            run: |
              return {"twice": [r.state["who"] for r in parallel_results]}
        edges:
          - {from: top, to: group, parallel: true, for_each: "state['groups']", item_var: g,
             fan_in: merge}
          - {from: group, to: item, parallel: true, for_each: "state['g']", item_var: n,
             fan_in: group_join}
          - {from: item, to: group_join}
          - {from: group_join, to: merge}
          - {from: merge, to: [x, y], parallel: true, fan_in: again}
          - {from: x, to: again}
          - {from: y, to: again}
          - {from: again, to: __end__}
        """
    )
    state = final_state(tead_cli("run", "wf.yaml", "-q"))
    assert state == {"groups": [[1, 2], [3], [4, 5, 6]], "sums": [5, 9, 77], "twice": ["x", "y"]}


def test_type_parallel_edges_give_results_in_declaration_order(tead_cli, write_workflow):
    """TEA-style `type: parallel` edges form one fan-out; results follow the edge order."""
    write_workflow(
        """
        nodes:
          - name: src
            run: |
              return {"v": 10}
          - name: left
            run: |
              return {"side": "L", "v": state["v"] + 1}
          - name: right
            run: |
              return {"side": "R", "v": state["v"] + 2}
          - name: join
            run: |
              return {"got": [[r.branch, r.state["side"], r.state["v"]]
                              for r in parallel_results],
                      "v_at_join": state["v"], "side_leaked": "side" in state}
        edges:
          - {from: src, to: right, type: parallel, fan_in: join}
          - {from: src, to: left, type: parallel, fan_in: join}
          - {from: left, to: join}
          - {from: right, to: join}
        """
    )
    state = final_state(tead_cli("run", "wf.yaml", "-q"))
    assert state == {
        "v": 10,
        "got": [["right", "R", 12], ["left", "L", 11]],
        "v_at_join": 10,
        "side_leaked": False,
    }


def test_parallel_branches_really_run_concurrently_and_max_workers_applies(
    tead_cli, write_workflow, tmp_path
):
    """settings max_workers: 1 serialises branches; a per-edge max_workers: 2 overrides it."""
    (tmp_path / "probe.py").write_text(
        textwrap.dedent(
            """
            import threading

            ALL_THREE = threading.Barrier(3)
            PAIR = threading.Barrier(2)
            LOCK = threading.Lock()
            active = 0
            peak = 0

            def serial(state):
                global active, peak
                with LOCK:
                    active += 1
                    peak = max(peak, active)
                try:
                    # never fills up when at most one branch runs at a time: the first
                    # branch times out, the others find the barrier broken at once
                    ALL_THREE.wait(timeout=0.5)
                    met = True
                except threading.BrokenBarrierError:
                    met = False
                with LOCK:
                    active -= 1
                return {"met": met, "peak": peak}

            def pair(state):
                PAIR.wait(timeout=5)  # both branches must be running at the same time
                return {"met": True}
            """
        )
    )
    write_workflow(
        """
        settings:
          parallel:
            strategy: thread
            max_workers: 1
        nodes:
          - name: start
            run: |
              return {"items": [1, 2, 3]}
          - name: one
            uses: probe:serial
          - name: seq_join
            run: |
              return {"seq": [[r.success, r.state["met"]] for r in parallel_results],
                      "seq_peak": max(r.state["peak"] for r in parallel_results)}
          - name: pa
            uses: probe:pair
          - name: pb
            uses: probe:pair
          - name: par_join
            run: |
              return {"par": [[r.branch, r.success, r.error_type] for r in parallel_results]}
        edges:
          - {from: start, to: one, parallel: true, for_each: "state['items']", fan_in: seq_join}
          - {from: one, to: seq_join}
          - from: seq_join
            to: [pa, pb]
            parallel: true
            fan_in: par_join
            max_workers: 2
            parallel_strategy: thread
          - {from: pa, to: par_join}
          - {from: pb, to: par_join}
          - {from: par_join, to: __end__}
        """
    )
    proc = tead_cli("run", "wf.yaml", "--stream")
    assert proc.returncode == 0, proc.stderr
    evs = events(proc)
    strategies = [e["strategy"] for e in evs if e["event"] == "fanout_started"]
    assert strategies == ["thread", "thread"]
    state = evs[-1]["state"]
    assert state["seq"] == [[True, False], [True, False], [True, False]]
    assert state["seq_peak"] == 1
    assert state["par"] == [["pa", True, None], ["pb", True, None]]


# --- the YAML keys of CONTRACT §1 ----------------------------------------------------------


def test_uses_module_beside_the_workflow_from_another_cwd(tead_cli, write_workflow, tmp_path):
    """`uses: module:function` + `with:` imports from the workflow's folder, whatever the cwd."""
    flows = tmp_path / "flows"
    (flows / "mathpkg").mkdir(parents=True)
    (flows / "mathops.py").write_text(
        textwrap.dedent(
            """
            def scale(state, factor, offset=0):
                return {"scaled": state["x"] * factor + offset}

            def collect(state, parallel_results, sep):
                return {"joined": sep.join(str(r["state"]["scaled"]) for r in parallel_results)}
            """
        )
    )
    (flows / "mathpkg" / "__init__.py").write_text("")
    (flows / "mathpkg" / "ops.py").write_text(
        "def bump(state):\n    return {'x': state['x'] + 1}\n"
    )
    write_workflow(
        """
        nodes:
          - name: prep
            uses: mathpkg.ops:bump
          - name: triple
            uses: mathops:scale
            with: {factor: 3, offset: 1}
          - name: double
            uses: mathops:scale
            with: {factor: 2}
          - name: join
            uses: mathops:collect
            with: {sep: "+"}
        edges:
          - {from: prep, to: [triple, double], parallel: true, fan_in: join}
          - {from: triple, to: join}
          - {from: double, to: join}
          - {from: join, to: __end__}
        """,
        name="flows/wf.yml",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = tead_cli("run", "../flows/wf.yml", "-q", "-i", '{"x": 2}', cwd=elsewhere)
    assert final_state(proc) == {"x": 3, "joined": "10+6"}


def test_noop_nodes_implicit_chaining_start_and_end(tead_cli, write_workflow):
    """No edges: nodes run in file order; `__start__`/`__end__` pick where a run starts and ends."""
    nodes = """
        nodes:
          - name: a
            run: |
              return {"trail": state.get("trail", []) + ["a"]}
          - name: b
          - name: c
            run: |
              return {"trail": state.get("trail", []) + ["c"]}
          - name: d
            run: |
              return {"trail": state.get("trail", []) + ["d"]}
        """
    write_workflow(nodes, name="chain.yaml")
    proc = tead_cli("run", "chain.yaml", "--stream")
    evs = events(proc)
    assert nodes_started(evs) == ["a", "b", "c", "d"]
    assert evs[-1]["state"] == {"trail": ["a", "c", "d"]}

    edges = """
        edges:
          - {from: __start__, to: b}
          - {from: c, to: __end__}
        """
    write_workflow(nodes.rstrip(" ") + edges.lstrip("\n"), name="ends.yaml")
    evs = events(tead_cli("run", "ends.yaml", "--stream"))
    assert nodes_started(evs) == ["b", "c"]
    assert evs[-1]["state"] == {"trail": ["c"]}


@pytest.mark.parametrize(
    ("given", "trail"),
    [
        ('{"n": 5}', ["a", "c"]),
        ('{"n": 0}', ["a", "b", "c"]),
        ('{"n": 5, "stop": true}', ["a"]),
    ],
    ids=["first-true-wins", "fallback", "conditional-end"],
)
def test_conditional_edges_first_true_in_file_order(tead_cli, write_workflow, given, trail):
    """`when:` edges: the first true one in file order wins; `__end__` is only taken if true."""
    write_workflow(
        """
        nodes:
          - name: a
            run: |
              return {"trail": ["a"]}
          - name: b
            run: |
              return {"trail": state["trail"] + ["b"]}
          - name: c
            run: |
              return {"trail": state["trail"] + ["c"]}
        edges:
          - {from: a, to: __end__, when: "state.get('stop', False)"}
          - {from: a, to: c, when: "state['n'] > 0"}
          - {from: a, to: b, when: "state['n'] > 1"}
          - {from: a, to: b}
          - {from: b, to: c}
        """
    )
    state = final_state(tead_cli("run", "wf.yaml", "-q", "-i", given))
    assert state["trail"] == trail


def test_triggers_concurrency_and_timeout_parse_and_run_takes_dispatch_defaults(
    tead_cli, write_workflow
):
    """`on:`, `concurrency:`, `timeout:` validate, and `tead run` runs at once regardless."""
    write_workflow(
        """
        name: thumbnails
        description: resize every picture dropped into inbox/
        on:
          schedule:
            - cron: "*/5 * * * *"
              timezone: Europe/Berlin
            - cron: "0 0 * * * 7"
            - every: 30s
          watch:
            paths: ["inbox/*.jpg"]
            events: [added, modified, deleted]
          dispatch:
            inputs:
              size: {type: integer, default: 128}
          catchup: all
        concurrency:
          group: thumbs
          cancel_in_progress: true
        timeout: 10m
        initial_state: {size: 64}
        nodes:
          - name: only
            run: |
              return {"doubled": state["size"] * 2}
        """
    )
    proc = tead_cli("validate", "wf.yaml")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "wf.yaml: ok (thumbnails, 1 node)"
    state = final_state(tead_cli("run", "wf.yaml", "-q"))
    # as a dispatch without inputs: the input's default is merged over initial_state
    assert state["size"] == 128
    assert state["doubled"] == 256
    state = final_state(tead_cli("run", "wf.yaml", "-q", "-i", '{"size": 64}'))
    assert state["doubled"] == 128
