"""End to end, real CLI processes (and a real daemon): run ids given as a prefix to
`rerun`, hostile `--input`/`--trigger` values, ids that are not URL-safe, and control
characters from a run's output and errors kept away from the terminal."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.daemon_fixture import DaemonProcess

Factory = Callable[..., DaemonProcess]
RunTead = Callable[..., subprocess.CompletedProcess[str]]

HOSTILE = r"""
name: hostile
on:
  dispatch: {}
nodes:
  - name: talk
    run: |
      print("\x1b]0;PWNED\x07hello\x1b[2K\rhidden")
      raise ValueError("bad\x1b[31mred\rmore")
"""

FINE = """
name: fine
on:
  dispatch: {}
nodes:
  - name: one
    run: |
      print("line one")
      return {"done": True}
"""

MINIMAL = """
name: minimal
nodes:
  - name: one
    run: |
      return {}
"""


@pytest.fixture
def served(daemon_factory: Factory) -> DaemonProcess:
    daemon = daemon_factory()
    daemon.write("hostile.yaml", HOSTILE)
    daemon.write("fine.yaml", FINE)
    return daemon.start()


def test_rerun_takes_a_run_id_prefix(served: DaemonProcess, tead_cli: RunTead) -> None:
    """As GET, logs and cancel do: over HTTP and from `tead runs rerun`."""
    first = served.wait_run(served.dispatch("hostile")["id"])
    assert first["status"] == "failed"
    prefix = first["id"][:10]
    response = served.post(f"/api/v1/runs/{prefix}/rerun", json={})
    assert response.status_code == 202, response.text
    assert response.json()["trigger"]["rerun_of"] == first["id"]

    proc = tead_cli("runs", "rerun", prefix, "--from-failure", "--url", served.url)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith(f"(resumed from {first['id']})\n")
    resumed = served.wait_run(proc.stdout.split()[1])
    assert resumed["trigger"]["resumed_from"] == first["id"]

    proc = tead_cli("runs", "rerun", prefix, "--url", served.url)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.endswith(f"(re-run of {first['id']})\n")


@pytest.mark.parametrize("value", ["yes", 1, "true", None])
def test_rerun_from_failure_is_a_strict_bool(served: DaemonProcess, value: object) -> None:
    run = served.wait_run(served.dispatch("hostile")["id"])
    response = served.post(f"/api/v1/runs/{run['id']}/rerun", json={"from_failure": value})
    assert response.status_code == 422, response.text
    assert served.runs(workflow="hostile", limit=10) == served.runs(workflow="hostile")
    assert len(served.runs(workflow="hostile")) == 1  # nothing was started


def _hostile_inputs(tmp: Path) -> list[tuple[str, str]]:
    """(`--input` value, the problem its message names)."""
    deep = tmp / "deep.json"
    deep.write_text("[" * 100_000)
    long_int = tmp / "long.json"
    long_int.write_text('{"n": ' + "9" * 5000 + "}")
    huge = tmp / "huge.json"
    with huge.open("wb") as file:
        file.truncate(16 * 1024 * 1024 + 1)
    deep_yaml = tmp / "deep.yaml"
    deep_yaml.write_text("a: " + "[" * 100_000)
    fifo = tmp / "fifo.json"
    os.mkfifo(fifo)
    return [
        (f"@{deep}", "nested too deeply"),
        ("[" * 100_000, "nested too deeply"),
        (f"@{long_int}", "integer too long"),
        ('{"n": ' + "9" * 5000 + "}", "integer too long"),
        (f"@{huge}", "larger than 16777216 bytes"),
        (f"@{deep_yaml}", "nesting depth"),
        ("@/dev/zero", "/dev/zero: not a regular file"),
        (f"@{fifo}", "fifo.json: not a regular file"),
        (f"@{tmp}", "not a regular file"),
    ]


@pytest.mark.timeout(300)  # dozens of CLI processes: ~30 s alone, far more on a loaded machine
def test_hostile_input_and_trigger_get_one_line(
    tmp_path: Path, tead_cli: RunTead, write_workflow: Callable[..., Path]
) -> None:
    """`tead run --input/--trigger` and `tead dispatch --input`: one line naming the flag
    and the problem, exit 2; no traceback, no hang (a FIFO or /dev/zero is not read)."""
    workflow = write_workflow(MINIMAL)
    cases = _hostile_inputs(tmp_path)
    commands = [
        ("--input", ["run", str(workflow)]),
        ("--trigger", ["run", str(workflow)]),
        ("--input", ["dispatch", "minimal", "--url", "http://127.0.0.1:9"]),
    ]
    for flag, command in commands:
        for value, problem in cases:
            proc = tead_cli(*command, flag, value, timeout=60)
            assert proc.returncode == 2, (flag, value[:40], proc.stderr[-500:])
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1, (flag, value[:40], proc.stderr[-500:])
            assert lines[0].startswith(f"tead: {flag}"), lines[0]
            assert problem in lines[0], lines[0]


def test_ids_and_names_are_quoted_in_url_paths(served: DaemonProcess, tead_cli: RunTead) -> None:
    """An id or name is one path segment whatever it holds; an empty one is refused."""
    run = served.wait_run(served.dispatch("fine")["id"])
    url = ["--url", served.url]
    proc = tead_cli("runs", "show", "", *url)
    assert (proc.returncode, proc.stderr) == (2, "tead: the run id is empty\n")
    proc = tead_cli("runs", "logs", "", *url)
    assert (proc.returncode, proc.stderr) == (2, "tead: the run id is empty\n")
    proc = tead_cli("runs", "show", f"{run['id']}/cancel", *url)
    assert proc.returncode == 2
    assert proc.stderr == f"tead: run id '{run['id']}/cancel': no run id holds a '/'\n"
    for bad in ("?limit=1", f"{run['id']}#x", "..", "."):
        proc = tead_cli("runs", "show", bad, *url)
        assert proc.returncode == 2, (bad, proc.stdout, proc.stderr)
        assert proc.stderr == f"tead: no run {bad!r}\n", (bad, proc.stderr)
    proc = tead_cli("workflows", "disable", "../runs", *url)
    assert proc.returncode == 2
    assert proc.stderr == "tead: workflow name '../runs': no workflow name holds a '/'\n"
    proc = tead_cli("workflows", "disable", "..", *url)
    assert (proc.returncode, proc.stderr) == (2, "tead: no workflow '..'\n")
    proc = tead_cli("dispatch", "fine?x=1", *url)
    assert (proc.returncode, proc.stderr) == (2, "tead: no workflow 'fine?x=1'\n")
    proc = tead_cli("workflows", "disable", "", *url)
    assert (proc.returncode, proc.stderr) == (2, "tead: the workflow name is empty\n")
    assert served.get("/api/v1/workflows").json()["workflows"][0]["enabled"]


def test_control_characters_are_escaped(served: DaemonProcess, tead_cli: RunTead) -> None:
    """Node output and errors reach `runs logs`, `runs show` and `runs` escaped; `--json`
    output stays as the API gave it."""
    run = served.wait_run(served.dispatch("hostile")["id"])
    url = ["--url", served.url]
    outputs = {
        "logs": tead_cli("runs", "logs", run["id"], *url),
        "follow": tead_cli("runs", "logs", run["id"], "--follow", *url),
        "show": tead_cli("runs", "show", run["id"], *url),
        "table": tead_cli("runs", *url),
    }
    for what, proc in outputs.items():
        assert proc.returncode == 0, (what, proc.stderr)
        for control in ("\x1b", "\x07", "\r"):
            assert control not in proc.stdout, (what, proc.stdout)
        shown = r"\x1b]0;PWNED\x07hello\x1b[2K\x0dhidden"
        shown = r"bad\x1b[31mred\x0dmore" if what in ("show", "table") else shown
        assert shown in proc.stdout, (what, proc.stdout)
    assert "Traceback" in outputs["show"].stdout  # a traceback keeps its lines
    raw = tead_cli("runs", "logs", run["id"], "--json", *url)
    assert "\\u001b]0;PWNED" in raw.stdout  # JSON escapes it itself


def test_empty_node_filter_is_no_filter(served: DaemonProcess) -> None:
    run = served.wait_run(served.dispatch("fine")["id"])
    every = served.get(f"/api/v1/runs/{run['id']}/logs").json()
    assert any(entry["line"] == "line one" for entry in every)
    assert served.get(f"/api/v1/runs/{run['id']}/logs?node=").json() == every
