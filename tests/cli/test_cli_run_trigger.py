"""`tead run` honours `on.dispatch.inputs` (defaults, types, required) and fakes a trigger
with `--trigger`, checked as the daemon would give it (real CLI processes)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import final_state

RunTead = Callable[..., subprocess.CompletedProcess[str]]

WORKFLOW = """\
name: tryme
on:
  dispatch:
    inputs:
      n: {type: integer, default: 3}
      who: {type: string, required: true}
      tags: {type: array, default: [a]}
nodes:
  - name: a
    run: |
      return {"double": state["n"] * 2, "seen": state.get("trigger")}
"""


def test_dispatch_defaults_fill_the_state(
    tead_cli: RunTead, write_workflow: Callable[..., Path]
) -> None:
    """A default-only input is in the state (it was `KeyError: 'n'`); other keys stay."""
    write_workflow(WORKFLOW)
    state = final_state(tead_cli("run", "wf.yaml", "-q", "-i", '{"who": "me", "extra": 1}'))
    assert state["n"] == 3
    assert state["double"] == 6
    assert state["tags"] == ["a"]
    assert state["extra"] == 1
    assert state["seen"] is None


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("{}", "tead: --input: input 'who' is required"),
        ('{"who": "me", "n": "3"}', "tead: --input: input 'n' must be of type integer"),
        ('{"who": "me", "n": true}', "tead: --input: input 'n' must be of type integer"),
    ],
)
def test_bad_inputs_get_one_line(
    tead_cli: RunTead, write_workflow: Callable[..., Path], given: str, message: str
) -> None:
    write_workflow(WORKFLOW)
    proc = tead_cli("run", "wf.yaml", "-q", "-i", given)
    assert (proc.returncode, proc.stderr.strip()) == (2, message)


def test_trigger_reaches_the_state(
    tead_cli: RunTead, write_workflow: Callable[..., Path], tmp_path: Path
) -> None:
    write_workflow(WORKFLOW)
    watch = {"kind": "watch", "changes": [{"path": "inbox/a.jpg", "event": "added"}]}
    state = final_state(
        tead_cli("run", "wf.yaml", "-q", "-i", '{"who": "x"}', "--trigger", json.dumps(watch))
    )
    assert state["seen"] == watch
    ended = {
        "kind": "workflow_run",
        "run": {"id": "r1", "workflow": "import", "status": "failed", "error": "boom"},
    }
    (tmp_path / "trigger.json").write_text(json.dumps(ended))
    proc = tead_cli("run", "wf.yaml", "-q", "-i", '{"who": "x"}', "--trigger", "@trigger.json")
    assert final_state(proc)["seen"] == {**ended, "chain": []}


@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        ('{"kind": ', "--trigger: invalid JSON: Expecting value"),
        ("[1]", "--trigger must be a JSON object, got list"),
        ('{"changes": []}', "--trigger: kind is missing"),
        (
            '{"kind": "file"}',
            "--trigger: kind must be one of catchup, dispatch, schedule, watch, workflow_run",
        ),
        (
            '{"kind": "watch", "changes": [{"path": "a", "event": "eaten"}]}',
            "--trigger: changes.0.event: Input should be 'added', 'modified' or 'deleted'",
        ),
        ('{"kind": "watch", "changes": []}', "--trigger: changes: List should have at least 1"),
        (
            '{"kind": "schedule", "scheduled_time": "2026-01-01T00:00:00"}',
            "--trigger: scheduled_time: an ISO-8601 time with its offset (Z or +01:00)",
        ),
        ('{"kind": "dispatch", "extra": 1}', "--trigger: extra: Extra inputs are not permitted"),
    ],
)
def test_bad_triggers_get_one_line(
    tead_cli: RunTead, write_workflow: Callable[..., Path], trigger: str, message: str
) -> None:
    write_workflow(WORKFLOW)
    proc = tead_cli("run", "wf.yaml", "-q", "-i", '{"who": "x"}', "--trigger", trigger)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"tead: {message}"), proc.stderr
    assert "Traceback" not in proc.stderr
