"""The Edge Agent (TEA) files: what tead accepts of TEA's format, and what it does not provide.

`check_tea(doc)` reads a parsed file before its models validate it and returns
- `refused`: one problem per TEA feature that tead does not provide (built-in actions,
  other languages, `goto:`, interrupts, ...), each naming the feature and what to use
  instead;
- `warnings`: accepted keys whose TEA meaning tead ignores (once each);
- `notes`: every other way the file's meaning differs from TEA's (for `validate --explain`);
- `data`: the file's data without the refused keys, so that the rest is still checked.
"""

from __future__ import annotations

import ast
import copy
import re
from dataclasses import dataclass, field
from typing import Any

from tead.errors import Problem
from tead.spec.teaexpr import ExpressionProblem, classify
from tead.spec.teafeatures import (
    ACTION_PARTS,
    CONFIG_IGNORED,
    EDGE_FEATURES,
    INTERRUPTS,
    NODE_FEATURES,
    TOP_FEATURES,
)
from tead.spec.yamlfile import Path, YamlDocument

_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,39}\Z")
_USES = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

_LANGUAGE_HINT = "tead runs Python only; rewrite the node in Python"


def _show(value: object) -> str:
    """`'value'` if it is short and name-like (safe to echo), else `it`."""
    return repr(value) if isinstance(value, str) and _SAFE.match(value) else "it"


@dataclass(slots=True)
class TeaReport:
    data: Any
    refused: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)

    @property
    def differences(self) -> list[Problem]:
        """Everything `tead validate --explain` lists, in file order."""
        found = [*self.refused, *self.warnings, *self.notes]
        return sorted(found, key=lambda p: (p.where.line or 0) if p.where else 0)


