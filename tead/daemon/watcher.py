"""Watching files: the workflow folder, and the paths of `on.watch` triggers.

One watchfiles loop covers the workflow folder (recursively, so trigger paths inside it
need nothing more) and the existing base folders of trigger globs outside it. The loop
restarts when that set of folders changes, and when the workflow folder is deleted or
replaced (watchfiles goes silent then): a 1 s check compares the folder's inode. A
periodic content-hash rescan covers file systems whose events get lost (polling
mounts, network file systems).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path, PurePath

import watchfiles

from tead.daemon.registry import WorkflowEntry
from tead.spec.globs import glob_regex

log = logging.getLogger(__name__)

EVENT_NAMES = {
    watchfiles.Change.added: "added",
    watchfiles.Change.modified: "modified",
    watchfiles.Change.deleted: "deleted",
}
STEP_MS = 10  # wait this long for more changes after one arrives
DEBOUNCE_MS = 150  # but never group changes for longer than this
FileChanges = list[tuple[str, str]]  # (absolute path, added | modified | deleted)


def trigger_patterns(entry: WorkflowEntry) -> list[str]:
    """A workflow's watch globs as absolute, normalised patterns."""
    spec = entry.workflow.spec if entry.workflow else None
    if spec is None or spec.on is None or spec.on.watch is None:
        return []
    base = entry.path.resolve().parent
    return [os.path.normpath(base / p) for p in spec.on.watch.paths]


def matching_changes(entry: WorkflowEntry, changes: FileChanges) -> list[dict[str, str]]:
    """The changes a workflow's watch trigger wants: matching glob and event kind."""
    spec = entry.workflow.spec if entry.workflow else None
    if spec is None or spec.on is None or spec.on.watch is None:
        return []
    events = set(spec.on.watch.events)
    patterns = trigger_patterns(entry)
    return [
        {"path": path, "event": event}
        for path, event in changes
        if event in events and any(glob_regex(p).match(path) for p in patterns)
    ]


def base_folder(pattern: str) -> Path | None:
    """The folder a glob pattern lives in (up to its first wildcard), if it exists yet.

    A missing one is not watched (never a far-up ancestor such as `/`); the guard looks
    for it every second and starts watching once it exists.
    """
    parts = []
    for part in PurePath(pattern).parts[:-1]:
        if any(ch in part for ch in "*?["):
            break
        parts.append(part)
    folder = Path(*parts) if parts else None
    return folder if folder is not None and folder.is_dir() else None


class FolderWatcher:
    """Calls `on_changes(changes, seen_at)` for every batch of file changes."""

    def __init__(
        self,
        folder: Path,
        *,
        extra_roots: Callable[[], Iterable[Path]],
        on_changes: Callable[[FileChanges, float], None],
        on_rescan: Callable[[], None],
        rescan_interval_s: float,
    ) -> None:
        self.folder = folder
        self.extra_roots = extra_roots
        self.on_changes = on_changes
        self.on_rescan = on_rescan
        self.rescan_interval_s = rescan_interval_s
        self._restart = asyncio.Event()
        self._watched: list[Path] = []

    def restart(self) -> None:
        """Watch again with the current set of folders (after triggers changed)."""
        self._restart.set()

    def _roots(self) -> list[Path]:
        roots = {self.folder.resolve()}
        for root in self.extra_roots():
            resolved = root.resolve()
            if not any(resolved.is_relative_to(r) for r in roots):
                roots.add(resolved)
        return sorted(roots)

    async def run(self) -> None:
        """Watch until cancelled."""
        while True:
            if not self.folder.is_dir():
                log.warning("workflow folder %s is missing; waiting for it", self.folder)
                while not self.folder.is_dir():
                    await asyncio.sleep(0.5)
                log.info("workflow folder %s is back", self.folder)
                self.on_rescan()
            self._restart.clear()
            roots = self._watched = self._roots()
            try:
                async for batch in watchfiles.awatch(
                    *roots,
                    stop_event=self._restart,
                    step=STEP_MS,
                    debounce=DEBOUNCE_MS,
                    recursive=True,
                    raise_interrupt=False,
                ):
                    seen = time.monotonic()
                    changes = [(path, EVENT_NAMES[change]) for change, path in batch]
                    self.on_changes(sorted(changes), seen)
            except Exception as exc:  # a root went away, an odd file name...: look again
                log.warning(
                    "watching %s: %s: %s", ", ".join(map(str, roots)), type(exc).__name__, exc
                )
                await asyncio.sleep(0.5)

    async def guard(self) -> None:
        """Restart the watch when the folder is replaced; rescan every so often."""
        inode = _inode(self.folder)
        last_scan = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            now_inode = _inode(self.folder)
            if self._roots() != self._watched:  # a trigger's folder appeared or went away
                self.restart()
            if now_inode != inode:
                inode = now_inode
                self.restart()
                self.on_rescan()
                last_scan = time.monotonic()
            elif time.monotonic() - last_scan >= self.rescan_interval_s:
                self.on_rescan()
                last_scan = time.monotonic()


def _inode(folder: Path) -> int | None:
    try:
        return folder.stat().st_ino
    except OSError:
        return None


def with_new_folders_contents(changes: FileChanges, *, limit: int = 10_000) -> FileChanges:
    """Add the files of folders that were just created: inotify cannot watch a new folder
    before it exists, so files written into it at once would go unseen."""
    found: FileChanges = []
    for path, event in changes:
        if event == "added" and os.path.isdir(path):
            for root, _, names in os.walk(path):
                found += [(os.path.join(root, n), "added") for n in names]
                if len(found) >= limit:
                    break
    return sorted(set(changes) | set(found)) if found else changes
