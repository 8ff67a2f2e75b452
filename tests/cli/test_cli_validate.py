"""End-to-end tests of `tead validate` through the real CLI subprocess.

Problems are printed as `file:line:col: message`, one line each, on stderr; exit code 2.
"""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path

# a pattern (re.Pattern) or an exact line (str)
Expected = str | re.Pattern[str]


def write(tmp_path: Path, name: str, text: str | bytes) -> str:
    """Write a (dedented) file under tmp_path; return its name as given on the command line."""
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return name


def check_problems(proc: subprocess.CompletedProcess[str], expected: list[Expected]) -> None:
    """Exit 2, no traceback, and stderr is exactly the expected lines (in any order)."""
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    unmatched = list(lines)
    missing = []
    for want in expected:
        hit = next(
            (
                line
                for line in unmatched
                if (want.fullmatch(line) if isinstance(want, re.Pattern) else line == want)
            ),
            None,
        )
        if hit is None:
            missing.append(want if isinstance(want, str) else want.pattern)
        else:
            unmatched.remove(hit)
    assert (missing, unmatched) == ([], []), f"stderr was:\n{proc.stderr}"


def test_ok_files_print_ok(tead_cli, tmp_path):
    """Valid files (a named one, a cycle with a way out, `uses:` beside the file) print ok."""
    files = [
        write(
            tmp_path,
            "first.yaml",
            """
            name: named-flow
            on:
              dispatch: {}
            nodes:
              - name: a
              - name: b
            edges:
              - {from: a, to: b}
            """,
        ),
        write(
            tmp_path,
            "loop.yml",
            """
            nodes:
              - name: a
              - name: b
                run: |
                  return {"n": state.get("n", 0) + 1}
              - name: c
            edges:
              - {from: a, to: b}
              - {from: b, to: c}
              - {from: c, to: __end__, when: "state['n'] >= 3"}
              - {from: c, to: b}
            """,
        ),
        write(
            tmp_path,
            "flows/uses_ok.yaml",
            """
            nodes:
              - name: a
                uses: localmod_for_validate:fn
                with: {k: 1}
            """,
        ),
    ]
    write(tmp_path, "flows/localmod_for_validate.py", "def fn(state, k):\n    return None\n")
    proc = tead_cli("validate", *files)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.splitlines() == [
        "first.yaml: ok (named-flow, 2 nodes)",
        "loop.yml: ok (loop, 3 nodes)",
        "flows/uses_ok.yaml: ok (uses_ok, 1 node)",
    ]


def test_several_files_with_one_bad(tead_cli, tmp_path):
    """Every file is checked; the good ones still print ok, the bad one its problem; exit 2."""
    good = "nodes:\n  - name: a\n"
    write(tmp_path, "one.yaml", good)
    write(tmp_path, "bad.yaml", "nodes:\n  - name: a\nedges:\n  - {from: a, to: b}\n")
    write(tmp_path, "two.yaml", good)
    proc = tead_cli("validate", "one.yaml", "bad.yaml", "two.yaml")
    check_problems(proc, ["bad.yaml:4:5: edge to unknown node 'b'"])
    assert proc.stdout.splitlines() == [
        "one.yaml: ok (one, 1 node)",
        "two.yaml: ok (two, 1 node)",
    ]


def test_shape_problems(tead_cli, tmp_path):
    """Typos, bad durations, cron and time zones, duplicate keys, `on:` as a plain key."""
    files = [
        write(
            tmp_path,
            "typo.yaml",
            """
            name: typo
            nodes:
              - name: a
                rnu: |
                  return None
            edgse: []
            """,
        ),
        write(tmp_path, "dur.yaml", "timeout: 5x\nnodes:\n  - name: a\n"),
        write(
            tmp_path,
            "cron.yaml",
            """
            on:
              schedule:
                - cron: "* * *"
                - cron: "0 0 0 * * * *"
                - cron: "0 0 * * 0"
                - every: 500ms
            nodes:
              - name: a
            """,
        ),
        write(
            tmp_path,
            "tz.yaml",
            """
            on:
              schedule:
                - cron: "* * * * *"
                  timezone: Mars/Olympus
            nodes:
              - name: a
            """,
        ),
        write(tmp_path, "dupkey.yaml", "name: x\nnodes:\n  - name: a\nname: y\n"),
        write(tmp_path, "on.yaml", "on: 5\nnodes:\n  - name: a\n"),
    ]
    check_problems(
        tead_cli("validate", *files),
        [
            "typo.yaml:4:5: unknown key 'rnu' (did you mean 'run'?)",
            "typo.yaml:6:1: unknown key 'edgse' (did you mean 'edges'?)",
            "dur.yaml:1:10: timeout: invalid duration '5x': use a number of seconds or 500ms, "
            "30s, 10m, 2h",
            "cron.yaml:3:13: on.schedule.0.cron: cron '…' has 3 fields; expected 5 "
            "(minute hour day-of-month month day-of-week) or 6 (with second first)",
            "cron.yaml:4:13: on.schedule.1.cron: cron '…' has 7 fields; expected 5 "
            "(minute hour day-of-month month day-of-week) or 6 (with second first)",
            re.compile(
                r"tz\.yaml:4:17: (on\.schedule\.0\.timezone: )?unknown time zone "
                r"'…' \(use an IANA name such as Europe/Berlin\)"
            ),
            "dupkey.yaml:4:1: duplicate key 'name'",
            # the key stays the string "on" (YAML 1.1 would have made it True)
            "on.yaml:1:5: on: Input should be a valid dictionary or instance of Triggers",
        ],
    )


