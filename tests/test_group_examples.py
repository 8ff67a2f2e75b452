"""examples/parallel_groups.py, run as a script (piped), prints what the README says; run
again with the same journal, it replays the completed members."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

EXPECTED = """\
pages: 5 ok, words [0, 100, 200, 300, 400], replayed {replayed}
sums: {{'alpha': '8ed3f6ad', 'beta': 'f44e64e7'}}
flaky: [0.01, 0.02, 0.03, None] as completed, timed out: ['flaky/3']
"""


def run_example(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / "parallel_groups.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_parallel_groups_example_runs_then_replays(tmp_path: Path) -> None:
    journal = str(tmp_path / "journal.sqlite")
    first = run_example(journal)
    assert first.stdout == EXPECTED.format(replayed=0)
    assert "group pages: 5 done, 0 failed in" in first.stderr
    assert "member flaky/3 failed: TimeoutError: group 'flaky' timed out after 0.5 s" in (
        first.stderr
    )
    second = run_example(journal)
    assert second.stdout == EXPECTED.format(replayed=5)


def test_parallel_groups_example_without_a_journal() -> None:
    assert run_example().stdout == EXPECTED.format(replayed=0)