class _Checker:
    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.report = TeaReport(data=copy.deepcopy(doc.data))
        self.no_return: list[Problem] = []  # warnings in a TEA file, notes in others

    def refuse(self, path: Path, message: str) -> None:
        self.report.refused.append(Problem(message, self.doc.where(path, key=True)))

    def warn(self, path: Path, message: str) -> None:
        problem = Problem(message, self.doc.where(path, key=True))
        if all(p.message != message for p in self.report.warnings):
            self.report.warnings.append(problem)

    def note(self, path: Path, message: str) -> None:
        self.report.notes.append(Problem(message, self.doc.where(path, key=True)))

    def run(self) -> TeaReport:
        data = self.report.data
        if not isinstance(data, dict):
            return self.report
        for key, hint in TOP_FEATURES.items():
            if key in data:
                self.refuse((key,), f"{key}: is not provided by tead ({hint})")
                del data[key]
        self._settings(data)
        self._config(data)
        if isinstance(data.get("state_schema"), dict):
            self.note(
                ("state_schema",),
                "state_schema: checked against the initial and the final state of each run "
                "(TEA only declares it); `tead schema --state FILE` prints it as JSON Schema",
            )
        if data.get("state_schema", "") is None:  # TEA's files often leave it empty
            del data["state_schema"]
        if "version" in data:
            self.note(("version",), "version: is informational (ignored)")
        nodes = data.get("nodes")
        if isinstance(nodes, list):
            for i, node in enumerate(nodes):
                if isinstance(node, dict):
                    self._node(("nodes", i), node)
        edges = data.get("edges")
        if isinstance(edges, list):
            for i, edge in enumerate(edges):
                if isinstance(edge, dict):
                    self._edge(("edges", i), edge)
        report = self.report
        tea_file = report.refused or report.warnings or report.notes
        (report.warnings if tea_file else report.notes).extend(self.no_return)
        return report

    def _settings(self, data: dict[str, Any]) -> None:
        settings = data.get("settings")
        if not isinstance(settings, dict):
            return
        parallel = settings.get("parallel")
        if isinstance(parallel, dict) and "streams" in parallel:
            self.refuse(
                ("settings", "parallel", "streams"),
                f"settings.parallel.streams: {EDGE_FEATURES['stream_mode']} (not provided)",
            )
            del parallel["streams"]
        remote = parallel.get("remote") if isinstance(parallel, dict) else None
        if isinstance(remote, dict):
            if "basefile" in remote:
                self.warn(
                    ("settings", "parallel", "remote", "basefile"),
                    "settings.parallel.remote.basefile is ignored: tead ships the workflow's "
                    "code to each host itself",
                )
                del remote["basefile"]
            env_vars = remote.get("env_vars")
            if isinstance(env_vars, dict) and "mode" in env_vars:
                self.warn(
                    ("settings", "parallel", "remote", "env_vars", "mode"),
                    "settings.parallel.remote.env_vars.mode is ignored: tead sends the "
                    "variables with each branch's task",
                )
                del env_vars["mode"]
        for key in [k for k in settings if k != "parallel"]:
            self.refuse(
                ("settings", key),
                f"settings.{_show(key).strip(chr(39))} is a TEA setting (for its built-in "
                "actions and services); tead has only settings.parallel",
            )
            del settings[key]

    def _config(self, data: dict[str, Any]) -> None:
        config = data.get("config")
        if not isinstance(config, dict):
            return
        for key in list(config):
            path = ("config", key)
            if key == "raise_exceptions":
                self.note(
                    path,
                    "config.raise_exceptions: tead always stops the run when a node raises "
                    "outside a fan-out (exit code 1); failed branches become results",
                )
            elif key in INTERRUPTS:
                self.refuse(path, f"config.{key} is not provided by tead ({TOP_FEATURES[key]})")
                del config[key]
            else:
                hint = CONFIG_IGNORED.get(key, "tead has no such setting")
                label = _show(key).strip("'")
                self.warn(path, f"config.{label} is ignored: {hint}")

    def _node(self, path: Path, node: dict[str, Any]) -> None:
        name = _show(node.get("name"))
        kind = node.get("type")
        if kind == "while_loop":
            self.refuse(
                (*path, "type"),
                f"node {name}: type: while_loop is not provided by tead (use a conditional "
                "edge back to an earlier node)",
            )
            for key in ("type", "condition", "max_iterations", "body"):
                node.pop(key, None)
        action = node.get("action")
        if kind != "dynamic_parallel" and isinstance(action, str):
            self.refuse(
                (*path, "action"),
                f"node {name}: action: {_show(action)} is a TEA built-in action, which tead "
                "does not provide; call your own function with uses: module:function, or "
                "write the node in Python (run:)",
            )
            for key in ("action", *ACTION_PARTS):
                node.pop(key, None)
        for key, hint in NODE_FEATURES.items():
            if key in node and not (node.get("type") == "dynamic_parallel" and key == "steps"):
                self.refuse((*path, key), f"node {name}: {key}: is not provided by tead ({hint})")
                del node[key]
        if kind == "dynamic_parallel":
            self._dynamic(path, node, name)
        elif "condition" in node:
            self.warn(
                (*path, "condition"),
                f"node {name}: condition: is ignored, as TEA ignores it outside while_loop "
                "(put the condition on an edge)",
            )
            del node["condition"]
        self._body(path, node, name)
        if node.get("fan_in") is True:
            self.note(
                (*path, "fan_in"),
                f"node {name}: fan_in: true is accepted and checked (tead finds fan-ins from "
                "the edges' fan_in:)",
            )

    def _body(self, path: Path, node: dict[str, Any], name: str) -> None:
        uses = node.get("uses")
        if isinstance(uses, str) and not _USES.match(uses):
            self.refuse(
                (*path, "uses"),
                f"node {name}: uses: {_show(uses)} is a TEA built-in action, which tead does "
                "not provide; call your own function with uses: module:function, or write "
                "the node in Python (run:)",
            )
            for key in ("uses", *ACTION_PARTS):
                node.pop(key, None)
        elif "output" in node and node.get("type") != "dynamic_parallel":
            self.refuse(
                (*path, "output"),
                f"node {name}: output: is TEA's action output mapping; return a dict from "
                "run: (or from your uses: function) instead",
            )
            del node["output"]
        language = node.get("language")
        if language is not None and language != "python":
            self.refuse(
                (*path, "language"),
                f"node {name}: language: {_show(language)} is not provided ({_LANGUAGE_HINT})",
            )
            node.pop("language")
            node.pop("run", None)
        run = node.get("run")
        if isinstance(run, dict):
            self.refuse(
                (*path, "run"),
                f"node {name}: run: with a type (prolog, lua, expression) is not provided "
                f"({_LANGUAGE_HINT})",
            )
            del node["run"]
        elif isinstance(run, str):
            self._run_code((*path, "run"), run, name)

    def _run_code(self, path: Path, code: str, name: str) -> None:
        if "{{" in code or "{%" in code:
            self.note(
                path,
                f"node {name}: run: contains {{{{ or {{%: TEA renders run: code as a Jinja "
                "template first; tead runs it as Python, as written (read state['key'])",
            )
        try:
            tree = ast.parse("def _node():\n" + "".join(f" {line}\n" for line in code.splitlines()))
        except SyntaxError:
            return
        body = tree.body[0]
        returns = any(isinstance(n, ast.Return) for n in _own_nodes(body))
        assigns = any(isinstance(n, ast.Assign | ast.AugAssign) for n in body.body)  # type: ignore[attr-defined]
        if not returns and assigns:
            self.no_return.append(
                Problem(
                    f"node {name}: run: has no return: TEA merges its local variables into "
                    "the state, tead merges nothing (end it with return {...})",
                    self.doc.where(path, key=True),
                )
            )

    def _dynamic(self, path: Path, node: dict[str, Any], name: str) -> None:
        nested = node.pop("parallel_config", None)
        if isinstance(nested, dict):
            for key in ("max_concurrency", "fail_fast"):
                if key in nested and key not in node:
                    node[key] = nested[key]
        node.pop("_render_items", None)
        steps = node.get("steps")
        if isinstance(steps, list):
            for i, step in enumerate(steps):
                if not isinstance(step, dict):
                    continue
                step_path = (*path, "steps", i)
                if "uses" in step:
                    self.refuse(
                        (*step_path, "uses"),
                        f"node {name}: step uses: is a TEA action, which tead does not "
                        "provide; write the step in Python (run:)",
                    )
                    step.pop("uses")
                    step.pop("with", None)
                    step.pop("output", None)
                    step.setdefault("run", "return None")
                language = step.get("language")
                if language is not None and language != "python":
                    self.refuse(
                        (*step_path, "language"),
                        f"node {name}: step language: {_show(language)} is not provided "
                        f"({_LANGUAGE_HINT})",
                    )
                    step.pop("language")
                    step["run"] = "return None"
                if isinstance(step.get("run"), str):
                    self._run_code((*step_path, "run"), step["run"], name)
        elif "steps" not in node:
            node["steps"] = [{"run": "return None"}]  # action/subgraph refused above
        self.note(
            (*path, "type"),
            f"node {name}: dynamic_parallel runs as a for_each fan-out: one branch per item "
            "of items: (with item_var and index_var in its state), its steps: as nodes, "
            "its results in parallel_results (also kept in the state, as TEA does)",
        )
        if node.get("fail_fast") is True:
            self.note(
                (*path, "fail_fast"),
                f"node {name}: fail_fast: true stops the run at the first failed branch "
                "(exit code 1), as everywhere in tead; TEA cancels the rest and still runs "
                "the fan-in",
            )
        self._expression((*path, "items"), node.get("items"), "items")

    def _edge(self, path: Path, edge: dict[str, Any]) -> None:
        for key, hint in EDGE_FEATURES.items():
            if key in edge:
                self.refuse((*path, key), f"edge {key}: is not provided by tead ({hint})")
                del edge[key]
        targets = edge.get("to")
        if isinstance(targets, list) and any(isinstance(t, dict) for t in targets):
            self.refuse(
                (*path, "to"),
                "edge to: with target/condition entries is TEA's routing list; write one "
                "edge per target, with when:",
            )
            edge["to"] = [t for t in targets if isinstance(t, str)] or "__end__"
        kind = edge.get("type")
        if isinstance(kind, str) and kind in ("entry", "finish"):
            end = "from: __start__" if kind == "entry" else "to: __end__"
            self.note((*path, "type"), f"edge type: {kind} is written {end} in tead (accepted)")
            del edge["type"]
            if kind == "entry":
                edge.setdefault("from", "__start__")
            else:
                edge.setdefault("to", "__end__")
        if "when" in edge:
            when = edge["when"]
            if "condition" in edge:
                if not isinstance(when, bool):
                    self.refuse(
                        (*path, "when"),
                        "with condition:, when: is the value the condition must have "
                        "(true or false)",
                    )
                    del edge["when"]
            else:
                self._expression((*path, "when"), when, "when")
        if "condition" in edge:
            condition = edge["condition"]
            text = condition.get("value") if isinstance(condition, dict) else condition
            self._expression((*path, "condition"), text, "condition", python_first=False)

    def _expression(
        self, path: Path, value: object, what: str, *, python_first: bool = True
    ) -> None:
        if not isinstance(value, str | bool):
            return
        try:
            found = classify(value, field=what, python_first=python_first)
        except ExpressionProblem:
            return  # the loader reports it where it compiles the expression
        if found.kind == "const" and isinstance(value, bool):
            self.note(path, f"{what}: {found.text} (a YAML boolean) is a constant condition")
        elif found.kind == "jinja":
            self.note(path, f"{what}: is TEA's Jinja; tead evaluates it in a sandbox")
        elif found.kind in ("flag", "not_flag"):
            self.note(path, f"{what}: TEA's shorthand for state.get(...) (accepted)")


def _own_nodes(function: ast.AST) -> list[ast.AST]:
    """The nodes of a function's body, without those of functions defined inside it."""
    found: list[ast.AST] = []
    todo = list(ast.iter_child_nodes(function))
    while todo:
        node = todo.pop()
        found.append(node)
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            todo.extend(ast.iter_child_nodes(node))
    return found


def check_tea(doc: YamlDocument) -> TeaReport:
    """What of TEA's format the file uses, and the data left to validate (see module doc)."""
    return _Checker(doc).run()