def test_file_level_problems(tead_cli, tmp_path):
    """Binary, empty, missing, directory and top-level-list files: one line each."""
    files = [
        write(tmp_path, "bin.yaml", b"name: \xff\xfe\nnodes: []\n"),
        write(tmp_path, "nul.yaml", b"name: a\x00b\n"),
        write(tmp_path, "empty.yaml", ""),
        write(tmp_path, "comments.yaml", "# nothing but a comment\n"),
        write(tmp_path, "toplist.yaml", "- a\n- b\n"),
        "missing.yaml",
    ]
    (tmp_path / "adir.yaml").mkdir()
    check_problems(
        tead_cli("validate", *files, "adir.yaml"),
        [
            "bin.yaml: not a UTF-8 text file (byte 6)",
            "nul.yaml: not a text file (contains NUL bytes)",
            "empty.yaml: empty workflow file",
            "comments.yaml: empty workflow file",
            "toplist.yaml:1:1: a workflow file is a mapping (name:, nodes:, edges:)",
            "missing.yaml: no such file",
            "adir.yaml: is a directory, not a workflow file",
        ],
    )


def test_graph_problems(tead_cli, tmp_path):
    """Unknown nodes (with did-you-mean), fan-outs without fan_in, `to:` lists, cycles."""
    files = [
        write(
            tmp_path,
            "unknown.yaml",
            """
            nodes:
              - name: merge
              - name: a
            edges:
              - {from: a, to: mrege}
              - {from: zzz, to: a}
            """,
        ),
        write(
            tmp_path,
            "nofanin.yaml",
            """
            nodes:
              - name: a
              - name: b
              - name: c
              - name: j
            edges:
              - from: a
                to: [b, c]
                parallel: true
            """,
        ),
        write(
            tmp_path,
            "tolist.yaml",
            """
            nodes:
              - name: a
              - name: b
              - name: c
            edges:
              - {from: a, to: [b, c]}
            """,
        ),
        write(
            tmp_path,
            "dupnode.yaml",
            """
            nodes:
              - name: a
              - name: b
              - name: a
            """,
        ),
        write(
            tmp_path,
            "cycle.yaml",
            """
            nodes:
              - name: a
              - name: b
              - name: c
            edges:
              - {from: a, to: b}
              - {from: b, to: c}
              - {from: c, to: b}
            """,
        ),
        write(
            tmp_path,
            "branch.yaml",
            """
            nodes:
              - name: a
              - name: b
              - name: c
              - name: j
            edges:
              - from: a
                to: [b, c]
                parallel: true
                fan_in: j
              - {from: b, to: j}
              - {from: c, to: __end__}
            """,
        ),
    ]
    check_problems(
        tead_cli("validate", *files),
        [
            "unknown.yaml:5:5: edge to unknown node 'mrege' (did you mean 'merge'?)",
            "unknown.yaml:6:5: edge from unknown node 'zzz'",
            "nofanin.yaml:7:5: a parallel edge needs `fan_in:`",
            "tolist.yaml:6:5: an edge to several nodes needs `parallel: true` and `fan_in:`",
            "dupnode.yaml:4:5: duplicate node name 'a'",
            "cycle.yaml:3:5: nodes 'b', 'c' form a cycle with no way out to __end__",
            "branch.yaml:7:5: branch 'c' of the fan-out at 'a' never reaches its fan-in 'j'",
        ],
    )


