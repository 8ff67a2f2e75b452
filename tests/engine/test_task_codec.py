"""The unit of work's codec: a BranchTask as pickle (worker processes) and as JSON (hosts),
the workflow shipped as a bundle named by its content hash, received in a fresh process
that has never seen the workflow's folder, and loaded once per process."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from tead import Executors, Graph, ParallelConfig, ParallelFlowResult
from tead.engine.bundle import (
    MAX_BUNDLE_BYTES,
    MAX_BUNDLE_FILES,
    LoadedWorkflows,
    WorkflowBundle,
    bundle_of,
    folder_sources,
)
from tead.engine.task import BranchTask
from tead.engine.walk import run_branch_elsewhere
from tead.errors import BundleError, PickleValidationError, StateJsonError
from tead.graph.compiled import WorkflowGraph
from tead.graph.loader import load_workflow, load_workflow_text

ROOT = Path(__file__).resolve().parents[2]

FLOW = """
name: codec
nodes:
  - name: start
  - name: shout
    uses: {module}:shout
    with: {{suffix: "!"}}
  - name: done
    run: |
      return {{"loud": [r.state["loud"] for r in parallel_results]}}
edges:
  - {{from: start, to: shout, parallel: true, for_each: "state['words']", item_var: word,
     fan_in: done}}
  - {{from: shout, to: done}}
"""

RUN_ONLY = """
name: plain
nodes:
  - name: start
  - name: double
    run: |
      return {"twice": state["n"] * 2, "seen": state["nested"]}
  - name: done
edges:
  - {from: start, to: double, parallel: true, for_each: "[1]", fan_in: done}
  - {from: double, to: done}
"""


def flow_folder(folder: Path) -> tuple[Path, str]:
    """A workflow whose `uses:` module (a unique name) imports a sibling module and a
    package beside it; returns the file and the module's name."""
    folder.mkdir(parents=True)
    module = f"codec_mod_{uuid.uuid4().hex[:10]}"
    helper = f"{module}_helper"
    (folder / f"{module}.py").write_text(
        f"import {helper}\nfrom {module}_pkg.inner import mark\n\n\n"
        "def shout(state, suffix):\n"
        f"    return {{'loud': mark({helper}.upper(state['word'])) + suffix}}\n"
    )
    (folder / f"{helper}.py").write_text("def upper(word):\n    return word.upper()\n")
    (folder / f"{module}_pkg").mkdir()
    (folder / f"{module}_pkg" / "__init__.py").write_text("")
    (folder / f"{module}_pkg" / "inner.py").write_text("def mark(text):\n    return f'<{text}>'\n")
    path = folder / "flow.yaml"
    path.write_text(FLOW.format(module=module))
    return path, module


def task_of(workflow: WorkflowGraph, state: dict[str, Any], entry: str = "shout") -> BranchTask:
    return BranchTask(
        workflow=workflow, entry=entry, exit="done", state=state, branch="b0", path="b0"
    )


def through_json(data: Any) -> Any:
    return json.loads(json.dumps(data, allow_nan=False))


# --- pickle (worker processes) ---------------------------------------------------------------


def test_pickle_round_trip_of_a_loaded_workflow_ships_its_source_and_loads_it_once():
    """Two tasks of one file decode to one loaded workflow (the per-process cache), with
    every other field as sent, and the payload holds the source, not the loaded graph."""
    workflow = load_workflow_text(RUN_ONLY, "/nonexistent/plain.yaml")
    state = {"n": 21, "nested": {"a": [1, (2, 3)]}}
    task = task_of(workflow, state, entry="double")
    first = BranchTask.from_pickle(task.to_pickle())
    second = BranchTask.from_pickle(task.to_pickle())
    assert first.workflow is second.workflow
    assert first.workflow.source is not None and first.workflow.source.text == RUN_ONLY
    assert (first.entry, first.exit, first.state, first.branch, first.path) == (
        "double",
        "done",
        state,
        "b0",
        "b0",
    )
    assert run_branch(first).state == {**state, "twice": 42, "seen": state["nested"]}


