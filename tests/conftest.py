"""Shared test helpers: run the real `tead` CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

RunTead = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(autouse=True, scope="session")
def _files_get_usual_modes() -> Iterator[None]:
    """Files and folders the tests make are 0644/0755 whatever the machine's umask: the
    daemon refuses group-writable workflow files (strict_permissions)."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def tead_cli(tmp_path: Path) -> RunTead:
    """Run `python -m tead ARGS` in `tmp_path` (or `cwd`); returns the completed process."""

    def run(
        *args: str, cwd: Path | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
        return subprocess.run(
            [sys.executable, "-m", "tead", *args],
            cwd=cwd or tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


@pytest.fixture
def write_workflow(tmp_path: Path) -> Callable[..., Path]:
    """Write a (dedented) workflow file into `tmp_path` and return its path."""

    def write(text: str, name: str = "wf.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
        return path

    return write


pytest_plugins = ["tests.daemon_fixture"]