def test_unknown_strategy(tead_cli, tmp_path):
    """`gpu` as settings.parallel.strategy and as a per-edge parallel_strategy is rejected."""
    files = [
        write(
            tmp_path,
            "settings.yaml",
            """
            settings:
              parallel:
                strategy: gpu
            nodes:
              - name: a
            """,
        ),
        write(
            tmp_path,
            "edge.yaml",
            """
            nodes:
              - name: a
              - name: b
              - name: j
            edges:
              - from: a
                to: [b]
                parallel: true
                fan_in: j
                parallel_strategy: gpu
              - {from: b, to: j}
            """,
        ),
    ]
    check_problems(
        tead_cli("validate", *files),
        [
            re.compile(r"settings\.yaml:3:15: unknown parallel strategy 'gpu' \(available: .*\)"),
            re.compile(r"edge\.yaml:10:\d+: unknown parallel strategy 'gpu' \(available: .*\)"),
        ],
    )


def test_python_code_problems_point_into_the_yaml(tead_cli, tmp_path):
    """Invalid `run:` code is reported at its line in the YAML file, as is a bad `when:`."""
    files = [
        write(
            tmp_path,
            "unclosed.yaml",
            """
            nodes:
              - name: a
                run: |
                  x = 1
                  y = (
                  return x
            """,
        ),
        write(
            tmp_path,
            "indent.yaml",
            """
            nodes:
              - name: ok
                run: |
                  return {"fine": 1}
              - name: b
                description: the body of the for loop is not indented
                run: |
                  total = 0
                  for i in range(3):
                  total += i
                  return {"total": total}
            """,
        ),
        write(tmp_path, "inline.yaml", 'nodes:\n  - name: a\n    run: "return 1 +"\n'),
        write(
            tmp_path,
            "when.yaml",
            """
            nodes:
              - name: a
              - name: b
            edges:
              - from: a
                to: b
                when: "state['x'] >"
            """,
        ),
        write(
            tmp_path,
            "for_each.yaml",
            """
            nodes:
              - name: a
              - name: b
              - name: j
            edges:
              - {from: a, to: b, parallel: true, fan_in: j, for_each: "state[", item_var: x}
              - {from: b, to: j}
            """,
        ),
    ]
    check_problems(
        tead_cli("validate", *files),
        [
            re.compile(
                r"unclosed\.yaml:5(:\d+)?: node 'a': invalid Python in run: '\(' was never closed"
            ),
            # the "on line N" in Python's message must be a line of the YAML file too
            re.compile(
                r"indent\.yaml:10(:\d+)?: node 'b': invalid Python in run: "
                r"expected an indented block after 'for' statement on line 9"
            ),
            re.compile(r"inline\.yaml:3(:\d+)?: node 'a': invalid Python in run: invalid syntax"),
            re.compile(r"when\.yaml:7:\d+: invalid Python expression in when: invalid syntax"),
            "for_each.yaml:6:59: invalid Python expression in for_each: '[' was never closed",
        ],
    )


def test_uses_of_a_missing_module_or_function(tead_cli, tmp_path):
    """`uses:` is resolved at validation time, beside the workflow file."""
    write(tmp_path, "flows/helper_for_validate.py", "def real(state):\n    return None\n")
    files = [
        write(tmp_path, "flows/mod.yaml", "nodes:\n  - name: a\n    uses: no_such_mod_xyz:fn\n"),
        write(
            tmp_path,
            "flows/fn.yaml",
            "nodes:\n  - name: a\n  - name: b\n    uses: helper_for_validate:nope\n",
        ),
    ]
    check_problems(
        tead_cli("validate", *files),
        [
            "flows/mod.yaml:3:11: uses: cannot import 'no_such_mod_xyz': "
            "ModuleNotFoundError: No module named 'no_such_mod_xyz'",
            "flows/fn.yaml:4:11: uses: 'helper_for_validate' has no callable 'nope'",
        ],
    )


def test_every_problem_of_a_file_is_reported_in_line_order(tead_cli, tmp_path):
    """One file with several graph problems: all of them, sorted by line."""
    write(
        tmp_path,
        "multi.yaml",
        """
        nodes:
          - name: a
            run: |
              return (
          - name: b
          - name: b
          - name: c
        edges:
          - {from: a, to: bb}
          - from: b
            to: [a, c]
            parallel: true
        """,
    )
    proc = tead_cli("validate", "multi.yaml")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 4, proc.stderr
    assert re.fullmatch(
        r"multi\.yaml:4(:\d+)?: node 'a': invalid Python in run: '\(' was never closed", lines[0]
    )
    assert lines[1:] == [
        "multi.yaml:6:5: duplicate node name 'b'",
        "multi.yaml:9:5: edge to unknown node 'bb' (did you mean 'b'?)",
        "multi.yaml:10:5: a parallel edge needs `fan_in:`",
    ]
    assert proc.stdout == ""
