"""`tead run`: what nodes write goes to stderr, so stdout is the final state alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

NOISY = """\
name: noisy
settings: {parallel: {strategy: $strategy}}
nodes:
  - name: talk
    run: |
      import logging, os, subprocess, sys
      print("print noise")
      print("stderr noise", file=sys.stderr)
      os.write(1, b"raw noise\\n")
      subprocess.run(["echo", "child noise"], check=True)
      logging.getLogger("x").warning("log noise")
      return {"items": [1, 2]}
  - name: branch
    run: |
      import os
      print(f"branch print {state['item']}")  # one write: threads interleave writes
      os.write(1, b"branch raw\\n")
  - name: merge
    run: |
      return {"n": len(parallel_results)}
edges:
  - {from: __start__, to: talk}
  - {from: talk, to: branch, parallel: true, for_each: "state['items']", item_var: item,
     fan_in: merge}
  - {from: branch, to: merge}
  - {from: merge, to: __end__}
"""


@pytest.mark.parametrize("strategy", ["thread", "process"])
def test_tead_run_piped_to_json_tool_sees_only_the_final_state(
    tmp_path: Path, strategy: str
) -> None:
    """`tead run wf | python -m json.tool` works although the nodes print, write to
    descriptor 1, start a child that prints, log, and run as branches; their output is on
    stderr."""
    path = tmp_path / "noisy.yaml"
    path.write_text(textwrap.dedent(NOISY).replace("$strategy", strategy))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = f"{sys.executable} -m tead run {path} | {sys.executable} -m json.tool"
    proc = subprocess.run(
        ["sh", "-c", command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"items": [1, 2], "n": 2}
    for noise in ("print noise", "stderr noise", "raw noise", "child noise", "log noise"):
        assert noise in proc.stderr, noise
    assert "branch print 1" in proc.stderr and "branch print 2" in proc.stderr
    assert proc.stderr.count("branch raw") == 2
