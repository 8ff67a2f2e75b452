"""The progress display: on a terminal (a real pseudo-TTY) one bar per fan-out or group that
follows the run's real events to its exact total, then a summary line; plain lines when
piped; NDJSON with --stream."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tead
from tead.cli.progress import LiveProgress, PlainProgress
from tead.engine.events import BranchFinished, FanIn, FanOutStarted
from tests.conftest import ROOT, RunTead

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

FOUR_BRANCHES = textwrap.dedent(
    """\
    name: four
    settings:
      parallel: {max_workers: 2}
    nodes:
      - name: list
        run: |
          return {"items": [1, 2, 3, 4]}
      - name: work
        run: |
          import time
          time.sleep(0.2)
          if state["item"] == 3:
              raise ValueError("three")
          return {"done": state["item"]}
      - name: merge
        run: |
          return {"n": len(parallel_results)}
    edges:
      - {from: __start__, to: list}
      - {from: list, to: work, parallel: true, for_each: "state['items']", item_var: item,
         fan_in: merge}
      - {from: work, to: merge}
      - {from: merge, to: __end__}
    """
)


def run_on_terminal(args: list[str], cwd: Path) -> tuple[str, str]:
    """Run `args` with stderr on a pseudo-terminal; (stdout, what the terminal showed with
    its escape sequences removed)."""
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120", "TERM": "xterm"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the other end closed (EIO on Linux)
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    return stdout.decode(), ANSI.sub("", b"".join(chunks).decode())


def counts(screen: str, total: int) -> list[int]:
    return [int(n) for n in re.findall(rf"(\d+)/{total}\b", screen)]


def test_tead_run_on_a_terminal_follows_the_real_events(tmp_path: Path) -> None:
    """The bar counts 0..4 in order, shows the failure count, reaches 4/4 before the fan-in
    summary line (with its time), and the run's summary line ends the display."""
    (tmp_path / "four.yaml").write_text(FOUR_BRANCHES)
    stdout, screen = run_on_terminal([sys.executable, "-m", "tead", "run", "four.yaml"], tmp_path)
    assert json.loads(stdout)["n"] == 4
    seen = counts(screen, 4)
    assert seen == sorted(seen)
    assert set(seen) == {0, 1, 2, 3, 4}
    before_summary = screen.split("fan-in merge")[0]
    assert counts(before_summary, 4)[-1] == 4
    assert "4/4 1 failed" in before_summary
    assert re.search(r"fan-in merge: 4 results, 1 failed in \d+\.\d\d s", screen)
    assert "✗ branch work[2] failed: ValueError: three" in screen
    assert re.search(r"✓ run succeeded in [\d.]+ ms\s*$", screen)


def test_tead_run_piped_prints_plain_lines(tead_cli: RunTead, tmp_path: Path) -> None:
    (tmp_path / "four.yaml").write_text(FOUR_BRANCHES)
    done = tead_cli("run", "four.yaml")
    assert done.returncode == 0
    assert "\x1b[" not in done.stderr
    assert "fan-out at list: 4 branches (thread) -> merge" in done.stderr
    assert "fan-in merge: 4 results, 1 failed" in done.stderr


def test_tead_run_stream_prints_ndjson(tead_cli: RunTead, tmp_path: Path) -> None:
    (tmp_path / "four.yaml").write_text(FOUR_BRANCHES)
    done = tead_cli("run", "four.yaml", "--stream")
    kinds = [json.loads(line)["event"] for line in done.stdout.splitlines()]
    assert kinds.count("branch_finished") == 4
    assert kinds[-1] == "run_finished"


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_live_progress_draws_every_count_it_is_told() -> None:
    """Fed events directly, the bar shows each count (no frame skipped or left stale)."""
    out = Terminal()
    display = LiveProgress(out)
    branches = tuple(f"b[{i}]" for i in range(3))
    display(FanOutStarted(node="s", fan_in="j", path="", strategy="thread", branches=branches))
    for i, branch in enumerate(branches):
        display(
            BranchFinished(node="s", fan_in="j", path=branch, branch=branch, strategy="thread",
                           success=i != 1, error=None if i != 1 else "x", error_type=None,
                           timeout=False, retry_count=0, timing_ms=1.0)
        )  # fmt: skip
    display(FanIn(node="j", path="", branches=3, failed=1))
    display.close()
    screen = ANSI.sub("", out.getvalue())
    assert counts(screen, 3) == sorted(counts(screen, 3))
    assert "3/3 1 failed" in screen.split("fan-in j")[0]


def test_group_progress_piped_prints_a_line_per_member_and_a_summary() -> None:
    out = io.StringIO()

    async def fails() -> None:
        raise ValueError("no")

    async def main() -> None:
        with tead.progress_display(out) as display:
            assert isinstance(display, PlainProgress)
            async with tead.parallel(name="p", progress=display) as group:
                group.add(asyncio.sleep(0, result=1), name="one")
                group.add(fails(), name="two")
                await group.gather()

    asyncio.run(main())
    lines = out.getvalue().splitlines()
    assert lines[0] == "group p started (thread)"
    assert sorted(line.split(" (")[0] for line in lines[1:3]) == [
        "member p/one ok",
        "member p/two failed: ValueError: no",
    ]
    assert re.fullmatch(r"group p: 2 done, 1 failed in \d+\.\d\d s", lines[3])


@pytest.mark.parametrize("example", ["parallel_groups.py"])
def test_group_example_on_a_terminal_shows_bars_and_summaries(example: str, tmp_path: Path) -> None:
    """The example's groups draw a bar each on a terminal, counting to their exact total,
    and end with their summary lines; nested groups get bars of their own."""
    stdout, screen = run_on_terminal([sys.executable, str(ROOT / "examples" / example)], tmp_path)
    assert "pages: 5 ok" in stdout
    assert counts(screen.split("group pages:")[0], 5)[-1] == 5
    assert re.search(r"group pages: 5 done, 0 failed in \d+\.\d\d s", screen)
    assert re.search(r"group flaky: 4 done, 1 failed \(1 timed out\) in", screen)