def test_pickle_of_a_graph_built_in_code_ships_its_parts_without_callbacks():
    """A code-built graph pickles whole; its fan-out callbacks (coordinator-only) are not sent."""
    graph = Graph("code")
    graph.add_node("start")
    graph.add_node("work", double)
    graph.add_node("done")
    graph.add_parallel_edge(
        "start", ["work"], fan_in="done", config=ParallelConfig(callbacks=(Unpicklable(),))
    )
    graph.add_edge("work", "done")
    workflow = graph.compile().graph
    copy = BranchTask.from_pickle(task_of(workflow, {"n": 4}, entry="work").to_pickle())
    assert run_branch(copy).state == {"n": 4, "twice": 8}
    assert all(not f.config.callbacks for group in copy.workflow.fanouts.values() for f in group)


def test_an_unpicklable_state_value_is_named_by_key():
    workflow = load_workflow_text(RUN_ONLY, "/nonexistent/plain.yaml")
    with pytest.raises(PickleValidationError, match="'handle'"):
        task_of(workflow, {"n": 1, "handle": lambda: 1}).to_pickle()


def test_a_loaded_workflow_is_not_pickled_whole():
    """Its run: code cannot be pickled: the error says to send its source instead."""
    workflow = load_workflow_text(RUN_ONLY, "/nonexistent/plain.yaml")
    with pytest.raises(TypeError, match="send its source"):
        pickle.dumps(workflow)


# --- JSON (hosts) ------------------------------------------------------------------------------


def test_json_round_trip_gives_the_same_task_and_the_same_result(tmp_path):
    """Bundle and task through JSON text, received by another cache: equal fields, and
    the branch gives what it gives here."""
    workflow = load_workflow_text(RUN_ONLY, str(tmp_path / "plain.yaml"))
    state = {"n": 5, "nested": {"ü": [1.5, None, True, "x", {"deep": []}], "big": 2**80}}
    task = task_of(workflow, state, entry="double")
    host = LoadedWorkflows(root=tmp_path / "host")
    host.receive(WorkflowBundle.from_json(through_json(bundle_of(workflow).to_json())))
    data = through_json(task.to_json())
    assert data["workflow"] == bundle_of(workflow).digest
    copy = BranchTask.from_json(data, host.get)
    assert (copy.entry, copy.exit, copy.state, copy.branch, copy.path) == (
        task.entry,
        task.exit,
        task.state,
        task.branch,
        task.path,
    )
    assert copy.include_traceback is False
    assert copy.workflow.source is not None
    assert copy.workflow.source.path == str(
        (tmp_path / "host").resolve() / bundle_of(workflow).digest / "plain.yaml"
    )
    assert run_branch(copy).state == run_branch(task).state


def test_a_task_names_a_bundle_the_host_has_not_received(tmp_path):
    workflow = load_workflow_text(RUN_ONLY, str(tmp_path / "plain.yaml"))
    data = task_of(workflow, {"n": 1}).to_json()
    with pytest.raises(BundleError, match="no workflow bundle"):
        BranchTask.from_json(data, LoadedWorkflows(root=tmp_path / "host").get)


def test_malformed_task_data_is_refused():
    """Missing keys and wrong types are refused before a workflow is looked up."""
    with pytest.raises(ValueError, match="keys"):
        BranchTask.from_json({"entry": "a"}, _never)
    good = {
        "workflow": "0" * 64,
        "entry": "a",
        "exit": "b",
        "state": {},
        "branch": "x",
        "path": "x",
        "include_traceback": False,
    }
    with pytest.raises(ValueError, match="'include_traceback' must be of type bool"):
        BranchTask.from_json({**good, "include_traceback": 1}, _never)
    with pytest.raises(ValueError, match="'state' must be of type dict"):
        BranchTask.from_json({**good, "state": []}, _never)


def test_a_task_must_run_between_two_nodes_of_its_workflow(tmp_path):
    """An entry or exit the workflow lacks is refused (an unknown exit ran the branch on to
    the end of the workflow; an unknown entry failed it with a KeyError)."""
    workflow = load_workflow_text(RUN_ONLY, str(tmp_path / "plain.yaml"))
    host = LoadedWorkflows(root=tmp_path / "host")
    host.receive(WorkflowBundle.from_json(through_json(bundle_of(workflow).to_json())))
    data = through_json(task_of(workflow, {"n": 1, "nested": 0}, entry="double").to_json())
    for changes, message in [
        ({"exit": "nope"}, "exit 'nope' is no node"),
        ({"entry": "__start__"}, "entry '__start__' is no node"),
        ({"exit": "__end__"}, "exit '__end__' is no node"),
        ({"entry": "done", "exit": "done"}, "are the same node"),
    ]:
        with pytest.raises(ValueError, match=message):
            BranchTask.from_json({**data, **changes}, host.get)


