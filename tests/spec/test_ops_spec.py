"""`env:` secrets and `on.workflow_run` in workflow files: accepted shapes, and one line
naming the key and its place for bad ones (through the real `tead validate`)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tead.spec.models import SecretRef, WorkflowSpec

RunTead = Callable[..., subprocess.CompletedProcess[str]]
NODES = "nodes:\n  - name: a\n"


def test_secret_refs_and_workflow_run_parse() -> None:
    spec = WorkflowSpec.model_validate(
        {
            "env": {"A": "x", "B": {"secret": "api_token"}},
            "on": {"workflow_run": {"workflows": ["import"], "status": ["failed"]}},
            "nodes": [{"name": "a"}],
        }
    )
    assert spec.env == {"A": "x", "B": SecretRef(secret="api_token")}
    assert spec.on is not None and spec.on.workflow_run is not None
    assert spec.on.workflow_run.workflows == ["import"]
    assert spec.on.workflow_run.status == ["failed"]
    default = WorkflowSpec.model_validate(
        {"on": {"workflow_run": {"workflows": ["w"]}}, "nodes": [{"name": "a"}]}
    )
    assert default.on is not None and default.on.workflow_run is not None
    assert len(default.on.workflow_run.status) == 5


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("env: {A: {secret: ../etc}}", "wf.yaml:1:19: env.A.secret: String should match"),
        (
            "env: {A: {secrets: x}}",
            "wf.yaml:1:10: missing required key 'secret'\n"
            "wf.yaml:1:11: unknown key 'secrets' (did you mean 'secret'?)",
        ),
        ("on: {workflow_run: {workflows: []}}", "wf.yaml:1:32: on.workflow_run.workflows: List"),
        (
            "on: {workflow_run: {status: [failed]}}",
            "wf.yaml:1:20: missing required key 'workflows'",
        ),
        (
            "on: {workflow_run: {workflows: [a], status: [done]}}",
            "on.workflow_run.status.0: Input should be 'succeeded', 'failed'",
        ),
    ],
)
def test_bad_secret_refs_and_workflow_run_get_one_line(
    header: str, message: str, tead_cli: RunTead, write_workflow: Callable[..., Path]
) -> None:
    write_workflow(header + "\n" + NODES)
    proc = tead_cli("validate", "wf.yaml")
    assert proc.returncode == 2, proc
    assert message in proc.stderr, proc.stderr
    assert len(proc.stderr.splitlines()) == len(message.splitlines()), proc.stderr
    assert "Traceback" not in proc.stderr
