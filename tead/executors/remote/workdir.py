"""A host worker's workdir: made if missing, and, with `cleanup`, left as it was found.

The worker notes what it creates: the folders it made (the workdir, its missing parents,
`code/`) and the code folders it wrote (`code/<hash>/`). `clean()` removes the code folders
it wrote, then the folders it made if nothing else is in them (another worker's code, a
branch's files): it never deletes what it did not make.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path


class Workdir:
    """One worker's workdir and what it created there."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.code = path / "code"
        missing = [p for p in (self.code, path, *path.parents) if not p.exists()]
        self.code.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._made = list(reversed(missing))  # highest first
        self._created: list[Path] = []

    def wrote(self, folder: Path) -> None:
        """Note a code folder this worker wrote."""
        self._created.append(folder)

    def clean(self) -> None:
        os.chdir("/")
        for path in self._created:
            shutil.rmtree(path, ignore_errors=True)
        for folder in reversed(self._made):
            with contextlib.suppress(OSError):
                folder.rmdir()
        self._created.clear()
        self._made.clear()