def test_a_graph_built_in_code_cannot_go_to_a_host():
    graph = Graph("code")
    graph.add_node("work", double)
    with pytest.raises(BundleError, match=r"built in code .* load it from a file"):
        task_of(graph.compile().graph, {"n": 1}, entry="work").to_json()


@pytest.mark.parametrize(
    ("value", "at", "reason"),
    [
        ((1, 2), "", "a tuple is not a JSON value (JSON has lists only: use a list)"),
        ({"a": [1, {2}]}, "when['a'][1]", "a set is not a JSON value"),
        ([float("nan")], "when[0]", "nan is not a JSON number"),
        ({1: "x"}, "", "a dict key 1 (int): JSON keys are strings"),
        ({"p": Path("/x")}, "when['p']", "a pathlib.PosixPath is not a JSON value"),
        ("\udc80", "", "a string with a lone surrogate is not valid UTF-8"),
    ],
)
def test_a_state_value_json_would_change_is_named_by_branch_and_key(value, at, reason):
    """Every value JSON cannot give back exactly is refused, naming branch, key and where."""
    workflow = load_workflow_text(RUN_ONLY, "/nonexistent/plain.yaml")
    with pytest.raises(StateJsonError) as caught:
        task_of(workflow, {"ok": [1], "when": value}).to_json()
    message = str(caught.value)
    assert message.startswith(
        f"branch 'b0': state key 'when' cannot be sent to a host as JSON: {reason}"
    )
    assert caught.value.key == "when"
    assert (f"(at {at})" in message) == bool(at)


def test_a_state_nested_too_deep_or_containing_itself_is_refused():
    workflow = load_workflow_text(RUN_ONLY, "/nonexistent/plain.yaml")
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(StateJsonError, match="contains itself"):
        task_of(workflow, {"loop": loop}).to_json()


# --- the bundle ----------------------------------------------------------------------------------


def test_a_bundle_holds_the_python_source_importable_from_the_folder(tmp_path):
    """Modules and packages beside the file; not data, hidden, non-identifier or cached files."""
    path, module = flow_folder(tmp_path / "flows")
    folder = path.parent
    (folder / "notes.txt").write_text("not code")
    (folder / ".hidden.py").write_text("")
    (folder / "not-a-module.py").write_text("")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "x.py").write_text("")
    (folder / "data").mkdir()  # no __init__.py: not a package
    (folder / "data" / "loose.py").write_text("")
    bundle = bundle_of(load_workflow(path))
    assert [p for p, _ in bundle.files] == [
        f"{module}.py",
        f"{module}_helper.py",
        f"{module}_pkg/__init__.py",
        f"{module}_pkg/inner.py",
    ]
    assert bundle.name == "flow.yaml"
    assert bundle.text == path.read_text()


def test_a_symlinked_module_is_shipped_only_if_it_stays_in_the_folder(tmp_path):
    """A link to a sibling is shipped as that file; a link out of the folder (which could
    send a secret file to other hosts) is refused, naming the link."""
    path, module = flow_folder(tmp_path / "flows")
    folder = path.parent
    (folder / "alias.py").symlink_to(folder / f"{module}_helper.py")
    assert dict(bundle_of(load_workflow(path)).files)["alias.py"] == (
        (folder / f"{module}_helper.py").read_bytes()
    )
    (tmp_path / "secret.txt").write_text("KEY=1")
    (folder / f"{module}_pkg" / "creds.py").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(BundleError, match=r"creds\.py links to a file outside"):
        bundle_of(load_workflow(path))


def test_a_bundle_is_made_once_per_loaded_workflow(tmp_path):
    """Made on first use and kept: later edits of the folder do not change it."""
    path, module = flow_folder(tmp_path / "flows")
    workflow = load_workflow(path)
    first = bundle_of(workflow)
    (path.parent / f"{module}_helper.py").write_text("# edited\n")
    assert bundle_of(workflow) is first


