"""Watch-trigger globs and folders (pure functions; the daemon tests cover the events)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tead.daemon.watcher import base_folder
from tead.spec.globs import glob_regex


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("/w/inbox/*.jpg", "/w/inbox/a.jpg", True),
        ("/w/inbox/*.jpg", "/w/inbox/sub/a.jpg", False),  # * stays in one folder
        ("/w/inbox/**/*.jpg", "/w/inbox/a.jpg", True),  # ** may be no folder at all
        ("/w/inbox/**/*.jpg", "/w/inbox/x/y/a.jpg", True),
        ("/w/inbox/**", "/w/inbox/x/y", True),
        ("/w/?.txt", "/w/a.txt", True),
        ("/w/?.txt", "/w/ab.txt", False),
        ("/w/[a-c].txt", "/w/b.txt", True),
        ("/w/[!a-c].txt", "/w/b.txt", False),
        ("/w/a+b(1).txt", "/w/a+b(1).txt", True),  # regex characters are literal
        ("/w/*.txt", "/w/a.txt.bak", False),
    ],
)
def test_glob_matching(pattern: str, path: str, matches: bool) -> None:
    assert bool(glob_regex(pattern).match(path)) is matches


def test_base_folder_is_the_folder_before_the_first_wildcard(tmp_path: Path) -> None:
    (tmp_path / "inbox").mkdir()
    assert base_folder(f"{tmp_path}/inbox/*.jpg") == tmp_path / "inbox"
    assert base_folder(f"{tmp_path}/inbox/**/x/*.jpg") == tmp_path / "inbox"
    assert base_folder(f"{tmp_path}/missing/*.jpg") is None  # never a far-up ancestor