def test_same_content_same_digest_any_change_another(tmp_path):
    """The digest covers the name, the text, each file's path and content, and the set of files."""
    base = {"name": "f.yaml", "text": "name: x\n", "files": {"a.py": b"A", "p/__init__.py": b""}}
    digest = WorkflowBundle.make(**base).digest
    assert WorkflowBundle.make(**base).digest == digest
    changes = [
        {"name": "g.yaml"},
        {"text": "name: y\n"},
        {"files": {"a.py": b"B", "p/__init__.py": b""}},
        {"files": {"b.py": b"A", "p/__init__.py": b""}},
        {"files": {"a.py": b"A"}},
        {"files": {"a.py": b"A", "p/__init__.py": b"", "c.py": b""}},
        {"files": {"a.py": b"", "p/__init__.py": b"A"}},  # the same bytes, moved
    ]
    digests = {WorkflowBundle.make(**{**base, **change}).digest for change in changes}
    assert len(digests) == len(changes) and digest not in digests
    a, b = flow_folder(tmp_path / "one"), flow_folder(tmp_path / "two")
    assert bundle_of(load_workflow(a[0])).digest == bundle_of(load_workflow(a[0])).digest
    assert bundle_of(load_workflow(a[0])).digest != bundle_of(load_workflow(b[0])).digest


def test_an_altered_or_unsafe_bundle_is_refused():
    good = WorkflowBundle.make(name="f.yaml", text="t", files={"a.py": b"A"}).to_json()
    with pytest.raises(BundleError, match="does not match its digest"):
        WorkflowBundle.from_json({**good, "text": "u"})
    for path in ("../a.py", "/etc/a.py", "a.sh", "p/../a.py", ".a.py"):
        with pytest.raises(BundleError, match="relative paths only"):
            WorkflowBundle.from_json({**good, "files": [[path, "QQ=="]]})
    for name in ("../f.yaml", "d/f.yaml", "", "f\udc80.yaml", "f\n.yaml"):
        with pytest.raises(BundleError, match="plain file name"):
            WorkflowBundle.from_json({**good, "name": name})
    # the workflow file would be written over one of its files, or over a package folder
    with pytest.raises(BundleError, match="clashes"):
        WorkflowBundle.from_json({**good, "name": "a.py"})
    package = [["p/__init__.py", ""], ["p/m.py", ""]]
    with pytest.raises(BundleError, match="clashes"):
        WorkflowBundle.from_json({**good, "name": "p", "files": package})
    with pytest.raises(BundleError, match="not base64"):
        WorkflowBundle.from_json({**good, "files": [["a.py", "!!"]]})
    with pytest.raises(BundleError, match="format"):
        WorkflowBundle.from_json({**good, "format": "other"})


def test_too_much_source_beside_the_workflow_is_a_clear_error(tmp_path):
    (tmp_path / "big.py").write_bytes(b"#" * (MAX_BUNDLE_BYTES + 1))
    (tmp_path / "small.py").write_text("")
    with pytest.raises(BundleError, match=r"8 MiB \(2 files, largest: big.py, small.py\)"):
        folder_sources(tmp_path)


def test_too_many_source_files_beside_the_workflow_is_a_clear_error(tmp_path):
    for index in range(MAX_BUNDLE_FILES + 1):
        (tmp_path / f"m{index:04}.py").write_text("")
    with pytest.raises(BundleError, match=f"more than {MAX_BUNDLE_FILES} files"):
        folder_sources(tmp_path)


# --- receiving ---------------------------------------------------------------------------------


def test_the_process_cache_loads_each_source_and_bundle_once(tmp_path):
    loads: list[str] = []

    def counting(text: str, path: str) -> WorkflowGraph:
        loads.append(path)
        return load_workflow_text(text, path)

    workflows = LoadedWorkflows(root=tmp_path / "host", load=counting)
    assert workflows.from_source(RUN_ONLY, "/x/a.yaml") is workflows.from_source(
        RUN_ONLY, "/x/a.yaml"
    )
    bundle = WorkflowBundle.make(name="b.yaml", text=RUN_ONLY, files={})
    received = workflows.receive(bundle)
    assert workflows.receive(bundle) is received
    assert workflows.get(bundle.digest) is received
    assert len(loads) == 2


def test_received_bundles_live_in_a_private_folder_named_by_digest(tmp_path):
    workflows = LoadedWorkflows(root=tmp_path / "host")
    bundle = WorkflowBundle.make(name="b.yaml", text=RUN_ONLY, files={"m.py": b"X = 1\n"})
    workflows.receive(bundle)
    assert (tmp_path / "host").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "host" / bundle.digest / "m.py").read_bytes() == b"X = 1\n"
    assert sorted(os.listdir(tmp_path / "host")) == [bundle.digest]  # no leftovers


def test_a_bundle_folder_others_may_write_is_refused(tmp_path):
    root = tmp_path / "shared"
    root.mkdir(mode=0o755)
    bundle = WorkflowBundle.make(name="b.yaml", text=RUN_ONLY, files={})
    with pytest.raises(BundleError, match="must be mode 0700"):
        LoadedWorkflows(root=root).receive(bundle)


def test_a_uses_module_imported_from_elsewhere_is_refused(tmp_path):
    """Loaded here from its own folder first, the module cannot come from the bundle too:
    a clear error rather than the other copy's code."""
    path, module = flow_folder(tmp_path / "flows")
    workflow = load_workflow(path)
    with pytest.raises(BundleError, match=f"module {module!r} .* not from its bundle"):
        LoadedWorkflows(root=tmp_path / "host").receive(bundle_of(workflow))


HOST_SCRIPT = """
import json, sys
from pathlib import Path

from tead import Executors
from tead.engine.bundle import LoadedWorkflows, WorkflowBundle
from tead.engine.task import BranchTask
from tead.engine.walk import run_branch_elsewhere

workflows = LoadedWorkflows(root=Path(sys.argv[2]))
out = []
for message in json.loads(Path(sys.argv[1]).read_text()):
    if message["kind"] == "bundle":
        workflows.receive(WorkflowBundle.from_json(message["bundle"]))
        continue
    task = BranchTask.from_json(message["task"], workflows.get)
    with Executors() as executors:
        result = run_branch_elsewhere(task, executors).result
    out.append([result.success, result.error, result.state, task.workflow.source.path])
print(json.dumps(out))
"""


def test_a_fresh_process_elsewhere_runs_the_uses_module_from_the_bundle_alone(tmp_path):
    """The original folder renamed away, another cwd: the host process loads the bundle
    (its module, sibling and package), runs the tasks, and a second version of the
    module sent later replaces the first."""
    path, module = flow_folder(tmp_path / "flows")
    first = load_workflow(path)
    messages: list[dict[str, Any]] = [
        {"kind": "bundle", "bundle": bundle_of(first).to_json()},
        {"kind": "task", "task": task_of(first, {"word": "hi"}).to_json()},
    ]
    (path.parent / f"{module}_helper.py").write_text(
        "def upper(word):\n    return word.upper() * 2\n"
    )
    edited = WorkflowBundle.make(
        name="flow.yaml", text=path.read_text(), files=folder_sources(path.parent, "flow.yaml")
    )
    messages += [
        {"kind": "bundle", "bundle": edited.to_json()},
        {
            "kind": "task",
            "task": {**task_of(first, {"word": "yo"}).to_json(), "workflow": edited.digest},
        },
        {"kind": "task", "task": task_of(first, {"word": "ok"}).to_json()},
    ]
    (tmp_path / "messages.json").write_text(json.dumps(messages))
    path.parent.rename(tmp_path / "gone")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "script.py").write_text(textwrap.dedent(HOST_SCRIPT))
    proc = subprocess.run(
        [
            sys.executable,
            str(tmp_path / "script.py"),
            str(tmp_path / "messages.json"),
            str(tmp_path / "host"),
        ],
        cwd=tmp_path / "elsewhere",
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    host = (tmp_path / "host").resolve()
    assert results == [
        [
            True,
            None,
            {"word": "hi", "loud": "<HI>!"},
            str(host / bundle_of(first).digest / "flow.yaml"),
        ],
        [True, None, {"word": "yo", "loud": "<YOYO>!"}, str(host / edited.digest / "flow.yaml")],
        [
            True,
            None,
            {"word": "ok", "loud": "<OK>!"},
            str(host / bundle_of(first).digest / "flow.yaml"),
        ],
    ]


# --- helpers ---------------------------------------------------------------------------------


def double(state: dict[str, Any]) -> dict[str, Any]:
    return {"twice": state["n"] * 2}


class Unpicklable:
    """A callback that cannot be pickled (it holds a lambda)."""

    def __init__(self) -> None:
        self.hold = lambda: None


def _never(digest: str) -> WorkflowGraph:
    raise AssertionError(f"no workflow should be looked up ({digest})")


def run_branch(task: BranchTask) -> ParallelFlowResult:
    """Run `task` here as a worker process would (its own executors, events kept apart)."""
    with Executors() as executors:
        return run_branch_elsewhere(task, executors).result
